//! The WebSocket protocol: what the pipeline hands the server (session, alignment,
//! trace, word and status updates) and the JSON frames clients receive and send.
//!
//! Pipeline-side types hold every electrode and layer; a client's subscription picks
//! the part it receives (see [`crate::serve::subscription`]). Wire types borrow from
//! the pipeline types so that encoding a frame copies nothing but the JSON text.
//! The schema is documented, with an example of each frame, in `docs/websocket.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the JSON protocol, sent in `hello`; bumped on incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a session looks like: sent to every client as the `hello` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Electrode labels, in the order of every per-electrode array.
    pub electrodes: Vec<String>,
    /// Layer ids (0 = token embedding, k = after block k) of every model, ascending: the
    /// ids a subscription may name. With one model, its layers, in the order of every
    /// per-layer array; with several, each model's own order is in [`Session::models`].
    pub layers: Vec<usize>,
    /// The (first) language model's file name.
    pub model: String,
    /// The language models aligned live, each with its own encoders; per-model frames
    /// name theirs.
    pub models: Vec<SessionModel>,
    /// Sampling and update rates.
    pub rates: Rates,
    /// Current horizon (seconds, server LSL clock); `None` before data arrive.
    pub horizon: Option<f64>,
    /// Length of the rolling correlation window (seconds).
    pub window_s: f64,
    /// Per electrode (session order), what the neural stream's description says of it;
    /// empty when the stream describes its channels no further than by label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub electrode_info: Vec<ElectrodeInfo>,
    /// Stream channels the recording marks bad: they have no encoders and are not shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_channels: Vec<String>,
    /// The XDF file `serve` is writing this session into; `None` when it is not recording.
    #[serde(default)]
    pub recording: Option<String>,
    /// Per electrode, the rolling r at the peak above which the electrode is significant
    /// live (calibrated at fit time, `docs/statistics.md` §5); empty when the encoder file
    /// has no calibration for this window (older files).
    #[serde(default)]
    pub null_threshold: Vec<f32>,
}

/// Which language model a frame belongs to: its file name and the sha256 of the file (the
/// hash its encoder file was fit on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTag {
    /// Model file name (unique within a session).
    pub name: String,
    /// sha256 of the model file.
    pub sha256: String,
}

/// One language model of a session, as `hello` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionModel {
    /// Its name and hash.
    #[serde(flatten)]
    pub tag: ModelTag,
    /// Its encoders' layer ids, in the order of its per-layer arrays.
    pub layers: Vec<usize>,
    /// Per electrode, its encoders' live significance threshold (see
    /// [`Session::null_threshold`]); empty when uncalibrated.
    pub null_threshold: Vec<f32>,
}

/// One electrode as the neural stream's channel description gives it (`neuralign import`
/// writes it from BIDS sidecars; `replay` passes it on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElectrodeInfo {
    /// Shaft, strip or grid, when known.
    pub group: Option<String>,
    /// Channel type (`ECOG`, `SEEG`, `iEEG`...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The position seen from the side: `(y, z)` of the electrode's location (anterior,
    /// superior), in the recording's coordinate units; `None` without coordinates.
    pub xy: Option<[f64; 2]>,
}

impl ElectrodeInfo {
    /// The frame's view of a channel description.
    pub fn from_meta(meta: &crate::import::desc::ChannelMeta) -> Self {
        Self {
            group: meta.group.clone(),
            kind: meta.kind.clone(),
            xy: meta.location.map(|[_, y, z]| [y, z]),
        }
    }
}

/// Sampling and update rates of a session, in Hz.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Rate of the incoming neural stream (raw iEEG or high-gamma).
    pub neural_hz: f64,
    /// Rate of the high-gamma timeline (predicted and actual traces).
    pub high_gamma_hz: f64,
    /// Rate at which alignment frames are produced.
    pub alignment_hz: f64,
}

/// Rolling correlation between predicted and actual high-gamma at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignmentUpdate {
    /// The model (index in [`Session::models`]) whose predictions these are.
    pub model: usize,
    /// Time (seconds, server LSL clock) the window ends at.
    pub time: f64,
    /// Horizon when the update was computed.
    pub horizon: f64,
    /// Rolling r, row-major `[electrode][layer]` in session and model order; NaN where
    /// undefined (too few samples or no variance).
    pub r: Vec<f32>,
    /// The r a random predictor reaches (e.g. 95th percentile under shuffled onsets).
    pub chance: f32,
    /// Per electrode, whether the rolling r at the peak passes its null threshold (false
    /// until the window is full); empty when uncalibrated.
    pub significant: Vec<bool>,
}

/// A chunk of the high-gamma timeline: actual and predicted samples.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceChunk {
    /// The model (index in [`Session::models`]) whose predictions these are.
    pub model: usize,
    /// Time of the first sample (seconds, server LSL clock).
    pub t0: f64,
    /// Samples per electrode (and per layer for predictions).
    pub samples: usize,
    /// Actual high-gamma, `[electrode][sample]`.
    pub actual: Vec<f32>,
    /// Predicted high-gamma, `[electrode][layer][sample]` (the model's layers).
    pub predicted: Vec<f32>,
}

/// Whether a word is new, a revision of an earlier one, or withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordStatus {
    /// First time this word id is seen.
    New,
    /// Replaces the word with the same id.
    Revised,
    /// The word with this id was wrong and is removed.
    Retracted,
}

/// A transcript word as one model's pipeline processed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordEvent {
    /// The model (index in [`Session::models`]) that embedded it; the wire frame names the
    /// model instead ([`WordFrame`]).
    #[serde(skip)]
    pub model: usize,
    /// Transcript word id (revisions and retractions reuse it).
    pub id: u64,
    /// Word text (empty for retractions).
    pub text: String,
    /// Onset (seconds, server LSL clock), rounded to a neural sample.
    pub onset: f64,
    /// Offset (seconds, server LSL clock), when the transcript gave one.
    pub offset: Option<f64>,
    /// New, revised or retracted.
    pub status: WordStatus,
    /// Milliseconds spent in each pipeline stage for this word, by stage name.
    pub latency_ms: BTreeMap<String, f64>,
}

/// State of one input stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// Role in the pipeline: `neural` or `transcript`.
    pub role: String,
    /// Whether the inlet is connected now.
    pub connected: bool,
    /// Measured sample rate (Hz) over the last seconds.
    pub rate_hz: f64,
    /// Samples (or transcript messages) received so far.
    pub samples: u64,
    /// Latest time (seconds, server LSL clock) the stream is complete up to.
    pub watermark: Option<f64>,
    /// Seconds added to the sender's time stamps to put them on the server clock (liblsl's
    /// time correction and an announced sender clock's); absent until known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_correction_s: Option<f64>,
    /// Why the stream cannot be used as it is (wrong format, encoders that do not fit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Pipeline-wide state the pipeline publishes now and then; each client's `status`
/// frame combines the latest one with that client's own counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineStatus {
    /// Input streams.
    pub streams: Vec<StreamStatus>,
    /// Horizon (seconds, server LSL clock).
    pub horizon: Option<f64>,
    /// Items the pipeline dropped, by reason.
    pub drops: BTreeMap<String, u64>,
    /// Rejected input, by reason.
    pub errors: BTreeMap<String, u64>,
    /// Segment boundaries the alignment has crossed (its statistics restarted at each).
    pub segments: u64,
    /// Bytes held, by part (`docs/memory.md`), and `resident` (the process's resident memory).
    pub memory: BTreeMap<String, u64>,
    /// The most a part may hold, for the parts whose bound the configuration fixes.
    pub memory_bound: BTreeMap<String, u64>,
    /// Things that happened, neither drops nor errors, counted by kind.
    pub events: BTreeMap<String, u64>,
    /// Each model's progress, in session order (empty before the models are loaded).
    #[serde(default)]
    pub models: Vec<ModelStatus>,
}

/// One language model's progress in the pipeline status: whether it keeps up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelStatus {
    /// Model file name, as `hello.session.models` lists it.
    pub name: String,
    /// Words it embedded.
    pub words: u64,
    /// Transcript updates its language model has not finished (waiting or being applied).
    pub lm_queue_waiting: u64,
    /// Grid time up to which its alignment is final; `None` before a stream is bound.
    pub horizon: Option<f64>,
    /// Latency of its LM steps (the `lm_step` stage of its own words: all of a word's tokens
    /// with the KV cache), since the start.
    #[serde(default)]
    pub lm_step: crate::metrics::Percentiles,
}

/// Something the pipeline hands the hub to fan out.
#[derive(Debug, Clone)]
pub enum Frame {
    /// Rolling alignment at one moment.
    Alignment(std::sync::Arc<AlignmentUpdate>),
    /// Predicted and actual samples.
    Trace(std::sync::Arc<TraceChunk>),
    /// A transcript word.
    Word(std::sync::Arc<WordEvent>),
    /// Pipeline state (merged into each client's periodic `status` frame).
    Status(PipelineStatus),
}

impl Frame {
    /// The kind of frame it becomes on the wire.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Alignment(_) => FrameKind::Alignment,
            Frame::Trace(_) => FrameKind::Trace,
            Frame::Word(_) => FrameKind::Word,
            Frame::Status(_) => FrameKind::Status,
        }
    }
}

/// Defines [`FrameKind`] and its table of names from one list, so that a kind cannot be
/// added without its wire name, its place in [`FrameKind::ALL`] and its metrics counter.
macro_rules! frame_kinds {
    ($($(#[$doc:meta])* $kind:ident => $name:literal,)*) => {
        /// Every kind of frame the server sends, as in the JSON `type` field.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FrameKind {
            $($(#[$doc])* $kind,)*
        }

        impl FrameKind {
            /// Every kind, in declaration order (`kind as usize` is its index).
            pub const ALL: [FrameKind; [$($name),*].len()] = [$(FrameKind::$kind),*];

            /// The JSON `type` of frames of this kind.
            pub const fn name(self) -> &'static str {
                match self {
                    $(FrameKind::$kind => $name,)*
                }
            }
        }
    };
}

frame_kinds! {
    /// The session and the client's subscription, first on every connection.
    Hello => "hello",
    /// Rolling alignment at one moment.
    Alignment => "alignment",
    /// Predicted and actual samples.
    Trace => "trace",
    /// A transcript word.
    Word => "word",
    /// Pipeline and connection state.
    Status => "status",
    /// The answer to a `subscribe` message.
    Subscribed => "subscribed",
    /// A client message that was refused.
    Error => "error",
}

// ---- server -> client wire frames -------------------------------------------------

/// Limits a client must respect, announced in `hello`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientLimits {
    /// Largest client message accepted (bytes).
    pub max_message_bytes: usize,
    /// Frames queued for a client before newer ones are dropped.
    pub queue_frames: usize,
}

/// `hello`: the session, sent on connect and whenever the session changes.
#[derive(Debug, Serialize)]
pub struct HelloFrame<'a> {
    /// Protocol version.
    pub protocol: u32,
    /// Server name and version.
    pub server: &'static str,
    /// The session.
    pub session: &'a Session,
    /// The client's current subscription, resolved.
    pub subscription: &'a ResolvedSubscription,
    /// Limits on client messages and queues.
    pub limits: &'a ClientLimits,
}

/// Per-electrode summary of an alignment update, over all layers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlignmentSummary {
    /// Layer id with the highest r, per electrode (`null` where no r is defined).
    pub peak_layer: Vec<Option<usize>>,
    /// That highest r, per electrode.
    pub peak_r: Vec<f32>,
    /// Mean r over electrodes, per layer (NaN entries skipped).
    pub mean_r: Vec<f32>,
    /// Layer id with the highest mean r.
    pub best_layer: Option<usize>,
    /// Electrodes significant live when calibrated (see `significant`); otherwise those
    /// whose peak r exceeds the chance level.
    pub electrodes_above_chance: usize,
    /// Per electrode, whether its peak r passes its null threshold (`hello.session.
    /// null_threshold`); empty when uncalibrated.
    pub significant: Vec<bool>,
}

impl AlignmentSummary {
    /// Summarises a row-major `[electrode][layer]` r matrix and the live significance
    /// per electrode (empty when uncalibrated).
    pub fn compute(r: &[f32], layers: &[usize], chance: f32, significant: &[bool]) -> Self {
        let n_layers = layers.len();
        let n_electrodes = r.len().checked_div(n_layers).unwrap_or(0);
        let mut peak_layer = Vec::with_capacity(n_electrodes);
        let mut peak_r = Vec::with_capacity(n_electrodes);
        let mut sum = vec![0f64; n_layers];
        let mut count = vec![0usize; n_layers];
        for row in r.chunks_exact(n_layers.max(1)).take(n_electrodes) {
            let mut best: Option<(usize, f32)> = None;
            for (j, &v) in row.iter().enumerate() {
                if v.is_nan() {
                    continue;
                }
                sum[j] += f64::from(v);
                count[j] += 1;
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((j, v));
                }
            }
            peak_layer.push(best.map(|(j, _)| layers[j]));
            peak_r.push(best.map_or(f32::NAN, |(_, v)| v));
        }
        let mean_r: Vec<f32> = sum
            .iter()
            .zip(&count)
            .map(|(&s, &c)| {
                if c == 0 {
                    f32::NAN
                } else {
                    (s / c as f64) as f32
                }
            })
            .collect();
        let best_layer = mean_r
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(j, _)| layers[j]);
        let electrodes_above_chance = match significant.is_empty() {
            true => peak_r.iter().filter(|&&v| v > chance).count(),
            false => significant.iter().filter(|&&s| s).count(),
        };
        Self {
            peak_layer,
            peak_r,
            mean_r,
            best_layer,
            electrodes_above_chance,
            significant: significant.to_vec(),
        }
    }
}

/// `alignment`: rolling r for every electrode and the subscribed layers of one model.
#[derive(Debug, Serialize)]
pub struct AlignmentFrame<'a> {
    /// The model whose predictions these are.
    pub model: &'a ModelTag,
    /// Time the window ends at.
    pub time: f64,
    /// Horizon at computation.
    pub horizon: f64,
    /// Layer ids of the columns of `r`.
    pub layers: &'a [usize],
    /// r per electrode (all, session order) and subscribed layer.
    pub r: Vec<Vec<f32>>,
    /// Summary over all layers.
    pub summary: &'a AlignmentSummary,
    /// Chance level of r.
    pub chance: f32,
}

/// `trace`: predicted and actual samples for subscribed electrodes and layers of one model.
#[derive(Debug, Serialize)]
pub struct TraceFrame<'a> {
    /// The model whose predictions these are.
    pub model: &'a ModelTag,
    /// Time of the first sample.
    pub t0: f64,
    /// Sample rate (Hz).
    pub rate: f64,
    /// Electrode indices (session order) of the rows.
    pub electrodes: &'a [usize],
    /// Layer ids of the predictions.
    pub layers: &'a [usize],
    /// Actual samples, `[electrode][sample]`.
    pub actual: Vec<&'a [f32]>,
    /// Predicted samples, `[electrode][layer][sample]`.
    pub predicted: Vec<Vec<&'a [f32]>>,
}

/// `word`: a word as one model embedded it.
#[derive(Debug, Serialize)]
pub struct WordFrame<'a> {
    /// The word.
    #[serde(flatten)]
    pub word: &'a WordEvent,
    /// The model that embedded it.
    pub model: &'a ModelTag,
}

/// A client's own counters in its `status` frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCounters {
    /// Frames this client lost because its queue was full.
    pub dropped: u64,
    /// Frames sent to this client.
    pub sent: u64,
}

/// Send-latency percentiles measured by the hub (publish to socket write).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SendLatency {
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
}

/// `status`: pipeline state plus this client's counters.
#[derive(Debug, Serialize)]
pub struct StatusFrame<'a> {
    /// Seconds since the server started.
    pub uptime_s: f64,
    /// Horizon.
    pub horizon: Option<f64>,
    /// Input streams.
    pub streams: &'a [StreamStatus],
    /// This client's counters; `dropped` counts frames it lost.
    pub client: ClientCounters,
    /// Pipeline drops by reason.
    pub drops: &'a BTreeMap<String, u64>,
    /// Rejected input by reason.
    pub errors: &'a BTreeMap<String, u64>,
    /// Segment boundaries the alignment has crossed.
    pub segments: u64,
    /// Bytes held by part, and resident memory.
    pub memory: &'a BTreeMap<String, u64>,
    /// The bound of each part the configuration bounds.
    pub memory_bound: &'a BTreeMap<String, u64>,
    /// Things that happened, by kind.
    pub events: &'a BTreeMap<String, u64>,
    /// Each model's progress.
    pub models: &'a [ModelStatus],
    /// Clients connected now.
    pub clients: usize,
    /// Hub send latency.
    pub send_latency: SendLatency,
    /// Latency of every pipeline stage since start, in data-flow order.
    pub stages: Vec<StageSummary>,
}

/// One stage's latency in a `status` frame.
#[derive(Debug, Serialize)]
pub struct StageSummary {
    /// Stage name (`neural_arrival` … `end_to_end`, see `docs/benchmarks.md`).
    pub stage: &'static str,
    /// Count and percentiles, milliseconds.
    #[serde(flatten)]
    pub latency: crate::metrics::Percentiles,
}

/// Why a client message was refused, sent as an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Larger than `limits.max_message_bytes`.
    MessageTooLarge,
    /// Not JSON, or not a known message.
    Malformed,
    /// Binary messages are not part of the protocol.
    UnsupportedBinary,
    /// A subscription naming unknown electrodes or layers, or a bad rate.
    BadSubscription,
}

/// `error`: a client message was refused; the connection stays open.
#[derive(Debug, Serialize)]
pub struct ErrorFrame<'a> {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: &'a str,
}

/// `subscribed`: acknowledges a `subscribe` with the subscription now in force.
#[derive(Debug, Serialize)]
pub struct SubscribedFrame<'a> {
    /// The subscription, resolved to indices and layer ids.
    pub subscription: &'a ResolvedSubscription,
}

/// Wraps a wire frame with its `type` tag and encodes it once.
pub fn encode<T: Serialize>(kind: FrameKind, frame: &T) -> String {
    #[derive(Serialize)]
    struct Tagged<'a, T> {
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(flatten)]
        frame: &'a T,
    }
    let kind = kind.name();
    serde_json::to_string(&Tagged { kind, frame }).expect("frames always serialize")
}

// ---- client -> server messages ----------------------------------------------------

/// A model named by index (`hello.session.models` order) or name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelSelector {
    /// Position in `hello.session.models`.
    Index(usize),
    /// Model name.
    Name(String),
}

/// An electrode named by index (session order) or label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ElectrodeRef {
    /// Position in `hello.session.electrodes`.
    Index(usize),
    /// Electrode label.
    Label(String),
}

/// `"all"` or an explicit list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Selection<T> {
    /// Explicit list.
    List(Vec<T>),
    /// The literal string `"all"`.
    All(AllTag),
}

/// The literal `"all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllTag {
    /// Everything.
    All,
}

/// A client message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    /// Choose what `trace` and `alignment` frames carry, and how often.
    Subscribe(SubscribeRequest),
}

/// Body of a `subscribe` message; omitted fields keep their current value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// Electrodes whose traces to send.
    pub electrodes: Option<Selection<ElectrodeRef>>,
    /// Layers whose predictions (traces) and r (alignment) to send.
    pub layers: Option<Selection<usize>>,
    /// Models whose `alignment`, `trace` and `word` frames to send.
    pub models: Option<Selection<ModelSelector>>,
    /// Most `alignment` and `trace` frames per second (each, per model); 0 for all.
    pub rate: Option<f64>,
}

/// A subscription resolved against the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedSubscription {
    /// Electrode indices for traces.
    pub electrodes: Vec<usize>,
    /// Layer ids for traces and alignment (each model sends those it has).
    pub layers: Vec<usize>,
    /// Indices (in `hello.session.models`) of the models whose frames are sent.
    pub models: Vec<usize>,
    /// Most frames per second of each throttled kind, per model; 0 for all.
    pub rate: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_kind_is_listed_once_and_documented() {
        for (i, kind) in FrameKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "ALL is in declaration order");
        }
        let doc = include_str!("../../docs/websocket.md");
        for kind in FrameKind::ALL {
            let heading = format!("### `{}`", kind.name());
            assert!(doc.contains(&heading), "docs/websocket.md lacks {heading}");
        }
    }

    #[test]
    fn summary_finds_peak_layer_and_skips_nan() {
        let layers = [0, 5, 10];
        // electrode 0 peaks at layer 5, electrode 1 at layer 10, electrode 2 undefined
        let r = [
            0.1,
            0.4,
            0.2,
            0.0,
            f32::NAN,
            0.3,
            f32::NAN,
            f32::NAN,
            f32::NAN,
        ];
        let s = AlignmentSummary::compute(&r, &layers, 0.25, &[]);
        assert_eq!(s.peak_layer, vec![Some(5), Some(10), None]);
        assert_eq!(s.peak_r[..2], [0.4, 0.3]);
        assert!(s.peak_r[2].is_nan());
        assert!((s.mean_r[0] - 0.05).abs() < 1e-6);
        assert!((s.mean_r[1] - 0.4).abs() < 1e-6);
        assert!((s.mean_r[2] - 0.25).abs() < 1e-6);
        assert_eq!(s.best_layer, Some(5));
        assert_eq!(s.electrodes_above_chance, 2);
        // Calibrated: the count is of the significant electrodes, whatever the chance level.
        let s = AlignmentSummary::compute(&r, &layers, 0.25, &[false, true, false]);
        assert_eq!(s.electrodes_above_chance, 1);
        assert_eq!(s.significant, vec![false, true, false]);
    }

    #[test]
    fn subscribe_parses_indices_labels_and_all() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"subscribe","electrodes":[0,"LTG3"],"layers":"all","rate":5}"#,
        )
        .unwrap();
        let ClientMessage::Subscribe(s) = m;
        assert_eq!(
            s.electrodes,
            Some(Selection::List(vec![
                ElectrodeRef::Index(0),
                ElectrodeRef::Label("LTG3".into())
            ]))
        );
        assert_eq!(s.layers, Some(Selection::All(AllTag::All)));
        assert_eq!(s.rate, Some(5.0));
        assert!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"subscribe","bogus":1}"#).is_err()
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"unsubscribe"}"#).is_err());
    }

    #[test]
    fn encoded_frames_carry_type_and_null_for_nan() {
        let summary = AlignmentSummary::compute(&[f32::NAN], &[3], 0.1, &[]);
        let model = ModelTag {
            name: "m.gguf".into(),
            sha256: "ab".into(),
        };
        let json = encode(
            FrameKind::Alignment,
            &AlignmentFrame {
                model: &model,
                time: 1.5,
                horizon: 1.5,
                layers: &[3],
                r: vec![vec![f32::NAN]],
                summary: &summary,
                chance: 0.1,
            },
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["type"], "alignment");
        assert_eq!(
            v["model"],
            serde_json::json!({"name": "m.gguf", "sha256": "ab"})
        );
        assert!(v["r"][0][0].is_null());
        assert!(v["summary"]["peak_layer"][0].is_null());
    }
}
