//! Applying encoders: the live predicted-high-gamma timeline that words are
//! added into (and revised or retracted out of) one at a time, and the
//! offline prediction of a whole session from its dense design.
use super::design::{dense_design, LagGrid};
use super::pca::project;
use super::Encoder;
use faer::Mat;
use std::collections::HashMap;

/// What adding, revising or retracting a word did to the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WordUpdate {
    /// Onset sample of the word (after the change; before it for a retraction).
    pub sample: i64,
    /// Samples of its response window that were already final and could not
    /// be changed any more (a late word, revision or retraction).
    pub late_samples: usize,
}

struct LiveWord {
    sample: i64,
    /// `[layers, pcs]` scaled PCA scores.
    features: Vec<f32>,
}

/// The live predicted high-gamma: one value per sample, encoder layer and
/// electrode, in z-scored units, built word by word.
///
/// Sample `s` is at time `t0 + s / rate`. Samples before `final_before` are
/// frozen: words can no longer change them (they have been scored).
pub struct Predictor {
    enc: Encoder,
    grid: LagGrid,
    t0: f64,
    /// Sample index of `timeline[0]`.
    base: i64,
    /// `[samples, layers, electrodes]` sums of word kernels (no intercept).
    timeline: Vec<f64>,
    final_before: i64,
    words: HashMap<u64, LiveWord>,
    kernel: Vec<f32>,
    features: Vec<f32>,
}

impl Predictor {
    /// A predictor for a stream whose sample 0 is at `t0` (seconds).
    pub fn new(enc: Encoder, t0: f64) -> Self {
        let grid = enc.meta.grid;
        let kernel = vec![0.0; enc.layers * enc.electrodes * enc.lags];
        let features = vec![0.0; enc.layers * enc.pcs];
        Self {
            enc,
            grid,
            t0,
            base: 0,
            timeline: Vec::new(),
            final_before: 0,
            words: HashMap::new(),
            kernel,
            features,
        }
    }

    /// The encoders applied.
    pub fn encoder(&self) -> &Encoder {
        &self.enc
    }

    /// Values per sample (`layers × electrodes`).
    pub fn stride(&self) -> usize {
        self.enc.layers * self.enc.electrodes
    }

    /// The onset sample of a word starting at `onset` seconds.
    pub fn onset_sample(&self, onset: f64) -> i64 {
        self.grid.onset_sample(onset, self.t0)
    }

    /// Adds word `id` (embedding `[model layers, dim]`), or revises it when
    /// `id` is already in the timeline (the old kernel is subtracted first).
    pub fn add_word(&mut self, id: u64, onset: f64, embedding: &[f32]) -> WordUpdate {
        let mut late = 0;
        if let Some(old) = self.words.remove(&id) {
            self.features.copy_from_slice(&old.features);
            late += self.apply(old.sample, -1.0);
        }
        let (pcs, dim) = (self.enc.pcs, self.enc.dim);
        for (l, &layer) in self.enc.meta.layers.iter().enumerate() {
            let off = (l * pcs, l * dim);
            project(
                &self.enc.pca_components[off.0 * dim..(off.0 + pcs) * dim],
                &self.enc.pca_mean[off.1..off.1 + dim],
                &self.enc.feature_std[off.0..off.0 + pcs],
                &embedding[layer * dim..(layer + 1) * dim],
                &mut self.features[off.0..off.0 + pcs],
            );
        }
        let sample = self.onset_sample(onset);
        late += self.apply(sample, 1.0);
        self.words.insert(
            id,
            LiveWord {
                sample,
                features: self.features.clone(),
            },
        );
        WordUpdate {
            sample,
            late_samples: late,
        }
    }

    /// Removes word `id`; `None` when no such word is in the timeline.
    pub fn retract(&mut self, id: u64) -> Option<WordUpdate> {
        let old = self.words.remove(&id)?;
        self.features.copy_from_slice(&old.features);
        let late = self.apply(old.sample, -1.0);
        Some(WordUpdate {
            sample: old.sample,
            late_samples: late,
        })
    }

    /// Adds `sign ×` the kernel of `self.features` at onset sample `sample`;
    /// returns the number of frozen samples it could not touch.
    fn apply(&mut self, sample: i64, sign: f32) -> usize {
        let (layers, e, lags, pcs) = (
            self.enc.layers,
            self.enc.electrodes,
            self.enc.lags,
            self.enc.pcs,
        );
        // K[l, e, lag] = W[l, e, lag, :] · x_l
        for l in 0..layers {
            let x = &self.features[l * pcs..(l + 1) * pcs];
            let w = &self.enc.weights[l * e * lags * pcs..(l + 1) * e * lags * pcs];
            let k = &mut self.kernel[l * e * lags..(l + 1) * e * lags];
            for (kv, wrow) in k.iter_mut().zip(w.chunks_exact(pcs)) {
                *kv = sign * dot(wrow, x);
            }
        }
        let first = sample + self.grid.lag_min();
        let start = first.max(self.final_before).max(self.base);
        let end = first + lags as i64;
        if end <= start {
            return (end - first).max(0) as usize;
        }
        self.ensure(end);
        let stride = self.stride();
        for t in start..end {
            let j = (t - first) as usize;
            let row = &mut self.timeline[(t - self.base) as usize * stride..][..stride];
            for (le, v) in row.iter_mut().enumerate() {
                *v += self.kernel[le * lags + j] as f64;
            }
        }
        (start - first) as usize
    }

    fn ensure(&mut self, end: i64) {
        let need = (end - self.base).max(0) as usize * self.stride();
        if self.timeline.len() < need {
            self.timeline.resize(need, 0.0);
        }
    }

    /// Writes the prediction at sample `t` (`[layers, electrodes]`, intercepts
    /// included) into `out`. Samples never touched by a word, or released,
    /// predict the intercept.
    pub fn predicted(&self, t: i64, out: &mut [f64]) {
        let stride = self.stride();
        let at = (t - self.base) * stride as i64;
        let row = (t >= self.base && at + (stride as i64) <= self.timeline.len() as i64)
            .then(|| &self.timeline[at as usize..at as usize + stride]);
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.enc.intercepts[i] as f64 + row.map_or(0.0, |r| r[i]);
        }
    }

    /// Freezes samples before `t`: later word changes no longer touch them.
    pub fn finalise_before(&mut self, t: i64) {
        self.final_before = self.final_before.max(t);
    }

    /// Forgets predictions before `t` and words whose window ended before it.
    pub fn release_before(&mut self, t: i64) {
        let drop = (t - self.base).max(0) as usize;
        // Drain in large steps so that releasing costs O(1) per sample.
        if drop >= 4096 {
            let n = (drop * self.stride()).min(self.timeline.len());
            self.timeline.drain(..n);
            self.base = t;
            let last_lag = self.grid.lag_min() + self.enc.lags as i64;
            self.words.retain(|_, w| w.sample + last_lag > t);
        }
    }
}

/// Offline prediction of a whole recording: for each encoder layer, the
/// dense lagged design of `words` (onset seconds, embedding `[model layers,
/// dim]`) over samples `0..samples` times the weights, plus intercepts.
/// Returns one `[samples, electrodes]` matrix per encoder layer.
pub fn predict_offline(
    enc: &Encoder,
    words: &[(f64, &[f32])],
    t0: f64,
    samples: usize,
) -> Vec<Mat<f64>> {
    let grid = enc.meta.grid;
    let (pcs, dim, e) = (enc.pcs, enc.dim, enc.electrodes);
    let onsets: Vec<i64> = words
        .iter()
        .map(|(o, _)| grid.onset_sample(*o, t0))
        .collect();
    let mut buf = vec![0.0f32; pcs];
    (0..enc.layers)
        .map(|l| {
            let pca = enc.pca(l);
            let layer = enc.meta.layers[l];
            let mut z = vec![0.0f64; words.len() * pcs];
            for (w, (_, emb)) in words.iter().enumerate() {
                pca.project(&emb[layer * dim..(layer + 1) * dim], &mut buf);
                z[w * pcs..(w + 1) * pcs]
                    .iter_mut()
                    .zip(&buf)
                    .for_each(|(d, &s)| *d = s as f64);
            }
            let x = dense_design(0, samples as i64, &z, pcs, &onsets, &grid);
            let w = Mat::<f64>::from_fn(enc.lags * pcs, e, |f, el| {
                enc.weight(l, el, f / pcs, f % pcs) as f64
            });
            let mut y = &x * &w;
            for t in 0..samples {
                for el in 0..e {
                    y[(t, el)] += enc.intercepts[l * e + el] as f64;
                }
            }
            y
        })
        .collect()
}

/// Dot product with eight independent accumulators, so that it vectorises
/// (a plain iterator sum is a sequential chain of additions).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}
