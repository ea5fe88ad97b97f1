//! Products of GGUF Q4_1 weight matrices with f32 activations.
//!
//! Candle 0.9 has no SIMD Q4_1 dot product and reads the whole weight matrix once per input
//! row; this kernel dequantizes each 32-weight block once per tile of [`TILE`] input rows,
//! multiplies in f32 (no 8-bit quantization of the activations, so it is closer to the exact
//! product than ggml's) and splits the output features across rayon's threads. Every output
//! element is summed in the same order whatever the batch size, so a row's result does not
//! depend on the rows beside it.
use half::f16;
use rayon::prelude::*;

use crate::KernelError;

/// Weights per Q4_1 block.
pub const QK: usize = 32;
/// Bytes per Q4_1 block: f16 scale, f16 minimum, 16 bytes of nibbles.
pub const BLOCK_BYTES: usize = 20;
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

impl Q41Matrix {
    /// A matrix of `features` rows of `inputs` weights from its GGUF bytes (row-major blocks).
    pub fn from_gguf(
        features: usize,
        inputs: usize,
        data: &[u8],
    ) -> Result<Q41Matrix, KernelError> {
        if inputs % QK != 0 {
            return Err(KernelError::Shape(format!(
                "a Q4_1 matrix has {inputs} inputs, not a multiple of {QK}"
            )));
        }
        if data.len() != features * inputs / QK * BLOCK_BYTES {
            return Err(KernelError::Shape(format!(
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

    /// Output features (rows of the weight matrix).
    pub fn features(&self) -> usize {
        self.features
    }

    /// Inputs (columns of the weight matrix).
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Bytes of weights one product reads.
    pub fn weight_bytes(&self) -> usize {
        self.blocks.len() * BLOCK_BYTES
    }

    /// `x` `[t, inputs]` (row-major) times the transposed weights: `[t, features]`.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        let inputs = self.inputs;
        if x.len() % inputs != 0 {
            return Err(KernelError::Shape(format!(
                "{} activations are not rows of {inputs}",
                x.len()
            )));
        }
        let t = x.len() / inputs;
        let per_row = inputs / QK;
        // Sum of each input block, for the `m` term of every weight block.
        let block_sums: Vec<f32> = x.chunks_exact(QK).map(|c| c.iter().sum()).collect();
        // Output transposed, `[features, t]`, so that each task owns a contiguous slice.
        let mut out = vec![0f32; self.features * t];
        if t == 0 {
            return Ok(out);
        }
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
        if t == 1 {
            return Ok(out);
        }
        let mut rows = vec![0f32; t * self.features];
        for (f, col) in out.chunks_exact(t).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                rows[r * self.features + f] = v;
            }
        }
        Ok(rows)
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

    /// A small matrix against its weights dequantized by hand and an f64 product.
    #[test]
    fn product_matches_the_dequantized_weights() {
        let (features, inputs) = (5, 64);
        let mut data = Vec::new();
        let mut dense = vec![0f64; features * inputs];
        for f in 0..features {
            for b in 0..inputs / QK {
                let (d, m) = (
                    f16::from_f32(0.01 * (f as f32 + 1.0)),
                    f16::from_f32(-0.03 * b as f32),
                );
                data.extend(d.to_le_bytes());
                data.extend(m.to_le_bytes());
                for j in 0..QK / 2 {
                    let (lo, hi) = ((f + j) % 16, (3 * j + b) % 16);
                    data.push((lo | hi << 4) as u8);
                    let row = &mut dense[f * inputs + b * QK..];
                    row[j] = d.to_f64() * lo as f64 + m.to_f64();
                    row[j + QK / 2] = d.to_f64() * hi as f64 + m.to_f64();
                }
            }
        }
        let w = Q41Matrix::from_gguf(features, inputs, &data).unwrap();
        for t in [1, 2, 5] {
            let x: Vec<f32> = (0..t * inputs)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0)
                .collect();
            let y = w.matmul(&x).unwrap();
            for r in 0..t {
                for f in 0..features {
                    let exact: f64 = (0..inputs)
                        .map(|i| dense[f * inputs + i] * x[r * inputs + i] as f64)
                        .sum();
                    let got = y[r * features + f] as f64;
                    assert!(
                        (got - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                        "t={t} r={r} f={f}: {got} vs {exact}"
                    );
                }
            }
        }
        assert!(Q41Matrix::from_gguf(features, inputs, &data[1..]).is_err());
        assert!(w.matmul(&[0.0; 3]).is_err());
    }
}
