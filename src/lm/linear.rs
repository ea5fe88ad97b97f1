//! The model's linear layers. Q4_1 weights (all of SmolLM2's blocks) run on
//! our own kernel; any other GGUF type on candle's [`QMatMul`].
//!
//! Why our own: candle 0.9 has no SIMD Q4_1 dot product (its `vec_dot` for
//! Q4_1 is the scalar reference loop) and it reads the whole weight matrix
//! once per input row, so a batch of tokens costs as much as that many single
//! steps. This kernel dequantizes each 32-weight block once per tile of
//! [`TILE`] input rows, multiplies in f32 (no 8-bit quantization of the
//! activations, so it is closer to the exact product than ggml's), and
//! splits the output features across rayon's threads. Every output element
//! is summed in the same order whatever the batch size, so a word gives the
//! same hidden states one token at a time or inside a long batch.
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use half::f16;
use rayon::prelude::*;

use super::LmError;

/// Weights per Q4_1 block.
const QK: usize = 32;
/// Bytes per Q4_1 block: f16 scale, f16 minimum, 16 bytes of nibbles.
const BLOCK_BYTES: usize = 20;
/// Input rows that share one dequantized weight block.
const TILE: usize = 4;
/// Rayon tasks per thread: enough to balance, few enough that a one-token
/// step is not dominated by scheduling.
const TASKS_PER_THREAD: usize = 4;

/// One Q4_1 block: weight `j` is `d * q_j + m` with `q_j` the low nibble of
/// `qs[j]` for `j < 16` and the high nibble of `qs[j - 16]` above.
#[derive(Clone, Copy)]
struct Block {
    d: f16,
    m: f16,
    qs: [u8; QK / 2],
}

/// A `[features, inputs]` Q4_1 weight matrix in GGUF block layout.
pub struct Q41Matrix {
    features: usize,
    inputs: usize,
    blocks: Vec<Block>,
}

/// A linear layer without bias, `y = x Wᵀ`.
pub enum Linear {
    /// Q4_1 weights on our kernel.
    Q41(Q41Matrix),
    /// Any other quantization, on candle's kernels.
    Candle(QMatMul),
}

impl Linear {
    /// Wraps a GGUF weight `[features, inputs]`.
    pub fn new(weight: QTensor) -> Result<Linear, LmError> {
        if weight.dtype() == GgmlDType::Q4_1 {
            Ok(Linear::Q41(Q41Matrix::new(&weight)?))
        } else {
            Ok(Linear::Candle(QMatMul::from_qtensor(weight)?))
        }
    }

    /// Bytes of weights one product reads.
    pub fn weight_bytes(&self) -> usize {
        match self {
            Linear::Q41(m) => m.blocks.len() * BLOCK_BYTES,
            Linear::Candle(QMatMul::QTensor(t)) => t.storage_size_in_bytes(),
            Linear::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => {
                t.elem_count() * t.dtype().size_in_bytes()
            }
        }
    }

    /// `x` `[t, inputs]` times the transposed weights: `[t, features]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, LmError> {
        match self {
            Linear::Q41(m) => m.forward(x),
            Linear::Candle(q) => Ok(q.forward(x)?),
        }
    }
}

impl Q41Matrix {
    fn new(weight: &QTensor) -> Result<Q41Matrix, LmError> {
        let (features, inputs) = weight.shape().dims2()?;
        if inputs % QK != 0 {
            return Err(LmError::Gguf(format!(
                "a Q4_1 matrix has {inputs} inputs, not a multiple of {QK}"
            )));
        }
        let data = weight.data()?;
        if data.len() != features * inputs / QK * BLOCK_BYTES {
            return Err(LmError::Gguf(format!(
                "a Q4_1 matrix of {features}x{inputs} holds {} bytes",
                data.len()
            )));
        }
        let blocks = data
            .chunks_exact(BLOCK_BYTES)
            .map(|b| Block {
                d: f16::from_le_bytes([b[0], b[1]]),
                m: f16::from_le_bytes([b[2], b[3]]),
                qs: b[4..].try_into().expect("16 bytes of nibbles"),
            })
            .collect();
        Ok(Q41Matrix {
            features,
            inputs,
            blocks,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, LmError> {
        let (t, inputs) = x.dims2()?;
        if inputs != self.inputs {
            return Err(LmError::Gguf(format!(
                "input width {inputs}, the weights expect {}",
                self.inputs
            )));
        }
        if t == 0 {
            return Ok(Tensor::zeros(
                (0, self.features),
                candle_core::DType::F32,
                &Device::Cpu,
            )?);
        }
        let x = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let per_row = inputs / QK;
        // Sum of each input block, for the `m` term of every weight block.
        let block_sums: Vec<f32> = x.chunks_exact(QK).map(|c| c.iter().sum()).collect();
        // Output transposed, `[features, t]`, so that each task owns a contiguous slice.
        let mut out = vec![0f32; self.features * t];
        let per_task = self
            .features
            .div_ceil(rayon::current_num_threads() * TASKS_PER_THREAD)
            .max(1);
        out.par_chunks_mut(per_task * t)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * per_task;
                for r0 in (0..t).step_by(TILE) {
                    let rows = TILE.min(t - r0);
                    for (f, out) in out.chunks_exact_mut(t).enumerate() {
                        let w = &self.blocks[(first + f) * per_row..(first + f + 1) * per_row];
                        let xs = &x[r0 * inputs..(r0 + rows) * inputs];
                        let sums = &block_sums[r0 * per_row..(r0 + rows) * per_row];
                        let out = &mut out[r0..r0 + rows];
                        match rows {
                            1 => dot_tile::<1>(w, xs, sums, out),
                            2 => dot_tile::<2>(w, xs, sums, out),
                            3 => dot_tile::<3>(w, xs, sums, out),
                            _ => dot_tile::<TILE>(w, xs, sums, out),
                        }
                    }
                }
            });
        let out = Tensor::from_vec(out, (self.features, t), &Device::Cpu)?;
        Ok(out.t()?.contiguous()?)
    }
}

/// Dot products of one weight row with `R` input rows stored one after the
/// other in `xs`, with their block sums in `sums`. `R` is a constant so that
/// the accumulators stay in registers.
fn dot_tile<const R: usize>(w: &[Block], xs: &[f32], sums: &[f32], out: &mut [f32]) {
    assert!(xs.len() == R * w.len() * QK && sums.len() == R * w.len() && out.len() == R);
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: the lengths were checked above and the CPU features are enabled at compile time.
    unsafe {
        avx2::dot_tile::<R>(w, xs, sums, out)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    portable_dot_tile::<R>(w, xs, sums, out)
}

/// [`dot_tile`] in plain Rust, summing in the same order as the AVX2 version.
#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
)))]
fn portable_dot_tile<const R: usize>(w: &[Block], xs: &[f32], sums: &[f32], out: &mut [f32]) {
    let width = w.len() * QK;
    let mut acc = [[0f32; 8]; R];
    let mut min_acc = [0f32; R];
    for (b, blk) in w.iter().enumerate() {
        let mut q = [0f32; QK];
        for j in 0..QK / 2 {
            q[j] = f32::from(blk.qs[j] & 0x0F);
            q[j + QK / 2] = f32::from(blk.qs[j] >> 4);
        }
        let (d, m) = (blk.d.to_f32(), blk.m.to_f32());
        for r in 0..R {
            let x = &xs[r * width + b * QK..r * width + (b + 1) * QK];
            let mut lanes = [0f32; 8];
            for c in 0..QK / 8 {
                for l in 0..8 {
                    lanes[l] = q[c * 8 + l].mul_add(x[c * 8 + l], lanes[l]);
                }
            }
            for (a, lane) in acc[r].iter_mut().zip(lanes) {
                *a = d.mul_add(lane, *a);
            }
            min_acc[r] = m.mul_add(sums[r * w.len() + b], min_acc[r]);
        }
    }
    for ((o, a), min) in out.iter_mut().zip(&acc).zip(min_acc) {
        *o = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + min;
    }
}

/// The kernel with AVX2/FMA intrinsics: a block's 32 nibbles become four
/// 8-lane f32 vectors once, then feed four FMAs per input row.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Block, QK};

    /// # Safety
    /// `xs` holds `R * w.len() * QK` floats, `sums` `R * w.len()`, `out` `R`.
    pub(super) unsafe fn dot_tile<const R: usize>(
        w: &[Block],
        xs: &[f32],
        sums: &[f32],
        out: &mut [f32],
    ) {
        let width = w.len() * QK;
        let low = _mm_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut min_acc = [0f32; R];
        for (b, blk) in w.iter().enumerate() {
            let packed = _mm_loadu_si128(blk.qs.as_ptr().cast());
            let lo = _mm_and_si128(packed, low);
            let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low);
            let widen = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
            let q = [
                widen(lo),
                widen(_mm_srli_si128(lo, 8)),
                widen(hi),
                widen(_mm_srli_si128(hi, 8)),
            ];
            let d = _mm256_set1_ps(blk.d.to_f32());
            let m = blk.m.to_f32();
            for r in 0..R {
                let x = xs.as_ptr().add(r * width + b * QK);
                let mut lanes = _mm256_mul_ps(q[0], _mm256_loadu_ps(x));
                lanes = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(x.add(8)), lanes);
                lanes = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(x.add(16)), lanes);
                lanes = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(x.add(24)), lanes);
                acc[r] = _mm256_fmadd_ps(d, lanes, acc[r]);
                min_acc[r] = m.mul_add(*sums.get_unchecked(r * w.len() + b), min_acc[r]);
            }
        }
        for ((o, lanes), min) in out.iter_mut().zip(acc).zip(min_acc) {
            let mut a = [0f32; 8];
            _mm256_storeu_ps(a.as_mut_ptr(), lanes);
            *o = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Our kernel against candle's dequantized weights times the f32 input
    /// (an independent product), for batch sizes around the tile size.
    #[test]
    fn q4_1_product_matches_dequantized_matmul() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (features, inputs) = (70, 96);
        let w: Vec<f32> = (0..features * inputs)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let w = Tensor::from_vec(w, (features, inputs), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let exact_w = q.dequantize(&Device::Cpu).unwrap();
        let lin = Linear::new(q).unwrap();
        assert!(matches!(lin, Linear::Q41(_)));
        for t in [1, 3, 4, 9] {
            let x: Vec<f32> = (0..t * inputs).map(|_| rng.gen_range(-2.0..2.0)).collect();
            let x = Tensor::from_vec(x, (t, inputs), &Device::Cpu).unwrap();
            let ours = lin.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let reference = x
                .matmul(&exact_w.t().unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (a, b) in ours.iter().flatten().zip(reference.iter().flatten()) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "t={t}: {a} vs {b}");
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
