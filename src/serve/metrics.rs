//! Server counters and the per-stage latency histograms, rendered as Prometheus text at
//! `/metrics` and summarised in every `status` frame.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::frames::{ErrorCode, FrameKind, SendLatency};
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

    /// Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
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
        out.push_str(&self.stages.render_prometheus());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_latency_quantiles() {
        let m = Metrics::default();
        m.dropped.fetch_add(3, Relaxed);
        m.published[FrameKind::Trace as usize].fetch_add(2, Relaxed);
        m.client_error(ErrorCode::Malformed);
        for ms in 1..=100 {
            m.record_send_latency(Duration::from_millis(ms));
        }
        let text = m.render();
        assert!(text.contains("neuralign_ws_frames_dropped_total 3\n"));
        assert!(text.contains("neuralign_ws_frames_published_total{type=\"trace\"} 2\n"));
        assert!(text.contains("neuralign_ws_client_errors_total{code=\"malformed\"} 1\n"));
        assert!(text.contains("neuralign_stage_latency_seconds_count{stage=\"frame_send\"} 100\n"));
        let lat = m.send_latency();
        assert!((lat.p50_ms - 50.0).abs() < 0.1, "{lat:?}");
        assert!((lat.p99_ms - 99.0).abs() < 0.1, "{lat:?}");
    }
}
