//! Recorded sessions in XDF, the format LabRecorder writes and pyxdf, MNE and
//! EEGLAB read (<https://github.com/sccn/xdf/wiki/Specifications>).
//!
//! - [`read`] / [`read_with`] / [`read_bytes`]: every chunk type and channel format; files cut
//!   off mid-chunk load up to the last complete chunk; optional clock
//!   synchronisation and jitter removal with pyxdf's semantics ([`sync`]).
//! - [`XdfWriter`]: incremental writer used for the server's recording.
//!
//! Playing a file as LSL outlets is neuralign's `replay` module; synthetic sessions are its
//! `sim` module.
mod chunk;
pub mod info;
mod reader;
pub mod samples;
pub mod sync;
mod writer;
pub mod xml;

pub use info::{ChannelFormat, StreamInfo};
pub use reader::{read, read_bytes, read_with, ReadOptions};
pub use samples::Samples;
pub use writer::XdfWriter;

/// A whole XDF file in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct XdfFile {
    /// The FileHeader chunk's XML.
    pub header_xml: String,
    /// Streams in the order their headers appear in the file.
    pub streams: Vec<Stream>,
    /// Problems met while reading (truncation, corrupt chunks, unknown
    /// stream ids); each one also went to the log.
    pub warnings: Vec<String>,
}

/// One stream: its header, samples, clock offsets and footer.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Stream id from the file (unique within the file).
    pub id: u32,
    /// Parsed StreamHeader.
    pub info: StreamInfo,
    /// One time stamp per sample, seconds on the recording's clock (after
    /// synchronisation if it was requested).
    pub time_stamps: Vec<f64>,
    /// The values, `[samples, channels]` row-major.
    pub data: Samples,
    /// ClockOffset chunks in file order.
    pub clock_offsets: Vec<ClockOffset>,
    /// The StreamFooter XML, absent if the recording never wrote one.
    pub footer_xml: Option<String>,
    /// Measured rate (pyxdf's `effective_srate`), 0 for irregular streams.
    pub effective_srate: f64,
    /// Inclusive sample ranges between time-stamp breaks (pyxdf `segments`).
    pub segments: Vec<(usize, usize)>,
    /// Inclusive sample ranges between clock resets (pyxdf `clock_segments`);
    /// empty unless clocks were synchronised.
    pub clock_segments: Vec<(usize, usize)>,
}

impl Stream {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.time_stamps.len()
    }

    /// True when the stream holds no samples.
    pub fn is_empty(&self) -> bool {
        self.time_stamps.is_empty()
    }
}

/// One clock-offset measurement: at `time` (the stream's clock), the
/// recorder's clock minus the stream's clock was `value` seconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClockOffset {
    /// Collection time on the stream's clock, seconds.
    pub time: f64,
    /// Offset to add to the stream's time stamps, seconds.
    pub value: f64,
}

/// Errors from reading or writing XDF files.
#[derive(Debug, thiserror::Error)]
pub enum XdfError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with the `XDF:` magic.
    #[error("{0}: not an XDF file (it does not start with \"XDF:\")")]
    NotXdf(std::path::PathBuf),
    /// The writer refuses to replace an existing recording.
    #[error("{0} already exists; choose another file name or delete it first")]
    Exists(std::path::PathBuf),
    /// A stream header could not be parsed.
    #[error("invalid stream header: {0}")]
    BadHeader(String),
    /// Samples that do not fit the stream (wrong format or channel count).
    #[error("stream {id}: {reason}")]
    BadSamples {
        /// Stream id.
        id: u32,
        /// What is wrong.
        reason: String,
    },
    /// A stream id the writer never handed out.
    #[error("unknown stream id {0}")]
    UnknownStream(u32),
}
