//! Server counters, stream health from the pipeline's latest status, and the per-stage
//! latency histograms, rendered as Prometheus text at `/metrics`; counters and latencies
//! are also summarised in every `status` frame.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::frames::{ErrorCode, FrameKind, ModelStatus, PipelineStatus, SendLatency, StreamStatus};
use crate::metrics::{Stage, StageSet};

/// Counters shared by the hub and every connection.
#[derive(Debug)]
pub struct Metrics {
    /// Clients connected now.
    pub clients: AtomicU64,
    /// WebSocket connections accepted since start.
    pub connections: AtomicU64,
    /// Connections refused because the client limit was reached.
    pub rejected_client_limit: AtomicU64,
    /// Requests refused for a missing or wrong token.
    pub rejected_unauthorized: AtomicU64,
    /// WebSocket handshakes refused for a foreign `Origin`.
    pub rejected_origin: AtomicU64,
    /// Clients evicted because a socket write exceeded `write_timeout_ms`.
    pub evicted_write_timeout: AtomicU64,
    /// Clients evicted because a ping went unanswered for `ping_timeout_ms`.
    pub evicted_ping_timeout: AtomicU64,
    /// Frames published by the pipeline, indexed by [`FrameKind`] (`kind as usize`).
    pub published: [AtomicU64; FrameKind::ALL.len()],
    /// Frames written to client sockets.
    pub sent: AtomicU64,
    /// Frames dropped because a client's queue was full.
    pub dropped: AtomicU64,
    /// Client messages refused, per [`ErrorCode`].
    client_errors: [AtomicU64; 4],
    /// Latency of every pipeline stage, recorded by the pipeline and the connections.
    pub stages: StageSet,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            clients: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            rejected_client_limit: AtomicU64::new(0),
            rejected_unauthorized: AtomicU64::new(0),
            rejected_origin: AtomicU64::new(0),
            evicted_write_timeout: AtomicU64::new(0),
            evicted_ping_timeout: AtomicU64::new(0),
            published: Default::default(),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            client_errors: Default::default(),
            stages: StageSet::new(),
        }
    }
}

const ERROR_CODES: [(ErrorCode, &str); 4] = [
    (ErrorCode::MessageTooLarge, "message_too_large"),
    (ErrorCode::Malformed, "malformed"),
    (ErrorCode::UnsupportedBinary, "unsupported_binary"),
    (ErrorCode::BadSubscription, "bad_subscription"),
];

impl Metrics {
    /// Counts one refused client message.
    pub fn client_error(&self, code: ErrorCode) {
        let i = ERROR_CODES
            .iter()
            .position(|(c, _)| *c == code)
            .unwrap_or(0);
        self.client_errors[i].fetch_add(1, Relaxed);
    }

    /// Records the time one frame spent between publish and socket write.
    pub fn record_send_latency(&self, elapsed: Duration) {
        self.stages.record(Stage::FrameSend, elapsed);
    }

    /// Median and 99th percentile of the send latency so far.
    pub fn send_latency(&self) -> SendLatency {
        let p = self.stages.get(Stage::FrameSend).percentiles();
        SendLatency {
            p50_ms: p.p50_ms,
            p99_ms: p.p99_ms,
        }
    }

    /// Prometheus text exposition: the server's counters, the stream health in `pipeline`
    /// (the latest status the pipeline published; lags against `now`, LSL clock) and the
    /// latency histogram of every stage.
    pub fn render(&self, pipeline: &PipelineStatus, now: f64) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            write_family(&mut out, name, kind, help, samples.iter().copied());
        };
        metric(
            "neuralign_ws_clients",
            "gauge",
            "WebSocket clients connected now.",
            &[("", self.clients.load(Relaxed))],
        );
        metric(
            "neuralign_ws_connections_total",
            "counter",
            "WebSocket connections accepted.",
            &[("", self.connections.load(Relaxed))],
        );
        metric(
            "neuralign_ws_rejected_total",
            "counter",
            "Requests refused, by reason.",
            &[
                (
                    "{reason=\"client_limit\"}",
                    self.rejected_client_limit.load(Relaxed),
                ),
                (
                    "{reason=\"unauthorized\"}",
                    self.rejected_unauthorized.load(Relaxed),
                ),
                ("{reason=\"origin\"}", self.rejected_origin.load(Relaxed)),
            ],
        );
        metric(
            "neuralign_ws_evicted_total",
            "counter",
            "Clients disconnected for not keeping up, by reason.",
            &[
                (
                    "{reason=\"write_timeout\"}",
                    self.evicted_write_timeout.load(Relaxed),
                ),
                (
                    "{reason=\"ping_timeout\"}",
                    self.evicted_ping_timeout.load(Relaxed),
                ),
            ],
        );
        let published: Vec<(String, u64)> = FrameKind::ALL
            .iter()
            .zip(&self.published)
            .map(|(k, v)| (format!("{{type=\"{}\"}}", k.name()), v.load(Relaxed)))
            .collect();
        let published: Vec<(&str, u64)> = published.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "neuralign_ws_frames_published_total",
            "counter",
            "Frames published by the pipeline, by type.",
            &published,
        );
        metric(
            "neuralign_ws_frames_sent_total",
            "counter",
            "Frames written to client sockets.",
            &[("", self.sent.load(Relaxed))],
        );
        metric(
            "neuralign_ws_frames_dropped_total",
            "counter",
            "Frames dropped because a client's queue was full.",
            &[("", self.dropped.load(Relaxed))],
        );
        let errors: Vec<(String, u64)> = ERROR_CODES
            .iter()
            .zip(&self.client_errors)
            .map(|((_, name), v)| (format!("{{code=\"{name}\"}}"), v.load(Relaxed)))
            .collect();
        let errors: Vec<(&str, u64)> = errors.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "neuralign_ws_client_errors_total",
            "counter",
            "Client messages refused, by error code.",
            &errors,
        );
        render_pipeline(&mut out, pipeline, now);
        out.push_str(&self.stages.render_prometheus());
        out
    }
}

/// `(stream role, status errors key)` of each stream in one family.
type StreamKeys = &'static [(&'static str, &'static str)];

/// Status `errors` keys (documented in `docs/websocket.md`) counted per input stream:
/// family, help, and each stream's key.
const STREAM_COUNTERS: [(&str, &str, StreamKeys); 3] = [
    (
        "neuralign_stream_gaps_total",
        "Gaps in the neural stream's sample indices.",
        &[("neural", "neural_gaps")],
    ),
    (
        "neuralign_stream_lost_total",
        "Times an input stream was lost.",
        &[
            ("neural", "neural_lost"),
            ("transcript", "transcript_lost"),
            ("audio", "audio_lost"),
        ],
    ),
    (
        "neuralign_stream_recovered_total",
        "Times a lost input stream came back.",
        &[
            ("neural", "neural_recovered"),
            ("transcript", "transcript_recovered"),
            ("audio", "audio_recovered"),
        ],
    ),
];

/// Prefix of the status `errors` keys of rejected transcript messages; the reason follows.
const TRANSCRIPT_REJECTED: &str = "transcript_";

/// The status `drops` entry that is the language model's backlog, not a count of drops.
const LM_QUEUE: &str = "lm_queue_waiting";

/// Stream health from the pipeline's status; every `drops` and `errors` entry lands in
/// exactly one family, so that sums over a family never count an item twice.
fn render_pipeline(out: &mut String, status: &PipelineStatus, now: f64) {
    let streams = &status.streams;
    let stream = |s: &StreamStatus| label("stream", &s.role);
    write_family(
        out,
        "neuralign_stream_connected",
        "gauge",
        "Whether the input stream is connected (1) or not (0).",
        streams.iter().map(|s| (stream(s), u8::from(s.connected))),
    );
    write_family(
        out,
        "neuralign_stream_samples_total",
        "counter",
        "Samples (neural, audio) or messages (transcript) received.",
        streams.iter().map(|s| (stream(s), s.samples)),
    );
    write_family(
        out,
        "neuralign_stream_lag_seconds",
        "gauge",
        "LSL clock now minus the time the stream is complete up to (its watermark).",
        streams
            .iter()
            .filter_map(|s| Some((stream(s), lag(now, s.watermark)?))),
    );
    write_family(
        out,
        "neuralign_stream_clock_correction_seconds",
        "gauge",
        "Seconds added to the sender's time stamps to put them on the server clock.",
        streams
            .iter()
            .filter_map(|s| Some((stream(s), s.clock_correction_s?))),
    );
    write_family(
        out,
        "neuralign_horizon_lag_seconds",
        "gauge",
        "LSL clock now minus the horizon, the time alignment is final up to.",
        lag(now, status.horizon).map(|lag| ("", lag)),
    );
    for (name, help, keys) in STREAM_COUNTERS {
        write_family(
            out,
            name,
            "counter",
            help,
            // a stream the pipeline does not have (the audio unless recorded) has no series
            keys.iter()
                .filter(|(role, _)| streams.iter().any(|s| s.role == *role))
                .map(|(role, key)| {
                    let count = status.errors.get(*key).copied().unwrap_or(0);
                    (label("stream", role), count)
                }),
        );
    }
    let per_stream = |key: &str| {
        STREAM_COUNTERS
            .iter()
            .flat_map(|(_, _, keys)| keys.iter())
            .any(|(_, k)| *k == key)
    };
    let errors = || status.errors.iter().filter(|(k, _)| !per_stream(k));
    write_family(
        out,
        "neuralign_transcript_rejected_total",
        "counter",
        "Transcript messages rejected, by reason.",
        errors()
            .filter_map(|(k, &v)| Some((label("reason", k.strip_prefix(TRANSCRIPT_REJECTED)?), v))),
    );
    write_family(
        out,
        "neuralign_pipeline_errors_total",
        "counter",
        "Other input rejected or repaired by the pipeline, by kind.",
        errors()
            .filter(|(k, _)| !k.starts_with(TRANSCRIPT_REJECTED))
            .map(|(k, &v)| (label("kind", k), v)),
    );
    write_family(
        out,
        "neuralign_pipeline_dropped_total",
        "counter",
        "Items the pipeline dropped, by kind.",
        status
            .drops
            .iter()
            .filter(|(k, _)| *k != LM_QUEUE)
            .map(|(k, &v)| (label("kind", k), v)),
    );
    write_family(
        out,
        "neuralign_segments_total",
        "counter",
        "Segment boundaries the alignment has crossed (its statistics restarted at each).",
        std::iter::once(("", status.segments)),
    );
    write_family(
        out,
        "neuralign_memory_bytes",
        "gauge",
        "Bytes held by each growing part of the pipeline, and the process's resident memory.",
        status.memory.iter().map(|(k, &v)| (label("part", k), v)),
    );
    write_family(
        out,
        "neuralign_pipeline_events_total",
        "counter",
        "Things that happened, neither drops nor errors, by kind.",
        status.events.iter().map(|(k, &v)| (label("kind", k), v)),
    );
    write_family(
        out,
        "neuralign_memory_bound_bytes",
        "gauge",
        "The most each part whose bound the configuration fixes may hold.",
        status
            .memory_bound
            .iter()
            .map(|(k, &v)| (label("part", k), v)),
    );
    write_family(
        out,
        "neuralign_lm_queue_length",
        "gauge",
        "Transcript updates waiting for the language model.",
        status.drops.get(LM_QUEUE).map(|&v| ("", v)),
    );
    let model = |m: &ModelStatus| label("model", &m.name);
    write_family(
        out,
        "neuralign_model_words_total",
        "counter",
        "Words each language model embedded.",
        status.models.iter().map(|m| (model(m), m.words)),
    );
    write_family(
        out,
        "neuralign_model_lm_queue_length",
        "gauge",
        "Transcript updates waiting for each language model.",
        status.models.iter().map(|m| (model(m), m.lm_queue_waiting)),
    );
    write_family(
        out,
        "neuralign_model_horizon_lag_seconds",
        "gauge",
        "LSL clock now minus each model's horizon: the model whose lag grows does not keep up.",
        (status.models.iter()).filter_map(|m| Some((model(m), lag(now, m.horizon)?))),
    );
    let name = "neuralign_model_lm_step_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Latency of each language model's steps (all of a word's tokens).\n\
         # TYPE {name} summary"
    );
    for m in &status.models {
        let (model, p) = (model(m), &m.lm_step);
        let tagged = model.trim_end_matches('}');
        for (q, ms) in [("0.5", p.p50_ms), ("0.9", p.p90_ms), ("0.99", p.p99_ms)] {
            let _ = writeln!(out, "{name}{tagged},quantile=\"{q}\"}} {}", ms / 1e3);
        }
        let sum = p.mean_ms * p.count as f64 / 1e3;
        let _ = writeln!(
            out,
            "{name}_sum{model} {sum}\n{name}_count{model} {}",
            p.count
        );
    }
}

/// Seconds from `time` to `now`; none without a time (or with a non-finite one, which the
/// text format could not carry as Rust prints it).
fn lag(now: f64, time: Option<f64>) -> Option<f64> {
    time.map(|t| now - t).filter(|lag| lag.is_finite())
}

/// Writes one family: its HELP and TYPE lines, then a sample per `(labels, value)`, the
/// labels rendered (`{...}`, see [`label`]) or empty.
fn write_family<L: AsRef<str>, V: Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{} {value}", labels.as_ref());
    }
}

/// One label, `{name="value"}`, its value escaped as the text format requires.
fn label(name: &str, value: &str) -> String {
    let value = value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n");
    format!("{{{name}=\"{value}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_send_latency() {
        let m = Metrics::default();
        m.dropped.fetch_add(3, Relaxed);
        m.published[FrameKind::Trace as usize].fetch_add(2, Relaxed);
        m.client_error(ErrorCode::Malformed);
        for ms in 1..=100 {
            m.record_send_latency(Duration::from_millis(ms));
        }
        let text = m.render(&PipelineStatus::default(), 0.0);
        assert!(text.contains("neuralign_ws_frames_dropped_total 3\n"));
        assert!(text.contains("neuralign_ws_frames_published_total{type=\"trace\"} 2\n"));
        assert!(text.contains("neuralign_ws_client_errors_total{code=\"malformed\"} 1\n"));
        assert!(text.contains("neuralign_stage_latency_seconds_count{stage=\"frame_send\"} 100\n"));
        let lat = m.send_latency();
        assert!((lat.p50_ms - 50.0).abs() < 0.1, "{lat:?}");
        assert!((lat.p99_ms - 99.0).abs() < 0.1, "{lat:?}");
    }

    #[test]
    fn renders_stream_health_and_stage_histograms_exactly() {
        let m = Metrics::default();
        for us in [30, 3_000, 20_000_000] {
            m.stages.record(Stage::Score, Duration::from_micros(us));
        }
        let stream = |role: &str, connected, samples, watermark| StreamStatus {
            role: role.into(),
            connected,
            rate_hz: 0.0,
            samples,
            watermark,
            clock_correction_s: watermark.map(|_| -0.25),
            error: None,
        };
        let counts = |pairs: &[(&str, u64)]| pairs.iter().map(|&(k, v)| (k.into(), v)).collect();
        // each model's own step latencies: p50 at `ms`, p90 and p99 above it
        let step = |count, ms: f64| crate::metrics::Percentiles {
            count,
            p50_ms: ms,
            p90_ms: 2.0 * ms,
            p99_ms: 4.0 * ms,
            max_ms: 4.0 * ms,
            mean_ms: 1.5 * ms,
        };
        let status = PipelineStatus {
            streams: vec![
                stream("neural", true, 1000, Some(99.5)),
                stream("transcript", false, 3, None),
                stream("audio", true, 44_100, Some(99.75)),
            ],
            horizon: Some(99.0),
            drops: counts(&[("neural_chunks", 2), ("lm_queue_waiting", 5)]),
            errors: counts(&[
                ("neural_gaps", 1),
                ("neural_lost", 1),
                ("neural_recovered", 1),
                ("transcript_lost", 2),
                ("audio_lost", 1),
                ("audio_recovered", 1),
                ("transcript_malformed_json", 4),
                ("words_not_embedded", 0),
            ]),
            segments: 3,
            memory: counts(&[("kv_cache", 4096), ("resident", 1 << 20)]),
            memory_bound: counts(&[("kv_cache", 8192)]),
            events: counts(&[("lm_compactions_prefilled", 1)]),
            models: vec![
                ModelStatus {
                    name: "a.gguf".into(),
                    words: 7,
                    lm_queue_waiting: 0,
                    horizon: Some(99.0),
                    lm_step: step(7, 20.0),
                },
                ModelStatus {
                    name: "b.gguf".into(),
                    words: 5,
                    lm_queue_waiting: 2,
                    horizon: Some(98.5),
                    lm_step: step(5, 30.0),
                },
            ],
        };
        let text = m.render(&status, 100.0);
        let pipeline: Vec<&str> = text
            .lines()
            .filter(|l| {
                [
                    "stream",
                    "horizon",
                    "transcript",
                    "pipeline",
                    "segments",
                    "memory",
                    "lm",
                    "model",
                ]
                .iter()
                .any(|f| l.starts_with(&format!("neuralign_{f}_")))
            })
            .collect();
        assert_eq!(
            pipeline,
            [
                r#"neuralign_stream_connected{stream="neural"} 1"#,
                r#"neuralign_stream_connected{stream="transcript"} 0"#,
                r#"neuralign_stream_connected{stream="audio"} 1"#,
                r#"neuralign_stream_samples_total{stream="neural"} 1000"#,
                r#"neuralign_stream_samples_total{stream="transcript"} 3"#,
                r#"neuralign_stream_samples_total{stream="audio"} 44100"#,
                r#"neuralign_stream_lag_seconds{stream="neural"} 0.5"#,
                r#"neuralign_stream_lag_seconds{stream="audio"} 0.25"#,
                r#"neuralign_stream_clock_correction_seconds{stream="neural"} -0.25"#,
                r#"neuralign_stream_clock_correction_seconds{stream="audio"} -0.25"#,
                r#"neuralign_horizon_lag_seconds 1"#,
                r#"neuralign_stream_gaps_total{stream="neural"} 1"#,
                r#"neuralign_stream_lost_total{stream="neural"} 1"#,
                r#"neuralign_stream_lost_total{stream="transcript"} 2"#,
                r#"neuralign_stream_lost_total{stream="audio"} 1"#,
                r#"neuralign_stream_recovered_total{stream="neural"} 1"#,
                r#"neuralign_stream_recovered_total{stream="transcript"} 0"#,
                r#"neuralign_stream_recovered_total{stream="audio"} 1"#,
                r#"neuralign_transcript_rejected_total{reason="malformed_json"} 4"#,
                r#"neuralign_pipeline_errors_total{kind="words_not_embedded"} 0"#,
                r#"neuralign_pipeline_dropped_total{kind="neural_chunks"} 2"#,
                r#"neuralign_segments_total 3"#,
                r#"neuralign_memory_bytes{part="kv_cache"} 4096"#,
                r#"neuralign_memory_bytes{part="resident"} 1048576"#,
                r#"neuralign_pipeline_events_total{kind="lm_compactions_prefilled"} 1"#,
                r#"neuralign_memory_bound_bytes{part="kv_cache"} 8192"#,
                r#"neuralign_lm_queue_length 5"#,
                r#"neuralign_model_words_total{model="a.gguf"} 7"#,
                r#"neuralign_model_words_total{model="b.gguf"} 5"#,
                r#"neuralign_model_lm_queue_length{model="a.gguf"} 0"#,
                r#"neuralign_model_lm_queue_length{model="b.gguf"} 2"#,
                r#"neuralign_model_horizon_lag_seconds{model="a.gguf"} 1"#,
                r#"neuralign_model_horizon_lag_seconds{model="b.gguf"} 1.5"#,
                r#"neuralign_model_lm_step_seconds{model="a.gguf",quantile="0.5"} 0.02"#,
                r#"neuralign_model_lm_step_seconds{model="a.gguf",quantile="0.9"} 0.04"#,
                r#"neuralign_model_lm_step_seconds{model="a.gguf",quantile="0.99"} 0.08"#,
                r#"neuralign_model_lm_step_seconds_sum{model="a.gguf"} 0.21"#,
                r#"neuralign_model_lm_step_seconds_count{model="a.gguf"} 7"#,
                r#"neuralign_model_lm_step_seconds{model="b.gguf",quantile="0.5"} 0.03"#,
                r#"neuralign_model_lm_step_seconds{model="b.gguf",quantile="0.9"} 0.06"#,
                r#"neuralign_model_lm_step_seconds{model="b.gguf",quantile="0.99"} 0.12"#,
                r#"neuralign_model_lm_step_seconds_sum{model="b.gguf"} 0.225"#,
                r#"neuralign_model_lm_step_seconds_count{model="b.gguf"} 5"#,
            ]
        );
        let score: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(r#"{stage="score""#))
            .collect();
        let le = |le: &str, n: u32| {
            format!(r#"neuralign_stage_latency_seconds_bucket{{stage="score",le="{le}"}} {n}"#)
        };
        // every bucket, cumulative: 30 µs, 3 ms and 20 s (only in +Inf)
        let expected_le = |us: u64| u32::from(us >= 50) + u32::from(us >= 3_200);
        let mut expected: Vec<String> = crate::metrics::BUCKET_BOUNDS_US
            .iter()
            .map(|&us| le(&(us as f64 / 1e6).to_string(), expected_le(us)))
            .collect();
        expected.push(le("+Inf", 3));
        expected.push(r#"neuralign_stage_latency_seconds_sum{stage="score"} 20.00303"#.into());
        expected.push(r#"neuralign_stage_latency_seconds_count{stage="score"} 3"#.into());
        assert_eq!(score, expected);
        for line in [
            le("0.00005", 1),
            le("0.0025", 1),
            le("0.0032", 2),
            le("10", 2),
        ] {
            assert!(score.contains(&line.as_str()), "{line}");
        }
        // one HELP and one TYPE per family, before its samples
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| {
                    ["histogram", "summary"]
                        .iter()
                        .any(|kind| text.contains(&format!("# TYPE {f} {kind}")))
                })
                .unwrap_or(name);
            for marker in ["# HELP", "# TYPE"] {
                let once = text.matches(&format!("{marker} {family} ")).count() == 1;
                assert!(once, "{marker} of {line}");
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("kind", "a\"b\\c\nd"), r#"{kind="a\"b\\c\nd"}"#);
    }
}
