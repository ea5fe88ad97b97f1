//! The lagged word-onset impulse design, computed from word pairs rather than
//! as a dense `[samples × lags·pcs]` matrix: words are sparse (≈2.5 per
//! second) so `XᵀX` comes from pairs of words whose lag windows overlap, and
//! `XᵀY` from the high-gamma gathered under each word's lag window.
//!
//! Feature index of lag `j` (offset `lag_min + j` samples) and component `p`
//! is `j * pcs + p`, the layout of the encoder weights `[lags, pcs]`.
use faer::Mat;
use serde::{Deserialize, Serialize};

/// The lag grid of a temporal response function, in samples of the
/// high-gamma rate: lags `lag_min ..= lag_min + n_lags - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LagGrid {
    /// First lag in seconds after word onset.
    pub tmin: f64,
    /// Last lag in seconds after word onset.
    pub tmax: f64,
    /// High-gamma rate in Hz.
    pub rate: f64,
}

impl LagGrid {
    /// First lag in samples.
    pub fn lag_min(&self) -> i64 {
        (self.tmin * self.rate).round() as i64
    }

    /// Number of lags.
    pub fn n_lags(&self) -> usize {
        ((self.tmax * self.rate).round() as i64 - self.lag_min() + 1).max(0) as usize
    }

    /// The sample a word with this onset starts at (onsets rarely fall on a
    /// sample: round to the nearest one).
    pub fn onset_sample(&self, onset: f64, t0: f64) -> i64 {
        ((onset - t0) * self.rate).round() as i64
    }
}

/// A contiguous range of samples `[start, end)` and the (sorted) words whose
/// lag window touches it, with the layer-independent data gathered once.
pub(crate) struct Segment {
    pub start: i64,
    pub end: i64,
    /// Indices into the sorted word list, increasing sample order.
    pub words: Vec<usize>,
    /// `[words, lags·electrodes]`: z-scored high-gamma at each word's lags,
    /// zero where the lag falls outside the segment.
    pub gathered: Mat<f64>,
    pub sum_y: Vec<f64>,
    pub sum_yy: Vec<f64>,
}

impl Segment {
    /// Gathers the segment `[start, end)` from z-scored high-gamma `y`
    /// (`[samples, electrodes]`) for words at `samples` (sorted).
    pub fn new(
        start: i64,
        end: i64,
        samples: &[i64],
        y: &[f64],
        electrodes: usize,
        grid: &LagGrid,
    ) -> Self {
        let (lag_min, n_lags) = (grid.lag_min(), grid.n_lags() as i64);
        let words: Vec<usize> = (0..samples.len())
            .filter(|&w| samples[w] + lag_min < end && samples[w] + lag_min + n_lags > start)
            .collect();
        let mut gathered = Mat::<f64>::zeros(words.len(), n_lags as usize * electrodes);
        for (row, &w) in words.iter().enumerate() {
            for j in 0..n_lags {
                let t = samples[w] + lag_min + j;
                if t >= start && t < end {
                    let src = &y[t as usize * electrodes..(t as usize + 1) * electrodes];
                    for (e, &v) in src.iter().enumerate() {
                        gathered[(row, j as usize * electrodes + e)] = v;
                    }
                }
            }
        }
        let (mut sum_y, mut sum_yy) = (vec![0.0; electrodes], vec![0.0; electrodes]);
        for t in start..end {
            let src = &y[t as usize * electrodes..(t as usize + 1) * electrodes];
            for e in 0..electrodes {
                sum_y[e] += src[e];
                sum_yy[e] += src[e] * src[e];
            }
        }
        Self {
            start,
            end,
            words,
            gathered,
            sum_y,
            sum_yy,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// `XᵀX` of this segment's design for features `z` (`[all words, pcs]`),
    /// accumulated from overlapping word pairs. Pairs whose whole overlap lies
    /// inside the segment only depend on their sample difference `d` and are
    /// summed into one `pcs × pcs` block per `d` (a block-Toeplitz matrix).
    pub fn xtx(&self, z: &[f64], pcs: usize, samples: &[i64], grid: &LagGrid) -> Mat<f64> {
        let (lag_min, n_lags) = (grid.lag_min(), grid.n_lags() as i64);
        let d_max = n_lags - 1;
        let mut toeplitz = vec![0.0; (2 * d_max as usize + 1) * pcs * pcs];
        let mut out = Mat::<f64>::zeros(n_lags as usize * pcs, n_lags as usize * pcs);
        let mut first = 0;
        for &w1 in &self.words {
            let s1 = samples[w1];
            while samples[self.words[first]] < s1 - d_max {
                first += 1;
            }
            let z1 = &z[w1 * pcs..(w1 + 1) * pcs];
            for &w2 in self.words[first..]
                .iter()
                .take_while(|&&w2| samples[w2] <= s1 + d_max)
            {
                let d = samples[w2] - s1;
                let z2 = &z[w2 * pcs..(w2 + 1) * pcs];
                let (j_lo, j_hi) = (d.max(0), n_lags.min(n_lags + d));
                let (t_lo, t_hi) = (s1 + lag_min + j_lo, s1 + lag_min + j_hi - 1);
                if t_lo >= self.start && t_hi < self.end {
                    let block = &mut toeplitz[(d + d_max) as usize * pcs * pcs..][..pcs * pcs];
                    outer_add(block, z1, z2);
                } else {
                    for j1 in j_lo..j_hi {
                        let t = s1 + lag_min + j1;
                        if t >= self.start && t < self.end {
                            add_outer_at(
                                &mut out,
                                j1 as usize * pcs,
                                (j1 - d) as usize * pcs,
                                z1,
                                z2,
                            );
                        }
                    }
                }
            }
        }
        for d in -d_max..=d_max {
            let block = &toeplitz[(d + d_max) as usize * pcs * pcs..][..pcs * pcs];
            for j1 in d.max(0)..n_lags.min(n_lags + d) {
                let (r0, c0) = (j1 as usize * pcs, (j1 - d) as usize * pcs);
                for p in 0..pcs {
                    for q in 0..pcs {
                        out[(r0 + p, c0 + q)] += block[p * pcs + q];
                    }
                }
            }
        }
        out
    }

    /// Column sums of this segment's design.
    pub fn sum_x(&self, z: &[f64], pcs: usize, samples: &[i64], grid: &LagGrid) -> Vec<f64> {
        let (lag_min, n_lags) = (grid.lag_min(), grid.n_lags() as i64);
        let mut out = vec![0.0; n_lags as usize * pcs];
        for &w in &self.words {
            for j in 0..n_lags {
                let t = samples[w] + lag_min + j;
                if t >= self.start && t < self.end {
                    for p in 0..pcs {
                        out[j as usize * pcs + p] += z[w * pcs + p];
                    }
                }
            }
        }
        out
    }

    /// `XᵀY` (`[lags·pcs, electrodes]`) as one product of the segment's word
    /// features with the gathered high-gamma.
    pub fn xty(&self, z: &[f64], pcs: usize, electrodes: usize, n_lags: usize) -> Mat<f64> {
        let zt = Mat::<f64>::from_fn(pcs, self.words.len(), |p, i| z[self.words[i] * pcs + p]);
        let r = &zt * &self.gathered;
        Mat::from_fn(n_lags * pcs, electrodes, |f, e| {
            r[(f % pcs, (f / pcs) * electrodes + e)]
        })
    }
}

fn outer_add(block: &mut [f64], a: &[f64], b: &[f64]) {
    let n = b.len();
    for (p, &ap) in a.iter().enumerate() {
        for (q, &bq) in b.iter().enumerate() {
            block[p * n + q] += ap * bq;
        }
    }
}

fn add_outer_at(out: &mut Mat<f64>, r0: usize, c0: usize, a: &[f64], b: &[f64]) {
    for (p, &ap) in a.iter().enumerate() {
        for (q, &bq) in b.iter().enumerate() {
            out[(r0 + p, c0 + q)] += ap * bq;
        }
    }
}

/// The dense design `[end − start, lags·pcs]` for samples `[start, end)`:
/// row `t − start` holds every word's features at the lag that lands on `t`.
/// A reference for tests, the scikit-learn comparison and offline prediction.
pub fn dense_design(
    start: i64,
    end: i64,
    z: &[f64],
    pcs: usize,
    samples: &[i64],
    grid: &LagGrid,
) -> Mat<f64> {
    let (lag_min, n_lags) = (grid.lag_min(), grid.n_lags() as i64);
    let mut x = Mat::<f64>::zeros((end - start).max(0) as usize, n_lags as usize * pcs);
    for (w, &s) in samples.iter().enumerate() {
        for j in 0..n_lags {
            let t = s + lag_min + j;
            if t >= start && t < end {
                for p in 0..pcs {
                    x[((t - start) as usize, j as usize * pcs + p)] += z[w * pcs + p];
                }
            }
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The pair-wise statistics equal those of the dense design, including
    /// words whose lag window straddles the segment edges.
    #[test]
    fn sparse_statistics_equal_dense_design() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let grid = LagGrid {
            tmin: -0.05,
            tmax: 0.2,
            rate: 100.0,
        };
        let (pcs, e, samples_total) = (3, 2, 600i64);
        let mut samples: Vec<i64> = (0..70).map(|_| rng.gen_range(-30..630)).collect();
        samples.sort();
        let z: Vec<f64> = (0..samples.len() * pcs)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let y: Vec<f64> = (0..samples_total as usize * e)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        for (a, b) in [(0, 600), (113, 377), (0, 250)] {
            let seg = Segment::new(a, b, &samples, &y, e, &grid);
            let x = dense_design(a, b, &z, pcs, &samples, &grid);
            let ym = Mat::<f64>::from_fn((b - a) as usize, e, |t, k| y[(a as usize + t) * e + k]);
            let xtx = x.transpose() * &x;
            let xty = x.transpose() * &ym;
            let sparse_xtx = seg.xtx(&z, pcs, &samples, &grid);
            let sparse_xty = seg.xty(&z, pcs, e, grid.n_lags());
            let sx = seg.sum_x(&z, pcs, &samples, &grid);
            assert!((&xtx - &sparse_xtx).norm_max() < 1e-12, "XᵀX of [{a}, {b})");
            assert!((&xty - &sparse_xty).norm_max() < 1e-12, "XᵀY of [{a}, {b})");
            for (f, s) in sx.iter().enumerate() {
                let dense: f64 = (0..x.nrows()).map(|t| x[(t, f)]).sum();
                assert!((dense - s).abs() < 1e-12);
            }
        }
    }
}
