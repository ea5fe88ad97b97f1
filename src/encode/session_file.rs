//! A session as arrays in one safetensors file, for fitting without an XDF
//! recording (e.g. high-gamma and embeddings prepared in numpy): tensors `hg`
//! `[samples, electrodes]`, `onsets` `[words]` (seconds) and `embeddings`
//! `[words, layers, dim]`; metadata key `neuralign_session` holds JSON
//! `{"rate": Hz, "t0": seconds, "labels": [...], "model": {"name", "sha256"}}`
//! (`model` optional).
use super::file::{read_f32, ModelMeta};
use super::{EncodeError, Session, SessionWord};
use safetensors::SafeTensors;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct Header {
    rate: f64,
    t0: f64,
    labels: Vec<String>,
    /// The model the embeddings came from, when known.
    #[serde(default)]
    model: Option<ModelMeta>,
}

/// Reads a session file, with the model named in its metadata if any.
pub fn load(path: &Path) -> Result<(Session, Option<ModelMeta>), EncodeError> {
    let bad = |reason: String| EncodeError::File { path: path.display().to_string(), reason };
    let bytes = std::fs::read(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("neuralign_session"))
        .ok_or_else(|| bad("no `neuralign_session` metadata (rate, t0, labels)".into()))?;
    let h: Header = serde_json::from_str(json).map_err(|e| bad(format!("metadata: {e}")))?;
    let shape = |name: &str| st.tensor(name).map(|t| t.shape().to_vec()).map_err(|_| bad(format!("tensor `{name}` is missing")));
    let (hs, os, es) = (shape("hg")?, shape("onsets")?, shape("embeddings")?);
    if hs.len() != 2 || hs[1] != h.labels.len() || os.len() != 1 || es.len() != 3 || es[0] != os[0] {
        return Err(bad(format!(
            "shapes hg {hs:?}, onsets {os:?}, embeddings {es:?} do not fit {} labels",
            h.labels.len()
        )));
    }
    let hg = read_f32(&st, "hg", &hs).map_err(bad)?;
    let onsets = st.tensor("onsets").map_err(|e| bad(e.to_string()))?;
    let onsets: Vec<f64> = match onsets.dtype() {
        safetensors::Dtype::F64 => onsets.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8"))).collect(),
        _ => read_f32(&st, "onsets", &os).map_err(bad)?.into_iter().map(f64::from).collect(),
    };
    let emb = read_f32(&st, "embeddings", &es).map_err(bad)?;
    let per = es[1] * es[2];
    let words = onsets
        .iter()
        .enumerate()
        .map(|(i, &onset)| SessionWord { onset, embedding: emb[i * per..(i + 1) * per].to_vec() })
        .collect();
    let session = Session { hg, rate: h.rate, t0: h.t0, labels: h.labels, layers: es[1], dim: es[2], words };
    session.validate()?;
    Ok((session, h.model))
}
