//! Products of GGUF Q4_1 and Q5_0 weight matrices with f32 activations, in integer SIMD.
//!
//! Each input row is first quantized to 8 bits per 32-value block (ggml's Q8_1 scheme: scale
//! `d = max|x| / 127`, values rounded half to even, the block's sum kept for the weights'
//! minimum term); a weight block times an input block is then one `maddubs`/`madd` pair over
//! 32 bytes, the way llama.cpp's `vec_dot_q4_1_q8_1` computes it, instead of widening every
//! nibble to f32; where the CPU has VNNI, one `vpdpbusd` computes the same integers
//! ([`Product`], chosen at run time).
//!
//! At load the blocks are repacked in groups of [`ROWS`] weight rows: for each block column,
//! the rows' eight scales, eight minimums and eight nibble runs side by side (160 bytes, as
//! many as GGUF's eight blocks). A step then converts eight scales and eight minimums with
//! one instruction each and keeps eight sums in flight while the weights stream in. A batch
//! of tokens unpacks a group's nibbles once into bytes on the stack and runs every token of
//! its tile against them. Tasks go to the worker pool ([`crate::pool`]): ranges of groups for
//! a few tokens, tiles of tokens for a batch.
//!
//! Q5_0 (most of Gemma 3's matrices) is Q4_1 with a fifth bit per weight and the minimum
//! fixed at `−16 d`: its groups add the eight rows' high bits, and a product widens each
//! block column to bytes (nibble | high bit · 16) before the same byte kernels, for one token
//! as for a batch. Its products also multiply the rounding residual of the 8-bit activations,
//! quantized to 8 bits again (a second pass over the same widened weights): Gemma's first
//! blocks see activations ~30× their RMS, which one 8-bit scale per 32 values rounds
//! coarsely for the rest of the block (docs/models.md has the figures against numpy).
//!
//! A row's quantization and every output element's sums run in the same order whatever the
//! batch and whichever kernel, so running tokens one by one or in a batch gives the same bits.
use half::f16;

use crate::{pool, KernelError};

/// Weights per block (Q4_1 and Q5_0 alike).
pub const QK: usize = 32;
/// Weight rows repacked side by side.
const ROWS: usize = 8;
/// Tokens per task in a batch (each unpacks every group once).
const TILE: usize = 16;
/// Pool tasks per thread: enough to balance a noisy machine, few enough that a one-token
/// step is not dominated by scheduling.
const TASKS_PER_THREAD: usize = 4;

/// One block column of [`ROWS`] weight rows: weight `j` of row `i` is `d[i] * q + m[i]`
/// with `q` the low nibble of `qs[i][j]` for `j < 16` and the high nibble of
/// `qs[i][j - 16]` above (GGUF's Q4_1 block, rows side by side).
#[derive(Clone, Copy)]
#[repr(C)]
struct Group {
    d: [f16; ROWS],
    m: [f16; ROWS],
    qs: [[u8; QK / 2]; ROWS],
}

/// One block column of [`ROWS`] Q5_0 weight rows: weight `j` of row `i` is
/// `d[i] * (q − 16)` with `q` the nibble of `qs[i]` (as in [`Group`]) plus 16 times bit `j`
/// of `qh[i]`.
#[derive(Clone, Copy)]
#[repr(C)]
struct Group50 {
    d: [f16; ROWS],
    qh: [u32; ROWS],
    qs: [[u8; QK / 2]; ROWS],
}

/// How the groups of one block format are read from GGUF, widened and multiplied.
trait Blocks: Copy + Send + Sync {
    /// Bytes of one GGUF block.
    const BLOCK_BYTES: usize;
    /// Passes over a row of activations ([`activations`]): the 8-bit blocks, then (with 2)
    /// their rounding residual's.
    const PASSES: usize;
    /// A group of zero rows (padding past the last feature).
    const ZERO: Self;
    /// Stores GGUF block `blk` as row `i` of the group.
    fn set_row(&mut self, i: usize, blk: &[u8]);
    /// Widens block columns `w` into `out`, the byte order of [`unpack`].
    fn unpack(w: &[Self], out: &mut [Unpacked]);
    /// One token's quantized row `x` (its [`Blocks::PASSES`] passes, one after the other)
    /// against block columns `w`; `scratch` is the caller's to reuse between calls.
    fn dot(w: &[Self], x: &[Q8Block], scratch: &mut Vec<Unpacked>) -> [f32; ROWS];
}

impl Blocks for Group {
    const BLOCK_BYTES: usize = 20;
    const PASSES: usize = 1;
    const ZERO: Self = Group {
        d: [f16::ZERO; ROWS],
        m: [f16::ZERO; ROWS],
        qs: [[0; QK / 2]; ROWS],
    };

    fn set_row(&mut self, i: usize, blk: &[u8]) {
        self.d[i] = f16::from_le_bytes([blk[0], blk[1]]);
        self.m[i] = f16::from_le_bytes([blk[2], blk[3]]);
        self.qs[i].copy_from_slice(&blk[4..]);
    }

    fn unpack(w: &[Self], out: &mut [Unpacked]) {
        unpack(w, out)
    }

    fn dot(w: &[Self], x: &[Q8Block], _: &mut Vec<Unpacked>) -> [f32; ROWS] {
        dot_packed(w, x)
    }
}

impl Blocks for Group50 {
    const BLOCK_BYTES: usize = 22;
    const PASSES: usize = 2;
    const ZERO: Self = Group50 {
        d: [f16::ZERO; ROWS],
        qh: [0; ROWS],
        qs: [[0; QK / 2]; ROWS],
    };

    fn set_row(&mut self, i: usize, blk: &[u8]) {
        self.d[i] = f16::from_le_bytes([blk[0], blk[1]]);
        self.qh[i] = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        self.qs[i].copy_from_slice(&blk[6..]);
    }

    fn unpack(w: &[Self], out: &mut [Unpacked]) {
        for (g, u) in w.iter().zip(out.iter_mut()) {
            for i in 0..ROWS {
                #[cfg(all(
                    target_arch = "x86_64",
                    target_feature = "avx2",
                    target_feature = "fma"
                ))]
                // SAFETY: the CPU features are enabled at compile time.
                unsafe {
                    avx2::unpack_row_high(&g.qs[i], g.qh[i], &mut u.q[i]);
                }
                #[cfg(not(all(
                    target_arch = "x86_64",
                    target_feature = "avx2",
                    target_feature = "fma"
                )))]
                for j in 0..QK {
                    let nibble = if j < QK / 2 {
                        g.qs[i][j] & 0x0F
                    } else {
                        g.qs[i][j - QK / 2] >> 4
                    };
                    u.q[i][j] = nibble | (((g.qh[i] >> j) & 1) as u8) << 4;
                }
                u.d[i] = g.d[i].to_f32();
                u.m[i] = -16.0 * u.d[i];
            }
        }
    }

    fn dot(w: &[Self], x: &[Q8Block], scratch: &mut Vec<Unpacked>) -> [f32; ROWS] {
        scratch.resize(w.len(), Unpacked::default());
        Self::unpack(w, scratch);
        dot_passes(scratch, x)
    }
}

/// Unpacked block columns `w` times every pass of a token's row `x`, summed in pass order.
fn dot_passes(w: &[Unpacked], x: &[Q8Block]) -> [f32; ROWS] {
    let mut passes = x.chunks_exact(w.len()).map(|x| dot_unpacked(w, x));
    let first = passes.next().expect("one pass at least");
    passes.fold(first, |a, b| std::array::from_fn(|i| a[i] + b[i]))
}

/// A row of activations as `passes` runs of 8-bit blocks: the blocks, then (with 2) the
/// blocks of what their rounding left, `x − d·q`.
fn activations(row: &[f32], passes: usize, out: &mut Vec<Q8Block>) {
    let first = out.len();
    out.extend(row.chunks_exact(QK).map(quantize));
    if passes == 2 {
        for (i, x) in row.chunks_exact(QK).enumerate() {
            let q = out[first + i];
            let residual: [f32; QK] = std::array::from_fn(|j| x[j] - q.d * f32::from(q.qs[j]));
            out.push(quantize(&residual));
        }
    }
}

/// The GGUF block formats [`QMatrix`] multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// f16 scale and minimum, 4-bit weights (SmolLM2's blocks).
    Q4_1,
    /// f16 scale, 5-bit weights centred on 16 (most of Gemma 3's).
    Q5_0,
}

/// The repacked groups of a matrix, by format.
enum Groups {
    Q4_1(Vec<Group>),
    Q5_0(Vec<Group50>),
}

/// 32 activations quantized to 8 bits: value `j` is about `d * qs[j]`; `s` is `d * Σ qs`.
#[derive(Clone, Copy)]
struct Q8Block {
    d: f32,
    s: f32,
    qs: [i8; QK],
}

/// A `[features, inputs]` weight matrix of one [`BlockFormat`], repacked in groups of
/// [`ROWS`] rows.
pub struct QMatrix {
    features: usize,
    inputs: usize,
    /// `[features / ROWS (rounded up), inputs / QK]`; rows past `features` are zero.
    groups: Groups,
}

/// GGUF blocks `data` of a `features × inputs` matrix (row-major) in groups.
fn repack<B: Blocks>(
    format: BlockFormat,
    features: usize,
    inputs: usize,
    data: &[u8],
) -> Result<Vec<B>, KernelError> {
    if !inputs.is_multiple_of(QK) {
        return Err(KernelError::Shape(format!(
            "a {format:?} matrix has {inputs} inputs, not a multiple of {QK}"
        )));
    }
    let per_row = inputs / QK;
    if data.len() != features * per_row * B::BLOCK_BYTES {
        return Err(KernelError::Shape(format!(
            "a {format:?} matrix of {features}x{inputs} holds {} bytes",
            data.len()
        )));
    }
    let mut groups = vec![B::ZERO; features.div_ceil(ROWS) * per_row];
    for (f, row) in data.chunks_exact(per_row * B::BLOCK_BYTES).enumerate() {
        for (b, blk) in row.chunks_exact(B::BLOCK_BYTES).enumerate() {
            groups[f / ROWS * per_row + b].set_row(f % ROWS, blk);
        }
    }
    Ok(groups)
}

impl QMatrix {
    /// A matrix of `features` rows of `inputs` weights from its GGUF bytes (row-major blocks).
    pub fn from_gguf(
        format: BlockFormat,
        features: usize,
        inputs: usize,
        data: &[u8],
    ) -> Result<QMatrix, KernelError> {
        let groups = match format {
            BlockFormat::Q4_1 => Groups::Q4_1(repack(format, features, inputs, data)?),
            BlockFormat::Q5_0 => Groups::Q5_0(repack(format, features, inputs, data)?),
        };
        Ok(QMatrix {
            features,
            inputs,
            groups,
        })
    }

    /// The block format of the weights.
    pub fn format(&self) -> BlockFormat {
        match self.groups {
            Groups::Q4_1(_) => BlockFormat::Q4_1,
            Groups::Q5_0(_) => BlockFormat::Q5_0,
        }
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
        match &self.groups {
            Groups::Q4_1(g) => std::mem::size_of_val(g.as_slice()),
            Groups::Q5_0(g) => std::mem::size_of_val(g.as_slice()),
        }
    }

    /// `x` `[t, inputs]` (row-major) times the transposed weights: `[t, features]`.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        match &self.groups {
            Groups::Q4_1(g) => self.product(g, x),
            Groups::Q5_0(g) => self.product(g, x),
        }
    }

    fn product<B: Blocks>(&self, groups: &[B], x: &[f32]) -> Result<Vec<f32>, KernelError> {
        let inputs = self.inputs;
        if !x.len().is_multiple_of(inputs) {
            return Err(KernelError::Shape(format!(
                "{} activations are not rows of {inputs}",
                x.len()
            )));
        }
        let t = x.len() / inputs;
        let n = inputs / QK;
        // a row's passes one after the other: `stride` blocks a token
        let stride = n * B::PASSES;
        let mut xq = Vec::with_capacity(t * stride);
        for row in x.chunks_exact(inputs) {
            activations(row, B::PASSES, &mut xq);
        }
        let mut out = vec![0f32; t * self.features];
        if t == 0 {
            return Ok(out);
        }
        let n_groups = groups.len() / n;
        let features = self.features;
        // Eight outputs of group `g` into `out[r * features + ..]` (fewer in a last, padded group).
        let store = |out: &mut [f32], r: usize, g: usize, y: &[f32; ROWS]| {
            let first = g * ROWS;
            let k = ROWS.min(features - first);
            out[r * features + first..r * features + first + k].copy_from_slice(&y[..k]);
        };
        let threads = pool::threads();
        if t >= TILE * threads {
            // A batch: each task a tile of tokens against every group, writing its own rows.
            pool::for_each_chunk(&mut out, TILE * features, |task, out| {
                let rows = out.len() / features;
                let xs = &xq[task * TILE * stride..(task * TILE + rows) * stride];
                let mut unpacked = vec![Unpacked::default(); n];
                for g in 0..n_groups {
                    B::unpack(&groups[g * n..(g + 1) * n], &mut unpacked);
                    for r in 0..rows {
                        let y = dot_passes(&unpacked, &xs[r * stride..(r + 1) * stride]);
                        store(out, r, g, &y);
                    }
                }
            });
        } else {
            // A few tokens: each task a range of groups, each group against every token
            // while it is in the L1 cache.
            let per_task = n_groups.div_ceil(threads * TASKS_PER_THREAD).max(1);
            let mut by_group = vec![0f32; n_groups * ROWS * t];
            pool::for_each_chunk(&mut by_group, per_task * ROWS * t, |task, part| {
                let mut scratch = Vec::new();
                for (i, part) in part.chunks_exact_mut(ROWS * t).enumerate() {
                    let g = task * per_task + i;
                    let w = &groups[g * n..(g + 1) * n];
                    for (r, y) in part.chunks_exact_mut(ROWS).enumerate() {
                        let x = &xq[r * stride..(r + 1) * stride];
                        y.copy_from_slice(&B::dot(w, x, &mut scratch));
                    }
                }
            });
            for (g, part) in by_group.chunks_exact(ROWS * t).enumerate() {
                for (r, y) in part.chunks_exact(ROWS).enumerate() {
                    store(&mut out, r, g, y.try_into().expect("a group's outputs"));
                }
            }
        }
        Ok(out)
    }
}

/// 32 activations to 8 bits (ggml's `quantize_row_q8_1`, with the scales kept in f32).
fn quantize(x: &[f32]) -> Q8Block {
    let x: &[f32; QK] = x.try_into().expect("a block of activations");
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: the CPU features are enabled at compile time.
    unsafe {
        avx2::quantize(x)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; QK];
        let mut sum = 0i32;
        for (q, v) in qs.iter_mut().zip(x) {
            // |v * id| <= 127 up to rounding, so the cast never saturates past one step.
            *q = (v * id).round_ties_even() as i8;
            sum += i32::from(*q);
        }
        Q8Block {
            d,
            s: d * sum as f32,
            qs,
        }
    }
}

/// A group's block column with the nibbles widened to bytes and the scales to f32, for
/// a batch to reuse.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Unpacked {
    q: [[u8; QK]; ROWS],
    d: [f32; ROWS],
    m: [f32; ROWS],
}

/// Widens a group's blocks `w` into `out`, in the byte order the kernels use: low
/// nibbles (weights 0..16), then high nibbles (16..32).
fn unpack(w: &[Group], out: &mut [Unpacked]) {
    for (g, u) in w.iter().zip(out.iter_mut()) {
        for i in 0..ROWS {
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            ))]
            // SAFETY: the CPU features are enabled at compile time.
            unsafe {
                avx2::unpack_row(&g.qs[i], &mut u.q[i]);
            }
            #[cfg(not(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            )))]
            for j in 0..QK / 2 {
                u.q[i][j] = g.qs[i][j] & 0x0F;
                u.q[i][j + QK / 2] = g.qs[i][j] >> 4;
            }
            u.d[i] = g.d[i].to_f32();
            u.m[i] = g.m[i].to_f32();
        }
    }
}

/// The eight sums of a group's row with one token: the scale, minimum and accumulators of
/// each row, and how every kernel finishes them (the same order everywhere).
fn finish(acc: &[[f32; 8]; ROWS], min: &[f32; ROWS]) -> [f32; ROWS] {
    std::array::from_fn(|i| {
        let a = &acc[i];
        ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + min[i]
    })
}

/// How the AVX2 kernels multiply weight bytes by activation bytes: `maddubs` + `madd`
/// everywhere, one `vpdpbusd` where the CPU has VNNI (the same integers, so the same
/// results). `NEURALIGN_KERNEL=madd` forces the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// `maddubs` + `madd` (AVX2).
    Madd,
    /// `vpdpbusd`, VEX-encoded (AVX-VNNI).
    AvxVnni,
    /// `vpdpbusd` on 256-bit registers (AVX-512 VNNI + VL).
    Avx512Vnni,
}

/// The [`Product`] this process uses, chosen once.
pub fn product() -> Product {
    static CHOSEN: std::sync::OnceLock<Product> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        if std::env::var("NEURALIGN_KERNEL").is_ok_and(|v| v == "madd") {
            return Product::Madd;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avxvnni") {
                return Product::AvxVnni;
            }
            if std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                return Product::Avx512Vnni;
            }
        }
        Product::Madd
    })
}

/// The AVX2 kernels of one [`Product`].
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
struct Kernels {
    packed: unsafe fn(&[Group], &[Q8Block]) -> [f32; ROWS],
    unpacked: unsafe fn(&[Unpacked], &[Q8Block]) -> [f32; ROWS],
}

/// The kernels of this process's [`Product`].
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
fn kernels() -> &'static Kernels {
    use avx2::{avx512_vnni, avx_vnni, madd};
    static MADD: Kernels = Kernels {
        packed: madd::dot_packed,
        unpacked: madd::dot_unpacked,
    };
    static AVX_VNNI: Kernels = Kernels {
        packed: avx_vnni::dot_packed,
        unpacked: avx_vnni::dot_unpacked,
    };
    static AVX512_VNNI: Kernels = Kernels {
        packed: avx512_vnni::dot_packed,
        unpacked: avx512_vnni::dot_unpacked,
    };
    match product() {
        Product::Madd => &MADD,
        Product::AvxVnni => &AVX_VNNI,
        Product::Avx512Vnni => &AVX512_VNNI,
    }
}

/// One token's quantized row `x` against a packed group's blocks `w`.
fn dot_packed(w: &[Group], x: &[Q8Block]) -> [f32; ROWS] {
    assert_eq!(w.len(), x.len());
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: equal lengths were checked; AVX2/FMA are enabled at compile time and the
    // VNNI variants are chosen only where the CPU reports them.
    unsafe {
        (kernels().packed)(w, x)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        let mut u = vec![Unpacked::default(); w.len()];
        unpack(w, &mut u);
        dot_unpacked(&u, x)
    }
}

/// One token's quantized row `x` against an unpacked group `w`.
fn dot_unpacked(w: &[Unpacked], x: &[Q8Block]) -> [f32; ROWS] {
    assert_eq!(w.len(), x.len());
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: as in `dot_packed`.
    unsafe {
        (kernels().unpacked)(w, x)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        // Integer products in eight lanes of four weights, each lane scaled into its own
        // f32 accumulator, as the `maddubs`/`madd` kernels do.
        let mut acc = [[0f32; 8]; ROWS];
        let mut min = [0f32; ROWS];
        for (u, x) in w.iter().zip(x) {
            for i in 0..ROWS {
                let scale = u.d[i] * x.d;
                for (l, a) in acc[i].iter_mut().enumerate() {
                    let lane: i32 = (4 * l..4 * l + 4)
                        .map(|j| i32::from(u.q[i][j]) * i32::from(x.qs[j]))
                        .sum();
                    *a = scale.mul_add(lane as f32, *a);
                }
                min[i] = u.m[i].mul_add(x.s, min[i]);
            }
        }
        finish(&acc, &min)
    }
}

/// The kernels with AVX2/FMA intrinsics. Per block column: the eight scales times the
/// token's scale in one multiply, the eight minimum terms in one FMA, then per weight row
/// one `maddubs` + `madd` + FMA.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{finish, Q8Block, QK, ROWS};

    /// Sixteen bytes of nibbles as 32 bytes, low nibbles first.
    #[inline(always)]
    unsafe fn nibbles(packed: __m128i) -> __m256i {
        let low = _mm256_set1_epi8(0x0F);
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low)
    }

    /// One row of a group's block, widened.
    pub(super) unsafe fn unpack_row(qs: &[u8; QK / 2], out: &mut [u8; QK]) {
        let q = nibbles(_mm_loadu_si128(qs.as_ptr().cast()));
        _mm256_storeu_si256(out.as_mut_ptr().cast(), q);
    }

    /// One row of a Q5_0 group's block, widened: nibble | 16 · bit `j` of `qh` (llama.cpp's
    /// `bytes_from_bits_32`: byte `j` of the broadcast word, its bit `j % 8` tested).
    pub(super) unsafe fn unpack_row_high(qs: &[u8; QK / 2], qh: u32, out: &mut [u8; QK]) {
        let q = nibbles(_mm_loadu_si128(qs.as_ptr().cast()));
        let bytes = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh as i32),
            _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0,
            ),
        );
        let set = _mm256_cmpeq_epi8(
            _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe)),
            _mm256_set1_epi64x(-1),
        );
        let high = _mm256_and_si256(set, _mm256_set1_epi8(0x10));
        _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm256_or_si256(q, high));
    }

    /// [`super::quantize`]: the same scale, rounding (half to even) and sum, eight lanes
    /// at a time.
    pub(super) unsafe fn quantize(x: &[f32; QK]) -> Q8Block {
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(x.as_ptr().add(8 * i)));
        let sign = _mm256_set1_ps(-0.0);
        let abs = v.map(|v| _mm256_andnot_ps(sign, v));
        let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let amax = lanes.iter().fold(0f32, |a, v| a.max(*v));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        // cvtps rounds half to even in the default rounding mode.
        let q = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, id)));
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let mut s = [0i32; 8];
        _mm256_storeu_si256(s.as_mut_ptr().cast(), sum);
        // Pack to bytes: the packs interleave 128-bit halves, the permute restores order.
        let w01 = _mm256_packs_epi32(q[0], q[1]);
        let w23 = _mm256_packs_epi32(q[2], q[3]);
        let b = _mm256_packs_epi16(w01, w23);
        let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        let mut qs = [0i8; QK];
        _mm256_storeu_si256(qs.as_mut_ptr().cast(), b);
        Q8Block {
            d,
            s: d * s.iter().sum::<i32>() as f32,
            qs,
        }
    }

    /// Eight row sums from the accumulators.
    unsafe fn done(acc: &[__m256; ROWS], min: __m256) -> [f32; ROWS] {
        let mut a = [[0f32; 8]; ROWS];
        for (a, v) in a.iter_mut().zip(acc) {
            _mm256_storeu_ps(a.as_mut_ptr(), *v);
        }
        let mut m = [0f32; ROWS];
        _mm256_storeu_ps(m.as_mut_ptr(), min);
        finish(&a, &m)
    }

    /// A group times one token, for each way of multiplying weight bytes by activation
    /// bytes into sums of four (`quads`): every way gives the same integers, so the same
    /// results bit for bit.
    macro_rules! products {
        ($name:ident, $features:literal, |$q:ident, $x:ident| $quads:expr) => {
            pub(super) mod $name {
                use std::arch::x86_64::*;

                use super::super::{Group, Q8Block, Unpacked, ROWS};
                use super::{done, nibbles};

                /// The block's quads, scaled into `acc`.
                #[inline]
                #[target_feature(enable = $features)]
                unsafe fn step(acc: __m256, $q: __m256i, $x: __m256i, scale: f32) -> __m256 {
                    let quads: __m256i = $quads;
                    _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(quads), acc)
                }

                /// # Safety
                /// `w` and `x` have the same length; the CPU has the features.
                #[target_feature(enable = $features)]
                pub(in super::super) unsafe fn dot_packed(
                    w: &[Group],
                    x: &[Q8Block],
                ) -> [f32; ROWS] {
                    let mut acc = [_mm256_setzero_ps(); ROWS];
                    let mut min = _mm256_setzero_ps();
                    for (g, x) in w.iter().zip(x) {
                        let d = _mm256_cvtph_ps(_mm_loadu_si128(g.d.as_ptr().cast()));
                        let m = _mm256_cvtph_ps(_mm_loadu_si128(g.m.as_ptr().cast()));
                        let mut scale = [0f32; ROWS];
                        _mm256_storeu_ps(scale.as_mut_ptr(), _mm256_mul_ps(d, _mm256_set1_ps(x.d)));
                        min = _mm256_fmadd_ps(m, _mm256_set1_ps(x.s), min);
                        let xq = _mm256_loadu_si256(x.qs.as_ptr().cast());
                        for i in 0..ROWS {
                            let q = nibbles(_mm_loadu_si128(g.qs[i].as_ptr().cast()));
                            acc[i] = step(acc[i], q, xq, scale[i]);
                        }
                    }
                    done(&acc, min)
                }

                /// # Safety
                /// `w` and `x` have the same length; the CPU has the features.
                #[target_feature(enable = $features)]
                pub(in super::super) unsafe fn dot_unpacked(
                    w: &[Unpacked],
                    x: &[Q8Block],
                ) -> [f32; ROWS] {
                    let mut acc = [_mm256_setzero_ps(); ROWS];
                    let mut min = _mm256_setzero_ps();
                    for (u, x) in w.iter().zip(x) {
                        let mut scale = [0f32; ROWS];
                        _mm256_storeu_ps(
                            scale.as_mut_ptr(),
                            _mm256_mul_ps(_mm256_loadu_ps(u.d.as_ptr()), _mm256_set1_ps(x.d)),
                        );
                        min = _mm256_fmadd_ps(
                            _mm256_loadu_ps(u.m.as_ptr()),
                            _mm256_set1_ps(x.s),
                            min,
                        );
                        let xq = _mm256_loadu_si256(x.qs.as_ptr().cast());
                        for i in 0..ROWS {
                            let q = _mm256_load_si256(u.q[i].as_ptr().cast());
                            acc[i] = step(acc[i], q, xq, scale[i]);
                        }
                    }
                    done(&acc, min)
                }
            }
        };
    }

    // Unsigned weight bytes times signed activations: pairs (at most 2·31·128, no
    // saturation), then quads as i32, all exact.
    products!(madd, "avx2,fma", |q, x| _mm256_madd_epi16(
        _mm256_maddubs_epi16(q, x),
        _mm256_set1_epi16(1)
    ));
    // The same quads in one instruction (VEX-encoded VNNI: Alder Lake, Sapphire Rapids on).
    products!(
        avx_vnni,
        "avx2,fma,avxvnni",
        |q, x| _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), q, x)
    );
    // The same with AVX-512 VNNI on 256-bit registers (Ice Lake servers, AMD Zen 4 on).
    products!(avx512_vnni, "avx2,fma,avx512vnni,avx512vl", |q, x| {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, x)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small matrix against its weights dequantized by hand times the activations as
    /// quantized (f64 sums: the scheme's exact result), and near the unquantized product.
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
        let w = QMatrix::from_gguf(BlockFormat::Q4_1, features, inputs, &data).unwrap();
        for t in [1, 2, 5] {
            let x: Vec<f32> = (0..t * inputs)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0 + (i % 5) as f32 * 0.013)
                .collect();
            let xq: Vec<f64> = x
                .chunks_exact(QK)
                .flat_map(|c| {
                    let q = quantize(c);
                    q.qs.map(|v| q.d as f64 * v as f64)
                })
                .collect();
            let y = w.matmul(&x).unwrap();
            for r in 0..t {
                for f in 0..features {
                    let dot = |x: &dyn Fn(usize) -> f64| -> f64 {
                        (0..inputs)
                            .map(|i| dense[f * inputs + i] * x(r * inputs + i))
                            .sum()
                    };
                    let scheme = dot(&|i| xq[i]);
                    let exact = dot(&|i| x[i] as f64);
                    let got = y[r * features + f] as f64;
                    assert!(
                        (got - scheme).abs() <= 1e-5 * (1.0 + scheme.abs()),
                        "t={t} r={r} f={f}: {got} vs {scheme}"
                    );
                    assert!(
                        (got - exact).abs() <= 2e-2 * (1.0 + exact.abs()),
                        "t={t} r={r} f={f}: {got} vs unquantized {exact}"
                    );
                }
            }
        }
        assert!(QMatrix::from_gguf(BlockFormat::Q4_1, features, inputs, &data[1..]).is_err());
        assert!(w.matmul(&[0.0; 3]).is_err());
    }

    /// Q5_0 blocks built by hand (every high-bit pattern position used) against their
    /// weights dequantized by hand times the activations as quantized; a batch past the
    /// tile (the unpacked path) gives each token's bits alone.
    #[test]
    fn q5_0_product_matches_the_dequantized_weights_and_batching_changes_nothing() {
        let (features, inputs) = (11, 96);
        let mut data = Vec::new();
        let mut dense = vec![0f64; features * inputs];
        for f in 0..features {
            for b in 0..inputs / QK {
                let d =
                    f16::from_f32(0.02 * (f as f32 + 1.0) * if b % 2 == 0 { 1.0 } else { -0.5 });
                let qh = 0x9E37_79B9u32.rotate_left((f * 7 + b * 3) as u32) ^ (f as u32);
                data.extend(d.to_le_bytes());
                data.extend(qh.to_le_bytes());
                for j in 0..QK / 2 {
                    let (lo, hi) = ((f + 5 * j) % 16, (3 * j + b) % 16);
                    data.push((lo | hi << 4) as u8);
                    let q = |nibble: usize, bit: usize| {
                        (nibble | ((qh >> bit) as usize & 1) << 4) as f64 - 16.0
                    };
                    let row = &mut dense[f * inputs + b * QK..];
                    row[j] = d.to_f64() * q(lo, j);
                    row[j + QK / 2] = d.to_f64() * q(hi, j + QK / 2);
                }
            }
        }
        let w = QMatrix::from_gguf(BlockFormat::Q5_0, features, inputs, &data).unwrap();
        assert_eq!(w.format(), BlockFormat::Q5_0);
        let t = 40;
        let x: Vec<f32> = (0..t * inputs)
            .map(|i| ((i * 11 % 17) as f32 - 8.0) / 5.0 + (i % 3) as f32 * 0.021)
            .collect();
        // the activations as the two passes carry them: 8-bit blocks plus their residual's
        let xq: Vec<f64> = x
            .chunks_exact(inputs)
            .flat_map(|row| {
                let mut blocks = Vec::new();
                activations(row, 2, &mut blocks);
                let (q, r) = blocks.split_at(inputs / QK);
                let value = |b: &Q8Block| b.qs.map(|v| b.d as f64 * v as f64);
                q.iter()
                    .zip(r)
                    .flat_map(|(q, r)| {
                        let (q, r) = (value(q), value(r));
                        (0..QK).map(move |j| q[j] + r[j])
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        // and that is x to ~16 bits
        for (a, b) in xq.iter().zip(&x) {
            assert!((a - *b as f64).abs() <= 2.5e-5 * 5.0, "{a} vs {b}");
        }
        let batch = w.matmul(&x).unwrap();
        for r in 0..t {
            let one = w.matmul(&x[r * inputs..(r + 1) * inputs]).unwrap();
            assert_eq!(one, batch[r * features..(r + 1) * features], "token {r}");
            for f in 0..features {
                let scheme: f64 = (0..inputs)
                    .map(|i| dense[f * inputs + i] * xq[r * inputs + i])
                    .sum();
                let got = one[f] as f64;
                assert!(
                    (got - scheme).abs() <= 1e-5 * (1.0 + scheme.abs()),
                    "r={r} f={f}: {got} vs {scheme}"
                );
            }
        }
        assert!(QMatrix::from_gguf(BlockFormat::Q5_0, features, inputs, &data[2..]).is_err());
    }

    /// Activations come back within half a step, ties round to even, zeros stay zero.
    #[test]
    fn activations_quantize_within_half_a_step() {
        let x: Vec<f32> = (0..QK).map(|i| (i as f32 - 11.3) * 0.37).collect();
        let q = quantize(&x);
        assert_eq!(q.qs.iter().map(|v| v.unsigned_abs()).max(), Some(127));
        for (v, &qv) in x.iter().zip(&q.qs) {
            assert!((v - q.d * qv as f32).abs() <= q.d * 0.5 + 1e-6);
        }
        let sum: i32 = q.qs.iter().map(|&v| i32::from(v)).sum();
        assert_eq!(q.s, q.d * sum as f32);
        let mut ties = [0f32; QK];
        ties[0] = 127.0;
        ties[1] = 2.5;
        ties[2] = -3.5;
        let q = quantize(&ties);
        assert_eq!((q.qs[1], q.qs[2]), (2, -4));
        let q = quantize(&[0.0; QK]);
        assert_eq!((q.d, q.s, q.qs), (0.0, 0.0, [0; QK]));
    }

    /// Every multiply of bytes the CPU has gives the same bits as `maddubs` + `madd`.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    #[test]
    fn vnni_products_equal_madd_bit_for_bit() {
        let n = 6;
        let mut state = 12345u32;
        let mut next = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state
        };
        let groups: Vec<Group> = (0..n)
            .map(|_| Group {
                d: std::array::from_fn(|_| f16::from_f32((next() % 1000) as f32 * 1e-4)),
                m: std::array::from_fn(|_| f16::from_f32(-((next() % 1000) as f32) * 1e-4)),
                qs: std::array::from_fn(|_| std::array::from_fn(|_| next() as u8)),
            })
            .collect();
        let x: Vec<f32> = (0..n * QK)
            .map(|_| (next() % 2001) as f32 / 500.0 - 2.0)
            .collect();
        let xq: Vec<Q8Block> = x.chunks_exact(QK).map(quantize).collect();
        let mut unpacked = vec![Unpacked::default(); n];
        unpack(&groups, &mut unpacked);
        // SAFETY: AVX2/FMA at compile time; each VNNI variant only where detected.
        unsafe {
            let packed = avx2::madd::dot_packed(&groups, &xq);
            assert_eq!(packed, avx2::madd::dot_unpacked(&unpacked, &xq));
            if std::arch::is_x86_feature_detected!("avxvnni") {
                assert_eq!(packed, avx2::avx_vnni::dot_packed(&groups, &xq));
                assert_eq!(packed, avx2::avx_vnni::dot_unpacked(&unpacked, &xq));
            }
            if std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                assert_eq!(packed, avx2::avx512_vnni::dot_packed(&groups, &xq));
                assert_eq!(packed, avx2::avx512_vnni::dot_unpacked(&unpacked, &xq));
            }
        }
    }
}
