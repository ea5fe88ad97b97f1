//! Applying encoders: a word's kernels computed from its embedding ([`KernelEncoder`], pure
//! and the expensive part, so it can run on a thread of its own), the live
//! predicted-high-gamma timeline those kernels are added into (and revised or retracted out
//! of) one word at a time ([`Predictor`], cheap), and the offline prediction of a whole
//! session from its dense design.
use super::design::{dense_design, LagGrid};
use super::pca::project;
use super::Encoder;
use faer::Mat;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// What adding, revising or retracting a word did to the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WordUpdate {
    /// Onset sample of the word (after the change; before it for a retraction).
    pub sample: i64,
    /// Samples of its response window that were already final and could not
    /// be changed any more (a late word, revision or retraction).
    pub late_samples: usize,
}

/// Encoders (bound to one stream) packed for computing word kernels; shared, in an `Arc`,
/// by the [`Predictor`] that adds the kernels and whichever thread computes them.
pub struct KernelEncoder {
    enc: Encoder,
    /// The weights again, packed for the kernel: a layer's kernel values `v = lag ×
    /// electrodes + electrode` in blocks of [`BLOCK`], each block's weights stored
    /// `[pcs, BLOCK]` (`[layers, blocks, pcs, BLOCK]`, zero-padded). A block is then
    /// summed in registers over the components while the weights stream through once, in
    /// order, and each lag of the kernel is a contiguous row of the timeline.
    packed_weights: Vec<f32>,
    /// Blocks per layer.
    blocks: usize,
}

/// One word's kernels: its predicted response at every lag, electrode and encoder layer,
/// as computed by one [`KernelEncoder`].
pub struct WordKernel {
    /// The encoders that computed it.
    encoder: Arc<KernelEncoder>,
    /// `[layers, blocks × BLOCK]`: per layer `[lags, electrodes]`, zero-padded to whole blocks.
    values: Vec<f32>,
}

impl WordKernel {
    /// Bytes of its values.
    pub fn heap_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<f32>()
    }

    /// Whether `encoder` computed it (a kernel only fits the binding it came from).
    pub fn encoded_by(&self, encoder: &Arc<KernelEncoder>) -> bool {
        Arc::ptr_eq(&self.encoder, encoder)
    }

    /// Layer `l`'s kernel, `[lags, electrodes]`.
    fn layer(&self, l: usize) -> &[f32] {
        let (enc, row) = (&self.encoder.enc, self.encoder.blocks * BLOCK);
        &self.values[l * row..l * row + enc.lags * enc.electrodes]
    }
}

impl KernelEncoder {
    /// Packs `enc`'s weights for the kernel.
    pub fn new(enc: Encoder) -> Self {
        let (e, lags, pcs) = (enc.electrodes, enc.lags, enc.pcs);
        let blocks = (lags * e).div_ceil(BLOCK);
        let mut packed_weights = vec![0.0; enc.layers * blocks * pcs * BLOCK];
        for (at, w) in packed_weights.iter_mut().enumerate() {
            let (i, p, b, l) = (
                at % BLOCK,
                at / BLOCK % pcs,
                at / (BLOCK * pcs) % blocks,
                at / (BLOCK * pcs * blocks),
            );
            let v = b * BLOCK + i;
            if v < lags * e {
                *w = enc.weight(l, v % e, v / e, p);
            }
        }
        Self {
            enc,
            packed_weights,
            blocks,
        }
    }

    /// The encoders applied.
    pub fn encoder(&self) -> &Encoder {
        &self.enc
    }

    /// The kernels of a word with embedding `[model layers, dim]`: its PCA projection per
    /// encoder layer times that layer's weights, every lag and electrode.
    pub fn kernel(self: &Arc<Self>, embedding: &[f32]) -> WordKernel {
        let enc = &self.enc;
        let (pcs, dim) = (enc.pcs, enc.dim);
        let layer_weights = self.blocks * pcs * BLOCK;
        let mut values = vec![0.0; enc.layers * self.blocks * BLOCK];
        let mut features = vec![0.0; pcs];
        for ((l, &layer), kernel) in enc
            .meta
            .layers
            .iter()
            .enumerate()
            .zip(values.chunks_exact_mut(self.blocks * BLOCK))
        {
            project(
                &enc.pca_components[l * pcs * dim..(l + 1) * pcs * dim],
                &enc.pca_mean[l * dim..(l + 1) * dim],
                &enc.feature_std[l * pcs..(l + 1) * pcs],
                &embedding[layer * dim..(layer + 1) * dim],
                &mut features,
            );
            let w_l = &self.packed_weights[l * layer_weights..(l + 1) * layer_weights];
            for (k, w) in kernel
                .chunks_exact_mut(BLOCK)
                .zip(w_l.chunks_exact(pcs * BLOCK))
            {
                kernel_block(&features, w, k.try_into().expect("a whole block"));
            }
        }
        WordKernel {
            encoder: self.clone(),
            values,
        }
    }
}

struct LiveWord {
    sample: i64,
    /// Its kernels while some of its window is still open (`None` once all of it is final:
    /// a revision or retraction can then change nothing, and ~1.6 MB a word at 256
    /// electrodes × 31 layers is not kept for nothing).
    kernel: Option<WordKernel>,
}

/// The live predicted high-gamma: one value per sample, encoder layer and
/// electrode, in z-scored units, built word by word from precomputed kernels.
///
/// Sample `s` is at time `t0 + s / rate`. Samples before `final_before` are
/// frozen: words can no longer change them (they have been scored).
pub struct Predictor {
    kernels: Arc<KernelEncoder>,
    grid: LagGrid,
    t0: f64,
    /// Sample index of `timeline[0]`.
    base: i64,
    /// `[samples, layers, electrodes]` sums of word kernels (no intercept).
    timeline: Vec<f64>,
    final_before: i64,
    words: HashMap<u64, LiveWord>,
    /// Words holding a kernel, by window end (exclusive) then id.
    open: BTreeSet<(i64, u64)>,
}

impl Predictor {
    /// A predictor for a stream whose sample 0 is at `t0` (seconds).
    pub fn new(enc: Encoder, t0: f64) -> Self {
        Self {
            grid: enc.meta.grid,
            kernels: Arc::new(KernelEncoder::new(enc)),
            t0,
            base: 0,
            timeline: Vec::new(),
            final_before: 0,
            words: HashMap::new(),
            open: BTreeSet::new(),
        }
    }

    /// The encoders applied.
    pub fn encoder(&self) -> &Encoder {
        &self.kernels.enc
    }

    /// The encoders that compute the kernels this predictor takes.
    pub fn kernels(&self) -> &Arc<KernelEncoder> {
        &self.kernels
    }

    /// Values per sample (`layers × electrodes`).
    pub fn stride(&self) -> usize {
        self.encoder().layers * self.encoder().electrodes
    }

    /// The onset sample of a word starting at `onset` seconds.
    pub fn onset_sample(&self, onset: f64) -> i64 {
        self.grid.onset_sample(onset, self.t0)
    }

    /// One past the last sample of the response window of a word at onset `sample`.
    fn window_end(&self, sample: i64) -> i64 {
        sample + self.grid.lag_min() + self.encoder().lags as i64
    }

    /// Adds word `id` with its kernels (from [`Predictor::kernels`]), or revises it when
    /// `id` is already in the timeline (the old kernel is subtracted first).
    ///
    /// # Panics
    /// When `kernel` was computed by other encoders.
    pub fn add_word(&mut self, id: u64, onset: f64, kernel: WordKernel) -> WordUpdate {
        assert!(
            kernel.encoded_by(&self.kernels),
            "a word's kernel must come from the predictor's own encoders"
        );
        let mut late = self.retract(id).map_or(0, |up| up.late_samples);
        let sample = self.onset_sample(onset);
        late += self.apply(sample, Some(&kernel), 1.0);
        let end = self.window_end(sample);
        let kernel = (end > self.final_before).then(|| {
            self.open.insert((end, id));
            kernel
        });
        self.words.insert(id, LiveWord { sample, kernel });
        WordUpdate {
            sample,
            late_samples: late,
        }
    }

    /// Removes word `id`; `None` when no such word is in the timeline.
    pub fn retract(&mut self, id: u64) -> Option<WordUpdate> {
        let old = self.words.remove(&id)?;
        self.open.remove(&(self.window_end(old.sample), id));
        let late = self.apply(old.sample, old.kernel.as_ref(), -1.0);
        Some(WordUpdate {
            sample: old.sample,
            late_samples: late,
        })
    }

    /// Adds `sign ×` `kernel` at onset sample `sample` where the timeline is still open;
    /// returns the number of frozen samples it could not touch. `kernel` may be `None` only
    /// for a word whose window is all frozen.
    fn apply(&mut self, sample: i64, kernel: Option<&WordKernel>, sign: f64) -> usize {
        let (e, lags) = (self.encoder().electrodes, self.encoder().lags);
        let first = sample + self.grid.lag_min();
        let start = first.max(self.final_before).max(self.base);
        let end = first + lags as i64;
        if end <= start {
            return (end - first).max(0) as usize;
        }
        let kernel = kernel.expect("a word's kernel is kept while its window is open");
        self.ensure(end);
        // Only the lags still open are added: from lag j0 on.
        let j0 = (start - first) as usize;
        let stride = self.stride();
        for l in 0..self.encoder().layers {
            let k_l = &kernel.layer(l)[j0 * e..];
            for (t, k) in (start..end).zip(k_l.chunks_exact(e)) {
                let at = (t - self.base) as usize * stride + l * e;
                for (v, &kv) in self.timeline[at..at + e].iter_mut().zip(k) {
                    *v += sign * kv as f64;
                }
            }
        }
        j0
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
        let intercepts = &self.encoder().intercepts;
        for (i, o) in out.iter_mut().enumerate() {
            *o = intercepts[i] as f64 + row.map_or(0.0, |r| r[i]);
        }
    }

    /// Freezes samples before `t`: later word changes no longer touch them, and the
    /// kernels of words whose whole window is frozen are let go.
    pub fn finalise_before(&mut self, t: i64) {
        self.final_before = self.final_before.max(t);
        while let Some(&(end, id)) = self.open.first() {
            if end > self.final_before {
                break;
            }
            self.open.pop_first();
            if let Some(word) = self.words.get_mut(&id) {
                word.kernel = None;
            }
        }
    }

    /// Bytes held: the timeline (allocated capacity) and the words whose window is open,
    /// with their kernels.
    pub fn heap_bytes(&self) -> usize {
        let words: usize = self
            .words
            .values()
            .map(|w| {
                std::mem::size_of::<LiveWord>()
                    + 8
                    + w.kernel.as_ref().map_or(0, WordKernel::heap_bytes)
            })
            .sum();
        self.timeline.capacity() * std::mem::size_of::<f64>()
            + words
            + self.open.len() * std::mem::size_of::<(i64, u64)>()
    }

    /// Forgets predictions before `t` and words whose window ended before it.
    pub fn release_before(&mut self, t: i64) {
        let drop = (t - self.base).max(0) as usize;
        // Drain in large steps so that releasing costs O(1) per sample.
        if drop >= 4096 {
            let n = (drop * self.stride()).min(self.timeline.len());
            self.timeline.drain(..n);
            self.base = t;
            let last_lag = self.grid.lag_min() + self.encoder().lags as i64;
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
    (0..enc.layers)
        .map(|l| predict_offline_layer(enc, l, words, t0, 0..samples))
        .collect()
}

/// Offline prediction of encoder layer `l` over the samples `span` of a
/// recording (as [`predict_offline`]): `[span length, electrodes]`.
pub fn predict_offline_layer(
    enc: &Encoder,
    l: usize,
    words: &[(f64, &[f32])],
    t0: f64,
    span: std::ops::Range<usize>,
) -> Mat<f64> {
    let grid = enc.meta.grid;
    let (pcs, dim, e) = (enc.pcs, enc.dim, enc.electrodes);
    let onsets: Vec<i64> = words
        .iter()
        .map(|(o, _)| grid.onset_sample(*o, t0))
        .collect();
    let mut buf = vec![0.0f32; pcs];
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
    let x = dense_design(span.start as i64, span.end as i64, &z, pcs, &onsets, &grid);
    let w = Mat::<f64>::from_fn(enc.lags * pcs, e, |f, el| {
        enc.weight(l, el, f / pcs, f % pcs) as f64
    });
    let mut y = &x * &w;
    for t in 0..span.len() {
        for el in 0..e {
            y[(t, el)] += enc.intercepts[l * e + el] as f64;
        }
    }
    y
}

/// Kernel values summed in registers at once: two AVX registers of f32.
const BLOCK: usize = 16;

/// One block of a kernel: `k[i] = Σ_p x[p] · w[p, i]` (`w` is `[pcs, BLOCK]`).
fn kernel_block(x: &[f32], w: &[f32], k: &mut [f32; BLOCK]) {
    let mut acc = [0.0f32; BLOCK];
    for (&xp, wp) in x.iter().zip(w.chunks_exact(BLOCK)) {
        for i in 0..BLOCK {
            acc[i] += xp * wp[i];
        }
    }
    *k = acc;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encoders whose kernel sizes are no multiple of [`BLOCK`]: 5 electrodes × 7 lags
    /// (−0.1–0.5 s at 10 Hz), 3 components of a 4-wide embedding, 2 layers; weights and
    /// components from a fixed pattern, identity-like PCA.
    fn encoder() -> Encoder {
        let (layers, electrodes, pcs, dim) = (2, 5, 3, 4);
        let grid = LagGrid {
            tmin: -0.1,
            tmax: 0.5,
            rate: 10.0,
        };
        let mut enc = Encoder::zeros(layers, electrodes, grid.n_lags(), pcs, dim);
        for (i, w) in enc.weights.iter_mut().enumerate() {
            *w = ((i * 37 % 23) as f32 - 11.0) / 7.0;
        }
        for (i, c) in enc.pca_components.iter_mut().enumerate() {
            *c = ((i * 13 % 11) as f32 - 5.0) / 5.0;
        }
        enc.feature_std.iter_mut().for_each(|s| *s = 1.0);
        enc.intercepts = (0..layers * electrodes).map(|i| i as f32 / 10.0).collect();
        enc.meta.grid = grid;
        enc.meta.layers = vec![0, 1];
        enc
    }

    /// Word `w`'s `[layers, dim]` embedding (the model has 2 layers).
    fn embedding(w: usize) -> Vec<f32> {
        (0..8)
            .map(|i| ((w * 7 + i * 3) % 10) as f32 / 3.0 - 1.5)
            .collect()
    }

    /// The prediction at sample `t` from the file's weights, word by word.
    fn direct(enc: &Encoder, words: &[(f64, Vec<f32>)], t: i64) -> Vec<f64> {
        let (pcs, dim, e) = (enc.pcs, enc.dim, enc.electrodes);
        let mut out: Vec<f64> = enc.intercepts.iter().map(|&b| b as f64).collect();
        for (onset, emb) in words {
            let j = t - enc.meta.grid.onset_sample(*onset, 0.0) - enc.meta.grid.lag_min();
            if !(0..enc.lags as i64).contains(&j) {
                continue;
            }
            for l in 0..enc.layers {
                let mut x = vec![0.0; pcs];
                enc.pca(l).project(&emb[l * dim..(l + 1) * dim], &mut x);
                for el in 0..e {
                    out[l * e + el] += (0..pcs)
                        .map(|p| (enc.weight(l, el, j as usize, p) * x[p]) as f64)
                        .sum::<f64>();
                }
            }
        }
        out
    }

    fn assert_close(a: &[f64], b: &[f64], at: i64) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() < 1e-4,
                "sample {at}, value {i}: {x} against {y}"
            );
        }
    }

    #[test]
    fn live_timeline_equals_the_direct_sum_of_word_kernels() {
        let enc = encoder();
        let mut live = Predictor::new(enc.clone(), 0.0);
        let mut out = vec![0.0; live.stride()];
        // Overlapping words, one revised to another embedding and one retracted.
        let mut words = vec![
            (0.3, embedding(0)),
            (0.5, embedding(1)),
            (1.2, embedding(2)),
        ];
        for (id, (onset, emb)) in words.iter().enumerate() {
            live.add_word(id as u64, *onset, live.kernels().kernel(emb));
        }
        live.add_word(1, 0.5, live.kernels().kernel(&embedding(5)));
        words[1].1 = embedding(5);
        live.add_word(9, 0.9, live.kernels().kernel(&embedding(9)));
        assert!(live.retract(9).is_some());
        for t in -2..25 {
            live.predicted(t, &mut out);
            assert_close(&out, &direct(&enc, &words, t), t);
        }
    }

    #[test]
    fn a_late_revision_changes_only_the_samples_still_open() {
        let enc = encoder();
        let mut live = Predictor::new(enc.clone(), 0.0);
        let mut out = vec![0.0; live.stride()];
        live.add_word(7, 1.0, live.kernels().kernel(&embedding(0))); // samples 9..16
        live.finalise_before(12);
        let up = live.add_word(7, 1.0, live.kernels().kernel(&embedding(4)));
        // Samples 9, 10 and 11 were frozen, for the old kernel's removal and the new one's.
        assert_eq!(up.late_samples, 6);
        let (old, new) = ([(1.0, embedding(0))], [(1.0, embedding(4))]);
        for t in 8..18 {
            live.predicted(t, &mut out);
            let want = direct(&enc, if t < 12 { &old } else { &new }, t);
            assert_close(&out, &want, t);
        }
    }

    #[test]
    fn a_word_whose_window_is_final_lets_its_kernel_go_and_still_counts_late() {
        let enc = encoder();
        let mut live = Predictor::new(enc.clone(), 0.0);
        let mut out = vec![0.0; live.stride()];
        live.add_word(3, 1.0, live.kernels().kernel(&embedding(2))); // samples 9..16
        live.add_word(4, 2.0, live.kernels().kernel(&embedding(3))); // samples 19..26
        live.finalise_before(16);
        assert!(live.words[&3].kernel.is_none());
        assert!(live.words[&4].kernel.is_some());
        // Retracting the closed word changes nothing and counts its whole window late.
        assert_eq!(live.retract(3).map(|up| up.late_samples), Some(7));
        for t in 16..30 {
            live.predicted(t, &mut out);
            assert_close(&out, &direct(&enc, &[(2.0, embedding(3))], t), t);
        }
    }

    #[test]
    #[should_panic(expected = "own encoders")]
    fn a_kernel_of_other_encoders_is_refused() {
        let mut live = Predictor::new(encoder(), 0.0);
        let other = Arc::new(KernelEncoder::new(encoder()));
        live.add_word(1, 0.5, other.kernel(&embedding(1)));
    }
}
