//! Per-electrode encoders: temporal-response-function ridge regression from
//! word-onset impulse features (PCA-reduced embeddings of every layer, at a
//! grid of lags) to each electrode's high-gamma, fit offline
//! ([`fit`]), stored as one safetensors file ([`Encoder`]), and applied live
//! word by word: kernels computed ([`KernelEncoder`]) and added to the timeline ([`Predictor`]).
//!
//! Model, per layer `l` and electrode `e`, in z-scored high-gamma units:
//! `hg_z[t, e] = intercept[l, e] + Σ_words Σ_lag W[l, e, lag, :] · x_l(word)`
//! over the words whose onset sample plus `lag` equals `t`, where
//! `x_l(word) = pca_components[l] · (embedding[l] − pca_mean[l]) / feature_std[l]`.

mod design;
mod file;
mod fit;
mod null_dump;
mod pca;
mod predict;
mod ridge;
pub mod session_file;
pub mod session_xdf;

pub use design::{dense_design, LagGrid};
pub use file::{ChannelMap, Encoder, EncoderMeta, HighGammaMeta, ModelMeta, TrainingMeta};
pub use fit::{dump_design, fit, DesignDump, FitConfig, Provenance};
pub use null_dump::dump_null;
pub use pca::Pca;
pub use predict::{
    predict_offline, predict_offline_layer, KernelEncoder, Predictor, WordKernel, WordUpdate,
};

/// One word of a session: its onset (seconds, same clock as the neural
/// samples) and its embedding from every layer, `[layers, dim]` row-major.
#[derive(Debug, Clone)]
pub struct SessionWord {
    /// Onset time in seconds on the session clock.
    pub onset: f64,
    /// Embedding per layer, `[layers, dim]` row-major.
    pub embedding: Vec<f32>,
}

/// A recorded session reduced to what fitting needs: high-gamma samples at a
/// regular rate and the words heard, with their embeddings.
#[derive(Debug, Clone)]
pub struct Session {
    /// High-gamma, `[samples, electrodes]` row-major.
    pub hg: Vec<f32>,
    /// Sampling rate of `hg` in Hz.
    pub rate: f64,
    /// Time of sample 0 in seconds.
    pub t0: f64,
    /// Electrode labels, one per column of `hg`.
    pub labels: Vec<String>,
    /// Number of layers in every word embedding.
    pub layers: usize,
    /// Width of one layer's embedding.
    pub dim: usize,
    /// Words in onset order (any order is accepted).
    pub words: Vec<SessionWord>,
}

impl Session {
    /// Number of electrodes (columns of `hg`).
    pub fn electrodes(&self) -> usize {
        self.labels.len()
    }

    /// Number of high-gamma samples.
    pub fn samples(&self) -> usize {
        self.hg.len() / self.labels.len().max(1)
    }

    /// Checks that the arrays agree with the declared shapes.
    pub fn validate(&self) -> Result<(), EncodeError> {
        let e = self.labels.len();
        if e == 0 || !self.hg.len().is_multiple_of(e) {
            return Err(EncodeError::Shape(format!(
                "high-gamma has {} values, not a multiple of {} electrodes",
                self.hg.len(),
                e
            )));
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(EncodeError::Shape(format!(
                "rate must be positive, got {}",
                self.rate
            )));
        }
        if let Some((i, w)) = self
            .words
            .iter()
            .enumerate()
            .find(|(_, w)| w.embedding.len() != self.layers * self.dim || !w.onset.is_finite())
        {
            return Err(EncodeError::Shape(format!(
                "word {i} has {} embedding values (expected {} layers × {} dim) or a non-finite onset {}",
                w.embedding.len(),
                self.layers,
                self.dim,
                w.onset
            )));
        }
        Ok(())
    }
}

/// Errors from fitting, loading and applying encoders.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Arrays whose sizes do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Encoders made for another language model.
    #[error("encoders were fit on model {expected_name} (sha256 {expected}), but the running model is sha256 {actual}; refit with `neuralign fit` on this model")]
    ModelMismatch {
        /// Model hash stored in the encoder file.
        expected: String,
        /// Model name stored in the encoder file.
        expected_name: String,
        /// Hash of the running model.
        actual: String,
    },
    /// Encoders made for another high-gamma rate.
    #[error("encoders were fit at {expected} Hz high-gamma, but the stream delivers {actual} Hz")]
    RateMismatch {
        /// Rate stored in the encoder file.
        expected: f64,
        /// Rate of the stream.
        actual: f64,
    },
    /// Encoder electrodes the stream does not carry.
    #[error("{} of the encoders' electrodes are missing from the stream: {}{}", missing.len(), missing.iter().take(10).cloned().collect::<Vec<_>>().join(", "), if missing.len() > 10 { ", …" } else { "" })]
    MissingChannels {
        /// Labels in the encoder file with no stream channel.
        missing: Vec<String>,
    },
    /// Too little data to fit.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    /// A linear-algebra routine failed.
    #[error("linear algebra failed: {0}")]
    Linalg(String),
    /// A malformed encoder file.
    #[error("encoder file {path}: {reason}")]
    File {
        /// Path of the file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
