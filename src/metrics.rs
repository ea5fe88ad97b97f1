//! Per-stage latency instrumentation shared by the live pipeline and the
//! benchmarks: one HDR histogram (microseconds) per stage, its percentiles as
//! a serde struct, and the Prometheus text rendering for `/metrics`.
//!
//! This is the crate's one implementation of latency percentiles: inlets,
//! the server and `neuralign bench` all record into [`StageLatency`].

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram holds, microseconds (100 s); longer ones saturate.
const MAX_US: u64 = 100_000_000;

/// Latencies of one stage, microseconds from 1 µs to 100 s at 3 significant digits.
#[derive(Debug, Clone)]
pub struct StageLatency {
    hist: Histogram<u64>,
}

impl Default for StageLatency {
    fn default() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"),
        }
    }
}

impl StageLatency {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one latency measured on a monotonic clock.
    pub fn record(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(us.clamp(1, MAX_US));
    }

    /// Records one latency in seconds, a difference of two LSL clock readings.
    /// Negative values (clock-correction noise) count as 1 µs; NaN is skipped
    /// and reported as `false`.
    pub fn record_seconds(&mut self, seconds: f64) -> bool {
        if seconds.is_nan() {
            return false;
        }
        let us = (seconds * 1e6).clamp(1.0, MAX_US as f64) as u64;
        self.hist.saturating_record(us);
        true
    }

    /// Adds every latency of `other` (e.g. a per-thread histogram at report time).
    pub fn merge(&mut self, other: &StageLatency) {
        // Both histograms share the same bounds, so adding cannot fail.
        self.hist
            .add(&other.hist)
            .expect("stage histograms share their bounds");
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Median, 90th, 99th percentile, maximum and mean, in milliseconds
    /// (all zero while empty).
    pub fn percentiles(&self) -> Percentiles {
        if self.hist.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: self.hist.len(),
            p50_ms: ms(self.hist.value_at_quantile(0.5)),
            p90_ms: ms(self.hist.value_at_quantile(0.9)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            max_ms: ms(self.hist.max()),
            mean_ms: self.hist.mean() / 1000.0,
        }
    }
}

/// Summary of a [`StageLatency`], milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Latencies measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// The pipeline's stages, in data-flow order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Neural sample: LSL clock at pull − sample time stamp.
    NeuralArrival,
    /// Transcript word: LSL clock at pull − message time stamp.
    TranscriptArrival,
    /// Turning a word into tokens.
    Tokenize,
    /// One LM step (all of a word's tokens) with the KV cache.
    LmStep,
    /// Encoder kernels of one word, all electrodes and layers (PCA projection and TRF
    /// kernel; on the encode thread, or on the core loop for a word embedded before the
    /// encoders were bound to the stream).
    Encode,
    /// Predicted-versus-actual scoring of one update.
    Score,
    /// Publish to socket write of one frame.
    FrameSend,
    /// One `trace`/`alignment` frame written to one client, measured for the oldest sample
    /// it carries: socket write − the moment that sample was due to go out. A sample is
    /// ready when it can be scored: the server's arrival (LSL pull) of its own neural chunk,
    /// or of the transcript watermark that made it final when that came later. It is due at
    /// the first frame due (every 1/`alignment_hz`) at or after it was ready, or when it was
    /// ready if that was after its frame was due: the wait for the frame rate is by design
    /// and not counted, a sample held back past its frame (a busy core loop) is, from the
    /// frame it missed. Server clock (`lsl_local_clock`) throughout.
    EndToEnd,
}

impl Stage {
    /// Every stage, in data-flow order.
    pub const ALL: [Stage; 8] = [
        Stage::NeuralArrival,
        Stage::TranscriptArrival,
        Stage::Tokenize,
        Stage::LmStep,
        Stage::Encode,
        Stage::Score,
        Stage::FrameSend,
        Stage::EndToEnd,
    ];

    /// The snake_case name used in JSON, status frames and `/metrics` labels.
    pub fn name(self) -> &'static str {
        match self {
            Stage::NeuralArrival => "neural_arrival",
            Stage::TranscriptArrival => "transcript_arrival",
            Stage::Tokenize => "tokenize",
            Stage::LmStep => "lm_step",
            Stage::Encode => "encode",
            Stage::Score => "score",
            Stage::FrameSend => "frame_send",
            Stage::EndToEnd => "end_to_end",
        }
    }
}

/// One [`StageLatency`] per [`Stage`], shared across threads (e.g. in an
/// `Arc`): each stage has its own mutex, held only while one value is
/// recorded, so threads recording different stages never wait on each other.
#[derive(Debug, Default)]
pub struct StageSet {
    stages: [Mutex<StageLatency>; Stage::ALL.len()],
}

/// Percentiles of every stage at one moment, in data-flow order.
pub type StageReport = Vec<(Stage, Percentiles)>;

impl StageSet {
    /// Empty histograms for every stage.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self, stage: Stage) -> std::sync::MutexGuard<'_, StageLatency> {
        // A panic while recording leaves a valid histogram behind.
        self.stages[stage as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Records one latency of `stage` measured on a monotonic clock.
    pub fn record(&self, stage: Stage, elapsed: Duration) {
        self.slot(stage).record(elapsed);
    }

    /// Records one latency of `stage` in seconds on the LSL clock
    /// (`now − time stamp`); returns `false` for NaN, which is not recorded.
    pub fn record_seconds(&self, stage: Stage, seconds: f64) -> bool {
        self.slot(stage).record_seconds(seconds)
    }

    /// Adds a histogram gathered elsewhere (e.g. one owned by a thread).
    pub fn merge(&self, stage: Stage, other: &StageLatency) {
        self.slot(stage).merge(other);
    }

    /// A copy of one stage's histogram.
    pub fn get(&self, stage: Stage) -> StageLatency {
        self.slot(stage).clone()
    }

    /// Percentiles of every stage, for status frames and reports.
    pub fn report(&self) -> StageReport {
        Stage::ALL
            .iter()
            .map(|&s| (s, self.slot(s).percentiles()))
            .collect()
    }

    /// Prometheus text exposition: one summary, `neuralign_stage_latency_seconds`,
    /// labelled by stage, with the 0.5/0.9/0.99 quantiles, sum and count.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP neuralign_stage_latency_seconds Latency of each pipeline stage.\n\
             # TYPE neuralign_stage_latency_seconds summary\n",
        );
        for (stage, p) in self.report() {
            let name = stage.name();
            for (q, ms) in [("0.5", p.p50_ms), ("0.9", p.p90_ms), ("0.99", p.p99_ms)] {
                let _ = writeln!(
                    out,
                    "neuralign_stage_latency_seconds{{stage=\"{name}\",quantile=\"{q}\"}} {}",
                    ms / 1e3
                );
            }
            let _ = writeln!(
                out,
                "neuralign_stage_latency_seconds_sum{{stage=\"{name}\"}} {}\n\
                 neuralign_stage_latency_seconds_count{{stage=\"{name}\"}} {}",
                p.mean_ms * p.count as f64 / 1e3,
                p.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        // 3 significant digits
        (a - b).abs() <= 1e-3 * b.abs().max(1e-3)
    }

    #[test]
    fn percentiles_match_a_sorted_reference() {
        let mut h = StageLatency::new();
        // 1..=1000 ms, shuffled order must not matter
        for i in (1..=1000u64).rev() {
            h.record(Duration::from_millis(i));
        }
        let p = h.percentiles();
        assert_eq!(p.count, 1000);
        assert!(close(p.p50_ms, 500.0), "{p:?}");
        assert!(close(p.p90_ms, 900.0), "{p:?}");
        assert!(close(p.p99_ms, 990.0), "{p:?}");
        assert!(close(p.max_ms, 1000.0), "{p:?}");
        assert!(close(p.mean_ms, 500.5), "{p:?}");
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        assert_eq!(StageLatency::new().percentiles(), Percentiles::default());
    }

    #[test]
    fn lsl_clock_differences_clamp_negative_and_skip_nan() {
        let mut h = StageLatency::new();
        assert!(h.record_seconds(-0.002));
        assert!(h.record_seconds(0.004));
        assert!(!h.record_seconds(f64::NAN));
        assert!(h.record_seconds(1e9)); // saturates at 100 s
        let p = h.percentiles();
        assert_eq!(p.count, 3);
        assert!(close(p.max_ms, 100_000.0), "{p:?}");
        assert!(close(p.p50_ms, 4.0), "{p:?}");
    }

    #[test]
    fn merged_per_thread_histograms_equal_one_histogram() {
        let set = std::sync::Arc::new(StageSet::new());
        let mut whole = StageLatency::new();
        for i in 1..=200u64 {
            whole.record(Duration::from_micros(i * 37));
        }
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let set = set.clone();
                std::thread::spawn(move || {
                    let mut mine = StageLatency::new();
                    for i in (1..=200u64).filter(|i| i % 4 == t) {
                        if t % 2 == 0 {
                            set.record(Stage::LmStep, Duration::from_micros(i * 37));
                        } else {
                            mine.record(Duration::from_micros(i * 37));
                        }
                    }
                    set.merge(Stage::LmStep, &mine);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(set.get(Stage::LmStep).percentiles(), whole.percentiles());
        assert_eq!(set.get(Stage::Encode).count(), 0);
    }

    #[test]
    fn prometheus_text_has_every_stage() {
        let set = StageSet::new();
        for ms in 1..=100 {
            set.record(Stage::FrameSend, Duration::from_millis(ms));
        }
        let text = set.render_prometheus();
        for stage in Stage::ALL {
            assert!(text.contains(&format!(
                "neuralign_stage_latency_seconds_count{{stage=\"{}\"}}",
                stage.name()
            )));
        }
        let value = |prefix: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .parse()
                .unwrap()
        };
        let median =
            value("neuralign_stage_latency_seconds{stage=\"frame_send\",quantile=\"0.5\"} ");
        assert!(close(median, 0.05), "{median}");
        assert_eq!(
            value("neuralign_stage_latency_seconds_count{stage=\"frame_send\"} "),
            100.0
        );
        let sum = value("neuralign_stage_latency_seconds_sum{stage=\"frame_send\"} ");
        assert!(close(sum, 5.05), "{sum}");
    }

    #[test]
    fn stage_names_serialize_as_their_labels() {
        for stage in Stage::ALL {
            assert_eq!(serde_json::to_value(stage).unwrap(), stage.name());
        }
    }
}
