//! Converts Whisper from CTranslate2's layout ([`super::ct2`]) into the ggml file that
//! whisper.cpp loads, as whisper.cpp's own `convert-pt-to-ggml.py` writes it from the PyTorch
//! checkpoint: a header (magic `ggml`, eleven hyper-parameters), the mel filter bank, the
//! GPT-2 vocabulary as raw bytes, then each tensor under its PyTorch name (rank, name length,
//! type; dimensions innermost first; float16 for matrices, float32 for vectors, the conv biases
//! and the positional embeddings).
//!
//! CTranslate2 fuses the self-attention's query/key/value (`linear_0`, 3 × d rows) and the
//! cross-attention's key/value (`attention/linear_1`, 2 × d rows): they are split here. The
//! key projection has no bias in Whisper (CTranslate2 stores zeros there; a key bias would not
//! change the attention weights anyway, as it adds the same `q·b` to every key's score).
use std::io::Write;

use super::ct2::Ct2Model;
use super::AsrError;

/// whisper.cpp's file magic (`ggml`).
const MAGIC: u32 = 0x6767_6d6c;

/// The mel filter bank whisper.cpp needs (`mel_80` of whisper's `mel_filters.npz`).
#[derive(Debug, Clone, PartialEq)]
pub struct MelFilters {
    /// Mel bands (rows).
    pub bands: usize,
    /// FFT bins (columns).
    pub bins: usize,
    /// Row-major `bands × bins` weights.
    pub weights: Vec<f32>,
}

/// One tensor to write: its PyTorch name, dimensions (outermost first), values, float16 or not.
struct Out {
    name: String,
    dims: Vec<usize>,
    values: Vec<f32>,
    f16: bool,
}

fn rows(values: &[f32], cols: usize, from: usize, to: usize) -> Vec<f32> {
    values[from * cols..to * cols].to_vec()
}

fn tensors(m: &Ct2Model) -> Result<Vec<Out>, AsrError> {
    let mut out = Vec::new();
    let f32s = |name: &str| m.get(name).and_then(|t| Ok((t.dims.clone(), t.to_f32()?)));
    let mut push = |name: String, dims: Vec<usize>, values: Vec<f32>| {
        // As convert-pt-to-ggml.py: vectors, conv biases and positional embeddings in f32.
        let f16 =
            dims.len() >= 2 && !name.ends_with("positional_embedding") && !name.ends_with(".bias");
        out.push(Out {
            name,
            dims,
            values,
            f16,
        });
    };
    let copy = |push: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), from: &str, to: &str| {
        let (dims, v) = f32s(from)?;
        push(to.to_string(), dims, v);
        Ok::<(), AsrError>(())
    };
    let norm = |push: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), from: &str, to: &str| {
        copy(push, &format!("{from}/gamma"), &format!("{to}.weight"))?;
        copy(push, &format!("{from}/beta"), &format!("{to}.bias"))
    };
    let linear = |push: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), from: &str, to: &str| {
        copy(push, &format!("{from}/weight"), &format!("{to}.weight"))?;
        copy(push, &format!("{from}/bias"), &format!("{to}.bias"))
    };
    // A fused projection split into parts of `d` rows; `None` bias names skip the bias (key).
    let split =
        |push: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), from: &str, parts: &[(&str, bool)]| {
            let (wd, w) = f32s(&format!("{from}/weight"))?;
            let (_, b) = f32s(&format!("{from}/bias"))?;
            let (d, cols) = (wd[0] / parts.len(), wd[1]);
            for (k, (to, bias)) in parts.iter().enumerate() {
                push(
                    format!("{to}.weight"),
                    vec![d, cols],
                    rows(&w, cols, k * d, (k + 1) * d),
                );
                if *bias {
                    push(
                        format!("{to}.bias"),
                        vec![d],
                        b[k * d..(k + 1) * d].to_vec(),
                    );
                }
            }
            Ok::<(), AsrError>(())
        };
    let layers = |side: &str| {
        (0..)
            .take_while(|i| {
                m.tensors
                    .contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    };
    let p = &mut push;
    copy(
        p,
        "encoder/position_encodings/encodings",
        "encoder.positional_embedding",
    )?;
    for conv in ["conv1", "conv2"] {
        copy(
            p,
            &format!("encoder/{conv}/weight"),
            &format!("encoder.{conv}.weight"),
        )?;
        let (dims, v) = f32s(&format!("encoder/{conv}/bias"))?;
        p(format!("encoder.{conv}.bias"), vec![dims[0], 1], v);
    }
    for i in 0..layers("encoder") {
        let (from, to) = (format!("encoder/layer_{i}"), format!("encoder.blocks.{i}"));
        let att = format!("{to}.attn");
        split(
            p,
            &format!("{from}/self_attention/linear_0"),
            &[
                (&format!("{att}.query"), true),
                (&format!("{att}.key"), false),
                (&format!("{att}.value"), true),
            ],
        )?;
        linear(
            p,
            &format!("{from}/self_attention/linear_1"),
            &format!("{att}.out"),
        )?;
        norm(
            p,
            &format!("{from}/self_attention/layer_norm"),
            &format!("{to}.attn_ln"),
        )?;
        linear(p, &format!("{from}/ffn/linear_0"), &format!("{to}.mlp.0"))?;
        linear(p, &format!("{from}/ffn/linear_1"), &format!("{to}.mlp.2"))?;
        norm(
            p,
            &format!("{from}/ffn/layer_norm"),
            &format!("{to}.mlp_ln"),
        )?;
    }
    norm(p, "encoder/layer_norm", "encoder.ln_post")?;
    copy(
        p,
        "decoder/position_encodings/encodings",
        "decoder.positional_embedding",
    )?;
    copy(
        p,
        "decoder/embeddings/weight",
        "decoder.token_embedding.weight",
    )?;
    for i in 0..layers("decoder") {
        let (from, to) = (format!("decoder/layer_{i}"), format!("decoder.blocks.{i}"));
        let (att, cross) = (format!("{to}.attn"), format!("{to}.cross_attn"));
        split(
            p,
            &format!("{from}/self_attention/linear_0"),
            &[
                (&format!("{att}.query"), true),
                (&format!("{att}.key"), false),
                (&format!("{att}.value"), true),
            ],
        )?;
        linear(
            p,
            &format!("{from}/self_attention/linear_1"),
            &format!("{att}.out"),
        )?;
        norm(
            p,
            &format!("{from}/self_attention/layer_norm"),
            &format!("{to}.attn_ln"),
        )?;
        linear(
            p,
            &format!("{from}/attention/linear_0"),
            &format!("{cross}.query"),
        )?;
        split(
            p,
            &format!("{from}/attention/linear_1"),
            &[
                (&format!("{cross}.key"), false),
                (&format!("{cross}.value"), true),
            ],
        )?;
        linear(
            p,
            &format!("{from}/attention/linear_2"),
            &format!("{cross}.out"),
        )?;
        norm(
            p,
            &format!("{from}/attention/layer_norm"),
            &format!("{to}.cross_attn_ln"),
        )?;
        linear(p, &format!("{from}/ffn/linear_0"), &format!("{to}.mlp.0"))?;
        linear(p, &format!("{from}/ffn/linear_1"), &format!("{to}.mlp.2"))?;
        norm(
            p,
            &format!("{from}/ffn/layer_norm"),
            &format!("{to}.mlp_ln"),
        )?;
    }
    norm(p, "decoder/layer_norm", "decoder.ln")?;
    Ok(out)
}

/// Writes whisper.cpp's ggml file for the CTranslate2 Whisper `model`, with the mel filter
/// bank and the GPT-2 `vocabulary` (token bytes in rank order).
pub fn write_ggml(
    model: &Ct2Model,
    mel: &MelFilters,
    vocabulary: &[Vec<u8>],
    out: &mut impl Write,
) -> Result<(), AsrError> {
    if model.spec != "WhisperSpec" {
        return Err(AsrError::Model(format!(
            "a CTranslate2 {} model, not Whisper",
            model.spec
        )));
    }
    let dim = |name: &str, k: usize| -> Result<usize, AsrError> {
        model
            .get(name)?
            .dims
            .get(k)
            .copied()
            .ok_or_else(|| AsrError::Model(format!("{name} has no dimension {k}")))
    };
    let heads = |name: &str| -> Result<usize, AsrError> {
        model
            .get(name)?
            .scalar()
            .map(|h| h as usize)
            .ok_or_else(|| AsrError::Model(format!("{name} is not an integer")))
    };
    let tensors = tensors(model)?;
    let layers = |side: &str| {
        tensors
            .iter()
            .filter(|t| t.name.starts_with(side) && t.name.ends_with("mlp_ln.weight"))
            .count()
    };
    let hparams = [
        dim("decoder/embeddings/weight", 0)?,
        dim("encoder/position_encodings/encodings", 0)?,
        dim("encoder/position_encodings/encodings", 1)?,
        heads("encoder/num_heads")?,
        layers("encoder."),
        dim("decoder/position_encodings/encodings", 0)?,
        dim("decoder/position_encodings/encodings", 1)?,
        heads("decoder/num_heads")?,
        layers("decoder."),
        dim("encoder/conv1/weight", 1)?,
        1, // ftype: float16
    ];
    let io = |e: std::io::Error| AsrError::Io(format!("writing the ggml model: {e}"));
    let mut w = |bytes: &[u8]| out.write_all(bytes).map_err(io);
    w(&MAGIC.to_le_bytes())?;
    for h in hparams {
        w(&(h as i32).to_le_bytes())?;
    }
    w(&(mel.bands as i32).to_le_bytes())?;
    w(&(mel.bins as i32).to_le_bytes())?;
    for v in &mel.weights {
        w(&v.to_le_bytes())?;
    }
    w(&(vocabulary.len() as i32).to_le_bytes())?;
    for token in vocabulary {
        w(&(token.len() as i32).to_le_bytes())?;
        w(token)?;
    }
    for t in &tensors {
        let name = t.name.as_bytes();
        w(&(t.dims.len() as i32).to_le_bytes())?;
        w(&(name.len() as i32).to_le_bytes())?;
        w(&i32::from(t.f16).to_le_bytes())?;
        for d in t.dims.iter().rev() {
            w(&(*d as i32).to_le_bytes())?;
        }
        w(name)?;
        if t.f16 {
            let bytes: Vec<u8> = t
                .values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect();
            w(&bytes)?;
        } else {
            let bytes: Vec<u8> = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            w(&bytes)?;
        }
    }
    Ok(())
}
