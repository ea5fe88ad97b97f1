//! The forward pass of Gemma 3 (GGUF architecture `gemma3`), as llama.cpp runs it: token
//! embeddings × √d; per block RMSNorm → attention (per-head RMSNorm on queries and keys,
//! NeoX rotary embedding, queries × 1/√head_dim, grouped-query) → RMSNorm → residual,
//! RMSNorm → GELU(tanh)-gated feed-forward → RMSNorm → residual. Five of every six
//! layers attend within a sliding window (RoPE base 10 000), the sixth globally (RoPE base
//! from the GGUF). The converter folded Gemma's `1 + w` into the stored norm weights.
//!
//! Like [`super::model::Model`] it returns every layer's hidden state (0 = scaled token
//! embedding, k = residual stream after block k) at the positions asked for, keeps keys
//! and values in a preallocated cache that can be truncated to any length (f16, attended
//! by [`neuralign_kernels::attention`], whose sliding window and batch-independent sums make
//! a word's states the same run token by token or in one call), and skips the
//! tied 262k-row output layer unless logits are asked for. Token embeddings stay quantized
//! (the f32 table would be 671 MB); the rows of a call are dequantized on lookup.
use std::borrow::Cow;
use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use neuralign_kernels::attention::KvBlock;
use neuralign_kernels::quant::Activations;
use neuralign_kernels::rope::{Pairing, RopeTables};

use super::linear::{Fused, Linear};
use super::model::Forward;
use super::norm::RmsNorm;
use super::LmError;

/// RoPE base of the sliding-window layers when the GGUF does not say (llama.cpp's value).
const DEFAULT_LOCAL_ROPE_BASE: f32 = 10_000.0;
/// Every this-many-th layer attends globally when the GGUF does not say (llama.cpp's value).
const DEFAULT_GLOBAL_EVERY: usize = 6;
/// The first blocks, whose products also multiply the rounding residual of their 8-bit
/// activations: block 0's input carries outliers ~30× its RMS, which 8-bit blocks round
/// coarsely (layer 1 at cosine 0.9987 against numpy without it, 0.99999 with it); beyond
/// it 8-bit activations keep every layer above 0.9997 (docs/models.md).
const RESIDUAL_BLOCKS: usize = 1;

/// The shape of a Gemma 3 model, read from the GGUF metadata (`gemma3.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Params {
    /// Transformer blocks.
    pub n_blocks: usize,
    /// Residual stream width.
    pub dim: usize,
    /// Gated feed-forward hidden width.
    pub ffn_dim: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Size of one head (`attention.key_length`, not `dim / n_heads`).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// RoPE base of the global layers.
    pub rope_global: f32,
    /// RoPE base of the sliding-window layers.
    pub rope_local: f32,
    /// Tokens a sliding-window layer sees (itself included).
    pub window: usize,
    /// Layer `b` is global when `(b + 1) % global_every == 0`.
    pub global_every: usize,
    /// Factor on the queries before the dot product (1/√query_pre_attn_scalar).
    pub attn_scale: f64,
    /// The context the model was trained for.
    pub trained_context: usize,
}

impl Gemma3Params {
    /// Reads the hyper-parameters of a `gemma3` GGUF.
    pub fn from_gguf(content: &Content) -> Result<Gemma3Params, LmError> {
        let meta = &content.metadata;
        let get = |key: &str| meta.get(&format!("gemma3.{key}"));
        let int = |key: &str| -> Result<usize, LmError> {
            get(key)
                .ok_or_else(|| LmError::Gguf(format!("no gemma3.{key} in the metadata")))
                .and_then(value_usize)
        };
        let float = |key: &str, default: f32| get(key).map_or(Ok(default), |v| v.to_f32());
        if let Some(factor) = get("rope.scaling.factor") {
            if factor.to_f32()? != 1.0 {
                return Err(LmError::Gguf(
                    "gemma3 with rope scaling is not supported".into(),
                ));
            }
        }
        let n_heads = int("attention.head_count")?;
        let n_kv_heads = int("attention.head_count_kv")?;
        let head_dim = int("attention.key_length")?;
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 || head_dim % 2 != 0 {
            return Err(LmError::Gguf(format!(
                "inconsistent heads: {n_heads} query heads, {n_kv_heads} key/value heads of {head_dim}"
            )));
        }
        if get("attention.value_length").is_some() && int("attention.value_length")? != head_dim {
            return Err(LmError::Gguf("key and value heads differ in size".into()));
        }
        let query_scalar = if get("attention.query_pre_attn_scalar").is_some() {
            int("attention.query_pre_attn_scalar")?
        } else {
            head_dim
        };
        Ok(Gemma3Params {
            n_blocks: int("block_count")?,
            dim: int("embedding_length")?,
            ffn_dim: int("feed_forward_length")?,
            n_heads,
            n_kv_heads,
            head_dim,
            rms_eps: f64::from(float("attention.layer_norm_rms_epsilon", 1e-6)?),
            rope_global: float("rope.freq_base", 1_000_000.0)?,
            rope_local: float("rope.freq_base_swa", DEFAULT_LOCAL_ROPE_BASE)?,
            window: int("attention.sliding_window")?.max(1),
            global_every: if get("attention.sliding_window_pattern").is_some() {
                int("attention.sliding_window_pattern")?.max(1)
            } else {
                DEFAULT_GLOBAL_EVERY
            },
            attn_scale: 1.0 / (query_scalar as f64).sqrt(),
            trained_context: int("context_length")?,
        })
    }

    /// Whether block `b` attends to the whole context (else within the sliding window).
    pub fn is_global(&self, b: usize) -> bool {
        (b + 1).is_multiple_of(self.global_every)
    }
}

fn value_usize(v: &Value) -> Result<usize, LmError> {
    match v {
        Value::U8(x) => Ok(usize::from(*x)),
        Value::U16(x) => Ok(usize::from(*x)),
        Value::U32(x) => Ok(*x as usize),
        Value::U64(x) => Ok(*x as usize),
        Value::I32(x) if *x >= 0 => Ok(*x as usize),
        Value::I64(x) if *x >= 0 => Ok(*x as usize),
        other => Err(LmError::Gguf(format!(
            "expected a non-negative integer, found {other:?}"
        ))),
    }
}

/// One transformer block's weights.
struct Block {
    attn_norm: RmsNorm,
    /// Queries, keys and values.
    qkv: Fused,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    o: Linear,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    gate_up: Fused,
    down: Linear,
    post_ffn_norm: RmsNorm,
    /// Bytes of this block's weights (for the bandwidth bound).
    bytes: usize,
}

/// Keys and values of every block, f16 `[n_kv_heads, capacity, head_dim]`, empty.
fn empty_cache(p: &Gemma3Params, capacity: usize) -> Result<Vec<KvBlock>, LmError> {
    (0..p.n_blocks)
        .map(|_| Ok(KvBlock::new(p.n_kv_heads, capacity, p.head_dim)?))
        .collect()
}

/// A loaded Gemma 3 model and its key/value cache.
pub struct Gemma3 {
    p: Gemma3Params,
    device: Device,
    /// Token embeddings as stored (quantized), `[vocab, dim]`; also the tied output layer.
    token_embd: Arc<QTensor>,
    vocab: usize,
    blocks: Vec<Block>,
    out_norm: RmsNorm,
    /// RoPE tables of the global and the sliding-window layers.
    rope_global: RopeTables,
    rope_local: RopeTables,
    /// Queries × this before the kernel's 1/√head_dim makes Gemma's `attn_scale`.
    query_factor: f32,
    /// Per block.
    cache: Vec<KvBlock>,
    len: usize,
    /// A second cache and its length, swapped in to build the context that follows a
    /// compaction (allocated on first use).
    spare: Option<(Vec<KvBlock>, usize)>,
    capacity: usize,
}

impl Gemma3 {
    /// Loads the weights of a `gemma3` GGUF whose header was read into `content`, with
    /// room for `capacity` tokens of context.
    pub fn load<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        capacity: usize,
    ) -> Result<Gemma3, LmError> {
        let p = Gemma3Params::from_gguf(content)?;
        let device = Device::Cpu;
        let mut qtensor = |name: &str| -> Result<QTensor, LmError> {
            if !content.tensor_infos.contains_key(name) {
                return Err(LmError::Gguf(format!("tensor {name} is missing")));
            }
            Ok(content.tensor(reader, name, &device)?)
        };
        let token_embd = Arc::new(qtensor("token_embd.weight")?);
        let (vocab, width) = token_embd.shape().dims2()?;
        if width != p.dim || p.dim % token_embd.dtype().block_size() != 0 {
            return Err(LmError::Gguf(format!(
                "token_embd.weight is {:?}, expected width {}",
                token_embd.shape(),
                p.dim
            )));
        }
        let mut blocks = Vec::with_capacity(p.n_blocks);
        for b in 0..p.n_blocks {
            let mut bytes = 0;
            let mut t = |n: &str| -> Result<QTensor, LmError> {
                let q = qtensor(&format!("blk.{b}.{n}"))?;
                bytes += q.storage_size_in_bytes();
                Ok(q)
            };
            let mut norm = |n: &str| RmsNorm::new(&t(n)?, p.rms_eps);
            let (attn_norm, q_norm, k_norm) = (
                norm("attn_norm.weight")?,
                norm("attn_q_norm.weight")?,
                norm("attn_k_norm.weight")?,
            );
            let (post_attn_norm, ffn_norm, post_ffn_norm) = (
                norm("post_attention_norm.weight")?,
                norm("ffn_norm.weight")?,
                norm("post_ffw_norm.weight")?,
            );
            let act = if b < RESIDUAL_BLOCKS {
                Activations::WithResidual
            } else {
                Activations::Bytes
            };
            let qkv = Fused::with_activations(
                vec![
                    t("attn_q.weight")?,
                    t("attn_k.weight")?,
                    t("attn_v.weight")?,
                ],
                act,
            )?;
            let o = Linear::with_activations(t("attn_output.weight")?, act)?;
            let gate_up =
                Fused::with_activations(vec![t("ffn_gate.weight")?, t("ffn_up.weight")?], act)?;
            let down = Linear::with_activations(t("ffn_down.weight")?, act)?;
            blocks.push(Block {
                attn_norm,
                qkv,
                q_norm,
                k_norm,
                o,
                post_attn_norm,
                ffn_norm,
                gate_up,
                down,
                post_ffn_norm,
                bytes,
            });
        }
        let out_norm = RmsNorm::new(&qtensor("output_norm.weight")?, p.rms_eps)?;
        let rope_global = RopeTables::new(p.head_dim, p.rope_global, capacity);
        let rope_local = RopeTables::new(p.head_dim, p.rope_local, capacity);
        let query_factor = (p.attn_scale * (p.head_dim as f64).sqrt()) as f32;
        let cache = empty_cache(&p, capacity)?;
        Ok(Gemma3 {
            p,
            device,
            token_embd,
            vocab,
            blocks,
            out_norm,
            rope_global,
            rope_local,
            query_factor,
            cache,
            len: 0,
            spare: None,
            capacity,
        })
    }

    /// Exchanges the key/value cache with the spare one (empty the first time).
    pub fn swap_caches(&mut self) -> Result<(), LmError> {
        let (cache, len) = match self.spare.take() {
            Some(spare) => spare,
            None => (empty_cache(&self.p, self.capacity)?, 0),
        };
        self.spare = Some((
            std::mem::replace(&mut self.cache, cache),
            std::mem::replace(&mut self.len, len),
        ));
        Ok(())
    }

    /// The model's hyper-parameters.
    pub fn params(&self) -> &Gemma3Params {
        &self.p
    }

    /// Hidden states per position: the embeddings plus one per block.
    pub fn n_layers(&self) -> usize {
        self.p.n_blocks + 1
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Bytes of weights one decoding step reads: every block's matrices and norms (the
    /// output layer is skipped unless logits are asked for; a token's embedding row is
    /// negligible).
    pub fn step_weight_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.bytes).sum::<usize>() + self.out_norm.bytes()
    }

    /// Tokens currently in the key/value cache.
    pub fn cache_len(&self) -> usize {
        self.len
    }

    /// The most tokens the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of keys and values one token of context takes in the cache.
    pub fn kv_bytes_per_token(&self) -> usize {
        self.cache.iter().map(KvBlock::bytes_per_position).sum()
    }

    /// Forgets every cached token from position `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Next-token logits after the cached context, by re-running its last token `last`;
    /// the cache is unchanged.
    pub fn logits_after_last(&mut self, last: u32) -> Result<Vec<f32>, LmError> {
        let len = self.len;
        if len == 0 {
            return Err(LmError::Gguf(
                "the context is empty: no logits to compute".into(),
            ));
        }
        self.len = len - 1;
        let out = self.forward_or_yield(&[last], &[], true, &|| false);
        self.len = len;
        Ok(out?.logits.expect("logits were asked for"))
    }

    /// Runs `tokens` after the cached context in one call, appending them to the cache.
    /// Returns the hidden states of every layer at the positions `keep` (indices into
    /// `tokens`) and, if `want_logits`, the next-token logits after the last token. On
    /// error the cache is left as it was. It gives up before a block once `yield_now()` is
    /// true ([`LmError::Yielded`]): idle-time work makes way for a word.
    pub fn forward_or_yield(
        &mut self,
        tokens: &[u32],
        keep: &[usize],
        want_logits: bool,
        yield_now: &dyn Fn() -> bool,
    ) -> Result<Forward, LmError> {
        let t = tokens.len();
        let start = self.len;
        if t == 0 {
            return Err(LmError::EmptyWord);
        }
        if start + t > self.capacity {
            return Err(LmError::Gguf(format!(
                "{t} tokens after {start} cached exceed the cache capacity {}",
                self.capacity
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(LmError::Tokenizer(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        if let Some(&bad) = keep.iter().find(|&&k| k >= t) {
            return Err(LmError::Gguf(format!(
                "kept position {bad} is outside the {t} new tokens"
            )));
        }
        let keep_ids = Tensor::new(
            keep.iter().map(|&k| k as u32).collect::<Vec<_>>(),
            &self.device,
        )?;
        let mut x = (self.embed(tokens)? * (self.p.dim as f64).sqrt())?;
        let mut states = Vec::with_capacity(if keep.is_empty() { 0 } else { self.n_layers() });
        if !keep.is_empty() {
            states.push(x.index_select(&keep_ids, 0)?);
        }
        for b in 0..self.blocks.len() {
            if yield_now() {
                return Err(LmError::Yielded);
            }
            x = self.block(b, &x, start)?;
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
            let head = QMatMul::from_arc(self.token_embd.clone())?;
            Some(head.forward(&normed)?.flatten_all()?.to_vec1::<f32>()?)
        } else {
            None
        };
        self.len = start + t;
        Ok(Forward { hidden, logits })
    }

    /// The stored embedding rows of `tokens`, dequantized: `[t, dim]`.
    fn embed(&self, tokens: &[u32]) -> Result<Tensor, LmError> {
        let dtype = self.token_embd.dtype();
        let row = self.p.dim / dtype.block_size() * dtype.type_size();
        let data = self.token_embd.data()?;
        let mut rows = Vec::with_capacity(tokens.len() * row);
        for &id in tokens {
            let at = id as usize * row;
            rows.extend_from_slice(&data[at..at + row]);
        }
        // Borrowed, not owned: candle 0.9's `from_data` reads an owned buffer after dropping it.
        let storage = QStorage::from_data(Cow::Borrowed(&rows), &self.device, dtype)?;
        Ok(QTensor::new(storage, (tokens.len(), self.p.dim))?.dequantize(&self.device)?)
    }

    /// One transformer block on `x` `[t, dim]` at positions `start..start+t`, writing its
    /// keys and values into the block's cache.
    fn block(&mut self, b: usize, x: &Tensor, start: usize) -> Result<Tensor, LmError> {
        let p = &self.p;
        let blk = &self.blocks[b];
        let t = x.dim(0)?;
        let (nh, nkv, hd) = (p.n_heads, p.n_kv_heads, p.head_dim);

        let h = blk.attn_norm.forward(x)?;
        // rows `[t, heads * hd]` for the rotary and attention kernels, each head's normed
        let heads = |m: Tensor, norm: &RmsNorm| -> Result<Vec<f32>, LmError> {
            let mut rows = m.flatten_all()?.to_vec1::<f32>()?;
            norm.rows(&mut rows)?;
            Ok(rows)
        };
        let [q, k, v]: [Tensor; 3] = blk.qkv.forward(&h)?.try_into().expect("three projections");
        let mut q = heads(q, &blk.q_norm)?;
        let mut k = heads(k, &blk.k_norm)?;
        let v = v.flatten_all()?.to_vec1::<f32>()?;
        let (rope, window) = if p.is_global(b) {
            (&self.rope_global, None)
        } else {
            (&self.rope_local, Some(p.window))
        };
        rope.apply(&mut q, nh, start, Pairing::Halves)?;
        rope.apply(&mut k, nkv, start, Pairing::Halves)?;
        if self.query_factor != 1.0 {
            q.iter_mut().for_each(|x| *x *= self.query_factor);
        }
        let cache = &mut self.cache[b];
        cache.write(start, &k, &v)?;
        let mut y = vec![0f32; q.len()];
        cache.attend(start, &q, nh, window, &mut y)?;
        let y = Tensor::from_vec(y, (t, nh * hd), &self.device)?;
        let x = (x + blk.post_attn_norm.forward(&blk.o.forward(&y)?)?)?;

        let h = blk.ffn_norm.forward(&x)?;
        let [gate, up]: [Tensor; 2] = blk
            .gate_up
            .forward(&h)?
            .try_into()
            .expect("two projections");
        let act = gelu_gated(&gate, &up)?;
        Ok((&x + blk.post_ffn_norm.forward(&blk.down.forward(&act)?)?)?)
    }
}

/// `GELU(gate) * up` with GELU's tanh form written as `x / (1 + exp(-2u))`, `u = √(2/π)(x +
/// 0.044715x³)` (the same function as candle's `gelu`, whose `tanhf` made it the longest
/// step between two kernel calls: the pool's workers went to sleep during it).
fn gelu_gated(gate: &Tensor, up: &Tensor) -> Result<Tensor, LmError> {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let shape = gate.shape().clone();
    let mut act = gate.flatten_all()?.to_vec1::<f32>()?;
    let up = up.flatten_all()?.to_vec1::<f32>()?;
    for (a, u) in act.iter_mut().zip(&up) {
        let x = *a;
        let inner = -2.0 * SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
        *a = x / (1.0 + inner.exp()) * u;
    }
    Ok(Tensor::from_vec(act, shape, gate.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exp form of GELU(tanh) times `up` is candle's `gelu() * up`, across the range
    /// gate values take (large negative ones included, where `exp` overflows to ∞).
    #[test]
    fn gated_gelu_is_candles_gelu_times_up() {
        let gate: Vec<f32> = (-400..400).map(|i| i as f32 * 0.05).collect();
        let up: Vec<f32> = (0..gate.len())
            .map(|i| 1.0 - (i % 7) as f32 * 0.3)
            .collect();
        let shape = (2, gate.len() / 2);
        let gate = Tensor::from_vec(gate, shape, &Device::Cpu).unwrap();
        let up = Tensor::from_vec(up, shape, &Device::Cpu).unwrap();
        let ours = gelu_gated(&gate, &up).unwrap();
        assert_eq!(ours.dims(), gate.dims());
        let candle = (gate.gelu().unwrap() * &up).unwrap();
        let (ours, candle) = (
            ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            candle.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        for (a, b) in ours.iter().zip(&candle) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} against {b}");
        }
    }
}
