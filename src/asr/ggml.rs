//! Converts Whisper from CTranslate2's layout ([`super::ct2`]) into the ggml file that
//! whisper.cpp loads, as whisper.cpp's own `convert-pt-to-ggml.py` writes it from the PyTorch
//! checkpoint: a header (magic `ggml`, eleven hyper-parameters), the mel filter bank, the
//! GPT-2 vocabulary as raw bytes, then each tensor under its PyTorch name (rank, name length,
//! type; dimensions innermost first; float32 for vectors, the conv biases and the positional
//! embeddings, float16 for the conv kernels). The matrices are stored as ggml's Q8_0 (blocks
//! of 32 weights, an f16 scale and 32 signed bytes), as whisper.cpp's `quantize` writes them:
//! its integer dot products run them about twice as fast as float16, at no measurable cost
//! in accuracy (`docs/transcribe.md`); a model whose rows are not whole blocks stays float16.
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

/// How a tensor is stored; the discriminant is ggml's type id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
}

/// Weights per Q8_0 block.
const Q8_0_BLOCK: usize = 32;

/// One tensor to write: its PyTorch name, dimensions (outermost first), values, how stored.
struct Out {
    name: String,
    dims: Vec<usize>,
    values: Vec<f32>,
    stored: Stored,
}

fn rows(values: &[f32], cols: usize, from: usize, to: usize) -> Vec<f32> {
    values[from * cols..to * cols].to_vec()
}

fn tensors(m: &Ct2Model) -> Result<Vec<Out>, AsrError> {
    let mut out = Vec::new();
    let f32s = |name: &str| m.get(name).and_then(|t| Ok((t.dims.clone(), t.to_f32()?)));
    let mut push = |name: String, dims: Vec<usize>, values: Vec<f32>| {
        // As convert-pt-to-ggml.py: vectors, conv biases and positional embeddings in f32;
        // matrices quantized afterwards (see `quantize_matrices`)
        let stored = if dims.len() >= 2
            && !name.ends_with("positional_embedding")
            && !name.ends_with(".bias")
        {
            Stored::F16
        } else {
            Stored::F32
        };
        out.push(Out {
            name,
            dims,
            values,
            stored,
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
    // The self-attention and feed-forward parts of every encoder and decoder block.
    let self_attention =
        |push: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), from: &str, to: &str| {
            let att = format!("{to}.attn");
            split(
                push,
                &format!("{from}/self_attention/linear_0"),
                &[
                    (&format!("{att}.query"), true),
                    (&format!("{att}.key"), false),
                    (&format!("{att}.value"), true),
                ],
            )?;
            linear(
                push,
                &format!("{from}/self_attention/linear_1"),
                &format!("{att}.out"),
            )?;
            norm(
                push,
                &format!("{from}/self_attention/layer_norm"),
                &format!("{to}.attn_ln"),
            )
        };
    let feed_forward =
        |push: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), from: &str, to: &str| {
            linear(
                push,
                &format!("{from}/ffn/linear_0"),
                &format!("{to}.mlp.0"),
            )?;
            linear(
                push,
                &format!("{from}/ffn/linear_1"),
                &format!("{to}.mlp.2"),
            )?;
            norm(
                push,
                &format!("{from}/ffn/layer_norm"),
                &format!("{to}.mlp_ln"),
            )
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
        self_attention(p, &from, &to)?;
        feed_forward(p, &from, &to)?;
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
        let cross = format!("{to}.cross_attn");
        self_attention(p, &from, &to)?;
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
        feed_forward(p, &from, &to)?;
    }
    norm(p, "decoder/layer_norm", "decoder.ln")?;
    Ok(out)
}

/// Stores every matrix (the float16 tensors of rank 2; whisper.cpp keeps the conv kernels in
/// float16) as Q8_0 when all their rows are whole blocks, as whisper.cpp's loader needs one
/// type for all of them; returns ggml's `ftype` for the header (`MOSTLY_Q8_0` with the
/// quantization version, or `MOSTLY_F16`).
fn quantize_matrices(tensors: &mut [Out]) -> i32 {
    let matrix = |t: &Out| t.stored == Stored::F16 && t.dims.len() == 2;
    let whole = tensors
        .iter()
        .filter(|t| matrix(t))
        .all(|t| t.dims[1] % Q8_0_BLOCK == 0);
    if !whole {
        return 1;
    }
    for t in tensors.iter_mut().filter(|t| matrix(t)) {
        t.stored = Stored::Q8_0;
    }
    // GGML_FTYPE_MOSTLY_Q8_0 + GGML_QNT_VERSION (2) × GGML_QNT_VERSION_FACTOR
    7 + 2 * 1000
}

/// `values` (a whole number of blocks) as ggml's Q8_0, as its `quantize_row_q8_0_ref`: per
/// block of 32, the scale `d = max|x| / 127` as float16, then `round(x / d)` as bytes.
fn q8_0_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / Q8_0_BLOCK * (2 + Q8_0_BLOCK));
    for block in values.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
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
    let mut tensors = tensors(model)?;
    let ftype = quantize_matrices(&mut tensors);
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
        ftype as usize,
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
        w(&(t.stored as i32).to_le_bytes())?;
        for d in t.dims.iter().rev() {
            w(&(*d as i32).to_le_bytes())?;
        }
        w(name)?;
        let bytes: Vec<u8> = match t.stored {
            Stored::F32 => t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Stored::F16 => t
                .values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            Stored::Q8_0 => q8_0_bytes(&t.values),
        };
        w(&bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::ct2::{Ct2Tensor, Ct2Type};

    /// A Whisper-shaped CTranslate2 model with d = 2, one layer per side, vocabulary 3; every
    /// value is its index in its tensor plus `base`, so that a split can be checked.
    fn tiny_model() -> Ct2Model {
        let mut tensors = std::collections::BTreeMap::new();
        let mut add = |name: &str, dims: &[usize]| {
            let n: usize = dims.iter().product();
            let bytes = (0..n)
                .flat_map(|i| half::f16::from_f32(i as f32).to_le_bytes())
                .collect();
            tensors.insert(
                name.to_string(),
                Ct2Tensor {
                    dims: dims.to_vec(),
                    dtype: Ct2Type::F16,
                    bytes,
                },
            );
        };
        let d = 2;
        add("encoder/position_encodings/encodings", &[5, d]);
        add("encoder/conv1/weight", &[d, 3, 3]);
        add("encoder/conv1/bias", &[d]);
        add("encoder/conv2/weight", &[d, d, 3]);
        add("encoder/conv2/bias", &[d]);
        add("decoder/position_encodings/encodings", &[4, d]);
        add("decoder/embeddings/weight", &[3, d]);
        for side in ["encoder", "decoder"] {
            add(&format!("{side}/layer_norm/gamma"), &[d]);
            add(&format!("{side}/layer_norm/beta"), &[d]);
            let l = format!("{side}/layer_0");
            let mut parts = vec![
                ("self_attention/linear_0", 3 * d),
                ("self_attention/linear_1", d),
            ];
            parts.extend([("ffn/linear_0", 4 * d), ("ffn/linear_1", d)]);
            if side == "decoder" {
                parts.extend([
                    ("attention/linear_0", d),
                    ("attention/linear_1", 2 * d),
                    ("attention/linear_2", d),
                ]);
            }
            for (p, rows) in parts {
                let cols = if p == "ffn/linear_1" { 4 * d } else { d };
                add(&format!("{l}/{p}/weight"), &[rows, cols]);
                add(&format!("{l}/{p}/bias"), &[rows]);
            }
            for n in ["self_attention", "ffn", "attention"] {
                add(&format!("{l}/{n}/layer_norm/gamma"), &[d]);
                add(&format!("{l}/{n}/layer_norm/beta"), &[d]);
            }
        }
        let mut scalar = |name: &str| {
            tensors.insert(
                name.to_string(),
                Ct2Tensor {
                    dims: vec![],
                    dtype: Ct2Type::I16,
                    bytes: 1i16.to_le_bytes().to_vec(),
                },
            );
        };
        scalar("encoder/num_heads");
        scalar("decoder/num_heads");
        Ct2Model {
            spec: "WhisperSpec".into(),
            tensors,
        }
    }

    #[test]
    fn fused_projections_are_split_under_whisper_cpp_names() {
        let out = tensors(&tiny_model()).unwrap();
        let get = |name: &str| {
            out.iter()
                .find(|t| t.name == name)
                .unwrap_or_else(|| panic!("{name} not written"))
        };
        // Self-attention q/k/v: rows 0–1, 2–3, 4–5 of the fused [6, 2] matrix.
        assert_eq!(
            get("encoder.blocks.0.attn.query.weight").values,
            vec![0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(
            get("encoder.blocks.0.attn.key.weight").values,
            vec![4.0, 5.0, 6.0, 7.0]
        );
        assert_eq!(
            get("encoder.blocks.0.attn.value.bias").values,
            vec![4.0, 5.0]
        );
        assert!(
            out.iter().all(|t| !t.name.ends_with("key.bias")),
            "Whisper has no key bias"
        );
        // Cross-attention k/v: rows 0–1 and 2–3 of the fused [4, 2] matrix.
        assert_eq!(
            get("decoder.blocks.0.cross_attn.value.weight").values,
            vec![4.0, 5.0, 6.0, 7.0]
        );
        assert_eq!(
            get("decoder.blocks.0.cross_attn.out.weight").dims,
            vec![2, 2]
        );
        assert_eq!(get("encoder.conv1.bias").dims, vec![2, 1]);
        assert_eq!(get("encoder.conv1.bias").stored, Stored::F32);
        assert_eq!(get("encoder.conv1.weight").stored, Stored::F16);
        assert_eq!(get("decoder.positional_embedding").stored, Stored::F32);
        assert_eq!(get("decoder.token_embedding.weight").stored, Stored::F16);
        // Encoder: 5 + 15 per layer + 2; decoder: 2 + 24 per layer + 2.
        assert_eq!(out.len(), 22 + 28);
    }

    /// The Q8_0 blocks equal candle's (a port of ggml's quantizer), zeros and extremes
    /// included; rows that are not whole blocks keep every matrix in float16.
    #[test]
    fn matrices_are_stored_as_ggml_q8_0() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let values: Vec<f32> = (0..4 * Q8_0_BLOCK)
            .map(|i| match i / Q8_0_BLOCK {
                0 => 0.0,
                1 => (i as f32 * 0.37).sin() * 3.0,
                2 => 1e-6 * i as f32 - 5e-5,
                _ => (i as f32 - 100.0) * 1e3,
            })
            .collect();
        let tensor = candle_core::Tensor::from_vec(
            values.clone(),
            (2, 2 * Q8_0_BLOCK),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let reference = QTensor::quantize(&tensor, GgmlDType::Q8_0)
            .unwrap()
            .data()
            .unwrap()
            .to_vec();
        assert_eq!(q8_0_bytes(&values), reference);

        let mut t = tensors(&tiny_model()).unwrap();
        assert_eq!(
            quantize_matrices(&mut t),
            1,
            "rows of 2 are not whole blocks"
        );
        assert!(t.iter().all(|t| t.stored != Stored::Q8_0));
        let mut wide = vec![Out {
            name: "m".into(),
            dims: vec![3, 64],
            values: vec![0.5; 192],
            stored: Stored::F16,
        }];
        assert_eq!(quantize_matrices(&mut wide), 2007);
        assert_eq!(wide[0].stored, Stored::Q8_0);
    }

    #[test]
    fn the_header_holds_the_hyper_parameters_then_the_mel_bank_and_vocabulary() {
        let mel = MelFilters {
            bands: 3,
            bins: 2,
            weights: vec![0.5; 6],
        };
        let mut bytes = Vec::new();
        write_ggml(&tiny_model(), &mel, &[b"a".to_vec()], &mut bytes).unwrap();
        let ints: Vec<i32> = bytes[..4 * 14]
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // magic; vocab, audio ctx/state/head/layer, text ctx/state/head/layer, mels, ftype; mel dims
        assert_eq!(ints[0] as u32, MAGIC);
        assert_eq!(&ints[1..], &[3, 5, 2, 1, 1, 4, 2, 1, 1, 3, 1, 3, 2]);
    }
}
