//! neuralign: real-time alignment of language-model embeddings with
//! intracranial EEG high-gamma activity, word by word.
//!
//! The pipeline, one module per stage:
//! - [`ingest`]: LSL inlets for the neural and transcript streams.
//! - [`dsp`]: causal high-gamma extraction from raw iEEG.
//! - [`lm`]: the language model, per-word per-layer embeddings with a KV cache.
//! - [`encode`]: per-electrode encoders (fit offline, applied live).
//! - [`align`]: predicted-versus-actual scoring up to the horizon.
//! - [`serve`]: WebSocket API and dashboard.
//! - [`xdf`]: reading, writing, replaying and simulating recorded sessions.
//!
//! Across stages: [`metrics`] (per-stage latency histograms) and [`bench`]
//! (`neuralign bench`).
//!
//! Everything but the untrusted-input formats sits behind the default `runtime` feature;
//! without it the crate is `ingest::transcript` and the XDF reader and writer (what the fuzz
//! targets link).

#[cfg(feature = "runtime")]
pub mod align;
#[cfg(feature = "runtime")]
pub mod bench;
#[cfg(feature = "runtime")]
pub mod cli;
#[cfg(feature = "runtime")]
pub mod config;
#[cfg(feature = "runtime")]
pub mod dsp;
#[cfg(feature = "runtime")]
pub mod encode;
pub mod ingest;
#[cfg(feature = "runtime")]
pub mod lm;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
pub mod serve;
#[cfg(feature = "runtime")]
pub mod utc;
pub mod xdf;
