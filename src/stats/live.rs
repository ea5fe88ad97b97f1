//! The null of the live statistic, calibrated at fit time: the rolling-window
//! Pearson r that `serve` reports per electrode (the maximum over layers of
//! the r over the last `window` samples), computed on the held-out tail with
//! the actual series shifted circularly against the prediction. Its upper
//! quantile is the electrode's live threshold (`docs/statistics.md`, §5).

/// Rolling-window r of one layer's prediction against the circularly shifted
/// actual series, at every `stride`-th window end.
///
/// `pred` and `actual` are `[n, electrodes]` row-major. For each shift `s` the
/// actual sample `(t + s) mod n` meets prediction sample `t`; windows of `window`
/// samples end at `t = window − 1, window − 1 + stride, …` (they never wrap the
/// prediction). Returns `[electrodes, shifts · positions]` (shift-major inside an
/// electrode); NaN where a window of either series is constant.
pub fn rolling_null(
    pred: &[f64],
    actual: &[f64],
    electrodes: usize,
    shifts: &[usize],
    window: usize,
    stride: usize,
) -> Vec<f64> {
    let n = actual.len() / electrodes.max(1);
    let ends = positions(n, window, stride);
    let per = shifts.len() * ends.len();
    let mut out = vec![f64::NAN; electrodes * per];
    let mut cum = vec![[0.0f64; 5]; n + 1];
    for k in 0..electrodes {
        for (j, &s) in shifts.iter().enumerate() {
            // Prefix sums of p, p², y, y², p·y of the pair at this shift.
            for t in 0..n {
                let (p, y) = (
                    pred[t * electrodes + k],
                    actual[((t + s) % n) * electrodes + k],
                );
                let c = cum[t];
                cum[t + 1] = [c[0] + p, c[1] + p * p, c[2] + y, c[3] + y * y, c[4] + p * y];
            }
            for (i, &end) in ends.iter().enumerate() {
                let (a, b) = (cum[end + 1 - window], cum[end + 1]);
                let d: [f64; 5] = std::array::from_fn(|m| b[m] - a[m]);
                out[k * per + j * ends.len() + i] = window_r(d, window as f64);
            }
        }
    }
    out
}

/// Window ends `window − 1, window − 1 + stride, … < n` (none when `n < window`).
pub fn positions(n: usize, window: usize, stride: usize) -> Vec<usize> {
    (window.max(2) - 1..n).step_by(stride.max(1)).collect()
}

/// Pearson r from the window sums `[Σp, Σp², Σy, Σy², Σpy]` of `w` samples, as the
/// live rolling r (`align::RollingPearson`) computes it.
fn window_r(d: [f64; 5], w: f64) -> f64 {
    let cov = d[4] - d[0] * d[2] / w;
    let vp = d[1] - d[0] * d[0] / w;
    let va = d[3] - d[2] * d[2] / w;
    if vp <= 1e-10 * d[1] || va <= 1e-10 * d[3] || vp <= 0.0 || va <= 0.0 {
        return f64::NAN;
    }
    cov / (vp * va).sqrt()
}

/// Element-wise maximum of `layer` into `acc` (NaN never wins), so that `acc`
/// becomes the maximum over layers.
pub fn max_into(acc: &mut [f64], layer: &[f64]) {
    for (a, &v) in acc.iter_mut().zip(layer) {
        if v > *a || (a.is_nan() && !v.is_nan()) {
            *a = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::null::tests::pearson;
    use rand::{Rng, SeedableRng};

    /// Every window's r equals the two-pass Pearson r of the prediction against
    /// the rotated actual over that window.
    #[test]
    fn rolling_null_equals_direct_pearson_of_each_shifted_window() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let (n, e, window, stride) = (83, 3, 12, 5);
        let act: Vec<f64> = (0..n * e).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let pred: Vec<f64> = (0..n * e)
            .map(|i| 0.4 * act[i] + rng.gen_range(-1.0..1.0))
            .collect();
        let shifts = [0, 7, 40, 76];
        let null = rolling_null(&pred, &act, e, &shifts, window, stride);
        let ends = positions(n, window, stride);
        assert_eq!(ends.first(), Some(&11));
        assert_eq!(null.len(), e * shifts.len() * ends.len());
        for k in 0..e {
            for (j, &s) in shifts.iter().enumerate() {
                for (i, &end) in ends.iter().enumerate() {
                    let from = end + 1 - window;
                    let want = pearson(
                        (from..=end).map(|t| pred[t * e + k]),
                        (from..=end).map(|t| act[((t + s) % n) * e + k]),
                    );
                    let got = null[k * shifts.len() * ends.len() + j * ends.len() + i];
                    assert!((got - want).abs() < 1e-9, "{k} {s} {end}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn max_into_keeps_the_largest_and_skips_nan() {
        let mut acc = vec![f64::NAN, 0.2, 0.5];
        max_into(&mut acc, &[0.1, f64::NAN, 0.7]);
        assert_eq!(acc, vec![0.1, 0.2, 0.7]);
    }
}
