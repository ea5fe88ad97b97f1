//! Correlations of many prediction series with their electrode's actual
//! series, updated one sample at a time: a sliding-window Pearson r and an
//! exponentially weighted one. Pair `i` (layer-major, `l * electrodes + e`)
//! is compared with electrode `i % electrodes`.

/// Sliding-window Pearson r over the last `window` samples. Running sums are
/// updated in O(1) per pair and sample. So that rounding cannot drift, a second
/// set of sums only adds: after `window` samples it holds exactly the window's
/// sums and replaces the running ones (the same cost at every sample, where
/// recomputing from the window at once stalled one sample in `window` for
/// milliseconds at 256 × 31).
pub struct RollingPearson {
    window: usize,
    electrodes: usize,
    pairs: usize,
    pred: Vec<f64>,
    act: Vec<f64>,
    head: usize,
    count: usize,
    since_fresh: usize,
    running: Sums,
    fresh: Sums,
    /// Zeros, the sample that `fresh` removes.
    nothing: Sums,
}

/// Σ pred, Σ pred², Σ pred·act per pair; Σ act, Σ act² per electrode.
#[derive(Clone)]
struct Sums {
    sp: Vec<f64>,
    spp: Vec<f64>,
    spa: Vec<f64>,
    sa: Vec<f64>,
    saa: Vec<f64>,
}

impl Sums {
    fn zeros(pairs: usize, electrodes: usize) -> Self {
        Self {
            sp: vec![0.0; pairs],
            spp: vec![0.0; pairs],
            spa: vec![0.0; pairs],
            sa: vec![0.0; electrodes],
            saa: vec![0.0; electrodes],
        }
    }

    fn clear(&mut self) {
        for v in [
            &mut self.sp,
            &mut self.spp,
            &mut self.spa,
            &mut self.sa,
            &mut self.saa,
        ] {
            v.fill(0.0);
        }
    }

    /// Adds sample (`pred`, `act`) and removes sample (`old_pred`, `old_act`).
    fn update(&mut self, pred: &[f64], act: &[f64], old_pred: &[f64], old_act: &[f64]) {
        let e = act.len();
        // Layer by layer, so that pair and electrode run in step (no `i % e`).
        let sums = self
            .sp
            .chunks_exact_mut(e)
            .zip(self.spp.chunks_exact_mut(e));
        let layers = sums
            .zip(self.spa.chunks_exact_mut(e))
            .zip(pred.chunks_exact(e).zip(old_pred.chunks_exact(e)));
        for (((sp, spp), spa), (x, ox)) in layers {
            for k in 0..e {
                let (x, ox, y, oy) = (x[k], ox[k], act[k], old_act[k]);
                sp[k] += x - ox;
                spp[k] += x * x - ox * ox;
                spa[k] += x * y - ox * oy;
            }
        }
        for k in 0..e {
            let (y, oy) = (act[k], old_act[k]);
            self.sa[k] += y - oy;
            self.saa[k] += y * y - oy * oy;
        }
    }
}

impl RollingPearson {
    /// A window of `window` samples for `pairs` series over `electrodes`.
    pub fn new(window: usize, pairs: usize, electrodes: usize) -> Self {
        let window = window.max(2);
        Self {
            window,
            electrodes,
            pairs,
            pred: vec![0.0; window * pairs],
            act: vec![0.0; window * electrodes],
            head: 0,
            count: 0,
            since_fresh: 0,
            running: Sums::zeros(pairs, electrodes),
            fresh: Sums::zeros(pairs, electrodes),
            nothing: Sums::zeros(pairs, electrodes),
        }
    }

    /// Forgets every sample: the window starts empty again.
    pub fn reset(&mut self) {
        self.head = 0;
        self.count = 0;
        self.since_fresh = 0;
        self.running.clear();
        self.fresh.clear();
    }

    /// Bytes of its window and sums.
    pub fn heap_bytes(&self) -> usize {
        (self.pred.capacity() + self.act.capacity() + 3 * (3 * self.pairs + 2 * self.electrodes))
            * std::mem::size_of::<f64>()
    }

    /// The window length, samples.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Samples currently in the window.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no sample has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds one sample: `pred` per pair, `act` per electrode.
    pub fn push(&mut self, pred: &[f64], act: &[f64]) {
        let (p, e) = (self.pairs, self.electrodes);
        let slot = self.head;
        let old_pred = &mut self.pred[slot * p..(slot + 1) * p];
        let old_act = &mut self.act[slot * e..(slot + 1) * e];
        if self.count < self.window {
            // The slot leaves nothing: subtracting zeros is the same arithmetic.
            old_pred.fill(0.0);
            old_act.fill(0.0);
        }
        self.running.update(pred, act, old_pred, old_act);
        self.fresh
            .update(pred, act, &self.nothing.sp, &self.nothing.sa);
        old_pred.copy_from_slice(pred);
        old_act.copy_from_slice(act);
        self.head = (self.head + 1) % self.window;
        self.count = (self.count + 1).min(self.window);
        self.since_fresh += 1;
        if self.since_fresh == self.window {
            // `fresh` now holds the window's exact sums: it takes over.
            std::mem::swap(&mut self.running, &mut self.fresh);
            self.fresh.clear();
            self.since_fresh = 0;
        }
    }

    /// Pearson r of pair `i` over the window (NaN with fewer than two
    /// samples or a constant series).
    pub fn r(&self, i: usize) -> f64 {
        let (n, k, s) = (self.count as f64, i % self.electrodes, &self.running);
        let cov = s.spa[i] - s.sp[i] * s.sa[k] / n;
        let vp = s.spp[i] - s.sp[i] * s.sp[i] / n;
        let va = s.saa[k] - s.sa[k] * s.sa[k] / n;
        if self.count < 2 || flat(vp, s.spp[i]) || flat(va, s.saa[k]) {
            return f64::NAN;
        }
        cov / (vp * va).sqrt()
    }

    /// r of every pair.
    pub fn r_all(&self) -> Vec<f64> {
        (0..self.pairs).map(|i| self.r(i)).collect()
    }
}

/// Exponentially weighted Pearson r with time constant `tau` samples:
/// weights decay by `exp(-1/tau)` per sample (West's weighted updates).
pub struct EwPearson {
    alpha: f64,
    electrodes: usize,
    started: bool,
    mp: Vec<f64>,
    vp: Vec<f64>,
    cov: Vec<f64>,
    ma: Vec<f64>,
    va: Vec<f64>,
}

impl EwPearson {
    /// Time constant `tau` in samples, for `pairs` series over `electrodes`.
    pub fn new(tau: f64, pairs: usize, electrodes: usize) -> Self {
        Self {
            alpha: 1.0 - (-1.0 / tau.max(1.0)).exp(),
            electrodes,
            started: false,
            mp: vec![0.0; pairs],
            vp: vec![0.0; pairs],
            cov: vec![0.0; pairs],
            ma: vec![0.0; electrodes],
            va: vec![0.0; electrodes],
        }
    }

    /// Forgets every sample: the next one starts the averages afresh.
    pub fn reset(&mut self) {
        self.started = false;
        for v in [
            &mut self.mp,
            &mut self.vp,
            &mut self.cov,
            &mut self.ma,
            &mut self.va,
        ] {
            v.fill(0.0);
        }
    }

    /// The weight of the newest sample.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Adds one sample.
    pub fn push(&mut self, pred: &[f64], act: &[f64]) {
        let (a, e) = (self.alpha, self.electrodes);
        if !self.started {
            self.started = true;
            self.mp.copy_from_slice(pred);
            self.ma.copy_from_slice(act);
            return;
        }
        // Layer by layer, so that pair and electrode run in step (no `i % e`).
        let layers = self.mp.chunks_exact_mut(e).zip(self.vp.chunks_exact_mut(e));
        for ((mp, vp), (cov, pred)) in
            layers.zip(self.cov.chunks_exact_mut(e).zip(pred.chunks_exact(e)))
        {
            for k in 0..e {
                let dp = pred[k] - mp[k];
                let da = act[k] - self.ma[k];
                mp[k] += a * dp;
                vp[k] = (1.0 - a) * (vp[k] + a * dp * dp);
                cov[k] = (1.0 - a) * (cov[k] + a * dp * da);
            }
        }
        for ((ma, va), &x) in self.ma.iter_mut().zip(&mut self.va).zip(&act[..e]) {
            let da = x - *ma;
            *ma += a * da;
            *va = (1.0 - a) * (*va + a * da * da);
        }
    }

    /// r of pair `i` (NaN until both series vary).
    pub fn r(&self, i: usize) -> f64 {
        let k = i % self.electrodes;
        let (vp, va) = (self.vp[i], self.va[k]);
        if flat(vp, vp + self.mp[i] * self.mp[i]) || flat(va, va + self.ma[k] * self.ma[k]) {
            return f64::NAN;
        }
        self.cov[i] / (vp * va).sqrt()
    }

    /// r of every pair.
    pub fn r_all(&self) -> Vec<f64> {
        (0..self.mp.len()).map(|i| self.r(i)).collect()
    }
}

/// Whether a series is constant up to rounding: its variance is a negligible
/// fraction of its mean square (both in the same normalisation).
pub(crate) fn flat(variance: f64, mean_square: f64) -> bool {
    variance <= 1e-10 * mean_square || variance <= 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::offline::pearson;

    /// 2 layers × 3 electrodes over 40 samples: predictions and actual values from
    /// fixed, correlated patterns.
    fn series() -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let act: Vec<Vec<f64>> = (0..40)
            .map(|t| {
                (0..3)
                    .map(|e| ((t * 7 + e * 5) % 11) as f64 - 5.0)
                    .collect()
            })
            .collect();
        let pred = act
            .iter()
            .enumerate()
            .map(|(t, a)| {
                (0..6)
                    .map(|i| a[i % 3] * (i as f64 + 1.0) / 3.0 + ((t * 3 + i) % 5) as f64)
                    .collect()
            })
            .collect();
        (pred, act)
    }

    #[test]
    fn rolling_r_equals_pearson_over_the_last_window() {
        let (pred, act) = series();
        let window = 7;
        let mut rolling = RollingPearson::new(window, 6, 3);
        // Past several wrap-arounds and recomputations of the running sums.
        for t in 0..pred.len() {
            rolling.push(&pred[t], &act[t]);
            let from = (t + 1).saturating_sub(window);
            for i in 0..6 {
                let want = pearson(
                    (from..=t).map(|s| pred[s][i]),
                    (from..=t).map(|s| act[s][i % 3]),
                );
                let got = rolling.r(i);
                if t == 0 {
                    assert!(got.is_nan() && want.is_nan());
                } else {
                    assert!((got - want).abs() < 1e-9, "t {t} pair {i}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn after_a_reset_only_the_samples_since_count() {
        let (pred, act) = series();
        let (window, cut) = (9, 23);
        let mut rolling = RollingPearson::new(window, 6, 3);
        let mut ew = EwPearson::new(5.0, 6, 3);
        let mut fresh_ew = EwPearson::new(5.0, 6, 3);
        for t in 0..pred.len() {
            if t == cut {
                rolling.reset();
                ew.reset();
                assert!(rolling.is_empty());
            }
            rolling.push(&pred[t], &act[t]);
            ew.push(&pred[t], &act[t]);
            if t >= cut {
                fresh_ew.push(&pred[t], &act[t]);
            }
            let from = (t + 1)
                .saturating_sub(window)
                .max(if t >= cut { cut } else { 0 });
            for i in 0..6 {
                let want = pearson(
                    (from..=t).map(|s| pred[s][i]),
                    (from..=t).map(|s| act[s][i % 3]),
                );
                let got = rolling.r(i);
                assert!(
                    (got - want).abs() < 1e-9 || (got.is_nan() && want.is_nan()),
                    "t {t} pair {i}: {got} vs {want}"
                );
            }
        }
        let same =
            |a: Vec<f64>, b: Vec<f64>| a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same(ew.r_all(), fresh_ew.r_all()),
            "a reset EW r is a fresh one"
        );
    }

    #[test]
    fn exponentially_weighted_r_equals_the_weighted_pearson() {
        let (pred, act) = series();
        let mut ew = EwPearson::new(5.0, 6, 3);
        let decay = 1.0 - ew.alpha();
        for t in 0..pred.len() {
            ew.push(&pred[t], &act[t]);
        }
        // Weights decay by (1 − α) per sample back from the newest; the first sample
        // holds the weight of all that came before it.
        let n = pred.len();
        let w: Vec<f64> = (0..n)
            .map(|s| {
                let age = (n - 1 - s) as i32;
                if s == 0 {
                    decay.powi(age)
                } else {
                    ew.alpha() * decay.powi(age)
                }
            })
            .collect();
        for i in 0..6 {
            let (x, y) = (|s: usize| pred[s][i], |s: usize| act[s][i % 3]);
            let mean = |f: &dyn Fn(usize) -> f64| (0..n).map(|s| w[s] * f(s)).sum::<f64>();
            let (mx, my) = (mean(&x), mean(&y));
            let cov = mean(&|s| (x(s) - mx) * (y(s) - my));
            let (vx, vy) = (
                mean(&|s| (x(s) - mx).powi(2)),
                mean(&|s| (y(s) - my).powi(2)),
            );
            let want = cov / (vx * vy).sqrt();
            assert!(
                (ew.r(i) - want).abs() < 1e-9,
                "pair {i}: {} vs {want}",
                ew.r(i)
            );
        }
    }
}
