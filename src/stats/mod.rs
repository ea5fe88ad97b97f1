//! Statistics of encoder results: circular-shift null distributions of
//! Pearson r ([`null`]), false-discovery-rate control over electrodes
//! ([`fdr`]) and block-bootstrap intervals of each electrode's peak layer
//! ([`bootstrap`]), put together for one set of predictions by [`held_out`]. The procedure is documented in `docs/statistics.md`;
//! [`FitStatistics`] is what `neuralign fit` reports and stores.

pub mod bootstrap;
pub mod fdr;
pub mod held_out;
pub mod live;
pub mod null;

use serde::{Deserialize, Serialize};

/// How the statistics of a fit are computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Circular shifts of the neural signal in the null distribution.
    pub shifts: usize,
    /// Smallest shift, seconds (and at most the series length less this).
    pub min_shift_s: f64,
    /// Seed of the shifts and of the bootstrap.
    pub seed: u64,
    /// Block-bootstrap replicates for the peak-layer interval.
    pub bootstrap: usize,
    /// Bootstrap block length, seconds.
    pub block_s: f64,
    /// Coverage of the peak-layer interval (e.g. 0.95).
    pub ci_level: f64,
    /// An electrode is significant when its Benjamini–Hochberg q is at most this.
    pub fdr_q: f64,
    /// Live: the rolling window the threshold is calibrated for, seconds (`serve`'s
    /// `align.window_s`).
    #[serde(default = "default_live_window_s")]
    pub live_window_s: f64,
    /// Live: the chance, per electrode and moment, that an electrode with no response
    /// passes its threshold.
    #[serde(default = "default_live_alpha")]
    pub live_alpha: f64,
    /// Live: circular shifts in the null of the rolling statistic (the first of the drawn
    /// shifts).
    #[serde(default = "default_live_shifts")]
    pub live_shifts: usize,
}

fn default_live_window_s() -> f64 {
    10.0
}

fn default_live_alpha() -> f64 {
    0.01
}

fn default_live_shifts() -> usize {
    20
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            shifts: 1000,
            min_shift_s: 10.0,
            seed: 0,
            bootstrap: 1000,
            block_s: 5.0,
            ci_level: 0.95,
            fdr_q: 0.05,
            live_window_s: default_live_window_s(),
            live_alpha: default_live_alpha(),
            live_shifts: default_live_shifts(),
        }
    }
}

/// One electrode's result: the headline answer of a fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElectrodeResult {
    /// Channel label.
    pub label: String,
    /// Model layer with the highest held-out r.
    pub peak_layer: usize,
    /// Block-bootstrap interval of the peak layer (model layers, inclusive).
    pub peak_layer_ci: [usize; 2],
    /// Held-out r at the peak layer (the maximum over layers).
    pub r: f64,
    /// Circular-shift p-value of the maximum over layers.
    pub p: f64,
    /// Benjamini–Hochberg q over electrodes.
    pub q: f64,
    /// `q ≤ fdr_q`.
    pub significant: bool,
    /// Held-out r per layer (the layer profile), in the order of the fit's layers.
    pub profile: Vec<f64>,
    /// Per layer, the central `ci_level` band of the null r.
    pub null_band: Vec<[f64; 2]>,
    /// The `1 − fdr_q` quantile of the null maximum over layers.
    pub null_max_quantile: f64,
    /// Live: the `1 − live_alpha` quantile of the null of the rolling r at the peak
    /// (maximum over layers); `None` in files fit before live calibration.
    #[serde(default)]
    pub live_threshold: Option<f64>,
}

/// The statistics of a fit: how they were computed and one result per electrode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitStatistics {
    /// Settings used.
    pub config: StatsConfig,
    /// Model layer of each entry of `profile` and `null_band`.
    pub layers: Vec<usize>,
    /// Samples of the held-out part the statistics are computed on.
    pub test_samples: usize,
    /// Samples left out between the training and the held-out part.
    pub gap_samples: usize,
    /// Per electrode, in encoder order.
    pub electrodes: Vec<ElectrodeResult>,
    /// How the live thresholds were calibrated; `None` in older files.
    #[serde(default)]
    pub live: Option<LiveCalibration>,
}

/// How each electrode's live threshold was calibrated (`docs/statistics.md`, §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveCalibration {
    /// Rolling window, samples: the threshold holds for this window only.
    pub window: usize,
    /// Window ends evaluated every this many samples.
    pub stride: usize,
    /// Circular shifts used.
    pub shifts: usize,
    /// Null values per electrode behind each threshold (shifts × window ends).
    pub null_values: usize,
    /// Per-electrode, per-moment false-positive rate the thresholds are set for.
    pub alpha: f64,
}

/// Errors from the statistics.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A series too short for the requested shifts or blocks.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
}

/// The central `level` interval of `v` (its `(1 − level)/2` and `(1 + level)/2` quantiles).
pub fn central_interval(v: &[f64], level: f64) -> [f64; 2] {
    let tail = (1.0 - level) / 2.0;
    [quantile(v, tail), quantile(v, 1.0 - tail)]
}

/// The mean of `v`; NaN when it is empty.
pub fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (n, sum) = v.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// The `q`-quantile (0..=1) of `v` by linear interpolation between order
/// statistics (numpy's default); NaN when `v` is empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Index of the largest value (the first on ties; NaN never wins; 0 when all are NaN).
pub fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| {
        if v[i] > v[b] || (v[b].is_nan() && !v[i].is_nan()) {
            i
        } else {
            b
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantile_interpolates_like_numpy() {
        let v = [3.0, 1.0, 2.0, 4.0];
        // numpy.quantile([1, 2, 3, 4], [0, 0.25, 0.5, 0.9, 1]) = 1, 1.75, 2.5, 3.7, 4
        for (q, want) in [(0.0, 1.0), (0.25, 1.75), (0.5, 2.5), (0.9, 3.7), (1.0, 4.0)] {
            assert!((super::quantile(&v, q) - want).abs() < 1e-12, "{q}");
        }
        assert!(super::quantile(&[], 0.5).is_nan());
    }
}
