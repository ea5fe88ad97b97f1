//! The core loop: neural chunks (through causal high-gamma in raw mode) and embedded words
//! (their kernels computed on the encode thread) go into [`Live`], one per language model on
//! the same neural rows; every sample that passes a model's horizon is scored once and its
//! predicted and actual values are queued for that model's `trace`; `alignment` (per model)
//! and `status` go out at their rates.
//!
//! A neural stream the encoders do not fit (another rate, missing electrodes) stops nothing:
//! it is recorded, the mismatch is logged and reported in the status (`neural_mismatch` and
//! the neural stream's `error`), and alignment starts once a fitting stream appears.
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use super::encode_thread::{Binding, EncodeThread, Encoded};
use super::lm_thread::{LmOutput, LmThread};
use super::outlets::OutletTx;
use super::recorder::{Record, RecordTx};
use super::results::Results;
use super::PipelineReport;
use crate::align::{AlignConfig, Live};
use crate::dsp::{HighGamma, HighGammaConfig};
use crate::encode::{Encoder, WordKernel};
use crate::ingest::{
    AudioInlet, LinkState, NeuralChunk, NeuralInlet, NeuralMode, StreamMeta, TranscriptInlet,
    TranscriptStatus,
};
use crate::metrics::{Stage, StageLatency, StageSet};
use crate::pipeline::Config;
use crate::serve::frames::{ModelStatus, ModelTag, SessionModel};
use crate::serve::{
    AlignmentUpdate, ElectrodeInfo, Frame, Hub, PipelineStatus, Rates, Session, StreamStatus,
    TraceChunk, WordEvent, WordStatus,
};

/// Most language-model outputs kept while no neural stream is bound (embeddings of every
/// layer, ~70 kB a word with the default model); older ones are dropped and counted.
const EARLY_KEPT: usize = 1024;

/// Due times of the last frames kept to find the frame a late sample was due for (3 s at
/// 20 frames/s; a sample held back longer counts from the oldest of them).
const DUES_KEPT: usize = 64;

/// The alignment engines once the neural stream is known.
struct Bound {
    /// The stream it is bound to.
    stream: StreamMeta,
    /// Causal high-gamma of a raw stream.
    high_gamma: Option<HighGamma>,
    /// Time of high-gamma sample 0, server clock.
    t0: f64,
    rate: f64,
    /// Next grid index of the neural stream (high-gamma mode: gap filling).
    next_index: u64,
    /// Last row pushed; it stands in for missing samples.
    last_row: Vec<f32>,
    /// Each model's alignment, in session order.
    models: Vec<ModelBound>,
}

/// One model's alignment on the bound stream.
struct ModelBound {
    live: Live,
    /// Stream channel of each electrode, and the encoder's z-scoring.
    stream_index: Vec<usize>,
    neural_mean: Vec<f32>,
    neural_std: Vec<f32>,
    /// z-scored actual rows `[electrodes]` from sample `actual_base` on, kept until scored.
    actual: VecDeque<Vec<f32>>,
    /// Server arrival (LSL pull of its chunk, server clock) of each row in `actual`.
    arrivals: VecDeque<f64>,
    actual_base: i64,
    trace: TraceBuffer,
}

/// The pipeline's inlets, for their status.
pub(super) struct Inlets<'a> {
    /// The neural stream's.
    pub neural: &'a NeuralInlet,
    /// The transcript's.
    pub transcript: &'a TranscriptInlet,
    /// The audio's, when `[recording] audio` names a stream.
    pub audio: Option<&'a AudioInlet>,
}

/// One language model as the core loop knows it: its encoders and what waits for them.
pub(super) struct Model {
    /// Its name and hash, as frames name it.
    tag: ModelTag,
    /// The encoders as loaded; each stream gets its own binding of them.
    encoder: Encoder,
    /// Where its encode thread finds the bound encoders.
    binding: Binding,
    /// Outputs its encode thread dropped (the core loop's queue was full).
    encode_dropped: Arc<AtomicU64>,
    /// Words received before the neural stream, applied once it is bound.
    early: Vec<LmOutput>,
    early_dropped: u64,
    /// Words it embedded.
    words: u64,
    /// Latency of its LM steps (the pooled `lm_step` stage is every model's).
    lm_step: StageLatency,
}

impl Model {
    /// A model whose encoders (checked against its hash) are `encoder`, fed by `encode`.
    pub fn new(tag: ModelTag, encoder: Encoder, encode: &EncodeThread) -> Self {
        Self {
            tag,
            encoder,
            binding: encode.binding.clone(),
            encode_dropped: encode.dropped.clone(),
            early: Vec::new(),
            early_dropped: 0,
            words: 0,
            lm_step: StageLatency::new(),
        }
    }
}

/// Scored samples waiting for the next `trace` frame.
struct TraceBuffer {
    first: Option<i64>,
    /// Earliest time (server clock) one of its samples was ready to be scored: the later of
    /// its neural arrival and the arrival of the watermark that made it final.
    oldest_ready: f64,
    samples: usize,
    /// `[electrode][sample]`.
    actual: Vec<Vec<f32>>,
    /// `[electrode][layer][sample]`.
    predicted: Vec<Vec<f32>>,
}

/// The core loop's state.
pub(super) struct Core {
    hub: Hub,
    /// The language models, in session order.
    models: Vec<Model>,
    /// Transcript updates the fan-out to the models' LM threads dropped.
    fan_out_dropped: Arc<AtomicU64>,
    allow_subset: bool,
    mode: NeuralMode,
    high_gamma_cfg: HighGammaConfig,
    align: AlignConfig,
    alignment_every: Duration,
    status_every: Duration,
    record: Option<RecordTx>,
    /// The results outlets' queue.
    outlets: Option<OutletTx>,
    /// Each model's results streams (recording and outlets, when either is on), in session
    /// order, once the encoders are bound.
    results: Vec<Results>,
    bound: Option<Bound>,
    /// The inlet connection the last chunk came from.
    connection: Option<u64>,
    /// Why the current neural stream cannot be aligned, and how many streams could not.
    mismatch: Option<String>,
    mismatches: u64,
    /// Non-finite high-gamma values received (held at the channel's last value).
    nonfinite: u64,
    gap_filled: u64,
    /// When the last [`DUES_KEPT`] `trace`/`alignment` frames were due (server clock).
    dues: VecDeque<f64>,
}

impl Core {
    /// The core loop of `models`, whose transcript fan-out (two or more models) counts the
    /// updates it dropped in `fan_out_dropped`.
    pub fn new(
        config: &Config,
        models: Vec<Model>,
        fan_out_dropped: Arc<AtomicU64>,
        hub: Hub,
        (record, outlets): (Option<RecordTx>, Option<OutletTx>),
    ) -> Self {
        let every = |hz: f64| Duration::from_secs_f64(1.0 / hz.clamp(0.1, 1000.0));
        Self {
            hub,
            models,
            fan_out_dropped,
            allow_subset: config.encoders.allow_subset,
            mode: config.neural.mode,
            high_gamma_cfg: config.high_gamma.clone(),
            align: config.align.clone(),
            alignment_every: every(config.pipeline.alignment_hz),
            status_every: every(config.pipeline.status_hz),
            record,
            outlets,
            results: Vec::new(),
            bound: None,
            connection: None,
            mismatch: None,
            mismatches: 0,
            nonfinite: 0,
            gap_filled: 0,
            dues: VecDeque::new(),
        }
    }

    /// Runs until `shutdown` (or until both inputs are gone); `lm` holds each model's LM
    /// thread, in session order.
    pub fn run(
        mut self,
        inlets: Inlets<'_>,
        neural_rx: Receiver<NeuralChunk>,
        words_rx: Receiver<Encoded>,
        lm: &[LmThread],
        shutdown: &AtomicBool,
    ) -> anyhow::Result<PipelineReport> {
        let neural = inlets.neural;
        let (mut next_alignment, mut next_status) = (Instant::now(), Instant::now());
        while !shutdown.load(Ordering::Relaxed) {
            // wake when a frame is due, so that it goes out on time without new input
            let wait = next_alignment
                .min(next_status)
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(20));
            select! {
                recv(neural_rx) -> chunk => match chunk {
                    Ok(chunk) => self.neural_chunk(neural, chunk),
                    Err(_) => break,
                },
                recv(words_rx) -> out => if let Ok(out) = out { self.lm_output(out) },
                default(wait) => {}
            }
            self.expire_waiting_rows();
            let now = Instant::now();
            if now >= next_alignment {
                // a frame carries every sample that arrived before it went out
                for chunk in neural_rx.try_iter().take(neural_rx.len()) {
                    self.neural_chunk(neural, chunk);
                }
                self.publish_alignment(next_alignment);
                next_alignment = now + self.alignment_every;
            }
            if now >= next_status {
                next_status = now + self.status_every;
                let _ = self.hub.publish(Frame::Status(self.status(&inlets, lm)));
            }
        }
        self.publish_alignment(Instant::now());
        let status = self.status(&inlets, lm);
        let _ = self.hub.publish(Frame::Status(status.clone()));
        Ok(PipelineReport {
            scored_samples: self.bound.as_ref().map_or(0, Bound::scored),
            words: self.models[0].words,
            recording: None,
            drops: status.drops,
        })
    }

    /// Scores the rows that have waited `[align] max_wait_s` for the transcript since they
    /// arrived with the words known now (counted), so that a transcript or a language model
    /// that falls behind cannot hold them without end.
    fn expire_waiting_rows(&mut self) {
        let Some(b) = self.bound.as_mut() else {
            return;
        };
        let limit = lsl::local_clock() - self.align.max_wait_s;
        for m in &mut b.models {
            let waited = m.arrivals.partition_point(|&arrival| arrival <= limit);
            if waited > 0 {
                m.live.expire_before(m.actual_base + waited as i64);
                m.advance(&self.hub.metrics().stages, f64::NEG_INFINITY);
            }
        }
    }

    /// One neural chunk, binding the encoders afresh when it comes from another stream.
    fn neural_chunk(&mut self, neural: &NeuralInlet, chunk: NeuralChunk) {
        if self.connection != Some(chunk.connection) {
            self.connection = Some(chunk.connection);
            if let Some(meta) = neural.stream_of(chunk.connection) {
                self.neural_stream(meta, &chunk);
            }
        }
        self.neural(chunk);
    }

    /// A (re)connected stream's first chunk: the same stream goes on where it was; another
    /// one is recorded and the encoders are bound to it afresh (a new `hello`), or, when they
    /// do not fit it, the mismatch is reported and the stream is only recorded.
    fn neural_stream(&mut self, meta: StreamMeta, first: &NeuralChunk) {
        if self.bound.as_ref().is_some_and(|b| b.stream == meta) {
            return; // re-resolved: same grid, the outage is a gap
        }
        if self.bound.take().is_some() {
            for model in &self.models {
                model.binding.set(None);
            }
            self.results.clear();
            tracing::warn!(stream = %meta.summary.name, "the neural stream changed; binding the encoders afresh");
        }
        let channels = meta.summary.channels;
        let labels = if meta.labels.len() == channels {
            meta.labels.clone()
        } else {
            (1..=channels).map(|i| format!("ch{i}")).collect()
        };
        if let Some(record) = &self.record {
            let info = crate::xdf::StreamInfo::with_labels(
                &meta.summary.name,
                &meta.summary.kind,
                meta.summary.rate,
                crate::xdf::ChannelFormat::Float32,
                &meta.summary.source_id,
                labels.clone(),
            );
            record.send(Record::NeuralStream(info));
        }
        let high_gamma = match self.mode {
            NeuralMode::Raw => {
                match HighGamma::new(channels, meta.summary.rate, &self.high_gamma_cfg) {
                    Ok(hg) => Some(hg),
                    Err(err) => {
                        self.mismatch(
                            &meta,
                            format!("no high-gamma from it ({err}); check [high_gamma]"),
                        );
                        return;
                    }
                }
            }
            NeuralMode::HighGamma => None,
        };
        let rate = high_gamma
            .as_ref()
            .map_or(meta.summary.rate, HighGamma::output_rate);
        let bound: Result<Vec<_>, _> = (self.models.iter())
            .map(|m| {
                (m.encoder
                    .bind(&m.tag.sha256, rate, &labels, self.allow_subset))
                .map_err(|err| format!("the encoders of {} do not fit it: {err}", m.tag.name))
            })
            .collect();
        let bound = match bound {
            Ok(bound) => bound,
            Err(why) => {
                self.mismatch(&meta, why);
                return;
            }
        };
        self.mismatch = None;
        // every model's encoders are on the same electrodes (checked at start)
        let (encoder, map) = &bound[0];
        let mut layers: Vec<usize> = (bound.iter())
            .flat_map(|(e, _)| e.meta.layers.iter().copied())
            .collect();
        layers.sort_unstable();
        layers.dedup();
        let mut session = Session {
            electrodes: encoder.meta.labels.clone(),
            layers,
            model: self.models[0].tag.name.clone(),
            models: Vec::new(),
            rates: Rates {
                neural_hz: meta.summary.rate,
                high_gamma_hz: rate,
                alignment_hz: 1.0 / self.alignment_every.as_secs_f64(),
            },
            horizon: None,
            window_s: self.align.window_s,
            electrode_info: match meta.channels.is_empty() {
                true => Vec::new(),
                false => map
                    .stream_index
                    .iter()
                    .map(|&i| ElectrodeInfo::from_meta(&meta.channels[i]))
                    .collect(),
            },
            bad_channels: meta
                .channels
                .iter()
                .filter(|c| c.bad)
                .map(|c| c.label.clone())
                .collect(),
            recording: self.record.as_ref().map(|r| r.path().display().to_string()),
            null_threshold: Vec::new(),
        };
        // Live's sample 0 is the first sample; word onsets are placed relative to it
        let t0 = first.timestamps[0] - high_gamma.as_ref().map_or(0.0, HighGamma::group_delay_s);
        let models: Vec<ModelBound> = (bound.into_iter())
            .map(|(encoder, map)| ModelBound::new(encoder, map, t0, &self.align))
            .collect();
        session.models = (self.models.iter().zip(&models))
            .map(|(model, bound)| SessionModel {
                tag: model.tag.clone(),
                layers: bound.live.encoder().meta.layers.clone(),
                null_threshold: (bound.live.null_threshold().iter())
                    .map(|&v| v as f32)
                    .collect(),
            })
            .collect();
        session.null_threshold = session.models[0].null_threshold.clone();
        let mut bound = Bound {
            stream: meta,
            high_gamma,
            t0,
            rate,
            next_index: first.first_index,
            last_row: Vec::new(),
            models,
        };
        if self.record.is_some() || self.outlets.is_some() {
            self.results = (session.models.iter().enumerate())
                .map(|(m, model)| {
                    Results::new(
                        (self.record.clone(), self.outlets.clone()),
                        (m, model.tag.clone()),
                        session.electrodes.clone(),
                        model.layers.clone(),
                        (session.rates.alignment_hz, session.window_s),
                    )
                })
                .collect();
        }
        self.hub.set_session(session);
        for (m, model) in self.models.iter_mut().enumerate() {
            let mb = &mut bound.models[m];
            model.binding.set(Some(mb.live.kernels().clone()));
            let results = self.results.get(m);
            for out in std::mem::take(&mut model.early) {
                let at = (bound.t0, bound.rate);
                mb.apply_word(at, m, &self.hub, results, out, None);
            }
        }
        self.bound = Some(bound);
    }

    /// Reports a stream that cannot be aligned; it is still recorded.
    fn mismatch(&mut self, meta: &StreamMeta, why: String) {
        let message = format!(
            "neural stream {:?} ({} channels at {} Hz) does not fit: {why}; recording it, \
             aligning nothing until a fitting stream appears",
            meta.summary.name, meta.summary.channels, meta.summary.rate
        );
        tracing::error!("{message}");
        self.mismatch = Some(message);
        self.mismatches += 1;
    }

    fn neural(&mut self, chunk: NeuralChunk) {
        let stages = &self.hub.metrics().stages;
        if let Some(&last) = chunk.timestamps.last() {
            stages.record_seconds(Stage::NeuralArrival, chunk.received - last);
        }
        if let Some(record) = &self.record {
            record.send(Record::Neural(chunk.timestamps.clone(), chunk.data.clone()));
        }
        let Some(b) = self.bound.as_mut() else { return };
        match b.high_gamma.as_mut() {
            Some(hg) => {
                // missing raw samples enter the filters as NaN: HighGamma holds each channel's
                // last value through them and counts them
                let channels = hg.channels();
                let missing = chunk.first_index.saturating_sub(b.next_index) as usize;
                let mut raw = vec![f32::NAN; missing * channels];
                raw.extend_from_slice(&chunk.data);
                let mut out = Vec::new();
                hg.process(&raw, &mut out);
                for row in out.chunks_exact(channels) {
                    b.push_row(row, chunk.received);
                }
            }
            None => {
                let channels = chunk.data.len() / chunk.len().max(1);
                // a gap on the grid: hold the last row through it (counted) so that time stays continuous
                let missing = chunk.first_index.saturating_sub(b.next_index);
                if !b.last_row.is_empty() {
                    for _ in 0..missing {
                        let row = b.last_row.clone();
                        b.push_row(&row, chunk.received);
                    }
                    self.gap_filled += missing;
                }
                for row in chunk.data.chunks_exact(channels) {
                    if row.iter().all(|v| v.is_finite()) {
                        b.push_row(row, chunk.received);
                        continue;
                    }
                    // NaN/Inf would poison the rolling correlations for a whole window: hold the
                    // channel's last value (0 before any) instead, and count it; the recording
                    // keeps the value as received
                    let held: Vec<f32> = row
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            if v.is_finite() {
                                return v;
                            }
                            self.nonfinite += 1;
                            b.last_row.get(i).copied().unwrap_or(0.0)
                        })
                        .collect();
                    b.push_row(&held, chunk.received);
                }
            }
        }
        b.next_index = b.next_index.max(chunk.first_index + chunk.len() as u64);
        for m in &mut b.models {
            m.advance(stages, f64::NEG_INFINITY);
        }
    }

    fn lm_output(
        &mut self,
        Encoded {
            model: m,
            output,
            kernel,
        }: Encoded,
    ) {
        let model = &mut self.models[m];
        if let LmOutput::Word { latency_ms, .. } = &output {
            model.words += 1;
            if let Some(ms) = latency_ms.get("forward") {
                model.lm_step.record_seconds(ms / 1e3);
            }
        }
        // samples a watermark makes final were ready when it arrived
        let ready = match output {
            LmOutput::Watermark { received, .. } => received,
            _ => f64::NEG_INFINITY,
        };
        match self.bound.as_mut() {
            Some(b) => {
                let results = self.results.get(m);
                let (at, mb) = ((b.t0, b.rate), &mut b.models[m]);
                mb.apply_word(at, m, &self.hub, results, output, kernel);
                mb.advance(&self.hub.metrics().stages, ready);
            }
            None => {
                // bounded: a long mismatch must not grow memory without end; kernels are
                // not kept (they belong to encoders no longer bound)
                if model.early.len() >= EARLY_KEPT {
                    model.early.remove(0);
                    model.early_dropped += 1;
                }
                model.early.push(output)
            }
        }
    }
}

impl ModelBound {
    /// A model's encoders bound to a stream (`map`) whose high-gamma sample 0 is at `t0`.
    fn new(encoder: Encoder, map: crate::encode::ChannelMap, t0: f64, align: &AlignConfig) -> Self {
        let (e, l) = (encoder.electrodes, encoder.layers);
        Self {
            stream_index: map.stream_index.clone(),
            neural_mean: encoder.neural_mean.clone(),
            neural_std: encoder.neural_std.clone(),
            live: Live::new(encoder, map, t0, align.clone()),
            actual: VecDeque::new(),
            arrivals: VecDeque::new(),
            actual_base: 0,
            trace: TraceBuffer::new(e, l),
        }
    }

    /// Applies one LM output of model `model` (its onset placed on the grid `(t0, rate)`); a
    /// word's `kernel` is used when it came from the encoders bound to it, and computed here
    /// otherwise (words from before the binding).
    fn apply_word(
        &mut self,
        (t0, rate): (f64, f64),
        model: usize,
        hub: &Hub,
        results: Option<&Results>,
        out: LmOutput,
        kernel: Option<WordKernel>,
    ) {
        let b = self;
        let publish = |event: WordEvent| {
            if let Some(results) = results {
                results.word(&event);
            }
            let _ = hub.publish(Frame::Word(Arc::new(event)));
        };
        match out {
            LmOutput::Word {
                word,
                embedding,
                revised,
                latency_ms,
            } => {
                let stages = &hub.metrics().stages;
                for (key, stage) in [
                    ("arrival", Stage::TranscriptArrival),
                    ("tokenize", Stage::Tokenize),
                    ("forward", Stage::LmStep),
                ] {
                    if let Some(ms) = latency_ms.get(key) {
                        stages.record_seconds(stage, ms / 1e3);
                    }
                }
                let kernel = kernel
                    .filter(|k| k.encoded_by(b.live.kernels()))
                    .unwrap_or_else(|| {
                        let started = Instant::now();
                        let kernel = b.live.kernels().kernel(&embedding);
                        stages.record(Stage::Encode, started.elapsed());
                        kernel
                    });
                b.live.word(word.id, word.start, kernel);
                let onset =
                    t0 + b.live.encoder().meta.grid.onset_sample(word.start, t0) as f64 / rate;
                let event = WordEvent {
                    model,
                    id: word.id,
                    text: word.text,
                    onset,
                    offset: Some(word.end),
                    status: if revised {
                        WordStatus::Revised
                    } else {
                        WordStatus::New
                    },
                    latency_ms,
                };
                publish(event);
            }
            LmOutput::Retract(id) => {
                b.live.retract(id);
                let event = WordEvent {
                    model,
                    id,
                    text: String::new(),
                    onset: f64::NAN,
                    offset: None,
                    status: WordStatus::Retracted,
                    latency_ms: BTreeMap::new(),
                };
                publish(event);
            }
            LmOutput::Watermark { time, .. } => b.live.transcript_watermark(time),
            LmOutput::Segment { id, time } => {
                tracing::info!(
                    segment = id,
                    time,
                    "a new segment: alignment statistics restart"
                );
                b.live.segment(time);
            }
        }
    }
}

impl Core {
    /// Publishes `trace` and `alignment`, due at `due`. Their end-to-end origin is when the
    /// oldest sample they carry was due to go out: the due time of the first frame after it
    /// was ready (the wait for that frame is by design), or its ready time when it came after
    /// this frame was due.
    fn publish_alignment(&mut self, due: Instant) {
        let Some(b) = self.bound.as_mut() else { return };
        if b.models.iter().all(|m| m.live.scored() == 0) {
            return;
        }
        let due = lsl::local_clock() - due.elapsed().as_secs_f64();
        if self.dues.len() == DUES_KEPT {
            self.dues.pop_front();
        }
        self.dues.push_back(due);
        let (t0, rate) = (b.t0, b.rate);
        let mut results = self.results.iter_mut();
        for (m, mb) in b.models.iter_mut().enumerate() {
            mb.publish_alignment(m, (t0, rate), &self.dues, &self.hub, results.next());
        }
    }
}

impl ModelBound {
    /// Publishes model `model`'s `trace` and `alignment` (see [`Core::publish_alignment`]),
    /// into the results streams too when given.
    fn publish_alignment(
        &mut self,
        model: usize,
        (t0, rate): (f64, f64),
        dues: &VecDeque<f64>,
        hub: &Hub,
        results: Option<&mut Results>,
    ) {
        let b = self;
        if b.live.scored() == 0 {
            return;
        }
        let (e, l) = (b.live.encoder().electrodes, b.live.encoder().layers);
        let trace = std::mem::replace(&mut b.trace, TraceBuffer::new(e, l));
        let origin = trace.first.map(|_| due_for(dues, trace.oldest_ready));
        if let Some(first) = trace.first {
            let chunk = TraceChunk {
                model,
                t0: t0 + first as f64 / rate,
                samples: trace.samples,
                actual: trace.actual.concat(),
                predicted: trace.predicted.concat(),
            };
            if let Err(err) = hub.publish_traced(Frame::Trace(Arc::new(chunk)), origin) {
                tracing::error!("trace frame rejected: {err}");
            }
        }
        // Live is layer-major `[layer, electrode]`; frames are electrode-major
        let rolling = b.live.rolling_r();
        let r = (0..e)
            .flat_map(|k| (0..l).map(move |j| (k, j)))
            .map(|(k, j)| rolling[j * e + k] as f32)
            .collect();
        let summary = b.live.summary();
        let chance = if summary.chance.is_finite() {
            summary.chance
        } else {
            mean_finite(&b.live.chance_r())
        };
        let horizon = t0 + b.live.scored() as f64 / rate;
        let update = AlignmentUpdate {
            model,
            time: horizon,
            horizon,
            r,
            chance: chance as f32,
            significant: b.live.significant(&rolling),
        };
        if let Some(results) = results {
            results.alignment(&update);
        }
        if let Err(err) = hub.publish_traced(Frame::Alignment(Arc::new(update)), origin) {
            tracing::error!("alignment frame rejected: {err}");
        }
    }
}

impl Core {
    /// The pipeline's status; what every model has (drops, errors, memory, events) summed
    /// over the models.
    fn status(&self, inlets: &Inlets<'_>, lm: &[LmThread]) -> PipelineStatus {
        let (n, t) = (inlets.neural.status(), inlets.transcript.status());
        let sum = |f: &dyn Fn(&LmThread) -> u64| lm.iter().map(f).sum::<u64>();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut drops = BTreeMap::from([
            ("neural_chunks".to_string(), n.dropped_chunks),
            ("neural_samples".to_string(), n.dropped_samples),
            (
                "transcript_updates".to_string(),
                t.dropped_updates + load(&self.fan_out_dropped),
            ),
            ("lm_outputs".to_string(), sum(&|l| load(&l.dropped))),
            (
                "encoded_outputs".to_string(),
                self.models.iter().map(|m| load(&m.encode_dropped)).sum(),
            ),
            (
                "recorder_items".to_string(),
                self.record.as_ref().map_or(0, RecordTx::dropped),
            ),
            (
                "results_outlet_items".to_string(),
                self.outlets.as_ref().map_or(0, OutletTx::dropped),
            ),
        ]);
        let mut errors: BTreeMap<String, u64> = t
            .counts
            .rejected
            .iter()
            .map(|(r, &c)| (format!("transcript_{}", r.name()), c))
            .collect();
        errors.insert("words_not_embedded".into(), sum(&|l| load(&l.failed_words)));
        errors.insert("neural_gaps".into(), n.gap_count);
        errors.insert("neural_gap_samples_held".into(), self.gap_filled);
        errors.insert("neural_backward_steps".into(), n.backward_steps);
        errors.insert("neural_lost".into(), n.losses);
        errors.insert("neural_recovered".into(), n.recoveries);
        errors.insert("transcript_lost".into(), t.losses);
        errors.insert("transcript_recovered".into(), t.recoveries);
        errors.insert("neural_mismatch".into(), self.mismatches);
        let audio = inlets.audio.map(AudioInlet::status);
        if let Some(a) = &audio {
            errors.insert("audio_lost".into(), a.losses);
            errors.insert("audio_recovered".into(), a.recoveries);
        }
        drops.insert(
            "words_before_stream".into(),
            self.models.iter().map(|m| m.early_dropped).sum(),
        );
        drops.insert("transcript_words_forgotten".into(), t.counts.forgotten);
        // the LM's backlog is not a drop, but it is what an operator needs to see next to them
        drops.insert("lm_queue_waiting".into(), sum(&LmThread::waiting));
        let mut horizon = None;
        if let Some(b) = self.bound.as_ref() {
            let counts: Vec<_> = b.models.iter().map(|m| m.live.counts()).collect();
            let total =
                |f: &dyn Fn(&crate::align::LiveCounts) -> u64| counts.iter().map(f).sum::<u64>();
            drops.insert("late_word_samples".into(), total(&|c| c.late_samples));
            drops.insert(
                "samples_scored_before_words".into(),
                total(&|c| c.scored_before_words),
            );
            errors.insert("late_word_events".into(), total(&|c| c.late_word_events));
            errors.insert(
                "unknown_retractions".into(),
                total(&|c| c.unknown_retractions),
            );
            errors.insert(
                "bad_neural_samples".into(),
                total(&|c| c.bad_neural_samples),
            );
            let nonfinite = b
                .high_gamma
                .as_ref()
                .map_or(self.nonfinite, HighGamma::nonfinite_count);
            errors.insert("neural_nonfinite_values".into(), nonfinite);
            horizon = Some(b.t0 + b.scored() as f64 / b.rate);
        }
        let memory = self.memory(&t, lm);
        let mut streams = vec![
            StreamStatus {
                role: "neural".into(),
                connected: n.state == LinkState::Streaming,
                rate_hz: n.measured_rate(),
                samples: n.samples,
                watermark: n.watermark,
                clock_correction_s: n.clock_correction,
                error: self.mismatch.clone().or(n.error),
            },
            StreamStatus {
                role: "transcript".into(),
                connected: t.state == LinkState::Streaming,
                rate_hz: 0.0,
                samples: t.messages,
                watermark: t.watermark.is_finite().then_some(t.watermark),
                clock_correction_s: (t.state != LinkState::Searching).then_some(t.clock_offset),
                error: t.error,
            },
        ];
        streams.extend(audio.map(|a| StreamStatus {
            role: "audio".into(),
            connected: a.state == LinkState::Streaming,
            rate_hz: a.measured_rate(),
            samples: a.samples,
            watermark: a.watermark,
            clock_correction_s: a.clock_correction,
            error: a.error,
        }));
        PipelineStatus {
            streams,
            horizon,
            drops,
            errors,
            segments: self
                .bound
                .as_ref()
                .map_or(0, |b| b.models[0].live.segments()),
            memory,
            memory_bound: BTreeMap::from([(
                "kv_cache".to_string(),
                sum(&|l| load(&l.memory.kv_cache_bound)),
            )]),
            events: BTreeMap::from([
                (
                    "lm_compactions_prepared".to_string(),
                    sum(&|l| load(&l.compactions.prepared)),
                ),
                (
                    "lm_compactions_prefilled".to_string(),
                    sum(&|l| load(&l.compactions.prefilled)),
                ),
            ]),
            models: (self.models.iter().zip(lm).enumerate())
                .map(|(m, (model, lm))| ModelStatus {
                    name: model.tag.name.clone(),
                    words: model.words,
                    lm_queue_waiting: lm.waiting(),
                    horizon: (self.bound.as_ref())
                        .map(|b| b.t0 + b.models[m].live.scored() as f64 / b.rate),
                    lm_step: model.lm_step.percentiles(),
                })
                .collect(),
        }
    }
}

impl Core {
    /// Bytes held by part (`docs/memory.md`), and the resident memory.
    fn memory(&self, transcript: &TranscriptStatus, lm: &[LmThread]) -> BTreeMap<String, u64> {
        let sum = |f: &dyn Fn(&super::lm_thread::LmMemory) -> &AtomicU64| {
            lm.iter()
                .map(|l| f(&l.memory).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let early: usize = (self.models.iter())
            .flat_map(|m| &m.early)
            .map(|o| match o {
                LmOutput::Word { embedding, .. } => embedding.capacity() * 4,
                _ => 0,
            })
            .sum();
        let mut parts = BTreeMap::from([
            ("kv_cache".to_string(), sum(&|m| &m.kv_cache)),
            ("lm_words".to_string(), sum(&|m| &m.words)),
            ("transcript".to_string(), transcript.transcript_bytes as u64),
            ("words_before_stream".to_string(), early as u64),
            (
                "timeline".to_string(),
                self.bound.as_ref().map_or(0, Bound::heap_bytes) as u64,
            ),
        ]);
        if let Some(rss) = super::memory::resident_bytes() {
            parts.insert("resident".into(), rss);
        }
        if let Some(heap) = super::memory::heap_in_use_bytes() {
            parts.insert("heap_in_use".into(), heap);
        }
        parts
    }
}

impl TraceBuffer {
    fn new(electrodes: usize, layers: usize) -> Self {
        Self {
            first: None,
            oldest_ready: f64::INFINITY,
            samples: 0,
            actual: vec![Vec::new(); electrodes],
            predicted: vec![Vec::new(); electrodes * layers],
        }
    }
}

impl Bound {
    /// Bytes of the alignment states and the rows waiting to be scored or sent.
    fn heap_bytes(&self) -> usize {
        self.models.iter().map(ModelBound::heap_bytes).sum()
    }

    /// Samples scored by every model: the horizon all of them have passed.
    fn scored(&self) -> i64 {
        self.models
            .iter()
            .map(|m| m.live.scored())
            .min()
            .unwrap_or(0)
    }

    /// One neural row that arrived at `arrival` (server clock), to every model.
    fn push_row(&mut self, row: &[f32], arrival: f64) {
        for m in &mut self.models {
            m.push_row(row, arrival);
        }
        self.last_row = row.to_vec();
    }
}

impl ModelBound {
    /// Bytes of the alignment state and the rows waiting to be scored or sent.
    fn heap_bytes(&self) -> usize {
        let row = self.actual.front().map_or(0, Vec::capacity) * 4 + 24;
        let trace: usize = (self.trace.actual.iter())
            .chain(&self.trace.predicted)
            .map(|v| v.capacity() * 4)
            .sum();
        self.live.heap_bytes() + self.actual.capacity() * row + self.arrivals.capacity() * 8 + trace
    }

    /// One neural row that arrived at `arrival` (server clock).
    fn push_row(&mut self, row: &[f32], arrival: f64) {
        self.live.push_neural(row);
        self.arrivals.push_back(arrival);
        let z = self
            .stream_index
            .iter()
            .enumerate()
            .map(|(e, &i)| (row[i] - self.neural_mean[e]) / self.neural_std[e])
            .collect();
        self.actual.push_back(z);
    }

    /// Scores every sample up to the horizon, queuing each for the next trace frame; a
    /// sample was ready at its arrival, or at `ready` when that is later (the arrival of
    /// the watermark that made it final).
    fn advance(&mut self, stages: &StageSet, ready: f64) {
        let (e, l) = (self.live.encoder().electrodes, self.live.encoder().layers);
        loop {
            let started = Instant::now();
            let Some(t) = self.live.advance_one() else {
                return;
            };
            stages.record(Stage::Score, started.elapsed());
            while self.actual_base < t {
                self.actual.pop_front();
                self.arrivals.pop_front();
                self.actual_base += 1;
            }
            let actual = self.actual.front().expect("scored samples have arrived");
            let arrival = self.arrivals.front().expect("scored samples have arrived");
            self.trace.oldest_ready = self.trace.oldest_ready.min(arrival.max(ready));
            let pred = self.live.last_prediction();
            self.trace.first.get_or_insert(t);
            self.trace.samples += 1;
            for k in 0..e {
                self.trace.actual[k].push(actual[k]);
                for j in 0..l {
                    self.trace.predicted[k * l + j].push(pred[j * e + k] as f32);
                }
            }
        }
    }
}

/// When a sample ready at `ready` was due to go out: the first of the frames' due times
/// `dues` (oldest first) at or after it, or `ready` itself when it became ready after them.
fn due_for(dues: &VecDeque<f64>, ready: f64) -> f64 {
    dues.iter().find(|&&d| d >= ready).map_or(ready, |&d| d)
}

fn mean_finite(xs: &[f64]) -> f64 {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_due_at_the_first_frame_after_it_was_ready() {
        let dues = VecDeque::from([1.0, 1.05, 1.1]);
        // waiting for the frame rate is by design
        assert_eq!(due_for(&dues, 0.97), 1.0);
        // ready before the previous frame, carried by this one: it counts from the one it missed
        assert_eq!(due_for(&dues, 1.02), 1.05);
        assert_eq!(due_for(&dues, 1.1), 1.1);
        // ready after this frame was due: from its own arrival
        assert_eq!(due_for(&dues, 1.12), 1.12);
    }
}
