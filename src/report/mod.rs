//! `neuralign report`: the statistics of a session and their rendering. The
//! statistics are those of `fit` ([`crate::stats::held_out`], `docs/statistics.md`),
//! computed here from pretrained encoders' predictions of a session ([`offline`]);
//! [`table`] writes them as TSV, [`plots`] as SVG figures and [`page`] as the HTML
//! page that shows the figures and says how they were computed.

pub mod compare;
pub mod page;
pub mod plots;
pub mod recording;
pub mod table;

use crate::encode::{predict_offline_layer, Encoder, ModelMeta, Session};
use crate::stats::held_out::HeldOut;
use crate::stats::{FitStatistics, StatsConfig};
use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::Serialize;

/// Which samples of a session the statistics are computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Span {
    /// The held-out tail when the session is the one the encoders were fit on
    /// (same number of samples as their training, gap and tail), else the whole session.
    Auto,
    /// The fit's held-out tail (after its training part and purge gap).
    HeldOut,
    /// Every sample (a session the encoders never saw).
    Whole,
}

/// How the figures of a report were obtained.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "path", rename_all = "kebab-case")]
pub enum Source {
    /// Recomputed from the session's neural and transcript streams: the transcript
    /// embedded by the encoders' model, the encoders' prediction of every layer
    /// compared with the high-gamma over `samples` samples from `start`.
    Offline {
        /// [`Span::HeldOut`] or [`Span::Whole`] (never `Auto`).
        span: Span,
        /// First sample evaluated.
        start: usize,
        /// Samples evaluated.
        samples: usize,
    },
    /// Read back from the results streams `serve` kept in the recording
    /// ([`recording::Saved`]).
    Recording {
        /// Alignment updates saved (`neuralign-alignment`).
        updates: usize,
        /// Per-layer updates saved (`neuralign-alignment-layers`, 1 Hz).
        layer_updates: usize,
        /// Whether the significance was saved (the encoders carried a live calibration
        /// for the server's window).
        significance: bool,
    },
    /// The live statistic recomputed from the recording's neural and transcript streams
    /// through `align::Live`, sample by sample as `serve` computes it.
    Replay {
        /// Rolling window, samples (the encoders' live calibration's, else 10 s).
        window: usize,
        /// Segment boundaries of the transcript, where the statistics restart.
        segments: usize,
    },
}

impl Source {
    /// The path's name, as `--json` and the page's `data-path` give it.
    pub fn path(&self) -> &'static str {
        match self {
            Source::Offline { .. } => "offline",
            Source::Recording { .. } => "recording",
            Source::Replay { .. } => "replay",
        }
    }
}

/// The statistics of a session with what is needed to show them.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The session file.
    pub session: String,
    /// The encoder file.
    pub encoders: String,
    /// How the figures were obtained.
    pub source: Source,
    /// The language model of the encoders.
    pub model: ModelMeta,
    /// Layers of the model (embedding output included): relative depth is
    /// `layer / (model_layers − 1)`.
    pub model_layers: usize,
    /// High-gamma rate, Hz.
    pub rate: f64,
    /// Inner cross-validation folds of the encoders' fit.
    pub folds: usize,
    /// Per electrode, its group (shaft, strip or grid).
    pub groups: Vec<String>,
    /// The statistics, per electrode in encoder order.
    pub statistics: FitStatistics,
    /// The results `serve` saved in the recording, when it holds them.
    pub recording: Option<recording::Recorded>,
}

/// Errors of `report`.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The encoders do not fit the session (model, rate, channels).
    #[error(transparent)]
    Encoders(#[from] crate::encode::EncodeError),
    /// Too little data for the statistics.
    #[error(transparent)]
    Stats(#[from] crate::stats::StatsError),
    /// A span the session cannot give.
    #[error("{0}")]
    Span(String),
    /// The session file could not be read back.
    #[error(transparent)]
    Xdf(#[from] crate::xdf::XdfError),
    /// The results streams of a recording are not as `serve` writes them.
    #[error("the recording's results streams: {0}")]
    Recording(String),
    /// Models that cannot be compared.
    #[error("compare: {0}")]
    Compare(String),
    /// A figure could not be drawn.
    #[error("cannot draw {file}: {reason}")]
    Plot {
        /// The SVG file.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing an output failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The group of an electrode from its label: the letters before its contact
/// number (`LA3` → `LA`), or the label itself when it has no number.
pub fn group_of(label: &str) -> String {
    let stem = label.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem.is_empty() { label } else { stem }.to_string()
}

/// What `offline` needs besides the encoders and the session.
#[derive(Debug, Clone)]
pub struct OfflineOptions {
    /// Which samples.
    pub span: Span,
    /// The statistics' settings (default: those of the encoders' fit).
    pub stats: StatsConfig,
    /// sha256 of the model that embedded the session's words.
    pub model_sha256: String,
}

/// The statistics of `session` (embedded by the encoders' model) under `enc`:
/// each layer's prediction of the span, against the high-gamma z-scored with
/// the encoders' training statistics; `progress` advances once per layer.
pub fn offline(
    enc: &Encoder,
    session: &Session,
    opts: &OfflineOptions,
    progress: &ProgressBar,
) -> Result<(Source, FitStatistics), ReportError> {
    let (enc, map) = enc.bind(&opts.model_sha256, session.rate, &session.labels, false)?;
    let t = session.samples();
    let training = &enc.meta.training;
    let fit_total = training.train_samples + training.gap_samples + training.test_samples;
    let span = match opts.span {
        Span::Auto if t == fit_total => Span::HeldOut,
        Span::Auto => Span::Whole,
        s => s,
    };
    let (start, gap) = match span {
        Span::HeldOut if t != fit_total => {
            return Err(ReportError::Span(format!(
                "--span held-out: the session has {t} samples, the encoders were fit on {fit_total} (training {}, gap {}, tail {}); this is not their session",
                training.train_samples, training.gap_samples, training.test_samples
            )))
        }
        Span::HeldOut => (
            training.train_samples + training.gap_samples,
            training.gap_samples,
        ),
        _ => (0, 0),
    };
    let e = enc.electrodes;
    let columns = session.electrodes();
    let actual: Vec<f64> = session.hg[start * columns..]
        .chunks_exact(columns)
        .flat_map(|row| {
            map.stream_index
                .iter()
                .enumerate()
                .map(|(k, &c)| (row[c] - enc.neural_mean[k]) as f64 / enc.neural_std[k] as f64)
        })
        .collect();
    let held = HeldOut::new(&opts.stats, session.rate, actual, e, gap)?;
    let words: Vec<(f64, &[f32])> = session
        .words
        .iter()
        .map(|w| (w.onset, w.embedding.as_slice()))
        .collect();
    progress.set_length(enc.layers as u64);
    let per_layer: Vec<_> = (0..enc.layers)
        .into_par_iter()
        .map(|l| {
            let pred = predict_offline_layer(&enc, l, &words, session.t0, start..t);
            let rows: Vec<f64> = (0..pred.nrows())
                .flat_map(|i| (0..e).map(move |k| (i, k)))
                .map(|(i, k)| pred[(i, k)])
                .collect();
            let part = held.layer(&rows);
            progress.inc(1);
            part
        })
        .collect();
    let samples = held.samples();
    let stats = held.finish(&enc.meta.layers, &enc.meta.labels, per_layer);
    Ok((
        Source::Offline {
            span,
            start,
            samples,
        },
        stats,
    ))
}
