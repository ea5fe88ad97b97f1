//! Hyper-parameters of a llama-family model, read from GGUF metadata under
//! the prefix named by `general.architecture` (`llama.*`, `qwen2.*`, …).
use candle_core::quantized::gguf_file::{Content, Value};

use super::LmError;

/// How a model's rotary embedding pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs (2i, 2i+1): llama.cpp's layout for Llama, Mistral and SmolLM,
    /// whose Q and K rows the GGUF converter permuted.
    Interleaved,
    /// Pairs (i, i + d/2): GPT-NeoX layout, used by Qwen2.
    Halves,
}

/// The shape of a llama-family transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct HParams {
    /// `general.architecture`.
    pub arch: String,
    /// Transformer blocks.
    pub n_blocks: usize,
    /// Residual stream width.
    pub dim: usize,
    /// SwiGLU hidden width.
    pub ffn_dim: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub n_kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// Dimension pairing of the rotary embedding.
    pub rope_style: RopeStyle,
    /// The context the model was trained for.
    pub trained_context: usize,
}

impl HParams {
    /// Reads the hyper-parameters; missing optional keys get llama defaults.
    pub fn from_gguf(content: &Content) -> Result<HParams, LmError> {
        let meta = &content.metadata;
        let arch = meta
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| LmError::Gguf("no general.architecture in the metadata".into()))?;
        let rope_style = match arch.as_str() {
            "llama" | "mistral" => RopeStyle::Interleaved,
            "qwen2" => RopeStyle::Halves,
            other => {
                return Err(LmError::Gguf(format!(
                    "architecture {other:?} is not supported (llama, mistral, qwen2 are)"
                )))
            }
        };
        let get = |key: &str| meta.get(&format!("{arch}.{key}"));
        let int = |key: &str| -> Result<usize, LmError> {
            let v = get(key)
                .ok_or_else(|| LmError::Gguf(format!("no {arch}.{key} in the metadata")))?;
            value_usize(v)
        };
        let n_heads = int("attention.head_count")?;
        let dim = int("embedding_length")?;
        let n_kv_heads = if get("attention.head_count_kv").is_some() {
            int("attention.head_count_kv")?
        } else {
            n_heads
        };
        if n_heads == 0 || dim % n_heads != 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(LmError::Gguf(format!(
                "inconsistent heads: width {dim}, {n_heads} query heads, {n_kv_heads} key/value heads"
            )));
        }
        let head_dim = dim / n_heads;
        if get("rope.dimension_count").is_some() && int("rope.dimension_count")? != head_dim {
            return Err(LmError::Gguf(
                "partial rotary embeddings are not supported".into(),
            ));
        }
        Ok(HParams {
            n_blocks: int("block_count")?,
            dim,
            ffn_dim: int("feed_forward_length")?,
            n_heads,
            n_kv_heads,
            head_dim,
            rms_eps: get("attention.layer_norm_rms_epsilon")
                .map_or(Ok(1e-5), |v| v.to_f32().map(f64::from))?,
            rope_base: get("rope.freq_base").map_or(Ok(10_000.0), |v| v.to_f32())?,
            rope_style,
            trained_context: if get("context_length").is_some() {
                int("context_length")?
            } else {
                2048
            },
            arch,
        })
    }
}

fn value_usize(v: &Value) -> Result<usize, LmError> {
    let n = match v {
        Value::U8(x) => u64::from(*x),
        Value::U16(x) => u64::from(*x),
        Value::U32(x) => u64::from(*x),
        Value::U64(x) => *x,
        Value::I32(x) if *x >= 0 => *x as u64,
        Value::I64(x) if *x >= 0 => *x as u64,
        other => {
            return Err(LmError::Gguf(format!(
                "expected a non-negative integer, found {other:?}"
            )))
        }
    };
    Ok(n as usize)
}
