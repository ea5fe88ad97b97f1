//! The untrained control (`smollm2-135m-untrained[:SEED]`): SmolLM2's architecture,
//! tokenizer and block types with every weight drawn as its initialisation draws it
//! (Hugging Face's `LlamaPreTrainedModel._init_weights`: linear and embedding weights from
//! N(0, `initializer_range`²), `initializer_range` = 1/24 in SmolLM2-135M's `config.json`;
//! RMSNorm weights 1). Written once per seed as a GGUF beside the trained model, so that it
//! loads, costs and binds encoders (by its sha256) like any other model file.
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::fetch;
use super::registry::{SMOLLM2_135M, UNTRAINED};
use super::LmError;

/// SmolLM2-135M's `initializer_range`: the standard deviation of its initial weights.
pub const INIT_STD: f64 = 0.041_666_666_666_666_664;

/// Where the control of `seed` is written.
pub fn untrained_path(seed: u64) -> PathBuf {
    fetch::home_dir().join(format!("{UNTRAINED}-{seed}.gguf"))
}

/// The control of `seed`, written from the trained model (fetched if missing) on first use.
pub fn ensure_untrained(seed: u64) -> Result<PathBuf, LmError> {
    let path = untrained_path(seed);
    if path.is_file() {
        return Ok(path);
    }
    let trained = fetch::ensure_model(&SMOLLM2_135M, None)?;
    tracing::info!(seed, path = %path.display(), "writing the untrained control");
    write_untrained(&trained, &path, seed)?;
    Ok(path)
}

/// Writes to `out` the model of `trained` with its weights redrawn from `seed`: the same
/// metadata (tokenizer included; `general.name` says what it is), tensor names, shapes and
/// block types. Deterministic: the same seed gives the same bytes.
pub fn write_untrained(trained: &Path, out: &Path, seed: u64) -> Result<(), LmError> {
    let mut reader = BufReader::new(
        File::open(trained).map_err(LmError::io(format!("opening {}", trained.display())))?,
    );
    let content = Content::read(&mut reader)
        .map_err(|e| LmError::Gguf(format!("{}: {e}", trained.display())))?;
    let tensors = redraw(&content, seed)?;

    let name = Value::String(format!("{UNTRAINED}:{seed}"));
    let mut metadata: Vec<(&str, &Value)> = (content.metadata.iter())
        .filter(|(k, _)| k.as_str() != "general.name")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.push(("general.name", &name));
    metadata.sort_by_key(|(k, _)| *k); // a HashMap's order is not the same twice
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();

    // written beside, then renamed: a reader never sees half a file
    let partial = out.with_extension("gguf.partial");
    let io = |what: &str| LmError::io(format!("{what} {}", partial.display()));
    let mut w = BufWriter::new(File::create(&partial).map_err(io("creating"))?);
    gguf_file::write(&mut w, &metadata, &tensors)
        .map_err(|e| LmError::Gguf(format!("writing {}: {e}", partial.display())))?;
    w.into_inner()
        .map_err(|e| LmError::Gguf(format!("writing {}: {e}", partial.display())))?
        .sync_all()
        .map_err(io("syncing"))?;
    std::fs::rename(&partial, out).map_err(io("renaming"))
}

/// Every tensor of `content` redrawn, in file order: norms 1, the rest N(0, [`INIT_STD`]²)
/// from a generator seeded by `seed` and the tensor's index, stored in its original type.
fn redraw(content: &Content, seed: u64) -> Result<Vec<(String, QTensor)>, LmError> {
    let mut infos: Vec<_> = content.tensor_infos.iter().collect();
    infos.sort_by_key(|(_, info)| info.offset);
    let normal = Normal::new(0.0f32, INIT_STD as f32).expect("a positive deviation");
    infos
        .into_iter()
        .enumerate()
        .map(|(index, (name, info))| {
            let n = info.shape.elem_count();
            let values: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(index as u64);
                normal.sample_iter(&mut rng).take(n).collect()
            };
            let values = Tensor::from_vec(values, info.shape.clone(), &Device::Cpu)?;
            // stored in the trained file's block type, so that a word costs the same
            Ok((name.clone(), QTensor::quantize(&values, info.ggml_dtype)?))
        })
        .collect()
}
