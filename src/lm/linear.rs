//! The models' linear layers. Q4_1 weights (all of SmolLM2's blocks) and Q5_0, Q8_0, Q4_K
//! and Q6_K (Gemma 3's) run on our own kernel ([`neuralign_kernels::quant`]: 8-bit
//! activations, with their rounding residual where precision asks, in integer SIMD, a
//! weight block read once per tile of tokens, the same sums whatever the batch); any other
//! GGUF type on candle's [`QMatMul`].
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use neuralign_kernels::quant::{Activations, BlockFormat, QMatrix};

use super::LmError;

/// A linear layer without bias, `y = x Wᵀ`.
pub enum Linear {
    /// Weights of a format our kernel runs.
    Own(QMatrix),
    /// Any other quantization, on candle's kernels.
    Candle(QMatMul),
}

impl Linear {
    /// Wraps a GGUF weight `[features, inputs]`, multiplying activations as its format's
    /// [`BlockFormat::default_activations`].
    pub fn new(weight: QTensor) -> Result<Linear, LmError> {
        let activations = own_format(weight.dtype()).map(BlockFormat::default_activations);
        Linear::with_activations(weight, activations.unwrap_or(Activations::Bytes))
    }

    /// Wraps a GGUF weight `[features, inputs]`, multiplying activations as `activations`
    /// where our kernel runs it (candle's kernels quantize them to 8 bits).
    pub fn with_activations(weight: QTensor, activations: Activations) -> Result<Linear, LmError> {
        match own_format(weight.dtype()) {
            Some(format) => {
                let (features, inputs) = weight.shape().dims2()?;
                Ok(Linear::Own(QMatrix::from_gguf(
                    format,
                    features,
                    inputs,
                    &weight.data()?,
                    activations,
                )?))
            }
            None => Ok(Linear::Candle(QMatMul::from_qtensor(weight)?)),
        }
    }

    /// Bytes of weights one product reads.
    pub fn weight_bytes(&self) -> usize {
        match self {
            Linear::Own(m) => m.weight_bytes(),
            Linear::Candle(QMatMul::QTensor(t)) => t.storage_size_in_bytes(),
            Linear::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => {
                t.elem_count() * t.dtype().size_in_bytes()
            }
        }
    }

    /// `x` `[t, inputs]` times the transposed weights: `[t, features]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, LmError> {
        match self {
            Linear::Own(m) => {
                let (t, inputs) = x.dims2()?;
                if inputs != m.inputs() {
                    return Err(LmError::Gguf(format!(
                        "input width {inputs}, the weights expect {}",
                        m.inputs()
                    )));
                }
                let x = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                let y = m.matmul(&x)?;
                Ok(Tensor::from_vec(y, (t, m.features()), &Device::Cpu)?)
            }
            Linear::Candle(q) => Ok(q.forward(x)?),
        }
    }
}

/// The block format our kernel runs for a GGUF type, if any.
fn own_format(dtype: GgmlDType) -> Option<BlockFormat> {
    match dtype {
        GgmlDType::Q4_1 => Some(BlockFormat::Q4_1),
        GgmlDType::Q5_0 => Some(BlockFormat::Q5_0),
        GgmlDType::Q8_0 => Some(BlockFormat::Q8_0),
        GgmlDType::Q4K => Some(BlockFormat::Q4K),
        GgmlDType::Q6K => Some(BlockFormat::Q6K),
        _ => None,
    }
}

/// Linear layers that read the same input (a block's Q, K and V; its gate and up), as few
/// products as the weights allow: each run of consecutive layers of one format our kernel
/// runs (and one input width) is one product, whose input is quantized once and whose rows
/// of all the run's layers are shared out over the threads in one call (Gemma's Q and K
/// fuse where its V is Q8_0). A row's sum is the same as in its own layer, so fusing
/// changes no bit.
pub struct Fused {
    /// The products, each with the output widths of its layers, in order.
    runs: Vec<(Linear, Vec<usize>)>,
}

impl Fused {
    /// Wraps GGUF weights `[features_i, inputs]`, multiplying activations as their
    /// format's default.
    pub fn new(weights: Vec<QTensor>) -> Result<Fused, LmError> {
        let format = weights.first().and_then(|w| own_format(w.dtype()));
        let activations = format.map_or(Activations::Bytes, BlockFormat::default_activations);
        Fused::with_activations(weights, activations)
    }

    /// Wraps GGUF weights `[features_i, inputs]`, multiplying activations as `activations`
    /// where our kernel runs them.
    pub fn with_activations(
        weights: Vec<QTensor>,
        activations: Activations,
    ) -> Result<Fused, LmError> {
        let mut runs: Vec<Vec<QTensor>> = Vec::new();
        for w in weights {
            let joins = runs.last().is_some_and(|run| {
                let last = &run[run.len() - 1];
                own_format(w.dtype()).is_some()
                    && w.dtype() == last.dtype()
                    && w.shape().dims().get(1) == last.shape().dims().get(1)
            });
            match runs.last_mut() {
                Some(run) if joins => run.push(w),
                _ => runs.push(vec![w]),
            }
        }
        let runs = runs
            .into_iter()
            .map(|run| {
                let widths = run
                    .iter()
                    .map(|w| Ok(w.shape().dims2()?.0))
                    .collect::<Result<Vec<_>, LmError>>()?;
                if run.len() == 1 {
                    let w = run.into_iter().next().expect("one layer");
                    return Ok((Linear::with_activations(w, activations)?, widths));
                }
                let format = own_format(run[0].dtype()).expect("runs of our formats");
                let inputs = run[0].shape().dims2()?.1;
                // GGUF stores a matrix row after row: the rows of all of them, in order.
                let mut data = Vec::new();
                for w in &run {
                    data.extend_from_slice(&w.data()?);
                }
                let features = widths.iter().sum();
                let matrix = QMatrix::from_gguf(format, features, inputs, &data, activations)?;
                Ok((Linear::Own(matrix), widths))
            })
            .collect::<Result<_, LmError>>()?;
        Ok(Fused { runs })
    }

    /// Bytes of weights one product reads.
    pub fn weight_bytes(&self) -> usize {
        self.runs.iter().map(|(l, _)| l.weight_bytes()).sum()
    }

    /// `x` `[t, inputs]` through each layer: one `[t, features_i]` per layer, in order.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, LmError> {
        let mut out = Vec::new();
        for (linear, widths) in &self.runs {
            let y = linear.forward(x)?;
            if let [_] = widths[..] {
                out.push(y);
                continue;
            }
            let mut at = 0;
            for &w in widths {
                out.push(y.narrow(1, at, w)?.contiguous()?);
                at += w;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Our kernel against two independent products: candle's own kernel and the dequantized
    /// weights times the f32 input. For Q4_1 candle also quantizes the activations to 8 bits
    /// per block (ggml's `vec_dot_q4_1_q8_1`, with f16 scales where ours are f32): the same
    /// values within rounding. The other formats multiply by default the activations'
    /// rounding residual too (16-bit activations): nearer the dequantized product than
    /// candle's 8-bit products by an order of magnitude; with 8-bit activations as near as
    /// Q4_1's.
    #[test]
    fn own_products_match_candle_and_the_dequantized_matmul() {
        for dtype in [
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            products_match_candle(dtype);
        }
    }

    fn products_match_candle(dtype: GgmlDType) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // K formats have 256-weight super-blocks
        let k_format = matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K);
        let (features, inputs) = (70, if k_format { 256 } else { 128 });
        let w: Vec<f32> = (0..features * inputs)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let w = Tensor::from_vec(w, (features, inputs), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let exact_w = q.dequantize(&Device::Cpu).unwrap();
        let candle = QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap();
        let bytes =
            Linear::with_activations(QTensor::quantize(&w, dtype).unwrap(), Activations::Bytes)
                .unwrap();
        let lin = Linear::new(q).unwrap();
        assert!(matches!(lin, Linear::Own(_)), "{dtype:?}");
        let rel = |a: &[Vec<f32>], b: &[Vec<f32>]| {
            let (mut err, mut norm) = (0f64, 0f64);
            for (a, b) in a.iter().flatten().zip(b.iter().flatten()) {
                err += ((a - b) as f64).powi(2);
                norm += (*b as f64).powi(2);
            }
            (err / norm).sqrt()
        };
        for t in [1, 3, 4, 9] {
            let x: Vec<f32> = (0..t * inputs).map(|_| rng.gen_range(-2.0..2.0)).collect();
            let x = Tensor::from_vec(x, (t, inputs), &Device::Cpu).unwrap();
            let ours = lin.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let ggml = candle.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let dense = x
                .matmul(&exact_w.t().unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let (ours_rel, ggml_rel) = (rel(&ours, &dense), rel(&ggml, &dense));
            if dtype != GgmlDType::Q4_1 {
                assert!(
                    ours_rel < 1e-4 && ours_rel * 10.0 < ggml_rel,
                    "{dtype:?} t={t}: {ours_rel} (candle {ggml_rel}) from the unquantized product"
                );
                let bytes = bytes.forward(&x).unwrap().to_vec2::<f32>().unwrap();
                let bytes_rel = rel(&bytes, &dense);
                assert!(
                    bytes_rel < 1e-2,
                    "{dtype:?} t={t}: 8-bit activations {bytes_rel} from the unquantized product"
                );
                continue;
            }
            for (a, b) in ours.iter().flatten().zip(ggml.iter().flatten()) {
                assert!(
                    (a - b).abs() <= 5e-3 * (1.0 + b.abs()),
                    "t={t}: {a} vs candle's {b}"
                );
            }
            assert!(
                ours_rel < 1e-2,
                "t={t}: {ours_rel} from the unquantized product"
            );
        }
    }

    /// Q, K and V (or gate and up) fused give each layer's own bits: one product for layers
    /// of one format, one per run of a format (Gemma's Q5_0 queries and keys, Q8_0 values).
    #[test]
    fn fused_layers_equal_each_layer_alone() {
        use GgmlDType::{Q4_1, Q5_0, Q8_0};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let inputs = 96;
        for (dtypes, runs) in [([Q4_1, Q4_1, Q4_1], 1), ([Q5_0, Q5_0, Q8_0], 2)] {
            let dense: Vec<Tensor> = [48, 16, 24]
                .iter()
                .map(|&features| {
                    let w: Vec<f32> = (0..features * inputs)
                        .map(|_| rng.gen_range(-1.0..1.0))
                        .collect();
                    Tensor::from_vec(w, (features, inputs), &Device::Cpu).unwrap()
                })
                .collect();
            let quantized = || -> Vec<QTensor> {
                dense
                    .iter()
                    .zip(dtypes)
                    .map(|(w, dtype)| QTensor::quantize(w, dtype).unwrap())
                    .collect()
            };
            let alone: Vec<Linear> = quantized()
                .into_iter()
                .map(|w| Linear::new(w).unwrap())
                .collect();
            let fused = Fused::new(quantized()).unwrap();
            assert_eq!(fused.runs.len(), runs, "{dtypes:?}");
            for t in [1, 5, 17] {
                let x: Vec<f32> = (0..t * inputs).map(|_| rng.gen_range(-2.0..2.0)).collect();
                let x = Tensor::from_vec(x, (t, inputs), &Device::Cpu).unwrap();
                let parts = fused.forward(&x).unwrap();
                assert_eq!(parts.len(), 3);
                for (part, lin) in parts.iter().zip(&alone) {
                    assert_eq!(
                        part.to_vec2::<f32>().unwrap(),
                        lin.forward(&x).unwrap().to_vec2::<f32>().unwrap()
                    );
                }
            }
        }
    }

    /// A row's product does not depend on the other rows of the batch.
    #[test]
    fn batching_does_not_change_a_row() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let (features, inputs) = (40, 64);
        let w: Vec<f32> = (0..features * inputs)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let w = Tensor::from_vec(w, (features, inputs), &Device::Cpu).unwrap();
        let lin = Linear::new(QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap();
        let x: Vec<f32> = (0..7 * inputs).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let x = Tensor::from_vec(x, (7, inputs), &Device::Cpu).unwrap();
        let batch = lin.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        for (r, row) in batch.iter().enumerate() {
            let one = lin
                .forward(&x.narrow(0, r, 1).unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            assert_eq!(&one[0], row, "row {r}");
        }
    }
}
