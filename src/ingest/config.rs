//! The ingest sections of the server config (`[lsl]`, `[neural]`, `[transcript]`), with the
//! defaults a bedside session uses when a field is left out.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::resolve::StreamSelector;

/// `[lsl]`: how this process talks to Lab Streaming Layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LslConfig {
    /// liblsl config file (relative to the server config file). It keeps discovery on
    /// loopback on machines that must not multicast; exported as `LSLAPICFG` at start-up
    /// unless the environment already sets one.
    pub api_config: Option<PathBuf>,
    /// How long a resolve waits for a stream to answer, in seconds.
    pub resolve_timeout_s: f64,
}

impl Default for LslConfig {
    fn default() -> Self {
        Self {
            api_config: None,
            resolve_timeout_s: 2.0,
        }
    }
}

/// What the neural stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeuralMode {
    /// Already-extracted high-gamma (typically 100 Hz): used as is.
    HighGamma,
    /// Raw iEEG (hundreds to thousands of Hz): the server extracts high-gamma causally.
    Raw,
}

/// `[neural]`: the iEEG inlet.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeuralConfig {
    /// Which stream: by `name`, `type` or `source_id`.
    pub stream: StreamSelector,
    /// Raw iEEG or high-gamma.
    pub mode: NeuralMode,
    /// Smooth the time stamps with liblsl's dejitter (for amplifiers with jittery clocks).
    pub dejitter: bool,
    /// Largest chunk pulled at once, in samples.
    pub max_chunk: usize,
    /// How much liblsl buffers while the pipeline is busy, in seconds. The inlet thread
    /// waits for room in the pipeline's channel for up to this long (liblsl goes on
    /// receiving meanwhile), so a burst (a replay at `--speed max`, a stalled consumer)
    /// loses nothing unless it outlasts this buffer.
    pub lsl_buffer_s: u32,
    /// A step between consecutive time stamps longer than this many sample periods is a gap.
    pub gap_tolerance_periods: f64,
    /// Capacity of the channel that hands chunks to the pipeline (a chunk that finds it
    /// full for `lsl_buffer_s` is dropped and counted).
    pub channel_capacity: usize,
    /// A stream silent for this long is reported lost and re-resolved, in seconds.
    pub lost_after_s: f64,
}

impl Default for NeuralConfig {
    fn default() -> Self {
        Self {
            stream: StreamSelector::Type("iEEG".into()),
            mode: NeuralMode::HighGamma,
            dejitter: false,
            max_chunk: 1024,
            lsl_buffer_s: 3600,
            gap_tolerance_periods: 1.5,
            channel_capacity: 256,
            lost_after_s: 2.0,
        }
    }
}

/// `[transcript]`: the word stream from the speech recogniser.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscriptConfig {
    /// Which stream: by `name`, `type` or `source_id`.
    pub stream: StreamSelector,
    /// Without explicit watermarks, after this many seconds without a message the transcript
    /// watermark advances to `now - silence_timeout_s`.
    pub silence_timeout_s: f64,
    /// Capacity of the channel that hands transcript updates to the pipeline.
    pub channel_capacity: usize,
    /// Words that start this many seconds before the watermark are forgotten (the transcript
    /// and the language model's record of it stay bounded over hours); a revision of one
    /// arrives as a new, late word. `inf` keeps every word.
    pub forget_after_s: f64,
}

impl Default for TranscriptConfig {
    fn default() -> Self {
        Self {
            stream: StreamSelector::Type("Transcript".into()),
            silence_timeout_s: 3.0,
            channel_capacity: 1024,
            forget_after_s: 600.0,
        }
    }
}
