//! neuralign: real-time alignment of language-model embeddings with
//! intracranial EEG high-gamma activity, word by word.
//!
//! The live pipeline, sources → transforms → sinks, one module per stage:
//! - [`ingest`]: LSL inlets for the neural and transcript streams (sources).
//! - [`dsp`]: causal high-gamma extraction from raw iEEG.
//! - [`lm`]: the language model, per-word per-layer embeddings with a KV cache.
//! - [`encode`]: per-electrode encoders (fit offline, applied live).
//! - [`align`]: predicted-versus-actual scoring up to the horizon.
//! - [`pipeline`]: the stages wired into threads, with the session recording.
//! - [`serve`]: the sink: hub, WebSocket API, dashboard, `/metrics`.
//! - [`app`]: the running server, one lifecycle (hub + HTTP server + pipeline + shutdown).
//! - [`asr`]: speech in: Whisper words with their times (`transcribe`).
//!
//! Around it: [`transcript`], [`word_table`] and [`xdf`] (the untrusted-input formats, from the
//! `neuralign-formats` crate), [`replay`] (a recording as LSL outlets), [`play`] (a stimulus
//! WAV with its word table as LSL outlets), [`sim`] (synthetic
//! sessions and dashboards), [`metrics`] (per-stage latency histograms), [`bench`]
//! (`neuralign bench`), [`stats`] (null distributions, false discovery rate, peak-layer
//! intervals), [`report`] (`neuralign report`: a session's statistics as table, figures and page)
//! and [`cli`] (one file per subcommand).

pub use neuralign_formats::{import, transcript, wav, word_table, xdf};

pub mod align;
pub mod app;
pub mod asr;
pub mod bench;
pub mod cli;
pub mod dsp;
pub mod encode;
pub mod ingest;
pub mod lm;
pub mod metrics;
pub mod pipeline;
pub mod play;
pub mod replay;
pub mod report;
pub mod sender_clock;
pub mod serve;
pub mod sim;
pub mod stats;
pub mod utc;
