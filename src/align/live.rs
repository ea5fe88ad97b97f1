//! The live alignment engine: neural samples and transcript events go in, in
//! whatever order they arrive; every sample up to the horizon is scored once,
//! in order, against the prediction built from the words known by then.
use super::rolling::{flat, EwPearson, RollingPearson};
use super::{AlignConfig, Summary, WordScore};
use crate::encode::{ChannelMap, Encoder, KernelEncoder, Predictor, WordKernel};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Counts of input that could not be used as intended.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveCounts {
    /// Words, revisions and retractions that touched already-scored samples.
    pub late_word_events: u64,
    /// Samples of word responses lost because they were already scored.
    pub late_samples: u64,
    /// Retractions of unknown word ids.
    pub unknown_retractions: u64,
    /// Neural samples with the wrong channel count.
    pub bad_neural_samples: u64,
    /// Samples scored before the transcript reached them (see [`Live::expire_before`]).
    pub scored_before_words: u64,
}

/// Live predicted-versus-actual alignment for one neural stream.
pub struct Live {
    cfg: AlignConfig,
    predictor: Predictor,
    map: ChannelMap,
    layers: usize,
    electrodes: usize,
    /// Selected for the summary: max cv r over layers passes the threshold.
    selected: Vec<bool>,
    /// Per electrode, the live threshold of the rolling r at the peak calibrated at fit
    /// time for this window; empty when the encoder file has none for it.
    null_threshold: Vec<f64>,
    /// z-scored actual high-gamma `[samples, electrodes]` from `actual_base`.
    actual: Vec<f64>,
    actual_base: i64,
    received: i64,
    /// Transcript watermark as a sample bound: no word can start before it.
    transcript_sample: i64,
    scored: i64,
    rolling: RollingPearson,
    ew: EwPearson,
    chance: RollingPearson,
    chance_shift: i64,
    /// Samples before this are scored without waiting longer for their words.
    expired: i64,
    /// First samples of segments announced and not yet reached (ascending).
    segment_starts: VecDeque<i64>,
    /// Segment boundaries the scoring has crossed.
    segments: u64,
    /// Words awaiting their word-level score, by window end then id.
    pending: BTreeMap<(i64, u64), f64>,
    /// Window end of each pending word, so a revision finds its entry in O(log n).
    pending_end: HashMap<u64, i64>,
    /// Word-level scores not yet taken; `None` unless asked for ([`Live::with_word_scores`]).
    word_scores: Option<Vec<WordScore>>,
    counts: LiveCounts,
    pred_row: Vec<f64>,
    shifted_row: Vec<f64>,
    /// Predictions over one word's window, `[samples, layers × electrodes]`.
    word_window: Vec<f64>,
}

impl Live {
    /// Aligns `enc` (already bound to the stream, see [`Encoder::bind`]) on a
    /// stream whose first sample is at `t0`.
    pub fn new(enc: Encoder, map: ChannelMap, t0: f64, cfg: AlignConfig) -> Self {
        let rate = enc.meta.grid.rate;
        let (layers, electrodes) = (enc.layers, enc.electrodes);
        let pairs = layers * electrodes;
        let selected = (0..electrodes)
            .map(|e| (0..layers).any(|l| enc.cv_r[l * electrodes + e] as f64 >= cfg.cv_threshold))
            .collect();
        let window = (cfg.window_s * rate).round() as usize;
        let null_threshold = calibrated_thresholds(&enc, window);
        Self {
            null_threshold,
            rolling: RollingPearson::new(window, pairs, electrodes),
            ew: EwPearson::new(cfg.ew_tau_s * rate, pairs, electrodes),
            chance: RollingPearson::new(window, pairs, electrodes),
            chance_shift: (cfg.chance_shift_s * rate).round().max(1.0) as i64,
            expired: 0,
            predictor: Predictor::new(enc, t0),
            map,
            layers,
            electrodes,
            selected,
            actual: Vec::new(),
            actual_base: 0,
            received: 0,
            transcript_sample: i64::MIN,
            scored: 0,
            segment_starts: VecDeque::new(),
            segments: 0,
            pending: BTreeMap::new(),
            pending_end: HashMap::new(),
            word_scores: None,
            counts: LiveCounts::default(),
            pred_row: vec![0.0; pairs],
            shifted_row: vec![0.0; pairs],
            word_window: Vec::new(),
            cfg,
        }
    }

    /// Also computes each word's word-level r, to be taken with [`Live::take_word_scores`].
    /// Off by default: the server has no consumer for it, and scores nobody takes would
    /// grow with the session.
    pub fn with_word_scores(mut self) -> Self {
        self.word_scores = Some(Vec::new());
        self
    }

    /// The encoder in use.
    pub fn encoder(&self) -> &Encoder {
        self.predictor.encoder()
    }

    /// The encoders that compute the kernels [`Live::word`] takes (share them with a thread
    /// that computes kernels off the scoring path).
    pub fn kernels(&self) -> &Arc<KernelEncoder> {
        self.predictor.kernels()
    }

    /// One neural sample with all stream channels (mapped to electrodes by
    /// the channel map and z-scored with the encoder's statistics).
    pub fn push_neural(&mut self, row: &[f32]) {
        if self.map.stream_index.iter().any(|&i| i >= row.len()) {
            self.counts.bad_neural_samples += 1;
            return;
        }
        let enc = self.predictor.encoder();
        for (e, &i) in self.map.stream_index.iter().enumerate() {
            let z = (row[i] - enc.neural_mean[e]) as f64 / enc.neural_std[e] as f64;
            self.actual.push(z);
        }
        self.received += 1;
    }

    /// A word or a revision of word `id`, with its kernels (from [`Live::kernels`]).
    pub fn word(&mut self, id: u64, onset: f64, kernel: WordKernel) {
        self.forget_pending(id);
        let up = self.predictor.add_word(id, onset, kernel);
        self.note_late(up.late_samples);
        if self.word_scores.is_some() {
            let end = up.sample + self.encoder().meta.grid.lag_min() + self.encoder().lags as i64;
            self.pending.insert((end, id), onset);
            self.pending_end.insert(id, end);
        }
    }

    /// Drops word `id`'s pending word-level score, if any.
    fn forget_pending(&mut self, id: u64) {
        if let Some(end) = self.pending_end.remove(&id) {
            self.pending.remove(&(end, id));
        }
    }

    /// Word `id` was wrong: its prediction is removed.
    pub fn retract(&mut self, id: u64) {
        self.forget_pending(id);
        match self.predictor.retract(id) {
            Some(up) => self.note_late(up.late_samples),
            None => self.counts.unknown_retractions += 1,
        }
    }

    fn note_late(&mut self, samples: usize) {
        if samples > 0 {
            self.counts.late_word_events += 1;
            self.counts.late_samples += samples as u64;
        }
    }

    /// No word will start before `time` (seconds).
    pub fn transcript_watermark(&mut self, time: f64) {
        let s = self.predictor.onset_sample(time);
        self.transcript_sample = self.transcript_sample.max(s);
    }

    /// A new segment starts at `time` (seconds): the rolling, exponentially weighted and
    /// chance statistics restart at its first sample, so that they never mix segments. A
    /// boundary already scored past restarts them at the next sample.
    pub fn segment(&mut self, time: f64) {
        let s = self.predictor.onset_sample(time).max(self.scored);
        let at = self.segment_starts.partition_point(|&b| b <= s);
        self.segment_starts.insert(at, s);
    }

    /// Bytes held for the session as it goes: the prediction timeline with the kernels of
    /// open words, the actual samples not yet released, the rolling windows, pending words.
    pub fn heap_bytes(&self) -> usize {
        let f64s = std::mem::size_of::<f64>();
        self.predictor.heap_bytes()
            + self.actual.capacity() * f64s
            + self.rolling.heap_bytes()
            + self.chance.heap_bytes()
            + (self.pending.len() + self.pending_end.len()) * 3 * f64s
            + self.word_window.capacity() * f64s
    }

    /// Segment boundaries the scoring has crossed so far.
    pub fn segments(&self) -> u64 {
        self.segments
    }

    /// Samples before the horizon are scored: the neural sample has arrived and either no
    /// word with onset in `(t − tmax, t − tmin]` can still arrive or the sample has waited
    /// for them as long as it may ([`Live::expire_before`]).
    pub fn horizon(&self) -> i64 {
        self.received.min(self.words_final().max(self.expired))
    }

    /// Samples before `sample` have waited for the transcript as long as they may (the
    /// server's `[align] max_wait_s`, in its own time): they are scored with the words known
    /// now (counted in [`LiveCounts::scored_before_words`]); a word that arrives for them
    /// later is late.
    pub fn expire_before(&mut self, sample: i64) {
        self.expired = self.expired.max(sample);
    }

    /// Samples before this have every word that can predict them.
    fn words_final(&self) -> i64 {
        let lag_min = self.encoder().meta.grid.lag_min();
        self.transcript_sample.saturating_add(lag_min)
    }

    /// The next unscored sample (everything before it has been scored).
    pub fn scored(&self) -> i64 {
        self.scored
    }

    /// Scores the next sample if it is final; returns its index.
    pub fn advance_one(&mut self) -> Option<i64> {
        let t = self.scored;
        if t >= self.horizon() {
            return None;
        }
        if t >= self.words_final() {
            self.counts.scored_before_words += 1;
        }
        if self.segment_starts.front().is_some_and(|&b| b <= t) {
            while self.segment_starts.front().is_some_and(|&b| b <= t) {
                self.segment_starts.pop_front();
            }
            self.rolling.reset();
            self.ew.reset();
            self.chance.reset();
            self.segments += 1;
        }
        self.predictor.finalise_before(t + 1);
        self.predictor.predicted(t, &mut self.pred_row);
        let e = self.electrodes;
        let at = (t - self.actual_base) as usize * e;
        let act = &self.actual[at..at + e];
        self.rolling.push(&self.pred_row, act);
        self.ew.push(&self.pred_row, act);
        if t >= self.chance_shift {
            self.predictor
                .predicted(t - self.chance_shift, &mut self.shifted_row);
            self.chance.push(&self.shifted_row, act);
        }
        self.scored = t + 1;
        self.score_words();
        self.release();
        Some(t)
    }

    /// Scores every final sample; returns how many.
    pub fn advance(&mut self) -> usize {
        std::iter::from_fn(|| self.advance_one()).count()
    }

    /// Word-level r: predicted against actual over each word's lag window,
    /// once the whole window is scored.
    fn score_words(&mut self) {
        let lags = self.encoder().lags as i64;
        let e = self.electrodes;
        while let Some((&(end, id), &onset)) = self.pending.first_key_value() {
            if end > self.scored {
                break;
            }
            self.pending.pop_first();
            self.pending_end.remove(&id);
            let start = (end - lags).max(self.actual_base);
            if end - start < 2 {
                continue; // the window lies before the first neural sample
            }
            let (n, pairs) = ((end - start) as usize, self.layers * e);
            self.word_window.resize(n * pairs, 0.0);
            for (row, t) in self.word_window.chunks_exact_mut(pairs).zip(start..end) {
                self.predictor.predicted(t, row);
            }
            let act = &self.actual
                [(start - self.actual_base) as usize * e..(end - self.actual_base) as usize * e];
            let r = columns_r(&self.word_window, act, e);
            if let Some(scores) = self.word_scores.as_mut() {
                scores.push(WordScore { id, onset, r });
            }
        }
    }

    /// Drops history no longer needed (chance shift, word windows, margin).
    fn release(&mut self) {
        let keep = self
            .chance_shift
            .max(self.encoder().lags as i64 + self.encoder().meta.grid.lag_min().abs());
        let t = self.scored - keep - 1;
        self.predictor.release_before(t);
        if t - self.actual_base >= 4096 {
            let n = (t - self.actual_base) as usize * self.electrodes;
            self.actual.drain(..n);
            self.actual_base = t;
        }
    }

    /// The prediction (`[layers, electrodes]`) at the last scored sample.
    pub fn last_prediction(&self) -> &[f64] {
        &self.pred_row
    }

    /// Word scores since the last call (none unless [`Live::with_word_scores`]).
    pub fn take_word_scores(&mut self) -> Vec<WordScore> {
        self.word_scores
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Rolling-window r per `[layer, electrode]`.
    pub fn rolling_r(&self) -> Vec<f64> {
        self.rolling.r_all()
    }

    /// Exponentially weighted r per `[layer, electrode]`.
    pub fn ew_r(&self) -> Vec<f64> {
        self.ew.r_all()
    }

    /// Rolling r of the time-shifted prediction per `[layer, electrode]`.
    pub fn chance_r(&self) -> Vec<f64> {
        self.chance.r_all()
    }

    /// Counts of late or unusable input.
    pub fn counts(&self) -> LiveCounts {
        self.counts
    }

    /// Peak layer (index into the encoder's layers) per electrode by rolling r.
    pub fn peak_layers(&self) -> Vec<usize> {
        super::peak_layers(&self.rolling_r(), self.layers, self.electrodes)
    }

    /// Per electrode, the threshold of the rolling r at the peak that an electrode with no
    /// response passes with probability `live_alpha` (calibrated at fit time); empty when
    /// the encoder file has no calibration for this window.
    pub fn null_threshold(&self) -> &[f64] {
        &self.null_threshold
    }

    /// Per electrode, whether the rolling r at the peak (the maximum over layers) passes
    /// its threshold, given `rolling` = [`Self::rolling_r`] (the caller has it already); all
    /// false until the window is full (the threshold holds for a full window only), empty
    /// when uncalibrated.
    pub fn significant(&self, rolling: &[f64]) -> Vec<bool> {
        if self.null_threshold.is_empty() {
            return Vec::new();
        }
        if !self.window_full() {
            return vec![false; self.electrodes];
        }
        let e = self.electrodes;
        let peaks = super::peak_layers(rolling, self.layers, e);
        (0..e)
            .map(|k| rolling[peaks[k] * e + k] > self.null_threshold[k])
            .collect()
    }

    /// Whether the rolling window holds its full `window` samples (it is shorter after the
    /// start and after each segment boundary).
    pub fn window_full(&self) -> bool {
        self.rolling.len() >= self.rolling.window()
    }

    /// Summary over the electrodes whose cross-validated r passes the threshold.
    pub fn summary(&self) -> Summary {
        Summary::new(
            &self.rolling_r(),
            &self.chance_r(),
            &self.selected,
            self.layers,
        )
    }

    /// The configuration in use.
    pub fn config(&self) -> &AlignConfig {
        &self.cfg
    }
}

/// The encoder file's live thresholds when they were calibrated for a window of
/// `window` samples and cover every electrode; otherwise none (with a warning when
/// they exist for another window).
fn calibrated_thresholds(enc: &Encoder, window: usize) -> Vec<f64> {
    let Some(stats) = &enc.meta.statistics else {
        return Vec::new();
    };
    let Some(live) = &stats.live else {
        return Vec::new();
    };
    if live.window != window {
        tracing::warn!(
            "live significance off: the encoders were calibrated for a {}-sample window, this server uses {window}; refit or set align.window_s to match",
            live.window
        );
        return Vec::new();
    }
    stats
        .electrodes
        .iter()
        .map(|el| el.live_threshold)
        .collect::<Option<Vec<f64>>>()
        .unwrap_or_default()
}

/// Pearson r of every column of `pred` (`[samples, pairs]`) with its electrode's column of
/// `act` (`[samples, electrodes]`; pair `i` against electrode `i % electrodes`), as
/// [`super::offline::pearson`] computes it, in two passes over the rows in memory order
/// (column by column, 51 strided rows per pair made a word's score take milliseconds).
fn columns_r(pred: &[f64], act: &[f64], electrodes: usize) -> Vec<f32> {
    let n = act.len() / electrodes;
    let pairs = pred.len() / n.max(1);
    let rows = || pred.chunks_exact(pairs).zip(act.chunks_exact(electrodes));
    let (mut mx, mut my) = (vec![0.0; pairs], vec![0.0; electrodes]);
    for (p, a) in rows() {
        mx.iter_mut().zip(p).for_each(|(m, &x)| *m += x);
        my.iter_mut().zip(a).for_each(|(m, &y)| *m += y);
    }
    mx.iter_mut().chain(&mut my).for_each(|m| *m /= n as f64);
    let (mut sxy, mut sxx, mut syy) = (vec![0.0; pairs], vec![0.0; pairs], vec![0.0; electrodes]);
    for (p, a) in rows() {
        for (layer, x) in p.chunks_exact(electrodes).enumerate() {
            let at = layer * electrodes;
            for k in 0..electrodes {
                let (dx, dy) = (x[k] - mx[at + k], a[k] - my[k]);
                sxy[at + k] += dx * dy;
                sxx[at + k] += dx * dx;
            }
        }
        for k in 0..electrodes {
            syy[k] += (a[k] - my[k]) * (a[k] - my[k]);
        }
    }
    (0..pairs)
        .map(|i| {
            let k = i % electrodes;
            let (msx, msy) = (
                sxx[i] + n as f64 * mx[i] * mx[i],
                syy[k] + n as f64 * my[k] * my[k],
            );
            if n < 2 || flat(sxx[i], msx) || flat(syy[k], msy) {
                f32::NAN
            } else {
                (sxy[i] / (sxx[i] * syy[k]).sqrt()) as f32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::offline::pearson;

    #[test]
    fn columns_r_equals_pearson_of_each_column() {
        let (n, e, pairs) = (9, 3, 6);
        let act: Vec<f64> = (0..n * e).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
        let mut pred: Vec<f64> = (0..n * pairs)
            .map(|i| act[(i / pairs) * e + i % e] * 0.5 + ((i * 11) % 7) as f64)
            .collect();
        (0..n).for_each(|t| pred[t * pairs + 4] = 1.5); // a constant column: NaN
        let r = columns_r(&pred, &act, e);
        for i in 0..pairs {
            let want = pearson(
                (0..n).map(|t| pred[t * pairs + i]),
                (0..n).map(|t| act[t * e + i % e]),
            ) as f32;
            assert!(
                (r[i] - want).abs() < 1e-6 || (r[i].is_nan() && want.is_nan()),
                "pair {i}: {} vs {want}",
                r[i]
            );
        }
        assert!(r[4].is_nan());
    }

    /// One layer, two electrodes, lags 0–0.3 s at 10 Hz, every weight 1.
    fn small_live() -> Live {
        let grid = crate::encode::LagGrid {
            tmin: 0.0,
            tmax: 0.3,
            rate: 10.0,
        };
        let mut enc = Encoder::zeros(1, 2, grid.n_lags(), 1, 2);
        enc.pca_components.iter_mut().for_each(|c| *c = 1.0);
        enc.feature_std.iter_mut().for_each(|s| *s = 1.0);
        enc.weights.iter_mut().for_each(|w| *w = 1.0);
        enc.meta.grid = grid;
        enc.meta.layers = vec![0];
        let map = ChannelMap {
            stream_index: vec![0, 1],
        };
        Live::new(enc, map, 0.0, AlignConfig::default())
    }

    /// A session's worth of words leaves nothing behind unless word-level scores were asked
    /// for (the server does not ask: nothing would take them), and then one per word.
    #[test]
    fn word_scores_are_kept_only_when_asked_for() {
        let run = |keep: bool| {
            let live = small_live();
            let mut live = if keep { live.with_word_scores() } else { live };
            for t in 0..2000u64 {
                if t % 10 == 0 {
                    let kernel = live.kernels().kernel(&[1.0, -1.0]);
                    live.word(t / 10, t as f64 / 10.0 + 0.05, kernel);
                    live.transcript_watermark(t as f64 / 10.0 + 0.05);
                }
                live.push_neural(&[(t % 7) as f32, (t % 3) as f32]);
                live.advance();
            }
            (live.pending.len(), live.take_word_scores().len())
        };
        assert_eq!(run(false), (0, 0));
        let (pending, scored) = run(true);
        assert!(
            scored >= 195 && pending + scored == 200,
            "{pending} + {scored}"
        );
    }

    /// With no transcript, samples expired by the caller (20 samples behind the newest, as
    /// the core expires those `max_wait_s` old) are scored and counted; the rows held stay
    /// bounded, and a word that arrives for scored samples is counted late.
    #[test]
    fn expired_samples_are_scored_without_their_words_and_counted() {
        let mut live = small_live();
        let mut held = 0;
        for t in 0..600 {
            live.push_neural(&[t as f32, 1.0]);
            live.expire_before(live.received - 20);
            live.advance();
            held = held.max(live.received - live.scored);
        }
        assert_eq!(held, 20, "a sample waits 20 samples at most");
        assert_eq!(live.scored(), 580);
        assert_eq!(live.counts().scored_before_words, 580);
        assert!(
            live.actual.len() <= (4096 + 20 + 60) * 2,
            "{}",
            live.actual.len()
        );

        let kernel = live.kernels().kernel(&[1.0, -1.0]);
        live.word(1, 50.0, kernel);
        assert_eq!(
            live.counts().late_word_events,
            1,
            "a word for scored samples is late"
        );
        // once the transcript catches up, samples are scored as soon as they are final again
        live.transcript_watermark(f64::INFINITY);
        live.push_neural(&[0.0, 1.0]);
        assert_eq!(live.advance(), 21);
        assert_eq!(live.counts().scored_before_words, 580);
    }
}
