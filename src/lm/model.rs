//! The forward pass of a llama-family transformer: quantized matmuls on the
//! GGUF's stored weights, f32 activations, candle's RMSNorm and SwiGLU, and
//! our kernels ([`neuralign_kernels`]) for the rotary embeddings and the
//! attention over a preallocated f16 key/value cache. Unlike
//! candle-transformers' models it returns the hidden state of every layer
//! (0 = token embedding, k = residual stream after block k) at the positions
//! asked for, and the cache can be truncated to any length.
use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use neuralign_kernels::attention::KvBlock;
use neuralign_kernels::rope::{Pairing, RopeTables};

use super::hparams::{HParams, RopeStyle};
use super::linear::{Fused, Linear};
use super::norm::RmsNorm;
use super::LmError;

/// One transformer block's weights.
struct Block {
    attn_norm: RmsNorm,
    /// The Q, K and V projections.
    qkv: Fused,
    /// Qwen2 has biases on the Q, K and V projections.
    qkv_bias: Option<[Tensor; 3]>,
    o: Linear,
    ffn_norm: RmsNorm,
    /// The gate and up projections.
    gate_up: Fused,
    down: Linear,
}

/// Keys and values of every block for the tokens seen so far, in buffers
/// allocated once for the whole capacity so that a step writes only its own
/// rows and truncation is free.
struct KvCache {
    /// Per block, f16 `[n_kv_heads, capacity, head_dim]`.
    blocks: Vec<KvBlock>,
    len: usize,
}

impl KvCache {
    fn new(hp: &HParams, capacity: usize) -> Result<KvCache, LmError> {
        Ok(KvCache {
            blocks: (0..hp.n_blocks)
                .map(|_| KvBlock::new(hp.n_kv_heads, capacity, hp.head_dim))
                .collect::<Result<_, _>>()?,
            len: 0,
        })
    }
}

/// What one forward call returns.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Hidden states at the kept positions, `[kept, layers, dim]` row-major.
    pub hidden: Vec<f32>,
    /// Next-token logits after the last token, when asked for.
    pub logits: Option<Vec<f32>>,
}

/// A loaded model and its key/value cache.
pub struct Model {
    hp: HParams,
    device: Device,
    /// Token embeddings, dequantized to f32 `[vocab, dim]` for row lookup.
    embeddings: Tensor,
    blocks: Vec<Block>,
    out_norm: RmsNorm,
    /// Output projection (the tied embedding matrix when the file has no `output.weight`).
    head: QMatMul,
    /// RoPE tables for every position of the capacity.
    rope: RopeTables,
    cache: KvCache,
    /// A second cache, swapped in to build the context that follows a compaction
    /// (allocated on first use).
    spare: Option<KvCache>,
    capacity: usize,
}

impl Model {
    /// Loads the weights of a GGUF whose header was already read into
    /// `content`, with room for `capacity` tokens of context.
    pub fn load<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        hp: HParams,
        capacity: usize,
    ) -> Result<Model, LmError> {
        let device = Device::Cpu;
        let mut qtensor = |name: &str| -> Result<QTensor, LmError> {
            if !content.tensor_infos.contains_key(name) {
                return Err(LmError::Gguf(format!("tensor {name} is missing")));
            }
            Ok(content.tensor(reader, name, &device)?)
        };
        let token_embd = std::sync::Arc::new(qtensor("token_embd.weight")?);
        let embeddings = token_embd.dequantize(&device)?;
        if embeddings.dim(1)? != hp.dim {
            return Err(LmError::Gguf(format!(
                "token_embd.weight is {:?}, expected width {}",
                embeddings.shape(),
                hp.dim
            )));
        }
        let mut blocks = Vec::with_capacity(hp.n_blocks);
        for b in 0..hp.n_blocks {
            let mut t = |n: &str| qtensor(&format!("blk.{b}.{n}"));
            let qkv_bias = if content
                .tensor_infos
                .contains_key(&format!("blk.{b}.attn_q.bias"))
            {
                Some([
                    t("attn_q.bias")?.dequantize(&device)?,
                    t("attn_k.bias")?.dequantize(&device)?,
                    t("attn_v.bias")?.dequantize(&device)?,
                ])
            } else {
                None
            };
            blocks.push(Block {
                attn_norm: RmsNorm::new(&t("attn_norm.weight")?, hp.rms_eps)?,
                qkv: Fused::new(vec![
                    t("attn_q.weight")?,
                    t("attn_k.weight")?,
                    t("attn_v.weight")?,
                ])?,
                qkv_bias,
                o: Linear::new(t("attn_output.weight")?)?,
                ffn_norm: RmsNorm::new(&t("ffn_norm.weight")?, hp.rms_eps)?,
                gate_up: Fused::new(vec![t("ffn_gate.weight")?, t("ffn_up.weight")?])?,
                down: Linear::new(t("ffn_down.weight")?)?,
            });
        }
        let out_norm = RmsNorm::new(&qtensor("output_norm.weight")?, hp.rms_eps)?;
        let head = if content.tensor_infos.contains_key("output.weight") {
            QMatMul::from_qtensor(qtensor("output.weight")?)?
        } else {
            QMatMul::from_arc(token_embd)?
        };
        let rope = RopeTables::new(hp.head_dim, hp.rope_base, capacity);
        let cache = KvCache::new(&hp, capacity)?;
        Ok(Model {
            hp,
            device,
            embeddings,
            blocks,
            out_norm,
            head,
            rope,
            cache,
            spare: None,
            capacity,
        })
    }

    /// Exchanges the key/value cache with the spare one (empty the first time).
    pub fn swap_caches(&mut self) -> Result<(), LmError> {
        let spare = match self.spare.take() {
            Some(spare) => spare,
            None => KvCache::new(&self.hp, self.capacity)?,
        };
        self.spare = Some(std::mem::replace(&mut self.cache, spare));
        Ok(())
    }

    /// The model's hyper-parameters.
    pub fn hparams(&self) -> &HParams {
        &self.hp
    }

    /// Hidden states per position: the embeddings plus one per block.
    pub fn n_layers(&self) -> usize {
        self.hp.n_blocks + 1
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.embeddings.dims()[0]
    }

    /// Bytes of weights one decoding step reads: every block's matrices and
    /// norms (the LM head is skipped unless logits are asked for).
    pub fn step_weight_bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| {
                b.qkv.weight_bytes()
                    + b.o.weight_bytes()
                    + b.gate_up.weight_bytes()
                    + b.down.weight_bytes()
                    + b.attn_norm.bytes()
                    + b.ffn_norm.bytes()
            })
            .sum::<usize>()
            + self.out_norm.bytes()
    }

    /// Tokens currently in the key/value cache.
    pub fn cache_len(&self) -> usize {
        self.cache.len
    }

    /// The most tokens the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of keys and values one token of context takes in the cache (f16, every block).
    pub fn kv_bytes_per_token(&self) -> usize {
        self.cache
            .blocks
            .iter()
            .map(KvBlock::bytes_per_position)
            .sum()
    }

    /// Forgets every cached token from position `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.cache.len = self.cache.len.min(len);
    }

    /// Next-token logits after the cached context, by re-running its last
    /// token `last` (which the caller knows); the cache is unchanged.
    pub fn logits_after_last(&mut self, last: u32) -> Result<Vec<f32>, LmError> {
        let len = self.cache.len;
        if len == 0 {
            return Err(LmError::Gguf(
                "the context is empty: no logits to compute".into(),
            ));
        }
        self.cache.len = len - 1;
        let out = self.forward_or_yield(&[last], &[], true, &|| false);
        // Rewriting the same row leaves the cache as it was, success or not.
        self.cache.len = len;
        Ok(out?.logits.expect("logits were asked for"))
    }

    /// Runs `tokens` after the cached context in one call, appending them to
    /// the cache. Returns the hidden states of every layer at the positions
    /// `keep` (indices into `tokens`) and, if `want_logits`, the next-token
    /// logits after the last token. On error the cache is left as it was. It gives up
    /// before a block once `yield_now()` is true ([`LmError::Yielded`]): idle-time work
    /// makes way for a word.
    pub fn forward_or_yield(
        &mut self,
        tokens: &[u32],
        keep: &[usize],
        want_logits: bool,
        yield_now: &dyn Fn() -> bool,
    ) -> Result<Forward, LmError> {
        let t = tokens.len();
        let start = self.cache.len;
        if t == 0 {
            return Err(LmError::EmptyWord);
        }
        if start + t > self.capacity {
            return Err(LmError::Gguf(format!(
                "{t} tokens after {start} cached exceed the cache capacity {}",
                self.capacity
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= self.vocab_size()) {
            return Err(LmError::Tokenizer(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        if let Some(&bad) = keep.iter().find(|&&k| k >= t) {
            return Err(LmError::Gguf(format!(
                "kept position {bad} is outside the {t} new tokens"
            )));
        }
        let ids = Tensor::new(tokens, &self.device)?;
        let keep_ids = Tensor::new(
            keep.iter().map(|&k| k as u32).collect::<Vec<_>>(),
            &self.device,
        )?;
        let mut x = self.embeddings.index_select(&ids, 0)?;
        let mut states = Vec::with_capacity(if keep.is_empty() { 0 } else { self.n_layers() });
        if !keep.is_empty() {
            states.push(x.index_select(&keep_ids, 0)?);
        }
        for (blk, cache) in self.blocks.iter().zip(&mut self.cache.blocks) {
            if yield_now() {
                return Err(LmError::Yielded);
            }
            x = block(&self.hp, blk, cache, &self.rope, &x, start)?;
            if !keep.is_empty() {
                states.push(x.index_select(&keep_ids, 0)?);
            }
        }
        let hidden = if keep.is_empty() {
            Vec::new()
        } else {
            Tensor::stack(&states, 1)?.flatten_all()?.to_vec1::<f32>()?
        };
        let logits = if want_logits {
            let last = x.narrow(0, t - 1, 1)?;
            let normed = self.out_norm.forward(&last)?;
            Some(
                self.head
                    .forward(&normed)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            )
        } else {
            None
        };
        self.cache.len = start + t;
        Ok(Forward { hidden, logits })
    }
}

/// One transformer block on `x` `[t, dim]` at positions `start..start+t`,
/// writing its keys and values into `cache`.
fn block(
    hp: &HParams,
    blk: &Block,
    cache: &mut KvBlock,
    rope: &RopeTables,
    x: &Tensor,
    start: usize,
) -> Result<Tensor, LmError> {
    let t = x.dim(0)?;
    let pairing = match hp.rope_style {
        RopeStyle::Interleaved => Pairing::Adjacent,
        RopeStyle::Halves => Pairing::Halves,
    };

    let h = blk.attn_norm.forward(x)?;
    let [mut q, mut k, mut v]: [Tensor; 3] =
        blk.qkv.forward(&h)?.try_into().expect("three projections");
    if let Some([bq, bk, bv]) = &blk.qkv_bias {
        q = q.broadcast_add(bq)?;
        k = k.broadcast_add(bk)?;
        v = v.broadcast_add(bv)?;
    }
    let rows = |m: Tensor| m.flatten_all()?.to_vec1::<f32>();
    let (mut q, mut k, v) = (rows(q)?, rows(k)?, rows(v)?);
    rope.apply(&mut q, hp.n_heads, start, pairing)?;
    rope.apply(&mut k, hp.n_kv_heads, start, pairing)?;
    cache.write(start, &k, &v)?;
    let mut y = vec![0f32; q.len()];
    cache.attend(start, &q, hp.n_heads, None, &mut y)?;
    let y = Tensor::from_vec(y, (t, hp.n_heads * hp.head_dim), x.device())?;
    let x = (x + blk.o.forward(&y)?)?;

    let h = blk.ffn_norm.forward(&x)?;
    let [gate, up]: [Tensor; 2] = blk
        .gate_up
        .forward(&h)?
        .try_into()
        .expect("two projections");
    let act = (candle_nn::ops::silu(&gate)? * up)?;
    Ok((x + blk.down.forward(&act)?)?)
}
