//! Writing per-word, per-layer embeddings to safetensors (the format of
//! `neuralign embed`, documented in docs/embeddings.md).
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::{LmError, WordEmbedding};

/// What goes into an embeddings file besides the embeddings.
#[derive(Debug, Clone)]
pub struct EmbeddingsMeta<'a> {
    /// The model's file name.
    pub model_name: &'a str,
    /// sha256 of the model file.
    pub model_sha256: &'a str,
    /// The words, in order.
    pub words: &'a [String],
    /// Onsets in seconds, when every word has one.
    pub onsets: Option<Vec<f64>>,
    /// Offsets in seconds, when every word has one.
    pub offsets: Option<Vec<f64>>,
    /// Which layers were kept (0 = token embedding).
    pub layers: &'a [usize],
    /// `last` or `mean`.
    pub pool: &'a str,
    /// Context limit in words, if any.
    pub context_words: Option<usize>,
    /// Next-token logits after the last word, when asked for.
    pub next_logits: Option<&'a [f32]>,
}

/// Writes `embeddings` `[words, layers, dim]` (f32), `layers` (i64),
/// `token_counts` (i64), `token_ids` (i64, every word's tokens in order),
/// `onsets`/`offsets` (f64, when known), `next_logits` (f32, when asked for)
/// and JSON metadata to `out`.
pub fn write_embeddings(
    out: &Path,
    embeddings: &[WordEmbedding],
    meta: &EmbeddingsMeta,
) -> Result<(), LmError> {
    let dim = embeddings.first().map_or(0, |e| e.dim);
    let mut data = Vec::with_capacity(embeddings.len() * meta.layers.len() * dim * 4);
    for e in embeddings {
        for &l in meta.layers {
            data.extend(e.layer(l).iter().flat_map(|x| x.to_le_bytes()));
        }
    }
    let layers: Vec<u8> = meta
        .layers
        .iter()
        .flat_map(|&l| (l as i64).to_le_bytes())
        .collect();
    let counts: Vec<u8> = embeddings
        .iter()
        .flat_map(|e| (e.tokens.len() as i64).to_le_bytes())
        .collect();
    let ids: Vec<u8> = embeddings
        .iter()
        .flat_map(|e| &e.tokens)
        .flat_map(|&id| i64::from(id).to_le_bytes())
        .collect();
    let logits: Option<Vec<u8>> = meta
        .next_logits
        .map(|l| l.iter().flat_map(|x| x.to_le_bytes()).collect());
    let times = |v: &Option<Vec<f64>>| {
        v.as_ref()
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
    };
    let (onsets, offsets) = (times(&meta.onsets), times(&meta.offsets));
    let n = embeddings.len();
    let bad = |e: safetensors::SafeTensorError| LmError::Gguf(format!("building safetensors: {e}"));
    let mut tensors = vec![
        (
            "embeddings".to_string(),
            TensorView::new(Dtype::F32, vec![n, meta.layers.len(), dim], &data).map_err(bad)?,
        ),
        (
            "layers".to_string(),
            TensorView::new(Dtype::I64, vec![meta.layers.len()], &layers).map_err(bad)?,
        ),
        (
            "token_counts".to_string(),
            TensorView::new(Dtype::I64, vec![n], &counts).map_err(bad)?,
        ),
        (
            "token_ids".to_string(),
            TensorView::new(Dtype::I64, vec![ids.len() / 8], &ids).map_err(bad)?,
        ),
    ];
    if let Some(bytes) = &logits {
        tensors.push((
            "next_logits".to_string(),
            TensorView::new(Dtype::F32, vec![bytes.len() / 4], bytes).map_err(bad)?,
        ));
    }
    for (name, v) in [("onsets", &onsets), ("offsets", &offsets)] {
        if let Some(bytes) = v {
            tensors.push((
                name.to_string(),
                TensorView::new(Dtype::F64, vec![n], bytes).map_err(bad)?,
            ));
        }
    }
    let metadata: HashMap<String, String> = [
        ("format", "neuralign-embeddings-1".to_string()),
        ("model", meta.model_name.to_string()),
        ("model_sha256", meta.model_sha256.to_string()),
        (
            "words",
            serde_json::to_string(meta.words).expect("strings serialize"),
        ),
        ("pool", meta.pool.to_string()),
        (
            "context_words",
            meta.context_words.map_or("all".into(), |c| c.to_string()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    safetensors::serialize_to_file(tensors, Some(metadata), out)
        .map_err(|e| LmError::Gguf(format!("writing {}: {e}", out.display())))
}
