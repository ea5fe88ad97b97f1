//! Fitting encoders on a session with nested cross-validation (the procedure
//! in `docs/statistics.md`): the session's tail is held out after a purge gap
//! of one lag window; the training part is cut into contiguous inner folds,
//! each validated against a training set that excludes a purge gap on both
//! sides of it and has its own PCA and feature scaling; the alpha per
//! electrode with the best mean validation r is refit on the whole training
//! part; its r on the held-out tail gives the layer profile, the peak layer,
//! and the circular-shift null and block bootstrap of [`crate::stats`].
use super::design::{LagGrid, Segment};
use super::file::{Encoder, EncoderMeta, HighGammaMeta, ModelMeta, TrainingMeta};
use super::pca::Pca;
use super::ridge::{self, Stats};
use super::{EncodeError, Session};
use crate::stats::held_out::{HeldOut, LayerHeldOut};
use crate::stats::StatsConfig;
use faer::Mat;
use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How to fit encoders.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitConfig {
    /// First lag after word onset, seconds.
    pub tmin: f64,
    /// Last lag after word onset, seconds.
    pub tmax: f64,
    /// Principal components kept per layer.
    pub pcs: usize,
    /// Contiguous inner cross-validation folds over the training part (alpha).
    pub folds: usize,
    /// Fraction of the session, at its end, held out for the outer test r
    /// and its statistics (in `(0, 0.9]`).
    pub holdout: f64,
    /// Ridge penalties tried per electrode.
    pub alphas: Vec<f64>,
    /// Model layers to fit (all when `None`).
    pub layers: Option<Vec<usize>>,
    /// Null distribution, false discovery rate and peak-layer interval.
    pub stats: StatsConfig,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            tmin: 0.0,
            tmax: 0.5,
            pcs: 16,
            folds: 5,
            holdout: 0.2,
            alphas: (0..=10).map(|k| 10f64.powf(1.0 + 0.5 * k as f64)).collect(),
            layers: None,
            stats: StatsConfig::default(),
        }
    }
}

/// Where the session came from, recorded in the encoder file's metadata.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The language model the embeddings came from.
    pub model: ModelMeta,
    /// How the high-gamma was obtained.
    pub high_gamma: HighGammaMeta,
    /// Free text describing the training data (file, stream, duration).
    pub description: String,
}

/// One inner fold: the pieces it validates on and the pieces it trains on
/// (the rest of the training part less a purge gap on each side).
struct InnerFold {
    val: Vec<usize>,
    train: Vec<usize>,
}

/// Layer-independent preparation: sorted word samples, z-scored high-gamma
/// gathered per piece of the training part and for the held-out tail.
struct Prepared {
    order: Vec<usize>,
    samples: Vec<i64>,
    n_train: i64,
    gap: i64,
    /// Contiguous pieces covering `[0, n_train)`, cut at fold edges and gap edges.
    pieces: Vec<Segment>,
    inner: Vec<InnerFold>,
    /// The held-out tail `[n_train + gap, samples)`.
    test: Segment,
    /// z-scored high-gamma of the tail, `[test samples, electrodes]`.
    test_actual: Vec<f64>,
    neural_mean: Vec<f64>,
    neural_std: Vec<f64>,
    train_words: usize,
}

impl Prepared {
    /// Words (sorted indices) with a lag in any of `pieces`.
    fn words_of(&self, pieces: &[usize]) -> Vec<usize> {
        let mut words: Vec<usize> = pieces
            .iter()
            .flat_map(|&i| self.pieces[i].words.iter().copied())
            .collect();
        words.sort_unstable();
        words.dedup();
        words
    }

    fn all_pieces(&self) -> Vec<usize> {
        (0..self.pieces.len()).collect()
    }
}

fn prepare(session: &Session, cfg: &FitConfig, grid: &LagGrid) -> Result<Prepared, EncodeError> {
    let (t, e) = (session.samples(), session.electrodes());
    if !(cfg.holdout > 0.0 && cfg.holdout <= 0.9) {
        return Err(EncodeError::Shape(format!(
            "--holdout {} must be in (0, 0.9]: the held-out tail gives the r, the peak layer and the null",
            cfg.holdout
        )));
    }
    let n_train = ((t as f64) * (1.0 - cfg.holdout)).floor() as i64;
    let gap = grid.n_lags() as i64;
    if cfg.folds < 2 || n_train < cfg.folds as i64 * gap.max(1) * 3 || n_train + gap >= t as i64 {
        return Err(EncodeError::NotEnoughData(format!(
            "{n_train} training samples cannot make {} folds of at least three lag windows, or nothing is left after the held-out gap; record longer or lower --folds (≥ 2)",
            cfg.folds
        )));
    }
    let mut order: Vec<usize> = (0..session.words.len()).collect();
    order.sort_by(|&a, &b| session.words[a].onset.total_cmp(&session.words[b].onset));
    let samples: Vec<i64> = order
        .iter()
        .map(|&w| grid.onset_sample(session.words[w].onset, session.t0))
        .collect();
    let (mut mean, mut m2) = (vec![0.0f64; e], vec![0.0f64; e]);
    for (i, row) in session
        .hg
        .chunks_exact(e)
        .take(n_train as usize)
        .enumerate()
    {
        for c in 0..e {
            let d = row[c] as f64 - mean[c];
            mean[c] += d / (i + 1) as f64;
            m2[c] += d * (row[c] as f64 - mean[c]);
        }
    }
    let std: Vec<f64> = m2
        .iter()
        .map(|v| (v / (n_train as f64 - 1.0)).sqrt().max(1e-12))
        .collect();
    let y: Vec<f64> = session
        .hg
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 - mean[i % e]) / std[i % e])
        .collect();
    let bounds: Vec<i64> = (0..=cfg.folds as i64)
        .map(|k| k * n_train / cfg.folds as i64)
        .collect();
    let mut cuts: Vec<i64> = bounds
        .iter()
        .flat_map(|&b| [b - gap, b, b + gap])
        .filter(|&c| (0..=n_train).contains(&c))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let pieces: Vec<Segment> = cuts
        .windows(2)
        .map(|c| Segment::new(c[0], c[1], &samples, &y, e, grid))
        .collect();
    let inner = bounds
        .windows(2)
        .map(|b| InnerFold {
            val: (0..pieces.len())
                .filter(|&i| pieces[i].start >= b[0] && pieces[i].end <= b[1])
                .collect(),
            train: (0..pieces.len())
                .filter(|&i| pieces[i].end <= b[0] - gap || pieces[i].start >= b[1] + gap)
                .collect(),
        })
        .collect();
    let test_start = n_train + gap;
    let test = Segment::new(test_start, t as i64, &samples, &y, e, grid);
    let test_actual = y[test_start as usize * e..].to_vec();
    let train_words = samples.iter().filter(|&&s| s < n_train).count();
    Ok(Prepared {
        order,
        samples,
        n_train,
        gap,
        pieces,
        inner,
        test,
        test_actual,
        neural_mean: mean,
        neural_std: std,
        train_words,
    })
}

fn stats(
    seg: &Segment,
    z: &[f64],
    pcs: usize,
    samples: &[i64],
    grid: &LagGrid,
    electrodes: usize,
) -> Stats {
    Stats {
        n: seg.len() as f64,
        xtx: seg.xtx(z, pcs, samples, grid),
        sx: seg.sum_x(z, pcs, samples, grid),
        xty: seg.xty(z, pcs, electrodes, grid.n_lags()),
        sy: seg.sum_y.clone(),
        syy: seg.sum_yy.clone(),
    }
}

/// A layer's features: PCA (with scaling) fit on the embeddings of `words`,
/// applied to every word (`[all words, pcs]`).
fn features(
    session: &Session,
    prep: &Prepared,
    layer: usize,
    pcs: usize,
    words: &[usize],
) -> Result<(Pca, Vec<f64>), EncodeError> {
    let dim = session.dim;
    let emb = |w: usize| &session.words[prep.order[w]].embedding[layer * dim..(layer + 1) * dim];
    let rows: Vec<&[f32]> = words.iter().map(|&w| emb(w)).collect();
    let pca = Pca::fit(&rows, dim, pcs)?;
    let mut z = vec![0.0f64; prep.samples.len() * pcs];
    let mut buf = vec![0.0f32; pcs];
    for w in 0..prep.samples.len() {
        pca.project(emb(w), &mut buf);
        z[w * pcs..(w + 1) * pcs]
            .iter_mut()
            .zip(&buf)
            .for_each(|(d, &s)| *d = s as f64);
    }
    Ok((pca, z))
}

/// Statistics of the union of `pieces` for features `z`.
fn union_stats(
    prep: &Prepared,
    pieces: &[usize],
    z: &[f64],
    pcs: usize,
    grid: &LagGrid,
    electrodes: usize,
) -> Stats {
    let parts: Vec<Stats> = pieces
        .iter()
        .map(|&i| stats(&prep.pieces[i], z, pcs, &prep.samples, grid, electrodes))
        .collect();
    Stats::sum(parts.iter())
}

/// Mean validation r over the inner folds, `[alphas][electrodes]`: each
/// fold's PCA, scaling and ridge fit see only its training pieces.
fn inner_cv(
    session: &Session,
    cfg: &FitConfig,
    grid: &LagGrid,
    prep: &Prepared,
    layer: usize,
) -> Result<Vec<Vec<f64>>, EncodeError> {
    let (e, pcs) = (session.electrodes(), cfg.pcs);
    let mut mean = vec![vec![0.0; e]; cfg.alphas.len()];
    for fold in &prep.inner {
        let (_, z) = features(session, prep, layer, pcs, &prep.words_of(&fold.train))?;
        let train = union_stats(prep, &fold.train, &z, pcs, grid, e);
        let val = union_stats(prep, &fold.val, &z, pcs, grid, e);
        let r = ridge::validate(&train, &val, &cfg.alphas)?;
        for (m, r) in mean.iter_mut().zip(r) {
            m.iter_mut()
                .zip(r)
                .for_each(|(m, r)| *m += r / prep.inner.len() as f64);
        }
    }
    Ok(mean)
}

/// The prediction of weights `beta` (`[lags·pcs, electrodes]`) and
/// `intercept` over `seg`: `[seg samples, electrodes]`, z-scored units.
fn predict_segment(
    seg: &Segment,
    z: &[f64],
    samples: &[i64],
    grid: &LagGrid,
    beta: &Mat<f64>,
    intercept: &[f64],
) -> Vec<f64> {
    let (e, n_lags, lag_min) = (intercept.len(), grid.n_lags(), grid.lag_min());
    let pcs = beta.nrows() / n_lags;
    let mut out: Vec<f64> = (0..seg.len())
        .flat_map(|_| intercept.iter().copied())
        .collect();
    let zs = Mat::<f64>::from_fn(seg.words.len(), pcs, |i, p| z[seg.words[i] * pcs + p]);
    let b = Mat::<f64>::from_fn(pcs, n_lags * e, |p, c| beta[((c / e) * pcs + p, c % e)]);
    let kernels = &zs * &b;
    for (i, &w) in seg.words.iter().enumerate() {
        for j in 0..n_lags {
            let t = samples[w] + lag_min + j as i64;
            if t >= seg.start && t < seg.end {
                let row = (t - seg.start) as usize * e;
                for (el, o) in out[row..row + e].iter_mut().enumerate() {
                    *o += kernels[(i, j * e + el)];
                }
            }
        }
    }
    out
}

/// One layer's fitted encoder and its held-out statistics.
struct LayerFit {
    pca: Pca,
    beta: Mat<f64>,
    intercept: Vec<f64>,
    r: Vec<f64>,
    alpha: Vec<f64>,
    /// With the statistics: the null and the bootstrap's block sums.
    held_out: Option<LayerHeldOut>,
}

/// Inner-CV alpha per electrode, the refit on the training part and its
/// held-out prediction, r, circular-shift null and bootstrap block sums.
fn fit_layer(
    session: &Session,
    cfg: &FitConfig,
    grid: &LagGrid,
    prep: &Prepared,
    held: Option<&HeldOut>,
    layer: usize,
) -> Result<LayerFit, EncodeError> {
    let (e, pcs) = (session.electrodes(), cfg.pcs);
    let cv = inner_cv(session, cfg, grid, prep, layer)?;
    let alpha: Vec<f64> = (0..e)
        .map(|el| {
            let best =
                (0..cfg.alphas.len()).fold(0, |b, a| if cv[a][el] > cv[b][el] { a } else { b });
            cfg.alphas[best]
        })
        .collect();
    let all = prep.all_pieces();
    let (pca, z) = features(session, prep, layer, pcs, &prep.words_of(&all))?;
    let train = union_stats(prep, &all, &z, pcs, grid, e);
    let (beta, intercept) = ridge::solve(&train, &alpha)?;
    let r = ridge::score(&beta, &stats(&prep.test, &z, pcs, &prep.samples, grid, e));
    let held_out = held.map(|held| {
        held.layer(&predict_segment(
            &prep.test,
            &z,
            &prep.samples,
            grid,
            &beta,
            &intercept,
        ))
    });
    Ok(LayerFit {
        held_out,
        pca,
        beta,
        intercept,
        r,
        alpha,
    })
}

/// Fits encoders for every requested layer of `session`, with the
/// statistics of the held-out tail in the metadata. `progress` advances
/// once per layer (pass `ProgressBar::hidden()` when nobody watches).
pub fn fit(
    session: &Session,
    cfg: &FitConfig,
    provenance: &Provenance,
    progress: &ProgressBar,
) -> Result<Encoder, EncodeError> {
    session.validate()?;
    let grid = LagGrid {
        tmin: cfg.tmin,
        tmax: cfg.tmax,
        rate: session.rate,
    };
    if grid.n_lags() == 0 || cfg.alphas.is_empty() {
        return Err(EncodeError::Shape(format!(
            "empty lag grid (tmin {} s, tmax {} s) or no alphas",
            cfg.tmin, cfg.tmax
        )));
    }
    let layers: Vec<usize> = cfg
        .layers
        .clone()
        .unwrap_or_else(|| (0..session.layers).collect());
    if let Some(&bad) = layers.iter().find(|&&l| l >= session.layers) {
        return Err(EncodeError::Shape(format!(
            "layer {bad} requested, the embeddings have {}",
            session.layers
        )));
    }
    let prep = prepare(session, cfg, &grid)?;
    let (e, dim, pcs, n_lags) = (session.electrodes(), session.dim, cfg.pcs, grid.n_lags());
    let held = HeldOut::new(
        &cfg.stats,
        grid.rate,
        prep.test_actual.clone(),
        e,
        prep.gap as usize,
    )
    .map_err(|why| {
        tracing::warn!(
            "no statistics (null, p, q, peak-layer intervals): {why}; record longer or raise --holdout"
        )
    })
    .ok();
    progress.set_length(layers.len() as u64);
    // Layers are independent: fit them in parallel (faer's own parallelism
    // shares rayon's pool, so the cores are not oversubscribed).
    let mut fitted = layers
        .par_iter()
        .map(|&layer| {
            let fitted = fit_layer(session, cfg, &grid, &prep, held.as_ref(), layer);
            progress.inc(1);
            fitted
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut enc = Encoder::zeros(layers.len(), e, n_lags, pcs, dim);
    for (li, f) in fitted.iter().enumerate() {
        enc.set_layer(li, &f.pca, &f.beta, &f.intercept, &f.r, &f.alpha);
    }
    enc.neural_mean = prep.neural_mean.iter().map(|&v| v as f32).collect();
    enc.neural_std = prep.neural_std.iter().map(|&v| v as f32).collect();
    let statistics = held.map(|held| {
        let per_layer = fitted.iter_mut().filter_map(|f| f.held_out.take());
        held.finish(&layers, &session.labels, per_layer.collect())
    });
    enc.meta = EncoderMeta {
        model: provenance.model.clone(),
        layers,
        grid,
        labels: session.labels.clone(),
        high_gamma: provenance.high_gamma.clone(),
        training: TrainingMeta {
            description: provenance.description.clone(),
            train_samples: prep.n_train as usize,
            test_samples: prep.test.len(),
            train_words: prep.train_words,
            folds: cfg.folds,
            alphas: cfg.alphas.clone(),
            cv_r_is_holdout: true,
            gap_samples: prep.gap as usize,
        },
        pcs,
        dim,
        statistics,
    };
    progress.finish();
    Ok(enc)
}

/// The ridge design and solution of one layer, for checking against an
/// independent implementation: the dense training design, the z-scored
/// training high-gamma, the chosen alphas and the fitted weights.
pub struct DesignDump {
    /// Word features `[words, pcs]` (scaled PCA scores), words in onset order.
    pub features: Vec<f64>,
    /// Onset sample of each word.
    pub samples: Vec<i64>,
    /// Dense training design `[train_samples, lags·pcs]`.
    pub design: faer::Mat<f64>,
    /// z-scored training high-gamma `[train_samples, electrodes]`.
    pub target: Vec<f64>,
    /// Alpha per electrode.
    pub alpha: Vec<f64>,
    /// Weights `[lags·pcs, electrodes]`.
    pub beta: faer::Mat<f64>,
    /// Intercept per electrode.
    pub intercept: Vec<f64>,
    /// First lag in samples (feature `j·pcs + p` is lag `lag_min + j`).
    pub lag_min: i64,
    /// Mean inner-fold validation r, `[alphas, electrodes]`.
    pub cv: Vec<f64>,
    /// The alphas tried.
    pub alphas: Vec<f64>,
    /// Training samples (the first ones) and the purge gap, in samples.
    pub n_train: i64,
    /// Purge gap between folds and before the held-out tail, samples.
    pub gap: i64,
}

/// Recomputes layer `li` of a fitted encoder's design (dense, training part)
/// for `session`, returning it with the encoder's solution.
pub fn dump_design(
    session: &Session,
    cfg: &FitConfig,
    enc: &Encoder,
    li: usize,
) -> Result<DesignDump, EncodeError> {
    let grid = enc.meta.grid;
    let prep = prepare(session, cfg, &grid)?;
    let (dim, pcs, e) = (enc.dim, enc.pcs, enc.electrodes);
    let layer = enc.meta.layers[li];
    let pca = enc.pca(li);
    let mut features = vec![0.0f64; prep.samples.len() * pcs];
    let mut buf = vec![0.0f32; pcs];
    for w in 0..prep.samples.len() {
        pca.project(
            &session.words[prep.order[w]].embedding[layer * dim..(layer + 1) * dim],
            &mut buf,
        );
        features[w * pcs..(w + 1) * pcs]
            .iter_mut()
            .zip(&buf)
            .for_each(|(d, &s)| *d = s as f64);
    }
    let n_train = prep.n_train;
    let design = super::dense_design(0, n_train, &features, pcs, &prep.samples, &grid);
    let target = session.hg[..n_train as usize * e]
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 - prep.neural_mean[i % e]) / prep.neural_std[i % e])
        .collect();
    let n_lags = grid.n_lags();
    let beta = faer::Mat::from_fn(n_lags * pcs, e, |f, el| {
        enc.weight(li, el, f / pcs, f % pcs) as f64
    });
    let intercept = (0..e)
        .map(|el| enc.intercepts[li * e + el] as f64)
        .collect();
    let alpha = (0..e).map(|el| enc.alpha[li * e + el] as f64).collect();
    let cv = inner_cv(session, cfg, &grid, &prep, layer)?.concat();
    Ok(DesignDump {
        features,
        samples: prep.samples,
        design,
        target,
        alpha,
        beta,
        intercept,
        lag_min: grid.lag_min(),
        cv,
        alphas: cfg.alphas.clone(),
        n_train,
        gap: prep.gap,
    })
}

impl DesignDump {
    /// Writes the dump as f64 tensors `features`, `samples`, `design`,
    /// `target`, `alpha`, `beta` (`[lags·pcs, electrodes]`), `intercept`,
    /// `cv` (`[alphas, electrodes]`), `alphas`; metadata `lag_min`, `n_train`, `gap`.
    pub fn save(&self, path: &std::path::Path) -> Result<(), EncodeError> {
        use super::file::{f64_bytes, write_tensors};
        use safetensors::Dtype::F64;
        let (n, d) = (self.design.nrows(), self.design.ncols());
        let e = self.alpha.len();
        let design: Vec<f64> = (0..n)
            .flat_map(|t| (0..d).map(move |f| (t, f)))
            .map(|(t, f)| self.design[(t, f)])
            .collect();
        let beta: Vec<f64> = (0..d)
            .flat_map(|f| (0..e).map(move |k| (f, k)))
            .map(|(f, k)| self.beta[(f, k)])
            .collect();
        let samples: Vec<f64> = self.samples.iter().map(|&s| s as f64).collect();
        let tensors = vec![
            (
                "features".to_string(),
                vec![
                    self.samples.len(),
                    self.features.len() / self.samples.len().max(1),
                ],
                F64,
                f64_bytes(&self.features),
            ),
            (
                "samples".to_string(),
                vec![samples.len()],
                F64,
                f64_bytes(&samples),
            ),
            ("design".to_string(), vec![n, d], F64, f64_bytes(&design)),
            (
                "target".to_string(),
                vec![n, e],
                F64,
                f64_bytes(&self.target),
            ),
            ("alpha".to_string(), vec![e], F64, f64_bytes(&self.alpha)),
            ("beta".to_string(), vec![d, e], F64, f64_bytes(&beta)),
            (
                "intercept".to_string(),
                vec![e],
                F64,
                f64_bytes(&self.intercept),
            ),
            (
                "cv".to_string(),
                vec![self.alphas.len(), e],
                F64,
                f64_bytes(&self.cv),
            ),
            (
                "alphas".to_string(),
                vec![self.alphas.len()],
                F64,
                f64_bytes(&self.alphas),
            ),
        ];
        let meta = [
            ("lag_min", self.lag_min),
            ("n_train", self.n_train),
            ("gap", self.gap),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        write_tensors(path, &tensors, std::collections::HashMap::from(meta))
    }
}
