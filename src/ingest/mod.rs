//! Lab Streaming Layer ingest: the neural (iEEG) and transcript inlets, and the audio inlet
//! that `serve` records.
//!
//! Each inlet owns its liblsl handles on its own OS thread (they are not `Send`), resolves its
//! stream by name, type or source_id, re-resolves it when it is lost, and hands data to the
//! rest of the server through a bounded crossbeam channel: a full channel drops (and counts)
//! rather than blocking ingest. Times are on the server's LSL clock (liblsl clock correction).
//! - [`neural`]: chunked pulls of float32/double64/int16 samples into [`NeuralChunk`]s on a
//!   gap-aware sample grid ([`timeline`]).
//! - [`transcript_inlet`]: the transcript contract ([`crate::transcript`]) fed from LSL.
//! - [`audio_inlet`]: the session's audio, in its own sample format, for the recording.
//! - [`resolve`]: stream selection and discovery (`neuralign streams`).
//! - [`listen`]: a timed session on both inlets (`neuralign listen`).
pub mod audio_inlet;
mod clock_follow;
pub mod config;
mod inlet_thread;
mod link;
pub mod listen;
pub mod neural;
pub mod resolve;
pub mod timeline;
pub mod transcript_inlet;

pub use audio_inlet::{AudioInlet, AudioRecord, AudioStatus, AudioTap};
pub use config::{LslConfig, NeuralConfig, NeuralMode, TranscriptConfig};
pub use link::{apply_lsl_config, LatencySummary, LinkState};
pub use neural::{NeuralInlet, NeuralStatus, StreamMeta};
pub use resolve::{list_streams, StreamSelector, StreamSummary};
pub use timeline::{Gap, GapTracker, NeuralChunk, Timeline};
pub use transcript_inlet::{MessageTap, TranscriptInlet, TranscriptStatus, TranscriptUpdate};

/// Errors of the ingest layer.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A liblsl call failed.
    #[error("liblsl failed during {during}: {source:?}")]
    Lsl {
        /// What was being done.
        during: &'static str,
        /// liblsl's error.
        source: lsl::Error,
    },
    /// The liblsl config named by the server config is missing or unreadable.
    #[error("LSL config {path} cannot be read ({source}); liblsl would silently fall back to multicasting on every interface")]
    LslConfig {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The selected stream has a format this inlet cannot take.
    #[error("stream {stream} has channel format {format}; {expected}")]
    Format {
        /// The stream name.
        stream: String,
        /// Its format.
        format: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The inlet thread could not be started.
    #[error("cannot start the {0} inlet thread")]
    Thread(&'static str, #[source] std::io::Error),
}
