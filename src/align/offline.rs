//! Alignment scores computed from whole arrays, directly from their
//! definitions (two-pass, no running sums): the reference the live engine
//! must reproduce. `pred` holds one `[samples, electrodes]` matrix per layer
//! (see [`crate::encode::predict_offline`]), `act` the z-scored actual.
use super::rolling::flat;
use faer::Mat;

/// Rolling r per `[layer, electrode]` at sample `t` over samples
/// `max(0, t + 1 − window) ..= t`.
pub fn rolling_r(pred: &[Mat<f64>], act: &Mat<f64>, t: usize, window: usize) -> Vec<f64> {
    let start = (t + 1).saturating_sub(window.max(2));
    window_r(pred, act, start..t + 1, 0)
}

/// Chance r at sample `t`: the prediction `shift` samples earlier against
/// the actual, over the last `window` samples that have a shifted prediction.
pub fn chance_r(pred: &[Mat<f64>], act: &Mat<f64>, t: usize, window: usize, shift: usize) -> Vec<f64> {
    let start = (t + 1).saturating_sub(window.max(2)).max(shift);
    window_r(pred, act, start..t + 1, shift)
}

/// r over samples `range` of the prediction delayed by `shift` samples.
pub fn window_r(pred: &[Mat<f64>], act: &Mat<f64>, range: std::ops::Range<usize>, shift: usize) -> Vec<f64> {
    let e = act.ncols();
    pred.iter()
        .flat_map(|p| {
            let range = range.clone();
            (0..e).map(move |k| {
                let xs = range.clone().map(|t| p[(t - shift, k)]);
                let ys = range.clone().map(|t| act[(t, k)]);
                pearson(xs, ys)
            })
        })
        .collect()
}

/// Exponentially weighted r at sample `t` with newest-sample weight `alpha`:
/// sample `s ≥ 1` weighs `alpha (1 − alpha)^(t − s)`, sample 0 the remainder
/// `(1 − alpha)^t` (the weights of an average started at the first sample).
pub fn ew_r(pred: &[Mat<f64>], act: &Mat<f64>, t: usize, alpha: f64) -> Vec<f64> {
    let w: Vec<f64> = (0..=t)
        .map(|s| if s == 0 { (1.0 - alpha).powi(t as i32) } else { alpha * (1.0 - alpha).powi((t - s) as i32) })
        .collect();
    let e = act.ncols();
    pred.iter()
        .flat_map(|p| {
            let w = &w;
            (0..e).map(move |k| {
                let mx: f64 = (0..=t).map(|s| w[s] * p[(s, k)]).sum();
                let my: f64 = (0..=t).map(|s| w[s] * act[(s, k)]).sum();
                let (mut c, mut vx, mut vy) = (0.0, 0.0, 0.0);
                for s in 0..=t {
                    let (dx, dy) = (p[(s, k)] - mx, act[(s, k)] - my);
                    c += w[s] * dx * dy;
                    vx += w[s] * dx * dx;
                    vy += w[s] * dy * dy;
                }
                let msx: f64 = (0..=t).map(|s| w[s] * p[(s, k)] * p[(s, k)]).sum();
                let msy: f64 = (0..=t).map(|s| w[s] * act[(s, k)] * act[(s, k)]).sum();
                if flat(vx, msx) || flat(vy, msy) {
                    f64::NAN
                } else {
                    c / (vx * vy).sqrt()
                }
            })
        })
        .collect()
}

/// Two-pass Pearson r of two equally long series (NaN if either is constant).
pub fn pearson(xs: impl Iterator<Item = f64> + Clone, ys: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = xs.clone().count() as f64;
    let (mx, my) = (xs.clone().sum::<f64>() / n, ys.clone().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    let (msx, msy) = (sxx + n * mx * mx, syy + n * my * my);
    if n < 2.0 || flat(sxx, msx) || flat(syy, msy) {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}
