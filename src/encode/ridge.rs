//! Ridge regression from sufficient statistics (`XᵀX`, `XᵀY`, sums), with the
//! penalty chosen per electrode by validation on held-out samples.
//!
//! One eigendecomposition `XᵀX = V Λ Vᵀ` of the (centred) training design
//! serves every electrode and every alpha: `β(α) = V (VᵀXᵀY) / (Λ + α)`.
//! Validation correlations are computed in the eigenbasis from the fold's own
//! statistics, so no dense design or prediction is ever formed.
use super::EncodeError;
use faer::{Mat, Side};

/// Sufficient statistics of a design `X` and targets `Y` over a set of samples.
#[derive(Clone)]
pub(crate) struct Stats {
    pub n: f64,
    pub xtx: Mat<f64>,
    pub sx: Vec<f64>,
    pub xty: Mat<f64>,
    pub sy: Vec<f64>,
    pub syy: Vec<f64>,
}

/// Statistics after removing the means (the intercept is not penalised).
pub(crate) struct Centred {
    pub xtx: Mat<f64>,
    pub xty: Mat<f64>,
    pub syy: Vec<f64>,
    pub mx: Vec<f64>,
    pub my: Vec<f64>,
}

impl Stats {
    /// The statistics of the union of disjoint sample sets.
    pub fn sum<'a>(mut parts: impl Iterator<Item = &'a Stats>) -> Stats {
        let mut acc = parts.next().expect("at least one part").clone();
        for s in parts {
            acc.n += s.n;
            acc.xtx += &s.xtx;
            acc.xty += &s.xty;
            add(&mut acc.sx, &s.sx);
            add(&mut acc.sy, &s.sy);
            add(&mut acc.syy, &s.syy);
        }
        acc
    }

    pub fn centred(&self) -> Centred {
        let n = self.n.max(1.0);
        let mx: Vec<f64> = self.sx.iter().map(|v| v / n).collect();
        let my: Vec<f64> = self.sy.iter().map(|v| v / n).collect();
        let d = mx.len();
        let xtx = Mat::from_fn(d, d, |i, j| self.xtx[(i, j)] - n * mx[i] * mx[j]);
        let xty = Mat::from_fn(d, my.len(), |i, e| self.xty[(i, e)] - n * mx[i] * my[e]);
        let syy = self
            .syy
            .iter()
            .zip(&my)
            .map(|(s, m)| (s - n * m * m).max(0.0))
            .collect();
        Centred {
            xtx,
            xty,
            syy,
            mx,
            my,
        }
    }
}

fn add(a: &mut [f64], b: &[f64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

/// Eigenvectors (columns) and non-negative eigenvalues of a centred `XᵀX`.
struct Spectrum {
    v: Mat<f64>,
    lambda: Vec<f64>,
}

fn spectrum(xtx: &Mat<f64>) -> Result<Spectrum, EncodeError> {
    let eig = xtx
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| EncodeError::Linalg(format!("eigendecomposition of XᵀX: {e:?}")))?;
    let s = eig.S().column_vector();
    let lambda = (0..s.nrows()).map(|i| s[i].max(0.0)).collect();
    Ok(Spectrum {
        v: eig.U().to_owned(),
        lambda,
    })
}

/// `A = Q / (Λ + α_e)`, column `e` using `alpha[e]`.
fn shrink(q: &Mat<f64>, lambda: &[f64], alpha: impl Fn(usize) -> f64) -> Mat<f64> {
    Mat::from_fn(q.nrows(), q.ncols(), |i, e| {
        q[(i, e)] / (lambda[i] + alpha(e))
    })
}

/// `Σ_i a[i, e] · b[i, e]` for every column `e`.
fn column_dots(a: &Mat<f64>, b: &Mat<f64>) -> Vec<f64> {
    (0..a.ncols())
        .map(|e| (0..a.nrows()).map(|i| a[(i, e)] * b[(i, e)]).sum())
        .collect()
}

fn pearson(num: f64, var_pred: f64, var_y: f64) -> f64 {
    let r = num / (var_pred * var_y).sqrt();
    if r.is_finite() {
        r
    } else {
        0.0
    }
}

/// Validation r of the ridge fit on `train` for every alpha, scored on
/// `val` (disjoint samples): `[alphas][electrodes]`.
pub(crate) fn validate(
    train: &Stats,
    val: &Stats,
    alphas: &[f64],
) -> Result<Vec<Vec<f64>>, EncodeError> {
    let train = train.centred();
    let spec = spectrum(&train.xtx)?;
    let q = spec.v.transpose() * &train.xty;
    let val = val.centred();
    let p = spec.v.transpose() * &val.xty;
    let m = spec.v.transpose() * &val.xtx * &spec.v;
    Ok(alphas
        .iter()
        .map(|&alpha| {
            let a = shrink(&q, &spec.lambda, |_| alpha);
            let ma = &m * &a;
            let (num, den) = (column_dots(&a, &p), column_dots(&a, &ma));
            (0..num.len())
                .map(|e| pearson(num[e], den[e], val.syy[e]))
                .collect()
        })
        .collect())
}

/// The ridge solution with penalty `alpha[e]` for electrode `e`: weights
/// `[features, electrodes]` and intercepts `[electrodes]`.
pub(crate) fn solve(train: &Stats, alpha: &[f64]) -> Result<(Mat<f64>, Vec<f64>), EncodeError> {
    let c = train.centred();
    let spec = spectrum(&c.xtx)?;
    let q = spec.v.transpose() * &c.xty;
    let beta = &spec.v * shrink(&q, &spec.lambda, |e| alpha[e]);
    let intercept = (0..beta.ncols())
        .map(|e| {
            c.my[e]
                - (0..beta.nrows())
                    .map(|i| c.mx[i] * beta[(i, e)])
                    .sum::<f64>()
        })
        .collect();
    Ok((beta, intercept))
}

/// Pearson r between `X β` and `Y` per electrode over the samples of `test`.
pub(crate) fn score(beta: &Mat<f64>, test: &Stats) -> Vec<f64> {
    let c = test.centred();
    let num = column_dots(beta, &c.xty);
    let den = column_dots(beta, &(&c.xtx * beta));
    (0..beta.ncols())
        .map(|e| pearson(num[e], den[e], c.syy[e]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn stats_of(x: &Mat<f64>, y: &Mat<f64>) -> Stats {
        let col_sums = |m: &Mat<f64>| {
            (0..m.ncols())
                .map(|j| (0..m.nrows()).map(|i| m[(i, j)]).sum())
                .collect()
        };
        Stats {
            n: x.nrows() as f64,
            xtx: x.transpose() * x,
            sx: col_sums(x),
            xty: x.transpose() * y,
            sy: col_sums(y),
            syy: (0..y.ncols())
                .map(|j| (0..y.nrows()).map(|i| y[(i, j)] * y[(i, j)]).sum())
                .collect(),
        }
    }

    /// The eigenbasis solution equals the normal equations solved directly,
    /// and the statistics-based r equals r of explicit predictions.
    #[test]
    fn solution_and_score_match_direct_computation() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (n, d, e) = (200, 6, 3);
        let x = Mat::<f64>::from_fn(n, d, |_, _| rng.gen_range(-1.0..1.0) + 0.3);
        let y = Mat::<f64>::from_fn(n, e, |i, j| {
            x[(i, j)] * 2.0 + rng.gen_range(-1.0..1.0) + 1.0
        });
        let alpha = [0.5, 10.0, 300.0];
        let (beta, intercept) = solve(&stats_of(&x, &y), &alpha).unwrap();
        let c = stats_of(&x, &y).centred();
        for k in 0..e {
            let a = Mat::<f64>::from_fn(d, d, |i, j| {
                c.xtx[(i, j)] + if i == j { alpha[k] } else { 0.0 }
            });
            let b = Mat::<f64>::from_fn(d, 1, |i, _| c.xty[(i, k)]);
            let direct = faer::prelude::Solve::solve(&a.partial_piv_lu(), &b);
            for i in 0..d {
                assert!((direct[(i, 0)] - beta[(i, k)]).abs() < 1e-10);
            }
        }
        let pred = &x * &beta;
        let r = score(&beta, &stats_of(&x, &y));
        for k in 0..e {
            // two-pass Pearson r, written out (the scoring code is what is under test)
            let xs: Vec<f64> = (0..n).map(|i| pred[(i, k)] + intercept[k]).collect();
            let ys: Vec<f64> = (0..n).map(|i| y[(i, k)]).collect();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (mx, my) = (mean(&xs), mean(&ys));
            let dot = |a: &[f64], ma: f64, b: &[f64], mb: f64| {
                a.iter()
                    .zip(b)
                    .map(|(p, q)| (p - ma) * (q - mb))
                    .sum::<f64>()
            };
            let direct =
                dot(&xs, mx, &ys, my) / (dot(&xs, mx, &xs, mx) * dot(&ys, my, &ys, my)).sqrt();
            assert!((direct - r[k]).abs() < 1e-10, "{direct} vs {}", r[k]);
        }
    }
}
