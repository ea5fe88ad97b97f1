//! The statistics of encoders' predictions on data they were not fit on
//! (`docs/statistics.md` §2, §3, §5): built once from the actual high-gamma,
//! fed one layer's prediction at a time (so that no more than one layer's
//! prediction is held), and finished into the per-electrode results. `fit`
//! uses it on its held-out tail, `report` on a session's evaluated span.
use super::bootstrap::{self, Moments};
use super::null::{self, CircularNull, LayerNull};
use super::{
    argmax, central_interval, fdr, live, quantile, ElectrodeResult, FitStatistics, LiveCalibration,
    StatsConfig, StatsError,
};
use std::sync::Mutex;

/// The statistics under construction: the actual series transformed for the
/// circular-shift null, the live null gathered so far.
pub struct HeldOut {
    cfg: StatsConfig,
    circular: CircularNull,
    live: Option<LiveNull>,
    actual: Vec<f64>,
    electrodes: usize,
    block: usize,
    gap: usize,
}

/// One layer's part: its null at every shift and its bootstrap block sums.
#[derive(Debug, Clone)]
pub struct LayerHeldOut {
    null: LayerNull,
    moments: Vec<Moments>,
}

impl HeldOut {
    /// Prepares the statistics of `actual` (`[n, electrodes]` row-major, at
    /// `rate` Hz; `gap` samples were left out before it, recorded as
    /// `gap_samples`). Fails when `n` is shorter than two bootstrap blocks or
    /// than the minimum shift both ways.
    pub fn new(
        cfg: &StatsConfig,
        rate: f64,
        actual: Vec<f64>,
        electrodes: usize,
        gap: usize,
    ) -> Result<Self, StatsError> {
        let n = actual.len() / electrodes.max(1);
        let block = (cfg.block_s * rate).round().max(1.0) as usize;
        if n < 2 * block {
            return Err(StatsError::NotEnoughData(format!(
                "{n} held-out samples make fewer than two {}-s bootstrap blocks",
                cfg.block_s
            )));
        }
        let min_shift = (cfg.min_shift_s * rate).round().max(1.0) as usize;
        let shifts = null::draw_shifts(n, min_shift, cfg.shifts, cfg.seed)?;
        let circular = CircularNull::new(&actual, electrodes, shifts);
        let live = LiveNull::new(cfg, rate, &circular, n, electrodes);
        Ok(Self {
            cfg: cfg.clone(),
            circular,
            live,
            actual,
            electrodes,
            block,
            gap,
        })
    }

    /// Samples the statistics are computed on.
    pub fn samples(&self) -> usize {
        self.actual.len() / self.electrodes.max(1)
    }

    /// One layer's prediction over the same samples (`[n, electrodes]`): its
    /// null and block sums; the live null takes its maximum over layers.
    pub fn layer(&self, pred: &[f64]) -> LayerHeldOut {
        let moments = bootstrap::block_moments(pred, &self.actual, self.electrodes, self.block);
        if let Some(live) = &self.live {
            live.add_layer(pred, &self.actual, self.electrodes);
        }
        LayerHeldOut {
            null: self.circular.layer(pred),
            moments,
        }
    }

    /// Per electrode: the peak layer, its interval, the p-value of the maximum
    /// over layers, q over electrodes, the layer profile and its null band, the
    /// live threshold. `per_layer[i]` is model layer `layers[i]`.
    pub fn finish(
        self,
        layers: &[usize],
        labels: &[String],
        per_layer: Vec<LayerHeldOut>,
    ) -> FitStatistics {
        let (cfg, e, shifts) = (&self.cfg, self.electrodes, self.cfg.shifts);
        let (nulls, moments): (Vec<LayerNull>, Vec<Vec<Moments>>) =
            per_layer.into_iter().map(|l| (l.null, l.moments)).unzip();
        let ci = bootstrap::peak_layer_interval(&moments, e, cfg.bootstrap, cfg.ci_level, cfg.seed);
        let maxima: Vec<null::MaxNull> = (0..e)
            .map(|k| null::max_over_layers(&nulls, k, shifts))
            .collect();
        let q = fdr::benjamini_hochberg(&maxima.iter().map(|m| m.p).collect::<Vec<_>>());
        let (live, thresholds) = self.live.map(|l| l.thresholds(e)).unzip();
        let electrodes = (0..e)
            .map(|k| {
                let profile: Vec<f64> = nulls.iter().map(|n| n.observed[k]).collect();
                let peak = argmax(&profile);
                let null_band = nulls
                    .iter()
                    .map(|n| central_interval(&n.null[k * shifts..(k + 1) * shifts], cfg.ci_level))
                    .collect();
                ElectrodeResult {
                    label: labels[k].clone(),
                    peak_layer: layers[peak],
                    peak_layer_ci: [layers[ci[k][0]], layers[ci[k][1]]],
                    r: maxima[k].observed,
                    p: maxima[k].p,
                    q: q[k],
                    significant: q[k] <= cfg.fdr_q,
                    profile,
                    null_band,
                    null_max_quantile: quantile(&maxima[k].null, 1.0 - cfg.fdr_q),
                    live_threshold: thresholds.as_ref().map(|t| t[k]),
                }
            })
            .collect();
        FitStatistics {
            config: cfg.clone(),
            layers: layers.to_vec(),
            test_samples: self.actual.len() / e.max(1),
            gap_samples: self.gap,
            electrodes,
            live,
        }
    }
}

/// The null of the live statistic, gathered layer by layer: the maximum over
/// layers of the rolling r at every shift and window end, `[electrodes, values]`.
struct LiveNull {
    calibration: LiveCalibration,
    shifts: Vec<usize>,
    max: Mutex<Vec<f64>>,
}

impl LiveNull {
    /// The live null over `n` samples with the first `live_shifts` of the drawn
    /// shifts; `None` when the series is shorter than a window.
    fn new(
        cfg: &StatsConfig,
        rate: f64,
        circular: &CircularNull,
        n: usize,
        e: usize,
    ) -> Option<Self> {
        let window = (cfg.live_window_s * rate).round().max(2.0) as usize;
        let stride = (window / 20).max(1);
        let shifts: Vec<usize> = circular
            .shifts()
            .iter()
            .take(cfg.live_shifts)
            .copied()
            .collect();
        let null_values = shifts.len() * live::positions(n, window, stride).len();
        (null_values > 0).then(|| Self {
            calibration: LiveCalibration {
                window,
                stride,
                shifts: shifts.len(),
                null_values,
                alpha: cfg.live_alpha,
            },
            shifts,
            max: Mutex::new(vec![f64::NAN; e * null_values]),
        })
    }

    /// Folds one layer's prediction into the maximum over layers.
    fn add_layer(&self, pred: &[f64], actual: &[f64], e: usize) {
        let c = &self.calibration;
        let layer = live::rolling_null(pred, actual, e, &self.shifts, c.window, c.stride);
        let mut max = self.max.lock().unwrap_or_else(|p| p.into_inner());
        live::max_into(&mut max, &layer);
    }

    /// Per electrode, the `1 − alpha` quantile of the null.
    fn thresholds(self, e: usize) -> (LiveCalibration, Vec<f64>) {
        let max = self.max.into_inner().unwrap_or_else(|p| p.into_inner());
        let per = self.calibration.null_values;
        let q = 1.0 - self.calibration.alpha;
        let thresholds = (0..e)
            .map(|k| quantile(&max[k * per..(k + 1) * per], q))
            .collect();
        (self.calibration, thresholds)
    }
}
