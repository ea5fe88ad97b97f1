//! Circular-shift null distributions of Pearson r. The neural series is
//! shifted circularly against a fixed prediction; by the cross-correlation
//! theorem one forward and one inverse FFT give r at every shift at once, and
//! two real series share one complex transform (one as the real part, one as
//! the imaginary part), so a prediction costs about one FFT per electrode.
use super::StatsError;
use rand::{Rng, SeedableRng};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// `count` shifts drawn uniformly (with replacement) from
/// `min_shift ..= n − min_shift`, from a ChaCha8 generator seeded with `seed`.
pub fn draw_shifts(
    n: usize,
    min_shift: usize,
    count: usize,
    seed: u64,
) -> Result<Vec<usize>, StatsError> {
    if min_shift == 0 || n < 2 * min_shift {
        return Err(StatsError::NotEnoughData(format!(
            "{n} samples cannot be shifted by at least {min_shift} samples both ways; hold out more data or lower the minimum shift"
        )));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Ok((0..count)
        .map(|_| rng.gen_range(min_shift..=n - min_shift))
        .collect())
}

/// The null of one prediction (one layer) against every electrode.
#[derive(Debug, Clone)]
pub struct LayerNull {
    /// r at shift 0, per electrode.
    pub observed: Vec<f64>,
    /// r at each drawn shift, `[electrodes, shifts]`.
    pub null: Vec<f64>,
}

/// The actual series of every electrode, transformed once, ready to be
/// correlated with predictions at the drawn shifts.
pub struct CircularNull {
    n: usize,
    electrodes: usize,
    shifts: Vec<usize>,
    /// Spectrum of each electrode's centred, unit-norm actual series (empty if constant).
    actual: Vec<Vec<Complex<f64>>>,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
}

/// The series centred and scaled to unit norm (`None` if constant or not finite).
fn normalised(x: impl Iterator<Item = f64> + Clone) -> Option<Vec<f64>> {
    let n = x.clone().count() as f64;
    let mean = x.clone().sum::<f64>() / n;
    let c: Vec<f64> = x.map(|v| v - mean).collect();
    let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
    let scale = c.iter().map(|v| v.abs()).fold(mean.abs(), f64::max);
    (norm.is_finite() && norm > 0.0 && norm > 1e-12 * scale * n.sqrt())
        .then(|| c.into_iter().map(|v| v / norm).collect())
}

/// The spectra of two real series, from the transform of `a + i·b`:
/// `A[k] = (Z[k] + conj(Z[−k])) / 2`, `B[k] = (Z[k] − conj(Z[−k])) / 2i`.
fn split(z: &[Complex<f64>]) -> (Vec<Complex<f64>>, Vec<Complex<f64>>) {
    let n = z.len();
    (0..n)
        .map(|k| {
            let (zk, zm) = (z[k], z[(n - k) % n].conj());
            ((zk + zm) * 0.5, (zk - zm) * Complex::new(0.0, -0.5))
        })
        .unzip()
}

impl CircularNull {
    /// Prepares the actual series `actual` (`[n, electrodes]` row-major) for
    /// correlation at `shifts` (each in `0..n`; sample `t` of the prediction
    /// meets sample `(t + shift) mod n` of the actual).
    pub fn new(actual: &[f64], electrodes: usize, shifts: Vec<usize>) -> Self {
        let n = actual.len() / electrodes.max(1);
        let mut planner = FftPlanner::new();
        let (forward, inverse) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
        let mut this = Self {
            n,
            electrodes,
            shifts,
            actual: Vec::new(),
            forward,
            inverse,
        };
        let series = |e: usize| normalised((0..n).map(move |t| actual[t * electrodes + e]));
        this.actual = this.spectra(series);
        this
    }

    /// The drawn shifts.
    pub fn shifts(&self) -> &[usize] {
        &self.shifts
    }

    /// Spectra of two real series from one complex transform (empty where a series is `None`).
    fn pair_spectra(
        &self,
        a: Option<Vec<f64>>,
        b: Option<Vec<f64>>,
        scratch: &mut [Complex<f64>],
    ) -> (Vec<Complex<f64>>, Vec<Complex<f64>>) {
        let at = |s: &Option<Vec<f64>>, t: usize| s.as_ref().map_or(0.0, |s| s[t]);
        let mut z: Vec<Complex<f64>> = (0..self.n)
            .map(|t| Complex::new(at(&a, t), at(&b, t)))
            .collect();
        self.forward.process_with_scratch(&mut z, scratch);
        let (sa, sb) = split(&z);
        (
            if a.is_some() { sa } else { Vec::new() },
            if b.is_some() { sb } else { Vec::new() },
        )
    }

    /// Spectra of the normalised series `series(e)` of every electrode, two per transform.
    fn spectra(&self, series: impl Fn(usize) -> Option<Vec<f64>>) -> Vec<Vec<Complex<f64>>> {
        let mut out = Vec::with_capacity(self.electrodes);
        let mut scratch = vec![Complex::default(); self.forward.get_inplace_scratch_len()];
        for e in (0..self.electrodes).step_by(2) {
            let b = (e + 1 < self.electrodes).then(|| series(e + 1)).flatten();
            let (sa, sb) = self.pair_spectra(series(e), b, &mut scratch);
            out.push(sa);
            if e + 1 < self.electrodes {
                out.push(sb);
            }
        }
        out
    }

    /// r of the prediction `pred` (`[n, electrodes]` row-major, one layer)
    /// with every electrode's actual series, at shift 0 and at every drawn
    /// shift. A constant series gives NaN. Works two electrodes at a time, in
    /// memory of a few series.
    pub fn layer(&self, pred: &[f64]) -> LayerNull {
        let (n, e, s) = (self.n, self.electrodes, self.shifts.len());
        let series = |k: usize| normalised((0..n).map(|t| pred[t * e + k]));
        let mut observed = vec![f64::NAN; e];
        let mut null = vec![f64::NAN; e * s];
        let mut fwd = vec![Complex::default(); self.forward.get_inplace_scratch_len()];
        let mut inv = vec![Complex::default(); self.inverse.get_inplace_scratch_len()];
        for k in (0..e).step_by(2) {
            let b = (k + 1 < e).then(|| series(k + 1)).flatten();
            let pair = self.pair_spectra(series(k), b, &mut fwd);
            let spectrum = |kk: usize| if kk == k { &pair.0 } else { &pair.1 };
            let live =
                |kk: usize| kk < e && !spectrum(kk).is_empty() && !self.actual[kk].is_empty();
            // W = conj(P_a)·Y_a + i·conj(P_b)·Y_b: its inverse holds r_a in the real part
            // and r_b in the imaginary part (both are real series).
            let term = |kk: usize, i: usize| {
                if live(kk) {
                    spectrum(kk)[i].conj() * self.actual[kk][i]
                } else {
                    Complex::default()
                }
            };
            let mut w: Vec<Complex<f64>> = (0..n)
                .map(|i| term(k, i) + Complex::<f64>::i() * term(k + 1, i))
                .collect();
            self.inverse.process_with_scratch(&mut w, &mut inv);
            for (kk, imaginary) in [(k, false), (k + 1, true)] {
                if !live(kk) {
                    continue;
                }
                let r = |shift: usize| {
                    let v = w[shift] / n as f64;
                    if imaginary {
                        v.im
                    } else {
                        v.re
                    }
                };
                observed[kk] = r(0);
                for (j, &shift) in self.shifts.iter().enumerate() {
                    null[kk * s + j] = r(shift);
                }
            }
        }
        LayerNull { observed, null }
    }
}

/// The null of the statistic reported for one electrode, the maximum of r
/// over layers, and the per-layer null bands.
#[derive(Debug, Clone)]
pub struct MaxNull {
    /// Observed maximum over layers.
    pub observed: f64,
    /// Maximum over layers at each shift (the same shift for every layer).
    pub null: Vec<f64>,
    /// `(1 + #{null ≥ observed}) / (1 + shifts)`.
    pub p: f64,
}

/// The maximum-over-layers null of electrode `k` from every layer's null.
pub fn max_over_layers(layers: &[LayerNull], k: usize, shifts: usize) -> MaxNull {
    let max =
        |it: &mut dyn Iterator<Item = f64>| it.filter(|v| !v.is_nan()).fold(f64::NAN, f64::max);
    let observed = max(&mut layers.iter().map(|l| l.observed[k]));
    let null: Vec<f64> = (0..shifts)
        .map(|j| max(&mut layers.iter().map(|l| l.null[k * shifts + j])))
        .collect();
    MaxNull {
        observed,
        p: p_value(observed, &null),
        null,
    }
}

/// `(1 + #{null ≥ observed}) / (1 + n)`; 1 when the observed value is NaN.
pub fn p_value(observed: f64, null: &[f64]) -> f64 {
    if observed.is_nan() {
        return 1.0;
    }
    let exceed = null.iter().filter(|&&v| v >= observed).count();
    (1 + exceed) as f64 / (1 + null.len()) as f64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;

    /// Two-pass Pearson r, written out (the FFT route is what is under test).
    pub(crate) fn pearson(
        x: impl Iterator<Item = f64> + Clone,
        y: impl Iterator<Item = f64> + Clone,
    ) -> f64 {
        let n = x.clone().count() as f64;
        let (mx, my) = (x.clone().sum::<f64>() / n, y.clone().sum::<f64>() / n);
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for (a, b) in x.zip(y) {
            sxy += (a - mx) * (b - my);
            sxx += (a - mx) * (a - mx);
            syy += (b - my) * (b - my);
        }
        sxy / (sxx * syy).sqrt()
    }

    /// Every shift's r equals the direct two-pass Pearson r of the prediction
    /// against the rotated actual, for an odd electrode count, odd and even
    /// lengths and a constant series.
    #[test]
    fn fft_r_equals_direct_r_at_every_shift() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (n, e) in [(97usize, 3usize), (128, 4)] {
            let act: Vec<f64> = (0..n * e).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let mut pred: Vec<f64> = (0..n * e)
                .map(|i| 0.5 * act[i] + rng.gen_range(-1.0..1.0) + 3.0)
                .collect();
            (0..n).for_each(|t| pred[t * e + 1] = 2.0); // constant: NaN
            let shifts = draw_shifts(n, 5, 40, 9).unwrap();
            let null = CircularNull::new(&act, e, shifts.clone()).layer(&pred);
            for k in 0..e {
                let direct = |s: usize| {
                    pearson(
                        (0..n).map(|t| pred[t * e + k]),
                        (0..n).map(|t| act[((t + s) % n) * e + k]),
                    )
                };
                if k == 1 {
                    assert!(null.observed[k].is_nan());
                    continue;
                }
                assert!((null.observed[k] - direct(0)).abs() < 1e-10);
                for (j, &s) in shifts.iter().enumerate() {
                    assert!((null.null[k * shifts.len() + j] - direct(s)).abs() < 1e-10);
                }
            }
        }
    }

    #[test]
    fn shifts_stay_in_range_and_short_series_are_refused() {
        let s = draw_shifts(100, 10, 500, 3).unwrap();
        assert!(s.iter().all(|&v| (10..=90).contains(&v)));
        assert_eq!(s, draw_shifts(100, 10, 500, 3).unwrap(), "seeded");
        assert!(draw_shifts(15, 10, 5, 0).is_err());
    }

    #[test]
    fn p_value_counts_ties_and_adds_one() {
        assert_eq!(p_value(0.5, &[0.1, 0.5, 0.7, 0.2]), 3.0 / 5.0);
        assert_eq!(p_value(0.9, &[0.1, 0.5]), 1.0 / 3.0);
        assert_eq!(p_value(f64::NAN, &[0.1]), 1.0);
    }
}
