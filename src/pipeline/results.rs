//! The server's results kept in the session recording (`docs/xdf.md`, "Results"): per
//! alignment update whose horizon advanced, the rolling r at each electrode's peak layer, the
//! peak layer and the live significance; the r of every layer at a decimated rate
//! ([`LAYERS_HZ`]); every word event as the WebSocket sent it. The values are those of the
//! `alignment` and `word` frames ([`AlignmentSummary`], one definition); they go through the
//! recorder's bounded queue (a full queue drops and counts, `drops.recorder_items`) and the
//! same to the LSL outlets ([`super::outlets`], `drops.results_outlet_items`).
//!
//! Every model live has streams of its own ([`stream_name`]): the first model's keep the
//! plain names (a one-model server's streams, as readers know them), every later model's
//! carry `@<model name>`; each stream's `desc` names its model and that model's sha256, and
//! the window of the rolling r (`alignment/window_s`).
use std::sync::Arc;

use super::outlets::OutletTx;
use super::recorder::{Record, RecordTx};
use crate::serve::frames::{ModelTag, WordFrame};
use crate::serve::{AlignmentSummary, AlignmentUpdate, WordEvent};
use crate::xdf::{ChannelFormat, Samples, StreamInfo};

/// Name of the stream of the rolling r at each electrode's peak layer.
pub const ALIGNMENT: &str = "neuralign-alignment";
/// Name of the stream of each electrode's peak layer (model layer; −1 where undefined).
pub const PEAK_LAYER: &str = "neuralign-peak-layer";
/// Name of the stream of the rolling r of every electrode and layer, decimated.
pub const ALIGNMENT_LAYERS: &str = "neuralign-alignment-layers";
/// Name of the stream of the live significance per electrode (1 or 0).
pub const SIGNIFICANCE: &str = "neuralign-significance";
/// Name of the stream of word events (JSON of the `word` frame).
pub const WORDS: &str = "neuralign-words";
/// Rate of [`ALIGNMENT_LAYERS`]: one update in `round(alignment_hz / LAYERS_HZ)`.
pub const LAYERS_HZ: f64 = 1.0;

/// The name of results stream `base` (one of the names above) of model `model` (its index in
/// session order, named `tag`): `base` for the first model, `base@<model name>` for the others.
pub fn stream_name(base: &str, model: usize, tag: &ModelTag) -> String {
    match model {
        0 => base.to_string(),
        _ => format!("{base}@{}", tag.name),
    }
}

/// One model's results streams by name.
struct StreamNames {
    alignment: Arc<str>,
    peak_layer: Arc<str>,
    significance: Arc<str>,
    layers: Arc<str>,
    words: Arc<str>,
}

/// What the results streams need to know of the bound encoders, and where they stand.
pub(super) struct Results {
    sinks: (Option<RecordTx>, Option<OutletTx>),
    /// The model whose results these are (word events name it, as their frames do).
    model: ModelTag,
    names: StreamNames,
    labels: Vec<String>,
    layers: Vec<usize>,
    layers_every: u64,
    updates: u64,
    last_horizon: f64,
}

impl Results {
    /// Announces the streams of model `index` (in session order, named `model`) for encoders
    /// with electrodes `labels` and that model's `layers` (streams of another layout, after a
    /// rebinding, are new streams of the recording), whose rolling r is over `window_s`.
    pub fn new(
        sinks: (Option<RecordTx>, Option<OutletTx>),
        (index, model): (usize, ModelTag),
        labels: Vec<String>,
        layers: Vec<usize>,
        (alignment_hz, window_s): (f64, f64),
    ) -> Self {
        let name = |base: &str| Arc::<str>::from(stream_name(base, index, &model));
        let names = StreamNames {
            alignment: name(ALIGNMENT),
            peak_layer: name(PEAK_LAYER),
            significance: name(SIGNIFICANCE),
            layers: name(ALIGNMENT_LAYERS),
            words: name(WORDS),
        };
        let layer_labels = labels
            .iter()
            .flat_map(|e| layers.iter().map(move |l| format!("{e}/L{l}")))
            .collect();
        // each stream names its model, and the window of the rolling r (`report` replays the
        // recording with it)
        let window = window_s.to_string();
        let tagged = |info: StreamInfo| {
            info.with_desc_entries(&[
                ("model", &[("name", &model.name), ("sha256", &model.sha256)]),
                ("alignment", &[("window_s", &window)]),
            ])
        };
        let per_electrode = |name: &str, kind: &str, format| {
            tagged(StreamInfo::with_labels(
                name,
                kind,
                0.0,
                format,
                name,
                labels.clone(),
            ))
        };
        for info in [
            per_electrode(&names.alignment, "Alignment", ChannelFormat::Float32),
            per_electrode(&names.peak_layer, "PeakLayer", ChannelFormat::Int32),
            per_electrode(&names.significance, "Significance", ChannelFormat::Int8),
            tagged(StreamInfo::with_labels(
                &names.layers,
                "AlignmentLayers",
                0.0,
                ChannelFormat::Float32,
                &names.layers,
                layer_labels,
            )),
            tagged(StreamInfo::new(
                &names.words,
                "Markers",
                1,
                0.0,
                ChannelFormat::String,
                &names.words,
            )),
        ] {
            send(&sinks, Record::ResultStream(info));
        }
        Self {
            sinks,
            model,
            names,
            labels,
            layers,
            layers_every: (alignment_hz / LAYERS_HZ).round().max(1.0) as u64,
            updates: 0,
            last_horizon: f64::NEG_INFINITY,
        }
    }

    /// Records an alignment update (stamped at its horizon) when its horizon advanced.
    pub fn alignment(&mut self, update: &AlignmentUpdate) {
        if update.horizon <= self.last_horizon {
            return;
        }
        self.last_horizon = update.horizon;
        let s =
            AlignmentSummary::compute(&update.r, &self.layers, update.chance, &update.significant);
        let t = update.horizon;
        send(
            &self.sinks,
            Record::Result(self.names.alignment.clone(), t, Samples::Float32(s.peak_r)),
        );
        let peak = s.peak_layer.iter().map(|l| l.map_or(-1, |l| l as i32));
        send(
            &self.sinks,
            Record::Result(
                self.names.peak_layer.clone(),
                t,
                Samples::Int32(peak.collect()),
            ),
        );
        if s.significant.len() == self.labels.len() {
            let flags = s.significant.iter().map(|&b| i8::from(b)).collect();
            send(
                &self.sinks,
                Record::Result(self.names.significance.clone(), t, Samples::Int8(flags)),
            );
        }
        if self.updates.is_multiple_of(self.layers_every) {
            send(
                &self.sinks,
                Record::Result(
                    self.names.layers.clone(),
                    t,
                    Samples::Float32(update.r.clone()),
                ),
            );
        }
        self.updates += 1;
    }

    /// Records a word event as JSON, stamped at its onset (retractions, which have none,
    /// at the last horizon).
    pub fn word(&self, event: &WordEvent) {
        let t = if event.onset.is_finite() {
            event.onset
        } else {
            self.last_horizon.max(0.0)
        };
        let frame = WordFrame {
            word: event,
            model: &self.model,
        };
        let json = serde_json::to_string(&frame).unwrap_or_default();
        send(
            &self.sinks,
            Record::Result(self.names.words.clone(), t, Samples::String(vec![json])),
        );
    }
}

/// Sends `record` to the recording and the outlets, whichever are on.
fn send(sinks: &(Option<RecordTx>, Option<OutletTx>), record: Record) {
    if let Some(outlets) = &sinks.1 {
        outlets.send(record.clone());
    }
    if let Some(recorder) = &sinks.0 {
        recorder.send(record);
    }
}
