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

/// Items that exist only with the `runtime` feature (everything but the input formats).
macro_rules! runtime {
    ($($item:item)*) => { $(#[cfg(feature = "runtime")] $item)* };
}

pub mod ingest;
pub mod xdf;

runtime! {
    pub mod align;
    pub mod bench;
    pub mod cli;
    pub mod config;
    pub mod dsp;
    pub mod encode;
    pub mod lm;
    pub mod metrics;
    pub mod serve;
    pub mod utc;
}
