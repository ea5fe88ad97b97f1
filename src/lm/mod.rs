//! The language-model engine: per-word, per-layer embeddings with a cached
//! key/value context.
//!
//! [`Engine`] owns a GGUF model (llama family: [`model::Model`]; Gemma 3:
//! [`gemma3::Gemma3`]; our own forward passes on candle's quantized kernels;
//! chosen by name from [`registry`] or by path), its tokenizer (rebuilt from
//! the GGUF metadata) and the words of the current context. Each pushed word
//! runs one forward call over its tokens only, reusing the cached keys and
//! values of the words before it, and yields the hidden state of every layer
//! (0 = token embedding, k = residual stream after block k). Transcript
//! revisions roll the context back to a word boundary.
//!
//! # Context limit
//! When a new word would make the context longer than
//! `max_context_tokens`, the oldest words are dropped until the kept words
//! plus the new word fit in half the limit; the first kept word is
//! re-tokenized without its leading space (it now starts the context), and
//! the kept words are re-prefilled together with the new word in the same
//! forward call. The new word's embedding then equals that of a fresh engine
//! fed only the kept words and the new word. A word longer than half the
//! limit is rejected with [`LmError::WordTooLong`].
//!
//! A live engine ([`Engine::enable_prepared_compaction`], as `serve` runs it) does not
//! wait for that re-prefill: from the first word after the context passes half the
//! limit, the LM thread runs the words, when idle, into a second key/value cache as a
//! fresh context; at the limit the words before them are dropped and that cache takes
//! over. The kept words are then those since the context passed half the limit (about
//! half, as above), with the same guarantee.
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod backbone;
mod embeddings_file;
mod engine;
mod error;
pub mod fetch;
pub mod gemma3;
pub mod hparams;
mod linear;
pub mod model;
mod norm;
pub mod registry;
pub mod spm;
pub mod tokenizer;
pub mod untrained;

pub use embeddings_file::{write_embeddings, EmbeddingsMeta};
pub use engine::{Compactions, Engine};
pub use error::LmError;
pub use registry::ModelRef;

/// Engine settings (the `[lm]` table of a config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmConfig {
    /// A model by name (`smollm2-135m`, `gemma3-270m`, `smollm2-135m-untrained[:SEED]`)
    /// or a local GGUF path (llama family or gemma3); `None` uses (and fetches) the
    /// default model, SmolLM2-135M.
    pub model: Option<ModelRef>,
    /// The most tokens of context kept; see the module docs for what happens
    /// when it is reached.
    pub max_context_tokens: usize,
    /// How a multi-token word's hidden states become one vector.
    pub pool: Pool,
}

impl Default for LmConfig {
    fn default() -> Self {
        LmConfig {
            model: None,
            max_context_tokens: 2048,
            pool: Pool::Last,
        }
    }
}

/// Pooling of a word's tokens into its embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The hidden state of the word's last token (the paper's choice).
    #[default]
    Last,
    /// The mean over the word's tokens.
    Mean,
}

/// Where the time of one word went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTiming {
    /// Tokenizing the word.
    pub tokenize: Duration,
    /// The forward pass (in batch mode: the call's time divided by its words).
    pub forward: Duration,
}

/// One word's hidden states across layers.
#[derive(Debug, Clone, PartialEq)]
pub struct WordEmbedding {
    /// Number of layers (embeddings + blocks).
    pub layers: usize,
    /// Width of the residual stream.
    pub dim: usize,
    /// `[layers, dim]`, row-major.
    pub data: Vec<f32>,
    /// The word's token ids, as run in its context.
    pub tokens: Vec<u32>,
    /// Time spent on this word.
    pub timing: StepTiming,
}

impl WordEmbedding {
    /// The hidden state at layer `l` (`0` = token embedding).
    pub fn layer(&self, l: usize) -> &[f32] {
        &self.data[l * self.dim..(l + 1) * self.dim]
    }
}
