//! Products of GGUF weight matrices (Q4_1, Q5_0, Q8_0, Q4_K, Q6_K) with f32 activations, in
//! integer SIMD.
//!
//! Each input row is first quantized to 8 bits per 32-value block (ggml's Q8_1 scheme: scale
//! `d = max|x| / 127`, values rounded half to even, the block's sum kept for the weights'
//! minimum term); a weight block times an input block is then one `maddubs`/`madd` pair over
//! 32 bytes, the way llama.cpp's `vec_dot_q4_1_q8_1` computes it, instead of widening every
//! weight to f32; where the CPU has VNNI, one `vpdpbusd` computes the same integers
//! ([`Product`], chosen at run time).
//!
//! At load the blocks are repacked in groups of [`ROWS`] weight rows: for each 32-weight
//! block column, the rows' eight scales, eight minimums and eight weight runs side by side.
//! A step then converts eight scales and eight minimums with one instruction each and keeps
//! eight sums in flight while the weights stream in. A batch of tokens widens a group's
//! weights once into bytes on the stack and runs every token of its tile against them.
//! Tasks go to the worker pool ([`crate::pool`]): ranges of groups for a few tokens, tiles of
//! tokens for a batch.
//!
//! The formats, as block columns of 32 weights:
//! - Q4_1 (SmolLM2's blocks): `d·q + m`, `q` a nibble, `d` and `m` f16.
//! - Q5_0 (most of Gemma 3's): `d·(q − 16)`, `q` a nibble and a fifth bit, widened to bytes
//!   (nibble | high bit · 16) in registers, the fifth bits added under a mask where the CPU
//!   has AVX-512BW; the minimum term `−16 d`.
//! - Q4_K (Gemma's attention output and `ffn_down`): 256-weight super-blocks whose eight
//!   32-weight sub-blocks carry 6-bit scales and minimums under an f16 pair; at load each
//!   sub-block becomes a Q4_1 block column with the f32 scale `d·sc` and minimum `−dmin·m`
//!   (exact in f32), so it runs the Q4_1 kernel.
//! - Q6_K (the other `ffn_down`s): 6-bit weights `d·sc·(q − 32)`, an 8-bit scale per 16;
//!   stored widened to bytes with each block column's two scales, multiplied as
//!   `maddubs(q, x) − maddubs(32, x)` per pair, then `madd` with the two scales.
//! - Q8_0 (some of Gemma's `attn_v`): `d·q`, `q` signed bytes, multiplied as `|q|` times `x`
//!   with `q`'s sign (llama.cpp's `vec_dot_q8_0_q8_0`).
//!
//! A matrix multiplies [`Activations::WithResidual`] or just the 8-bit blocks: the residual
//! pass multiplies the rounding residual of the 8-bit activations, quantized to 8 bits again
//! (~16-bit activations, twice the integer work; both passes in one sweep over the weights,
//! each row's bytes widened once). Gemma's block 0 sees activations ~30× their RMS, which one
//! 8-bit scale per 32 values rounds coarsely for the rest of the block (docs/models.md has
//! the figures against numpy).
//!
//! A row's quantization and every output element's sums run in the same order whatever the
//! batch and whichever kernel, so running tokens one by one or in a batch gives the same bits.
use half::f16;

use crate::{pool, KernelError};

/// Weights per block column (and per block of Q4_1, Q5_0 and Q8_0).
pub const QK: usize = 32;
/// Weights per super-block of the K formats (Q4_K, Q6_K).
pub const QK_K: usize = 256;
/// Weight rows repacked side by side.
const ROWS: usize = 8;
/// Tokens per task in a batch (each widens every group once).
const TILE: usize = 16;
/// Pool tasks per thread: enough to balance a noisy machine, few enough that a one-token
/// step is not dominated by scheduling.
const TASKS_PER_THREAD: usize = 4;

/// One block column of [`ROWS`] weight rows: weight `j` of row `i` is `d[i] * q + m[i]`
/// with `q` the low nibble of `qs[i][j]` for `j < 16` and the high nibble of
/// `qs[i][j - 16]` above (GGUF's Q4_1 block, rows side by side). Q4_1 stores its scales in
/// f16 (`D = f16`), Q4_K its sub-blocks' in f32 (`D = f32`, [`GroupK`]).
#[derive(Clone, Copy)]
#[repr(C)]
struct Nibbles<D> {
    d: [D; ROWS],
    m: [D; ROWS],
    qs: [[u8; QK / 2]; ROWS],
}

/// A Q4_1 block column.
type Group = Nibbles<f16>;
/// A Q4_K sub-block column.
type GroupK = Nibbles<f32>;

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

/// One block column of [`ROWS`] Q6_K weight rows, widened: weight `j` of row `i` is
/// `d[i] * sc * (q[i][j] − 32)` with `sc` the low half of `sc[i]` (an i16) for `j < 16` and
/// the high half above.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Group6 {
    q: [[u8; QK]; ROWS],
    d: [f32; ROWS],
    sc: [u32; ROWS],
}

/// One block column of [`ROWS`] Q8_0 weight rows: weight `j` of row `i` is `d[i] * q[i][j]`.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Group80 {
    q: [[i8; QK]; ROWS],
    d: [f32; ROWS],
}

/// How the groups of one block format are read from GGUF, widened and multiplied.
trait Blocks: Copy + Send + Sync {
    /// Bytes of one GGUF block.
    const BLOCK_BYTES: usize;
    /// Weights of one GGUF block: [`QK`], or [`QK_K`] for the K formats.
    const BLOCK_WEIGHTS: usize;
    /// A group of zero rows (padding past the last feature).
    const ZERO: Self;
    /// What a batch widens a block column into, once for every token of its tile.
    type Wide: Copy + Default + Send;
    /// Stores GGUF block `blk` as row `i` of the block columns `cols` (one per 32 weights).
    fn set_row(cols: &mut [Self], i: usize, blk: &[u8]);
    /// Widens block columns `w` into `out`.
    fn widen(w: &[Self], out: &mut [Self::Wide]);
    /// A token's quantized row `x` (its passes side by side per block column, see
    /// [`activations`]) against widened block columns `w`.
    fn dot_wide(w: &[Self::Wide], x: &[Q8Block]) -> [f32; ROWS];
    /// A token's quantized row `x` against block columns `w`, the bits of
    /// [`Blocks::dot_wide`].
    fn dot(w: &[Self], x: &[Q8Block]) -> [f32; ROWS];
}

impl Blocks for Group {
    const BLOCK_BYTES: usize = 20;
    const BLOCK_WEIGHTS: usize = QK;
    const ZERO: Self = Nibbles {
        d: [f16::ZERO; ROWS],
        m: [f16::ZERO; ROWS],
        qs: [[0; QK / 2]; ROWS],
    };
    type Wide = Unpacked;

    fn set_row(cols: &mut [Self], i: usize, blk: &[u8]) {
        cols[0].d[i] = f16::from_le_bytes([blk[0], blk[1]]);
        cols[0].m[i] = f16::from_le_bytes([blk[2], blk[3]]);
        cols[0].qs[i].copy_from_slice(&blk[4..]);
    }

    fn widen(w: &[Self], out: &mut [Unpacked]) {
        unpack(w, out)
    }

    fn dot_wide(w: &[Unpacked], x: &[Q8Block]) -> [f32; ROWS] {
        dot_unpacked(w, x)
    }

    fn dot(w: &[Self], x: &[Q8Block]) -> [f32; ROWS] {
        dot_packed(w, x)
    }
}

/// Scale and minimum of sub-block `j` of a Q4_K super-block from its 12 bytes of 6-bit
/// fields (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

impl Blocks for GroupK {
    const BLOCK_BYTES: usize = 144;
    const BLOCK_WEIGHTS: usize = QK_K;
    const ZERO: Self = Nibbles {
        d: [0.0; ROWS],
        m: [0.0; ROWS],
        qs: [[0; QK / 2]; ROWS],
    };
    type Wide = Unpacked;

    /// GGUF's Q4_K: f16 `d`, f16 `dmin`, 12 bytes of scales and minimums, then 128 bytes in
    /// which sub-blocks `2c` and `2c + 1` are the low and high nibbles of bytes `32c..32c+32`.
    fn set_row(cols: &mut [Self], i: usize, blk: &[u8]) {
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let dmin = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
        let (scales, qs) = (&blk[4..16], &blk[16..]);
        for (s, col) in cols.iter_mut().enumerate() {
            let (sc, m) = scale_min_k4(s, scales);
            col.d[i] = d * f32::from(sc);
            col.m[i] = -(dmin * f32::from(m));
            let nibble = |l: usize| (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0x0F;
            for j in 0..QK / 2 {
                col.qs[i][j] = nibble(j) | nibble(j + QK / 2) << 4;
            }
        }
    }

    fn widen(w: &[Self], out: &mut [Unpacked]) {
        unpack(w, out)
    }

    fn dot_wide(w: &[Unpacked], x: &[Q8Block]) -> [f32; ROWS] {
        dot_unpacked(w, x)
    }

    fn dot(w: &[Self], x: &[Q8Block]) -> [f32; ROWS] {
        dot_packed_k(w, x)
    }
}

impl Blocks for Group50 {
    const BLOCK_BYTES: usize = 22;
    const BLOCK_WEIGHTS: usize = QK;
    const ZERO: Self = Group50 {
        d: [f16::ZERO; ROWS],
        qh: [0; ROWS],
        qs: [[0; QK / 2]; ROWS],
    };
    type Wide = Unpacked;

    fn set_row(cols: &mut [Self], i: usize, blk: &[u8]) {
        cols[0].d[i] = f16::from_le_bytes([blk[0], blk[1]]);
        cols[0].qh[i] = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        cols[0].qs[i].copy_from_slice(&blk[6..]);
    }

    fn widen(w: &[Self], out: &mut [Unpacked]) {
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

    fn dot_wide(w: &[Unpacked], x: &[Q8Block]) -> [f32; ROWS] {
        dot_unpacked(w, x)
    }

    fn dot(w: &[Self], x: &[Q8Block]) -> [f32; ROWS] {
        dot_q50(w, x)
    }
}

impl Blocks for Group6 {
    const BLOCK_BYTES: usize = 210;
    const BLOCK_WEIGHTS: usize = QK_K;
    const ZERO: Self = Group6 {
        q: [[0; QK]; ROWS],
        d: [0.0; ROWS],
        sc: [0; ROWS],
    };
    type Wide = Group6;

    /// GGUF's Q6_K: 128 bytes of low nibbles, 64 of high bit pairs, 16 i8 scales (one per
    /// 16 weights), f16 `d`. Weight `128n + 32k + l` (`k < 4`, `l < 32`) has the nibble
    /// `k / 2` of `ql[64n + 32(k % 2) + l]` and bits `2k..2k+2` of `qh[32n + l]`.
    fn set_row(cols: &mut [Self], i: usize, blk: &[u8]) {
        let (ql, qh, scales) = (&blk[..128], &blk[128..192], &blk[192..208]);
        let d = f16::from_le_bytes([blk[208], blk[209]]).to_f32();
        for (c, col) in cols.iter_mut().enumerate() {
            for j in 0..QK {
                let v = QK * c + j;
                let (n, k, l) = (v / 128, v % 128 / 32, v % 32);
                let low = (ql[64 * n + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0F;
                let high = (qh[32 * n + l] >> (2 * k)) & 3;
                col.q[i][j] = low | high << 4;
            }
            let sc = |h: usize| scales[2 * c + h] as i8 as i16 as u16 as u32;
            col.sc[i] = sc(0) | sc(1) << 16;
            col.d[i] = d;
        }
    }

    fn widen(w: &[Self], out: &mut [Group6]) {
        out.copy_from_slice(w)
    }

    fn dot_wide(w: &[Group6], x: &[Q8Block]) -> [f32; ROWS] {
        dot_q6(w, x)
    }

    fn dot(w: &[Self], x: &[Q8Block]) -> [f32; ROWS] {
        dot_q6(w, x)
    }
}

impl Blocks for Group80 {
    const BLOCK_BYTES: usize = 34;
    const BLOCK_WEIGHTS: usize = QK;
    const ZERO: Self = Group80 {
        q: [[0; QK]; ROWS],
        d: [0.0; ROWS],
    };
    type Wide = Group80;

    fn set_row(cols: &mut [Self], i: usize, blk: &[u8]) {
        cols[0].d[i] = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        for (q, &b) in cols[0].q[i].iter_mut().zip(&blk[2..]) {
            *q = b as i8;
        }
    }

    fn widen(w: &[Self], out: &mut [Group80]) {
        out.copy_from_slice(w)
    }

    fn dot_wide(w: &[Group80], x: &[Q8Block]) -> [f32; ROWS] {
        dot_q8(w, x)
    }

    fn dot(w: &[Self], x: &[Q8Block]) -> [f32; ROWS] {
        dot_q8(w, x)
    }
}

/// What a product multiplies a row of activations as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activations {
    /// 8-bit blocks (ggml's Q8_1): one pass.
    Bytes,
    /// The 8-bit blocks, then the blocks of what their rounding left (~16 bits): two passes.
    WithResidual,
}

impl Activations {
    /// Passes over the weights.
    fn passes(self) -> usize {
        match self {
            Activations::Bytes => 1,
            Activations::WithResidual => 2,
        }
    }
}

/// A row of activations as 8-bit blocks, each followed (with the residual) by the block of
/// what its rounding left, `x − d·q`.
fn activations(row: &[f32], how: Activations, out: &mut Vec<Q8Block>) {
    for x in row.chunks_exact(QK) {
        let q = quantize(x);
        out.push(q);
        if how == Activations::WithResidual {
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
    /// f16 scale, 8-bit signed weights.
    Q8_0,
    /// 256-weight super-blocks of eight 4-bit sub-blocks with 6-bit scales and minimums.
    Q4K,
    /// 256-weight super-blocks of 6-bit weights centred on 32, an 8-bit scale per 16.
    Q6K,
}

impl BlockFormat {
    /// What the product multiplies activations as unless asked otherwise: SmolLM2's Q4_1
    /// as 8-bit blocks (llama.cpp's scheme), the formats Gemma uses with the residual.
    pub fn default_activations(self) -> Activations {
        match self {
            BlockFormat::Q4_1 => Activations::Bytes,
            _ => Activations::WithResidual,
        }
    }
}

/// The repacked groups of a matrix, by format.
enum Groups {
    Q4_1(Vec<Group>),
    Q5_0(Vec<Group50>),
    Q8_0(Vec<Group80>),
    Q4K(Vec<GroupK>),
    Q6K(Vec<Group6>),
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
    activations: Activations,
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
    if !inputs.is_multiple_of(B::BLOCK_WEIGHTS) {
        return Err(KernelError::Shape(format!(
            "a {format:?} matrix has {inputs} inputs, not a multiple of {}",
            B::BLOCK_WEIGHTS
        )));
    }
    let per_row = inputs / QK;
    let cols = B::BLOCK_WEIGHTS / QK;
    if data.len() != features * inputs / B::BLOCK_WEIGHTS * B::BLOCK_BYTES {
        return Err(KernelError::Shape(format!(
            "a {format:?} matrix of {features}x{inputs} holds {} bytes",
            data.len()
        )));
    }
    let mut groups = vec![B::ZERO; features.div_ceil(ROWS) * per_row];
    let row_bytes = inputs / B::BLOCK_WEIGHTS * B::BLOCK_BYTES;
    for (f, row) in data.chunks_exact(row_bytes).enumerate() {
        for (b, blk) in row.chunks_exact(B::BLOCK_BYTES).enumerate() {
            let at = f / ROWS * per_row + b * cols;
            B::set_row(&mut groups[at..at + cols], f % ROWS, blk);
        }
    }
    Ok(groups)
}

impl QMatrix {
    /// A matrix of `features` rows of `inputs` weights from its GGUF bytes (row-major
    /// blocks), its products multiplying the activations as `activations`.
    pub fn from_gguf(
        format: BlockFormat,
        features: usize,
        inputs: usize,
        data: &[u8],
        activations: Activations,
    ) -> Result<QMatrix, KernelError> {
        let (f, i) = (features, inputs);
        let groups = match format {
            BlockFormat::Q4_1 => Groups::Q4_1(repack(format, f, i, data)?),
            BlockFormat::Q5_0 => Groups::Q5_0(repack(format, f, i, data)?),
            BlockFormat::Q8_0 => Groups::Q8_0(repack(format, f, i, data)?),
            BlockFormat::Q4K => Groups::Q4K(repack(format, f, i, data)?),
            BlockFormat::Q6K => Groups::Q6K(repack(format, f, i, data)?),
        };
        Ok(QMatrix {
            features,
            inputs,
            activations,
            groups,
        })
    }

    /// The block format of the weights.
    pub fn format(&self) -> BlockFormat {
        match self.groups {
            Groups::Q4_1(_) => BlockFormat::Q4_1,
            Groups::Q5_0(_) => BlockFormat::Q5_0,
            Groups::Q8_0(_) => BlockFormat::Q8_0,
            Groups::Q4K(_) => BlockFormat::Q4K,
            Groups::Q6K(_) => BlockFormat::Q6K,
        }
    }

    /// What the products multiply the activations as.
    pub fn activations(&self) -> Activations {
        self.activations
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
            Groups::Q8_0(g) => std::mem::size_of_val(g.as_slice()),
            Groups::Q4K(g) => std::mem::size_of_val(g.as_slice()),
            Groups::Q6K(g) => std::mem::size_of_val(g.as_slice()),
        }
    }

    /// `x` `[t, inputs]` (row-major) times the transposed weights: `[t, features]`.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        match &self.groups {
            Groups::Q4_1(g) => self.product(g, x),
            Groups::Q5_0(g) => self.product(g, x),
            Groups::Q8_0(g) => self.product(g, x),
            Groups::Q4K(g) => self.product(g, x),
            Groups::Q6K(g) => self.product(g, x),
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
        // a row's passes side by side: `stride` blocks a token
        let stride = n * self.activations.passes();
        let mut xq = Vec::with_capacity(t * stride);
        for row in x.chunks_exact(inputs) {
            activations(row, self.activations, &mut xq);
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
                let mut wide = vec![B::Wide::default(); n];
                for g in 0..n_groups {
                    B::widen(&groups[g * n..(g + 1) * n], &mut wide);
                    for r in 0..rows {
                        let x = &xs[r * stride..(r + 1) * stride];
                        let y = B::dot_wide(&wide, x);
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
                for (i, part) in part.chunks_exact_mut(ROWS * t).enumerate() {
                    let g = task * per_task + i;
                    let w = &groups[g * n..(g + 1) * n];
                    for (r, y) in part.chunks_exact_mut(ROWS).enumerate() {
                        let x = &xq[r * stride..(r + 1) * stride];
                        y.copy_from_slice(&B::dot(w, x));
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

/// The scalar type of a [`Nibbles`] group's scales and minimums.
trait Scale: Copy + Send + Sync {
    /// The value in f32 (exact).
    fn value(self) -> f32;
    /// Eight of them in one register.
    ///
    /// # Safety
    /// The CPU has AVX2 and F16C.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    unsafe fn load8(s: &[Self; ROWS]) -> std::arch::x86_64::__m256;
}

impl Scale for f16 {
    fn value(self) -> f32 {
        self.to_f32()
    }

    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    #[inline(always)]
    unsafe fn load8(s: &[Self; ROWS]) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr().cast()))
    }
}

impl Scale for f32 {
    fn value(self) -> f32 {
        self
    }

    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    #[inline(always)]
    unsafe fn load8(s: &[Self; ROWS]) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(s.as_ptr())
    }
}

/// Widens a group's blocks `w` into `out`, in the byte order the kernels use: low
/// nibbles (weights 0..16), then high nibbles (16..32).
fn unpack<D: Scale>(w: &[Nibbles<D>], out: &mut [Unpacked]) {
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
            u.d[i] = g.d[i].value();
            u.m[i] = g.m[i].value();
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
    /// `vpdpbusd` on 256-bit registers, Q5_0's fifth bits added under a mask (AVX-512
    /// VNNI + VL + BW).
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
            if std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                return Product::Avx512Vnni;
            }
            if std::arch::is_x86_feature_detected!("avxvnni") {
                return Product::AvxVnni;
            }
        }
        Product::Madd
    })
}

/// One pass's kernel of a block format: a group's block columns against a token's blocks,
/// [`Activations::passes`] of them per block column.
type Kernel<W> = unsafe fn(&[W], &[Q8Block]) -> [f32; ROWS];

/// The AVX2 kernels of one [`Product`], for one pass and for two (`[0]` and `[1]`).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
struct Kernels {
    packed: [Kernel<Group>; 2],
    packed_k: [Kernel<GroupK>; 2],
    q50: [Kernel<Group50>; 2],
    unpacked: [Kernel<Unpacked>; 2],
    q8: [Kernel<Group80>; 2],
}

/// The kernels of this process's [`Product`].
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
fn kernels() -> &'static Kernels {
    use avx2::{avx512_vnni, avx_vnni, madd};
    macro_rules! kernels {
        ($m:ident) => {
            Kernels {
                packed: [$m::dot_packed::<f16, 1>, $m::dot_packed::<f16, 2>],
                packed_k: [$m::dot_packed::<f32, 1>, $m::dot_packed::<f32, 2>],
                q50: [$m::dot_q50::<1>, $m::dot_q50::<2>],
                unpacked: [$m::dot_unpacked::<1>, $m::dot_unpacked::<2>],
                q8: [$m::dot_q8::<1>, $m::dot_q8::<2>],
            }
        };
    }
    static MADD: Kernels = kernels!(madd);
    static AVX_VNNI: Kernels = kernels!(avx_vnni);
    static AVX512_VNNI: Kernels = kernels!(avx512_vnni);
    match product() {
        Product::Madd => &MADD,
        Product::AvxVnni => &AVX_VNNI,
        Product::Avx512Vnni => &AVX512_VNNI,
    }
}

/// Runs `simd` (the AVX2 kernel for `x`'s passes over `w`) where the build has AVX2, else
/// `portable`.
#[allow(unused_variables)]
fn run<W>(
    w: &[W],
    x: &[Q8Block],
    simd: impl FnOnce() -> Option<[Kernel<W>; 2]>,
    portable: impl FnOnce(usize) -> [f32; ROWS],
) -> [f32; ROWS] {
    let passes = x.len() / w.len().max(1);
    assert!(x.len() == w.len() * passes && (1..=2).contains(&passes));
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    if let Some(kernels) = simd() {
        // SAFETY: the lengths were checked; AVX2/FMA are enabled at compile time and the
        // VNNI variants are chosen only where the CPU reports them.
        return unsafe { kernels[passes - 1](w, x) };
    }
    portable(passes)
}

/// The AVX2 kernels of this build, if any.
macro_rules! simd {
    ($field:ident) => {
        || {
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            ))]
            return Some(kernels().$field);
            #[allow(unreachable_code)]
            None
        }
    };
}

/// A token's quantized row `x` against a packed Q4_1 group's blocks `w`.
fn dot_packed(w: &[Group], x: &[Q8Block]) -> [f32; ROWS] {
    run(w, x, simd!(packed), |_| dot_widened(w, x, unpack))
}

/// A token's quantized row `x` against a packed Q4_K group's sub-blocks `w`.
fn dot_packed_k(w: &[GroupK], x: &[Q8Block]) -> [f32; ROWS] {
    run(w, x, simd!(packed_k), |_| dot_widened(w, x, unpack))
}

/// A token's quantized row `x` against a Q5_0 group's blocks `w`, widened in registers.
fn dot_q50(w: &[Group50], x: &[Q8Block]) -> [f32; ROWS] {
    run(w, x, simd!(q50), |_| dot_widened(w, x, Group50::widen))
}

/// `w` widened by `widen`, then [`dot_unpacked`] (the portable kernels).
fn dot_widened<W>(w: &[W], x: &[Q8Block], widen: fn(&[W], &mut [Unpacked])) -> [f32; ROWS] {
    let mut u = vec![Unpacked::default(); w.len()];
    widen(w, &mut u);
    dot_unpacked(&u, x)
}

/// Lane `l`'s four products of weights `q` and activations `x`.
fn quad<W: Copy + Into<i32>>(q: &[W; QK], x: &[i8; QK], l: usize, offset: i32) -> i32 {
    (4 * l..4 * l + 4)
        .map(|j| (q[j].into() - offset) * i32::from(x[j]))
        .sum()
}

/// A token's quantized row `x` against an unpacked group `w`.
fn dot_unpacked(w: &[Unpacked], x: &[Q8Block]) -> [f32; ROWS] {
    run(w, x, simd!(unpacked), |passes| {
        let mut acc = [[0f32; 8]; ROWS];
        let mut min = [0f32; ROWS];
        for (u, x) in w.iter().zip(x.chunks_exact(passes)) {
            for x in x {
                for (i, min) in min.iter_mut().enumerate() {
                    *min = u.m[i].mul_add(x.s, *min);
                }
            }
            for (i, acc) in acc.iter_mut().enumerate() {
                for x in x {
                    accumulate_row(acc, u.d[i] * x.d, |l| quad(&u.q[i], &x.qs, l, 0));
                }
            }
        }
        finish(&acc, &min)
    })
}

/// Integer products in eight lanes of four weights (`quad(l)`), each lane scaled into its
/// own f32 accumulator, as the AVX2 kernels do (the portable kernels).
fn accumulate_row(acc: &mut [f32; 8], scale: f32, quad: impl Fn(usize) -> i32) {
    for (l, a) in acc.iter_mut().enumerate() {
        *a = scale.mul_add(quad(l) as f32, *a);
    }
}

/// A token's quantized row `x` against a Q6_K group `w`.
fn dot_q6(w: &[Group6], x: &[Q8Block]) -> [f32; ROWS] {
    let simd = || -> Option<[Kernel<Group6>; 2]> {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        return Some([avx2::dot_q6::<1>, avx2::dot_q6::<2>]);
        #[allow(unreachable_code)]
        None
    };
    run(w, x, simd, |passes| {
        let mut acc = [[0f32; 8]; ROWS];
        for (g, x) in w.iter().zip(x.chunks_exact(passes)) {
            for (i, acc) in acc.iter_mut().enumerate() {
                for x in x {
                    accumulate_row(acc, g.d[i] * x.d, |l| {
                        let sc = i32::from((g.sc[i] >> (16 * (l / 4))) as u16 as i16);
                        sc * quad(&g.q[i], &x.qs, l, 32)
                    });
                }
            }
        }
        finish(&acc, &[0.0; ROWS])
    })
}

/// A token's quantized row `x` against a Q8_0 group `w`.
fn dot_q8(w: &[Group80], x: &[Q8Block]) -> [f32; ROWS] {
    run(w, x, simd!(q8), |passes| {
        let mut acc = [[0f32; 8]; ROWS];
        for (g, x) in w.iter().zip(x.chunks_exact(passes)) {
            for (i, acc) in acc.iter_mut().enumerate() {
                for x in x {
                    accumulate_row(acc, g.d[i] * x.d, |l| quad(&g.q[i], &x.qs, l, 0));
                }
            }
        }
        finish(&acc, &[0.0; ROWS])
    })
}

/// The kernels with AVX2/FMA intrinsics. Per block column and pass: the eight scales times
/// the token's scale in one multiply, the eight minimum terms in one FMA; then per weight
/// row its bytes (widened in registers where packed), and per pass one `maddubs` + `madd`
/// (or `vpdpbusd`) + FMA into the row's accumulator.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{finish, Group6, Q8Block, QK, ROWS};

    /// Sixteen bytes of nibbles as 32 bytes, low nibbles first.
    #[inline(always)]
    unsafe fn nibbles(packed: __m128i) -> __m256i {
        let low = _mm256_set1_epi8(0x0F);
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low)
    }

    /// One row of a group's block, widened.
    pub(super) unsafe fn unpack_row(qs: &[u8; QK / 2], out: &mut [u8; QK]) {
        _mm256_storeu_si256(out.as_mut_ptr().cast(), nibbles_of(qs));
    }

    /// A Q4_1 row's 32 weights as bytes.
    #[inline(always)]
    unsafe fn nibbles_of(qs: &[u8; QK / 2]) -> __m256i {
        nibbles(_mm_loadu_si128(qs.as_ptr().cast()))
    }

    /// A Q5_0 row's 32 weights as bytes: nibble | 16 · bit `j` of `qh` (llama.cpp's
    /// `bytes_from_bits_32`: byte `j` of the broadcast word, its bit `j % 8` tested).
    #[inline(always)]
    unsafe fn five_bits(qs: &[u8; QK / 2], qh: u32) -> __m256i {
        let q = nibbles_of(qs);
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
        _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
    }

    /// [`five_bits`] with AVX-512BW: 16 added to the nibbles under the mask `qh`.
    #[inline]
    #[target_feature(enable = "avx2,avx512bw,avx512vl")]
    unsafe fn five_bits_masked(qs: &[u8; QK / 2], qh: u32) -> __m256i {
        let q = nibbles_of(qs);
        _mm256_mask_add_epi8(q, qh, q, _mm256_set1_epi8(0x10))
    }

    /// One row of a Q5_0 group's block, widened.
    pub(super) unsafe fn unpack_row_high(qs: &[u8; QK / 2], qh: u32, out: &mut [u8; QK]) {
        _mm256_storeu_si256(out.as_mut_ptr().cast(), five_bits(qs, qh));
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

    /// Each pass's eight scales (`d` times the pass's), stored to read one at a time.
    #[inline(always)]
    unsafe fn scales<const P: usize>(d: __m256, x: &[Q8Block]) -> [[f32; ROWS]; P] {
        let mut scale = [[0f32; ROWS]; P];
        for (s, x) in scale.iter_mut().zip(x) {
            _mm256_storeu_ps(s.as_mut_ptr(), _mm256_mul_ps(d, _mm256_set1_ps(x.d)));
        }
        scale
    }

    /// A Q6_K group times one token: `maddubs(q, x) − maddubs(32, x)` is each pair of
    /// `(q − 32)·x` (at most 2·32·127, exact), `madd` with the block column's two scales
    /// (the low one on weights 0..16, the high one on 16..32) the quads.
    ///
    /// # Safety
    /// `x` has `P` blocks per block column of `w`; the CPU has AVX2 and FMA.
    pub(super) unsafe fn dot_q6<const P: usize>(w: &[Group6], x: &[Q8Block]) -> [f32; ROWS] {
        let mut acc = [_mm256_setzero_ps(); ROWS];
        // bytes 0, 1 of the broadcast scales in the low 128 bits, bytes 2, 3 in the high
        let halves = _mm256_setr_epi8(
            0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2,
            3, 2, 3,
        );
        for (g, x) in w.iter().zip(x.chunks_exact(P)) {
            let scale = scales::<P>(_mm256_loadu_ps(g.d.as_ptr()), x);
            let xq: [__m256i; P] =
                std::array::from_fn(|p| _mm256_loadu_si256(x[p].qs.as_ptr().cast()));
            let offset = xq.map(|xq| _mm256_maddubs_epi16(_mm256_set1_epi8(32), xq));
            for i in 0..ROWS {
                let q = _mm256_load_si256(g.q[i].as_ptr().cast());
                let sc = _mm256_shuffle_epi8(_mm256_set1_epi32(g.sc[i] as i32), halves);
                for p in 0..P {
                    let pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(q, xq[p]), offset[p]);
                    let quads = _mm256_madd_epi16(pairs, sc);
                    acc[i] = _mm256_fmadd_ps(
                        _mm256_set1_ps(scale[p][i]),
                        _mm256_cvtepi32_ps(quads),
                        acc[i],
                    );
                }
            }
        }
        done(&acc, _mm256_setzero_ps())
    }

    /// A group times one token, for each way of multiplying weight bytes by activation
    /// bytes into sums of four (`quads`): every way gives the same integers, so the same
    /// results bit for bit. Every kernel takes `P` passes of the token per block column and
    /// scales each row's quads pass after pass into one accumulator.
    macro_rules! products {
        ($name:ident, $features:literal, $five_bits:ident, |$q:ident, $x:ident| $quads:expr) => {
            pub(super) mod $name {
                use std::arch::x86_64::*;

                use super::super::{Group50, Group80, Nibbles, Q8Block, Scale, Unpacked, ROWS};
                use super::{done, nibbles_of, scales, $five_bits};

                /// The block's quads, scaled into `acc`.
                #[inline]
                #[target_feature(enable = $features)]
                unsafe fn step(acc: __m256, $q: __m256i, $x: __m256i, scale: f32) -> __m256 {
                    let quads: __m256i = $quads;
                    _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(quads), acc)
                }

                /// Block columns `w` (their scales, minimums and each row's bytes) times
                /// `P` passes of a token per column: the one loop of every format with a
                /// minimum term.
                #[inline(always)]
                unsafe fn dot<W, const P: usize>(
                    w: &[W],
                    x: &[Q8Block],
                    dm: impl Fn(&W) -> (__m256, __m256),
                    row: impl Fn(&W, usize) -> __m256i,
                ) -> [f32; ROWS] {
                    let mut acc = [_mm256_setzero_ps(); ROWS];
                    let mut min = _mm256_setzero_ps();
                    for (g, x) in w.iter().zip(x.chunks_exact(P)) {
                        let (d, m) = dm(g);
                        let scale = scales::<P>(d, x);
                        for x in x {
                            min = _mm256_fmadd_ps(m, _mm256_set1_ps(x.s), min);
                        }
                        let xq: [__m256i; P] =
                            std::array::from_fn(|p| _mm256_loadu_si256(x[p].qs.as_ptr().cast()));
                        for i in 0..ROWS {
                            let q = row(g, i);
                            for p in 0..P {
                                acc[i] = step(acc[i], q, xq[p], scale[p][i]);
                            }
                        }
                    }
                    done(&acc, min)
                }

                /// # Safety
                /// `x` has `P` blocks per block column of `w`; the CPU has the features.
                #[target_feature(enable = $features)]
                pub(in super::super) unsafe fn dot_packed<D: Scale, const P: usize>(
                    w: &[Nibbles<D>],
                    x: &[Q8Block],
                ) -> [f32; ROWS] {
                    dot::<_, P>(
                        w,
                        x,
                        |g| (D::load8(&g.d), D::load8(&g.m)),
                        |g, i| nibbles_of(&g.qs[i]),
                    )
                }

                /// # Safety
                /// As [`dot_packed`].
                #[target_feature(enable = $features)]
                pub(in super::super) unsafe fn dot_q50<const P: usize>(
                    w: &[Group50],
                    x: &[Q8Block],
                ) -> [f32; ROWS] {
                    dot::<_, P>(
                        w,
                        x,
                        |g| {
                            let d = _mm256_cvtph_ps(_mm_loadu_si128(g.d.as_ptr().cast()));
                            (d, _mm256_mul_ps(d, _mm256_set1_ps(-16.0)))
                        },
                        |g, i| $five_bits(&g.qs[i], g.qh[i]),
                    )
                }

                /// # Safety
                /// As [`dot_packed`].
                #[target_feature(enable = $features)]
                pub(in super::super) unsafe fn dot_unpacked<const P: usize>(
                    w: &[Unpacked],
                    x: &[Q8Block],
                ) -> [f32; ROWS] {
                    dot::<_, P>(
                        w,
                        x,
                        |u| (_mm256_loadu_ps(u.d.as_ptr()), _mm256_loadu_ps(u.m.as_ptr())),
                        |u, i| _mm256_load_si256(u.q[i].as_ptr().cast()),
                    )
                }

                /// # Safety
                /// As [`dot_packed`].
                #[target_feature(enable = $features)]
                pub(in super::super) unsafe fn dot_q8<const P: usize>(
                    w: &[Group80],
                    x: &[Q8Block],
                ) -> [f32; ROWS] {
                    let mut acc = [_mm256_setzero_ps(); ROWS];
                    for (g, x) in w.iter().zip(x.chunks_exact(P)) {
                        let scale = scales::<P>(_mm256_loadu_ps(g.d.as_ptr()), x);
                        let xq: [__m256i; P] =
                            std::array::from_fn(|p| _mm256_loadu_si256(x[p].qs.as_ptr().cast()));
                        for i in 0..ROWS {
                            // |q| unsigned times x with q's sign: the same integers as q·x
                            let q = _mm256_load_si256(g.q[i].as_ptr().cast());
                            for p in 0..P {
                                let xs = _mm256_sign_epi8(xq[p], q);
                                acc[i] = step(acc[i], _mm256_sign_epi8(q, q), xs, scale[p][i]);
                            }
                        }
                    }
                    done(&acc, _mm256_setzero_ps())
                }
            }
        };
    }

    // Unsigned weight bytes times signed activations: pairs (at most 2·128·127, no
    // saturation), then quads as i32, all exact.
    products!(madd, "avx2,fma", five_bits, |q, x| _mm256_madd_epi16(
        _mm256_maddubs_epi16(q, x),
        _mm256_set1_epi16(1)
    ));
    // The same quads in one instruction (VEX-encoded VNNI: Alder Lake, Sapphire Rapids on).
    products!(avx_vnni, "avx2,fma,avxvnni", five_bits, |q, x| {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), q, x)
    });
    // The same with AVX-512 VNNI on 256-bit registers (Ice Lake servers, AMD Zen 4 on).
    products!(
        avx512_vnni,
        "avx2,fma,avx512vnni,avx512vl,avx512bw",
        five_bits_masked,
        |q, x| _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, x)
    );
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
        let w = QMatrix::from_gguf(
            BlockFormat::Q4_1,
            features,
            inputs,
            &data,
            Activations::Bytes,
        )
        .unwrap();
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
        assert!(QMatrix::from_gguf(
            BlockFormat::Q4_1,
            features,
            inputs,
            &data[1..],
            Activations::Bytes
        )
        .is_err());
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
        let w = QMatrix::from_gguf(
            BlockFormat::Q5_0,
            features,
            inputs,
            &data,
            Activations::WithResidual,
        )
        .unwrap();
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
                activations(row, Activations::WithResidual, &mut blocks);
                let value = |b: &Q8Block| b.qs.map(|v| b.d as f64 * v as f64);
                blocks
                    .chunks_exact(2)
                    .flat_map(|qr| {
                        let (q, r) = (value(&qr[0]), value(&qr[1]));
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
        assert!(QMatrix::from_gguf(
            BlockFormat::Q5_0,
            features,
            inputs,
            &data[2..],
            Activations::WithResidual
        )
        .is_err());
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

    /// Every multiply of bytes the CPU has gives the same bits as `maddubs` + `madd`, and
    /// every packed kernel the bits of its widened blocks, with one pass and with two.
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
        // the same weights as Q4_K sub-blocks (f32 scales), and signed bytes as Q8_0
        let groups_k: Vec<GroupK> = groups
            .iter()
            .map(|g| Nibbles {
                d: g.d.map(f16::to_f32),
                m: g.m.map(f16::to_f32),
                qs: g.qs,
            })
            .collect();
        let groups_8: Vec<Group80> = unpacked
            .iter()
            .map(|u| Group80 {
                q: u.q.map(|q| q.map(|v| (v as i8) - 8 * (v as i8 % 3))),
                d: u.d,
            })
            .collect();
        // the nibbles as Q5_0 blocks with random high bits, widened in registers
        let groups_5: Vec<Group50> = groups
            .iter()
            .map(|g| Group50 {
                d: g.d,
                qh: std::array::from_fn(|_| next()),
                qs: g.qs,
            })
            .collect();
        let mut unpacked_5 = vec![Unpacked::default(); n];
        Group50::widen(&groups_5, &mut unpacked_5);
        let x2: Vec<Q8Block> = x
            .chunks_exact(QK)
            .flat_map(|x| {
                let second: Vec<f32> = x.iter().map(|v| v * 0.37).collect();
                [quantize(x), quantize(&second)]
            })
            .collect();
        // SAFETY: AVX2/FMA at compile time; each VNNI variant only where detected.
        unsafe {
            use avx2::{avx512_vnni, avx_vnni, madd};
            macro_rules! all_equal {
                ($m:ident, $p:literal, $x:expr) => {{
                    let x = $x;
                    let packed = $m::dot_packed::<f16, $p>(&groups, x);
                    assert_eq!(packed, $m::dot_unpacked::<$p>(&unpacked, x));
                    assert_eq!(packed, $m::dot_packed::<f32, $p>(&groups_k, x));
                    assert_eq!(
                        $m::dot_q50::<$p>(&groups_5, x),
                        $m::dot_unpacked::<$p>(&unpacked_5, x)
                    );
                    (packed, $m::dot_q8::<$p>(&groups_8, x))
                }};
            }
            let one = all_equal!(madd, 1, &xq);
            let two = all_equal!(madd, 2, &x2);
            if std::arch::is_x86_feature_detected!("avxvnni") {
                assert_eq!(one, all_equal!(avx_vnni, 1, &xq));
                assert_eq!(two, all_equal!(avx_vnni, 2, &x2));
            }
            if std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                assert_eq!(one, all_equal!(avx512_vnni, 1, &xq));
                assert_eq!(two, all_equal!(avx512_vnni, 2, &x2));
            }
        }
    }
}
