//! [`Backbone`]: the forward pass of whichever architecture a model file has, behind one
//! interface for the engine (llama family in `model.rs`, Gemma 3 in `gemma3.rs`).
use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;

use super::gemma3::Gemma3;
use super::hparams::HParams;
use super::model::{Forward, Model};
use super::registry::Architecture;
use super::LmError;

/// A loaded model of either architecture, with its key/value cache.
pub enum Backbone {
    /// Llama, Mistral, Qwen2, SmolLM2.
    Llama(Model),
    /// Gemma 3.
    Gemma3(Gemma3),
}

/// Calls the same method on whichever model is inside.
macro_rules! dispatch {
    ($self:expr, $m:ident => $call:expr) => {
        match $self {
            Backbone::Llama($m) => $call,
            Backbone::Gemma3($m) => $call,
        }
    };
}

impl Backbone {
    /// The architecture a GGUF's `general.architecture` names.
    pub fn architecture(content: &Content) -> Result<Architecture, LmError> {
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| LmError::Gguf("no general.architecture in the metadata".into()))?;
        Ok(match arch.as_str() {
            "gemma3" => Architecture::Gemma3,
            _ => Architecture::Llama,
        })
    }

    /// Loads the weights of a GGUF whose header was read into `content`, with room for
    /// `capacity` tokens of context.
    pub fn load<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        capacity: usize,
    ) -> Result<Backbone, LmError> {
        Ok(match Self::architecture(content)? {
            Architecture::Gemma3 => Backbone::Gemma3(Gemma3::load(content, reader, capacity)?),
            Architecture::Llama => {
                let hp = HParams::from_gguf(content)?;
                Backbone::Llama(Model::load(content, reader, hp, capacity)?)
            }
        })
    }

    /// Hidden states per position: the embeddings plus one per block.
    pub fn n_layers(&self) -> usize {
        dispatch!(self, m => m.n_layers())
    }

    /// Width of the residual stream.
    pub fn dim(&self) -> usize {
        match self {
            Backbone::Llama(m) => m.hparams().dim,
            Backbone::Gemma3(m) => m.params().dim,
        }
    }

    /// Bytes of weights one decoding step reads.
    pub fn step_weight_bytes(&self) -> usize {
        dispatch!(self, m => m.step_weight_bytes())
    }

    /// Tokens currently in the key/value cache.
    pub fn cache_len(&self) -> usize {
        dispatch!(self, m => m.cache_len())
    }

    /// The most tokens the cache can hold.
    pub fn capacity(&self) -> usize {
        dispatch!(self, m => m.capacity())
    }

    /// Bytes of keys and values one token of context takes in the cache.
    pub fn kv_bytes_per_token(&self) -> usize {
        dispatch!(self, m => m.kv_bytes_per_token())
    }

    /// Forgets every cached token from position `len` on.
    pub fn truncate(&mut self, len: usize) {
        dispatch!(self, m => m.truncate(len))
    }

    /// Exchanges the key/value cache with the spare one (empty the first time): the engine
    /// builds the context that follows a compaction there.
    pub fn swap_caches(&mut self) -> Result<(), LmError> {
        dispatch!(self, m => m.swap_caches())
    }

    /// Next-token logits after the cached context (see [`Model::logits_after_last`]).
    pub fn logits_after_last(&mut self, last: u32) -> Result<Vec<f32>, LmError> {
        dispatch!(self, m => m.logits_after_last(last))
    }

    /// Runs `tokens` after the cached context (see [`Model::forward_or_yield`]).
    pub fn forward(
        &mut self,
        tokens: &[u32],
        keep: &[usize],
        want_logits: bool,
    ) -> Result<Forward, LmError> {
        self.forward_or_yield(tokens, keep, want_logits, &|| false)
    }

    /// [`Backbone::forward`] that gives up between blocks once `yield_now()` is true.
    pub fn forward_or_yield(
        &mut self,
        tokens: &[u32],
        keep: &[usize],
        want_logits: bool,
        yield_now: &dyn Fn() -> bool,
    ) -> Result<Forward, LmError> {
        dispatch!(self, m => m.forward_or_yield(tokens, keep, want_logits, yield_now))
    }
}
