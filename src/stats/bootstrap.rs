//! Block bootstrap over time of each electrode's peak layer: the held-out
//! samples are cut into consecutive blocks (long enough to keep the
//! autocorrelation of the signal and the noise within them), blocks are drawn
//! with replacement, and the peak layer is recomputed from the drawn blocks'
//! sums; the interval is the central percentile range of the peak layers drawn.
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Sums that give Pearson r of a prediction against an actual series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    /// Number of samples.
    pub n: f64,
    /// Σ prediction.
    pub sx: f64,
    /// Σ actual.
    pub sy: f64,
    /// Σ prediction².
    pub sxx: f64,
    /// Σ actual².
    pub syy: f64,
    /// Σ prediction · actual.
    pub sxy: f64,
}

impl Moments {
    fn add_scaled(&mut self, o: &Moments, c: f64) {
        self.n += c * o.n;
        self.sx += c * o.sx;
        self.sy += c * o.sy;
        self.sxx += c * o.sxx;
        self.syy += c * o.syy;
        self.sxy += c * o.sxy;
    }

    /// Pearson r (NaN if either series is constant).
    pub fn r(&self) -> f64 {
        let vx = self.sxx - self.sx * self.sx / self.n;
        let vy = self.syy - self.sy * self.sy / self.n;
        let r = (self.sxy - self.sx * self.sy / self.n) / (vx * vy).sqrt();
        if vx > 0.0 && vy > 0.0 {
            r
        } else {
            f64::NAN
        }
    }
}

/// Moments of consecutive blocks of `block` samples of one layer's prediction
/// against the actual (both `[n, electrodes]` row-major): `[blocks,
/// electrodes]`. A trailing part shorter than a block is left out.
pub fn block_moments(
    pred: &[f64],
    actual: &[f64],
    electrodes: usize,
    block: usize,
) -> Vec<Moments> {
    let blocks = actual.len() / electrodes / block.max(1);
    let mut out = vec![Moments::default(); blocks * electrodes];
    for b in 0..blocks {
        for t in b * block..(b + 1) * block {
            let (p, a) = (
                &pred[t * electrodes..][..electrodes],
                &actual[t * electrodes..][..electrodes],
            );
            for (k, m) in out[b * electrodes..(b + 1) * electrodes]
                .iter_mut()
                .enumerate()
            {
                let (x, y) = (p[k], a[k]);
                m.add_scaled(
                    &Moments {
                        n: 1.0,
                        sx: x,
                        sy: y,
                        sxx: x * x,
                        syy: y * y,
                        sxy: x * y,
                    },
                    1.0,
                );
            }
        }
    }
    out
}

/// The layer (index into `layers`) with the highest r for electrode `k`
/// from the blocks weighted by `counts`; NaN never wins.
fn peak(layers: &[Vec<Moments>], electrodes: usize, k: usize, counts: &[f64]) -> usize {
    let r = |l: usize| {
        let mut m = Moments::default();
        for (b, &c) in counts.iter().enumerate().filter(|(_, &c)| c > 0.0) {
            m.add_scaled(&layers[l][b * electrodes + k], c);
        }
        m.r()
    };
    let rs: Vec<f64> = (0..layers.len()).map(r).collect();
    (0..rs.len()).fold(0, |b, l| {
        if rs[l] > rs[b] || (rs[b].is_nan() && !rs[l].is_nan()) {
            l
        } else {
            b
        }
    })
}

/// Per electrode, the central `level` interval `[lo, hi]` (indices into
/// `layers`, inclusive) of the peak layer over `replicates` block-bootstrap
/// draws; `layers[l]` are the block moments of layer `l` from
/// [`block_moments`]. The same blocks are drawn for every electrode and layer.
pub fn peak_layer_interval(
    layers: &[Vec<Moments>],
    electrodes: usize,
    replicates: usize,
    level: f64,
    seed: u64,
) -> Vec<[usize; 2]> {
    let blocks = layers.first().map_or(0, |l| l.len() / electrodes.max(1));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let draws: Vec<Vec<f64>> = (0..replicates)
        .map(|_| {
            let mut counts = vec![0.0; blocks];
            for _ in 0..blocks {
                counts[rng.gen_range(0..blocks)] += 1.0;
            }
            counts
        })
        .collect();
    let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0;
    (0..electrodes)
        .into_par_iter()
        .map(|k| {
            let mut peaks: Vec<usize> = draws
                .iter()
                .map(|c| peak(layers, electrodes, k, c))
                .collect();
            peaks.sort_unstable();
            let last = peaks.len().saturating_sub(1) as f64;
            let lo = peaks
                .get((tail * last).floor() as usize)
                .copied()
                .unwrap_or(0);
            let hi = peaks
                .get(((1.0 - tail) * last).ceil() as usize)
                .copied()
                .unwrap_or(0);
            [lo, hi]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Block moments add up to the moments of the whole series, and a layer
    /// that clearly predicts best is the whole interval.
    #[test]
    fn a_clear_peak_has_a_narrow_interval_and_a_flat_profile_a_wide_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (n, e, layers) = (2000, 2, 5);
        let act: Vec<f64> = (0..n * e).map(|_| rng.gen_range(-1.0..1.0)).collect();
        // electrode 0: layer 3 carries the signal; electrode 1: no layer does
        let preds: Vec<Vec<f64>> = (0..layers)
            .map(|l| {
                (0..n * e)
                    .map(|i| {
                        let signal = if i % e == 0 && l == 3 { act[i] } else { 0.0 };
                        signal + rng.gen_range(-1.0..1.0)
                    })
                    .collect()
            })
            .collect();
        let moments: Vec<Vec<Moments>> = preds
            .iter()
            .map(|p| block_moments(p, &act, e, 100))
            .collect();
        let whole = block_moments(&preds[3], &act, e, n)[0];
        let mut sum = Moments::default();
        (0..20).for_each(|b| sum.add_scaled(&moments[3][b * e], 1.0));
        assert!((sum.r() - whole.r()).abs() < 1e-12);
        let ci = peak_layer_interval(&moments, e, 200, 0.95, 1);
        assert_eq!(ci[0], [3, 3]);
        assert!(ci[1][1] - ci[1][0] >= 2, "{:?}", ci[1]);
    }
}
