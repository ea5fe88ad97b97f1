//! Fitting encoders on a session: z-score the high-gamma, reduce each layer's
//! embeddings with PCA, build the lagged impulse design's statistics per
//! contiguous fold, choose ridge alpha per electrode by cross-validation,
//! refit on all training folds and score on the held-out tail.
use super::design::{LagGrid, Segment};
use super::file::{Encoder, EncoderMeta, HighGammaMeta, ModelMeta, TrainingMeta};
use super::pca::Pca;
use super::ridge::{self, Stats};
use super::{EncodeError, Session};
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
    /// Contiguous cross-validation folds over the training part.
    pub folds: usize,
    /// Fraction of the session, at its end, held out for the outer test r.
    /// With 0 the stored `cv_r` is the cross-validated r instead.
    pub holdout: f64,
    /// Ridge penalties tried per electrode.
    pub alphas: Vec<f64>,
    /// Model layers to fit (all when `None`).
    pub layers: Option<Vec<usize>>,
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

/// Layer-independent preparation: sorted word samples, z-scored high-gamma
/// gathered per segment (the CV folds, then the held-out tail if any).
struct Prepared {
    order: Vec<usize>,
    samples: Vec<i64>,
    folds: Vec<Segment>,
    test: Option<Segment>,
    neural_mean: Vec<f64>,
    neural_std: Vec<f64>,
    train_words: usize,
}

fn prepare(session: &Session, cfg: &FitConfig, grid: &LagGrid) -> Result<Prepared, EncodeError> {
    let (t, e) = (session.samples(), session.electrodes());
    let n_train = ((t as f64) * (1.0 - cfg.holdout.clamp(0.0, 0.9))).floor() as usize;
    if cfg.folds < 2 || n_train < cfg.folds * grid.n_lags().max(1) * 2 {
        return Err(EncodeError::NotEnoughData(format!(
            "{n_train} training samples cannot make {} folds of at least two lag windows; record longer or lower --folds (≥ 2)",
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
    for (i, row) in session.hg.chunks_exact(e).take(n_train).enumerate() {
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
    let bounds: Vec<i64> = (0..=cfg.folds)
        .map(|k| (k * n_train / cfg.folds) as i64)
        .collect();
    let folds = bounds
        .windows(2)
        .map(|b| Segment::new(b[0], b[1], &samples, &y, e, grid))
        .collect();
    let test = (n_train < t).then(|| Segment::new(n_train as i64, t as i64, &samples, &y, e, grid));
    let train_words = samples.iter().filter(|&&s| s < n_train as i64).count();
    Ok(Prepared {
        order,
        samples,
        folds,
        test,
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

/// One layer's fitted encoder.
struct LayerFit {
    pca: Pca,
    beta: faer::Mat<f64>,
    intercept: Vec<f64>,
    r: Vec<f64>,
    alpha: Vec<f64>,
}

/// PCA, per-fold statistics, cross-validated alpha per electrode, the refit
/// on all training folds and the held-out r, for one model layer.
fn fit_layer(
    session: &Session,
    cfg: &FitConfig,
    grid: &LagGrid,
    prep: &Prepared,
    layer: usize,
) -> Result<LayerFit, EncodeError> {
    let (e, dim, pcs) = (session.electrodes(), session.dim, cfg.pcs);
    let emb = |w: usize| &session.words[prep.order[w]].embedding[layer * dim..(layer + 1) * dim];
    let train_rows: Vec<&[f32]> = (0..prep.train_words).map(emb).collect();
    let pca = Pca::fit(&train_rows, dim, pcs)?;
    let mut z = vec![0.0f64; prep.samples.len() * pcs];
    let mut buf = vec![0.0f32; pcs];
    for w in 0..prep.samples.len() {
        pca.project(emb(w), &mut buf);
        z[w * pcs..(w + 1) * pcs]
            .iter_mut()
            .zip(&buf)
            .for_each(|(d, &s)| *d = s as f64);
    }
    let fold_stats: Vec<Stats> = prep
        .folds
        .iter()
        .map(|s| stats(s, &z, pcs, &prep.samples, grid, e))
        .collect();
    let total = Stats::sum(fold_stats.iter());
    let cv = ridge::cross_validate(&fold_stats, &total, &cfg.alphas)?;
    let best: Vec<usize> = (0..e)
        .map(|el| (0..cfg.alphas.len()).fold(0, |b, a| if cv[a][el] > cv[b][el] { a } else { b }))
        .collect();
    let alpha: Vec<f64> = best.iter().map(|&a| cfg.alphas[a]).collect();
    let (beta, intercept) = ridge::solve(&total, &alpha)?;
    let r = match &prep.test {
        Some(seg) => ridge::score(&beta, &stats(seg, &z, pcs, &prep.samples, grid, e)),
        None => (0..e).map(|el| cv[best[el]][el]).collect(),
    };
    Ok(LayerFit {
        pca,
        beta,
        intercept,
        r,
        alpha,
    })
}

/// Fits encoders for every requested layer of `session`. `progress` advances
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
    progress.set_length(layers.len() as u64);
    // Layers are independent: fit them in parallel (faer's own parallelism
    // shares rayon's pool, so the cores are not oversubscribed).
    let fitted = layers
        .par_iter()
        .map(|&layer| {
            let fitted = fit_layer(session, cfg, &grid, &prep, layer);
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
    let n_train = prep.folds.last().map_or(0, |s| s.end) as usize;
    enc.meta = EncoderMeta {
        model: provenance.model.clone(),
        layers,
        grid,
        labels: session.labels.clone(),
        high_gamma: provenance.high_gamma.clone(),
        training: TrainingMeta {
            description: provenance.description.clone(),
            train_samples: n_train,
            test_samples: session.samples() - n_train,
            train_words: prep.train_words,
            folds: cfg.folds,
            alphas: cfg.alphas.clone(),
            cv_r_is_holdout: prep.test.is_some(),
        },
        pcs,
        dim,
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
    let n_train = prep.folds.last().map_or(0, |s| s.end);
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
    Ok(DesignDump {
        features,
        samples: prep.samples,
        design,
        target,
        alpha,
        beta,
        intercept,
        lag_min: grid.lag_min(),
    })
}

impl DesignDump {
    /// Writes the dump as f64 tensors `features`, `samples`, `design`,
    /// `target`, `alpha`, `beta` (`[lags·pcs, electrodes]`), `intercept`.
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
        ];
        let lag_min = self.lag_min.to_string();
        write_tensors(
            path,
            &tensors,
            std::collections::HashMap::from([("lag_min".to_string(), lag_min)]),
        )
    }
}
