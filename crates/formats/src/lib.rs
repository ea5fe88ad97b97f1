//! neuralign's untrusted-input formats, in a crate of their own so that the fuzz targets
//! (`fuzz/`, docs/fuzzing.md) link only these parsers and what they need, not the server.
//!
//! - [`transcript`]: the transcript contract (`docs/transcript.md`): the typed message, its
//!   parser with rejections counted by reason, and the [`transcript::TranscriptState`] the
//!   language model follows.
//! - [`word_table`]: a stimulus's words with their times (`word,start,end` CSV or TSV).
//! - [`xdf`]: reading and writing XDF recordings (`docs/xdf.md`).
//! - [`edf`], [`brainvision`]: clinical recordings (EDF/EDF+/BDF, BrainVision) read into a
//!   [`recording::Recording`] (`docs/import.md`).
//! - [`wav`]: WAV audio (PCM and float) for `play` and `transcribe`.
//! - [`import`]: those recordings, BIDS iEEG sidecars and a word table converted to an XDF
//!   session, streamed.
pub mod brainvision;
pub mod edf;
pub mod import;
pub mod recording;
pub mod transcript;
pub mod wav;
pub mod word_table;
pub mod xdf;
