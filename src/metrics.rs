//! Per-stage latency instrumentation shared by the live pipeline and the
//! benchmarks: one HDR histogram (microseconds) per stage for percentiles, fixed
//! Prometheus buckets beside it, and the histogram's text rendering for `/metrics`.
//!
//! This is the crate's one implementation of latency percentiles: inlets,
//! the server and `neuralign bench` all record into [`StageLatency`]. The process's CPU
//! time ([`process_cpu_seconds`]) is here too, for the CPU shares that benches report.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram holds, microseconds (100 s); longer ones saturate.
const MAX_US: u64 = 100_000_000;

/// Upper bounds (µs) of the Prometheus buckets of every stage: 10, 25 and 50 µs (one scored
/// sample), then ten a decade (the R10 series 1, 1.25, 1.6 … 8) from 100 µs to 10 s, so that
/// a quantile interpolated inside its bucket is within a few percent and two p99s can be
/// compared within 10 %. Fixed, so that buckets aggregate across servers and restarts.
pub const BUCKET_BOUNDS_US: [u64; 54] = bucket_bounds();

const fn bucket_bounds() -> [u64; 54] {
    const R10: [u64; 10] = [100, 125, 160, 200, 250, 320, 400, 500, 630, 800];
    let mut out = [0; 54];
    (out[0], out[1], out[2], out[53]) = (10, 25, 50, 10_000_000);
    let mut i = 0;
    while i < 50 {
        out[3 + i] = R10[i % 10] * 10u64.pow(i as u32 / 10);
        i += 1;
    }
    out
}

/// CPU time of this process so far (user + system), seconds, from `/proc/self/stat`.
pub fn process_cpu_seconds() -> f64 {
    cpu_seconds("/proc/self/stat")
}

/// CPU time of the calling thread so far (user + system), seconds.
pub fn thread_cpu_seconds() -> f64 {
    cpu_seconds("/proc/thread-self/stat")
}

/// CPU time so far of this process's threads whose name starts with `prefix` (as the kernel
/// keeps it: at most 15 bytes), seconds; 0 when there are none.
pub fn named_threads_cpu_seconds(prefix: &str) -> f64 {
    let prefix = &prefix[..prefix.len().min(15)];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with(prefix))
        })
        .map(|task| cpu_seconds(&task.path().join("stat").to_string_lossy()))
        .filter(|s| s.is_finite())
        .sum()
}

/// User + system time in a `/proc/.../stat` file, seconds (NaN where there is none).
fn cpu_seconds(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return f64::NAN;
    };
    // fields after the parenthesised command name: utime and stime are the 12th and 13th
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(f64::NAN);
    // USER_HZ is 100 on Linux
    ticks / 100.0
}

/// Latencies of one stage, microseconds from 1 µs to 100 s: an HDR histogram at 3
/// significant digits for percentiles, and exact counts per Prometheus bucket with their sum.
#[derive(Debug, Clone)]
pub struct StageLatency {
    hist: Histogram<u64>,
    /// Latencies per bucket of [`BUCKET_BOUNDS_US`] (not cumulative); the last is `+Inf`.
    buckets: [u64; BUCKET_BOUNDS_US.len() + 1],
    /// Sum of the latencies as recorded (clamped like the histogram), µs.
    sum_us: u64,
}

impl Default for StageLatency {
    fn default() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"),
            buckets: [0; BUCKET_BOUNDS_US.len() + 1],
            sum_us: 0,
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
        self.add(us.clamp(1, MAX_US));
    }

    /// Counts one latency (µs, within the histogram's bounds) in the histogram and its bucket.
    fn add(&mut self, us: u64) {
        self.hist.saturating_record(us);
        self.buckets[BUCKET_BOUNDS_US.partition_point(|&bound| bound < us)] += 1;
        self.sum_us += us;
    }

    /// Records one latency in seconds, a difference of two LSL clock readings.
    /// Negative values (clock-correction noise) count as 1 µs; NaN is skipped
    /// and reported as `false`.
    pub fn record_seconds(&mut self, seconds: f64) -> bool {
        if seconds.is_nan() {
            return false;
        }
        self.add((seconds * 1e6).clamp(1.0, MAX_US as f64) as u64);
        true
    }

    /// Adds every latency of `other` (e.g. a per-thread histogram at report time).
    pub fn merge(&mut self, other: &StageLatency) {
        // Both histograms share the same bounds, so adding cannot fail.
        self.hist
            .add(&other.hist)
            .expect("stage histograms share their bounds");
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum_us += other.sum_us;
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
    /// One LM step (all of a word's tokens) with the KV cache; for words embedded together
    /// (a backlog in one forward call), each word's share of the call.
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

    /// Prometheus text exposition: one histogram, `neuralign_stage_latency_seconds`,
    /// labelled by stage, with cumulative buckets at [`BUCKET_BOUNDS_US`] (in seconds, then
    /// `+Inf`), sum and count.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP neuralign_stage_latency_seconds Latency of each pipeline stage.\n\
             # TYPE neuralign_stage_latency_seconds histogram\n",
        );
        for stage in Stage::ALL {
            // copy out, so that the stage's lock is not held while formatting
            let (buckets, sum_us) = {
                let slot = self.slot(stage);
                (slot.buckets, slot.sum_us)
            };
            let name = stage.name();
            let bounds = BUCKET_BOUNDS_US
                .iter()
                .map(|&us| (us as f64 / 1e6).to_string());
            let mut cumulative = 0;
            for (le, count) in bounds.chain(["+Inf".to_string()]).zip(buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "neuralign_stage_latency_seconds_bucket{{stage=\"{name}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "neuralign_stage_latency_seconds_sum{{stage=\"{name}\"}} {}\n\
                 neuralign_stage_latency_seconds_count{{stage=\"{name}\"}} {cumulative}",
                sum_us as f64 / 1e6,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_threads_cpu_counts_only_the_threads_named_so() {
        let (busy_tx, busy_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let spinner = std::thread::Builder::new()
            .name("nl-test-spinner-0".into())
            .spawn(move || {
                while thread_cpu_seconds() < 0.05 {
                    std::hint::black_box((0..1000).sum::<u64>());
                }
                busy_tx.send(()).unwrap();
                let _ = done_rx.recv();
            })
            .unwrap();
        busy_rx.recv().unwrap();
        let named = named_threads_cpu_seconds("nl-test-spinner-");
        let others = named_threads_cpu_seconds("nl-no-such-thread");
        done_tx.send(()).unwrap();
        spinner.join().unwrap();
        assert!(named >= 0.05, "the spinner's CPU: {named}");
        assert_eq!(others, 0.0);
    }

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
        let merged = set.get(Stage::LmStep);
        assert_eq!(merged.percentiles(), whole.percentiles());
        assert_eq!(
            (merged.buckets, merged.sum_us),
            (whole.buckets, whole.sum_us)
        );
        assert_eq!(set.get(Stage::Encode).count(), 0);
    }

    #[test]
    fn buckets_rise_by_at_most_a_third_from_100_us_to_10_s() {
        assert!(BUCKET_BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(BUCKET_BOUNDS_US[..4], [10, 25, 50, 100]);
        assert_eq!(
            BUCKET_BOUNDS_US[BUCKET_BOUNDS_US.len() - 2..],
            [8_000_000, 10_000_000]
        );
        for w in BUCKET_BOUNDS_US[3..].windows(2) {
            assert!(w[1] * 3 <= w[0] * 4, "{} to {}", w[0], w[1]);
        }
    }

    #[test]
    fn prometheus_histogram_is_cumulative_in_seconds() {
        let set = StageSet::new();
        for ms in 1..=100 {
            set.record(Stage::FrameSend, Duration::from_millis(ms));
        }
        set.record_seconds(Stage::FrameSend, 1e9); // saturates at 100 s: only in +Inf
        let text = set.render_prometheus();
        assert!(text.contains("# TYPE neuralign_stage_latency_seconds histogram\n"));
        for stage in Stage::ALL {
            let name = stage.name();
            assert!(text.contains(&format!(
                "neuralign_stage_latency_seconds_bucket{{stage=\"{name}\",le=\"+Inf\"}}"
            )));
        }
        let frame_send = |suffix: &str, le: &str| -> &str {
            let labels = if le.is_empty() {
                "{stage=\"frame_send\"} ".to_string()
            } else {
                format!("{{stage=\"frame_send\",le=\"{le}\"}} ")
            };
            let prefix = format!("neuralign_stage_latency_seconds_{suffix}{labels}");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        };
        assert_eq!(frame_send("bucket", "0.00001"), "0");
        assert_eq!(frame_send("bucket", "0.001"), "1");
        assert_eq!(frame_send("bucket", "0.025"), "25");
        assert_eq!(frame_send("bucket", "0.1"), "100");
        assert_eq!(frame_send("bucket", "10"), "100");
        assert_eq!(frame_send("bucket", "+Inf"), "101");
        assert_eq!(frame_send("sum", ""), "105.05");
        assert_eq!(frame_send("count", ""), "101");
    }

    #[test]
    fn stage_names_serialize_as_their_labels() {
        for stage in Stage::ALL {
            assert_eq!(serde_json::to_value(stage).unwrap(), stage.name());
        }
    }
}
