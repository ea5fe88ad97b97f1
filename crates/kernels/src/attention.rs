//! The key/value cache of one transformer block and causal grouped-query attention over it.
//!
//! Keys and values are stored as f16 in one buffer each, allocated for the whole capacity
//! (`[kv_heads, capacity, head_dim]`): a step writes only its own rows, truncation is free,
//! and a head's keys for positions `0..len` are one contiguous run. Keys and values are read
//! in blocks of [`KEYS`] rows, widened to f32 once for every query head of the group and
//! every query token of a tile: eight scores per query head at a time (eight sums in flight,
//! no horizontal sum per key), exponentials vectorised, and the weighted sum of the value
//! rows. The softmax runs over chunks of [`CHUNK`] positions merged in order, so a decoding
//! step can spread a long context over the threads. A query's arithmetic depends only on its
//! own position and the cache, never on the other tokens of the call or on which thread
//! computed a chunk, so running a word's tokens one by one or in a batch gives the same bits.
use crate::{pool, KernelError};
use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

/// Longest head this kernel handles.
pub const MAX_HEAD_DIM: usize = 256;

/// Query tokens × cache positions below which a call stays on one thread.
const PARALLEL_WORK: usize = 512;

/// Key (and value) rows widened together.
pub const KEYS: usize = 8;

/// Query tokens that share each widened key and value row in a prefill.
const QUERY_TILE: usize = 8;

/// Keys and values of one block for every position up to its capacity.
pub struct KvBlock {
    kv_heads: usize,
    capacity: usize,
    /// Rows per head in the buffers: the capacity rounded up to whole blocks of [`KEYS`].
    rows: usize,
    head_dim: usize,
    /// f16 bits, `[kv_heads, rows / KEYS, head_dim, KEYS]`: each block of positions stored
    /// dimension-major, so that a block's scores are eight lanes of one FMA per dimension.
    keys: Vec<u16>,
    /// f16 bits, `[kv_heads, rows, head_dim]` (zeroed pages are mapped only once written).
    values: Vec<u16>,
}

impl KvBlock {
    /// An empty cache for `kv_heads` heads of `head_dim` and `capacity` positions.
    pub fn new(kv_heads: usize, capacity: usize, head_dim: usize) -> Result<KvBlock, KernelError> {
        if head_dim == 0 || head_dim > MAX_HEAD_DIM || !head_dim.is_multiple_of(8) || kv_heads == 0
        {
            return Err(KernelError::Shape(format!(
                "{kv_heads} key/value heads of {head_dim} (multiples of 8 up to {MAX_HEAD_DIM} \
                 supported)"
            )));
        }
        let rows = capacity.next_multiple_of(KEYS);
        let n = kv_heads * rows * head_dim;
        Ok(KvBlock {
            kv_heads,
            capacity,
            rows,
            head_dim,
            keys: vec![0; n],
            values: vec![0; n],
        })
    }

    /// Bytes one position takes (keys and values).
    pub fn bytes_per_position(&self) -> usize {
        2 * self.kv_heads * self.head_dim * std::mem::size_of::<u16>()
    }

    /// Stores keys and values `[t, kv_heads * head_dim]` at positions `start..start + t`.
    pub fn write(&mut self, start: usize, keys: &[f32], values: &[f32]) -> Result<(), KernelError> {
        let row = self.kv_heads * self.head_dim;
        let t = keys.len() / row;
        if keys.len() != t * row || values.len() != keys.len() || start + t > self.capacity {
            return Err(KernelError::Shape(format!(
                "{} keys and {} values at {start} in a cache of {} positions of {row}",
                keys.len(),
                values.len(),
                self.capacity
            )));
        }
        let hd = self.head_dim;
        for i in 0..t {
            let p = start + i;
            for g in 0..self.kv_heads {
                let from = i * row + g * hd;
                // Keys block-transposed: dimension-major inside a block of KEYS positions.
                let block = (g * self.rows + p - p % KEYS) * hd;
                for (d, k) in keys[from..from + hd].iter().enumerate() {
                    self.keys[block + d * KEYS + p % KEYS] = f16::from_f32(*k).to_bits();
                }
                let at = (g * self.rows + p) * hd;
                let dst = f16_slice(&mut self.values[at..at + hd]);
                dst.convert_from_f32_slice(&values[from..from + hd]);
            }
        }
        Ok(())
    }

    /// Causal attention of queries `q` `[t, heads * head_dim]` at positions
    /// `start..start + t` over cached positions `0..=` each query's own, into `out`
    /// (same shape); with a sliding `window`, over the last `window` of them only (the
    /// query's own included). Query head `h` reads key/value head `h / (heads / kv_heads)`.
    pub fn attend(
        &self,
        start: usize,
        q: &[f32],
        heads: usize,
        window: Option<usize>,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let hd = self.head_dim;
        let width = heads * hd;
        let t = q.len() / width.max(1);
        if !heads.is_multiple_of(self.kv_heads)
            || q.len() != t * width
            || out.len() != q.len()
            || start + t > self.capacity
            || window == Some(0)
        {
            return Err(KernelError::Shape(format!(
                "{} queries of {heads} heads at {start} over {} key/value heads, {} positions",
                q.len(),
                self.kv_heads,
                self.capacity
            )));
        }
        let group = heads / self.kv_heads;
        let span = window.map_or(start + t, |w| w.min(start + t));
        let parallel = t * span >= PARALLEL_WORK;
        let tiles = t.div_ceil(QUERY_TILE);
        let rows = |tile: usize| QUERY_TILE.min(t - tile * QUERY_TILE);
        // Chunks of the cache a tile's queries see: from its first token's window to its
        // last token.
        let chunks = |tile: usize| {
            let first = start + tile * QUERY_TILE;
            first_seen(first, window) / CHUNK..(first + rows(tile)).div_ceil(CHUNK)
        };
        // A task is a tile of consecutive query tokens of one key/value head, each key and
        // value block widened once for the tile, over all its chunks; with fewer such tasks
        // than twice the threads (decoding), over one chunk, the chunks merged afterwards.
        let by_chunk = parallel && tiles * self.kv_heads < 2 * pool::threads();
        let mut tasks = Vec::new();
        for tile in 0..tiles {
            for g in 0..self.kv_heads {
                if by_chunk {
                    tasks.extend(chunks(tile).map(|c| (tile, g, c..c + 1)));
                } else {
                    tasks.push((tile, g, chunks(tile)));
                }
            }
        }
        // Each task's partial, [`Partial`] over `rows × group` query heads, in task order.
        let piece = |tile: usize| Partial::len(rows(tile) * group, hd);
        let mut partials = vec![0f32; tasks.iter().map(|(tile, ..)| piece(*tile)).sum()];
        let mut pieces: Vec<&mut [f32]> = Vec::with_capacity(tasks.len());
        let mut rest = partials.as_mut_slice();
        for (tile, ..) in &tasks {
            let (p, tail) = rest.split_at_mut(piece(*tile));
            pieces.push(p);
            rest = tail;
        }
        let task = |n: usize, buf: &mut [f32]| {
            let (tile, g, range) = &tasks[n];
            let (tile, g) = (*tile, *g);
            let first = tile * QUERY_TILE;
            let queries: Vec<&[f32]> = (first..first + rows(tile))
                .map(|i| &q[i * width + g * group * hd..][..group * hd])
                .collect();
            self.attend_chunks(g, start + first, &queries, window, range.clone(), buf);
        };
        if parallel {
            pool::for_each_chunk(&mut pieces, 1, |n, b| task(n, b[0]));
        } else {
            pieces.iter_mut().enumerate().for_each(|(n, b)| task(n, b));
        }
        // Merge each (tile, head) task's chunks in order, then normalise into `out`.
        let mut n = 0;
        while n < tasks.len() {
            let (tile, g, _) = tasks[n];
            let end = n + tasks[n..]
                .iter()
                .take_while(|(t2, g2, _)| (*t2, *g2) == (tile, g))
                .count();
            let (acc, later) = pieces[n..end].split_first_mut().expect("one task at least");
            for part in later.iter() {
                Partial::merge(acc, part, hd);
            }
            let acc = Partial::split(acc, hd);
            for r in 0..rows(tile) {
                for h in 0..group {
                    let i = r * group + h;
                    let inv = 1.0 / acc.sum[i];
                    let dst = &mut out[(tile * QUERY_TILE + r) * width + (g * group + h) * hd..];
                    dst[..hd]
                        .iter_mut()
                        .zip(&acc.values[i * hd..(i + 1) * hd])
                        .for_each(|(o, v)| *o = v * inv);
                }
            }
            n = end;
        }
        Ok(())
    }

    /// [`KvBlock::attend_chunk`] over each chunk of `chunks` in order, merged into `acc`.
    fn attend_chunks(
        &self,
        g: usize,
        pos: usize,
        queries: &[&[f32]],
        window: Option<usize>,
        chunks: std::ops::Range<usize>,
        acc: &mut [f32],
    ) {
        let mut part = Vec::new();
        for (i, c) in chunks.enumerate() {
            if i == 0 {
                self.attend_chunk(g, pos, queries, window, c, acc);
            } else {
                part.resize(acc.len(), 0.0);
                self.attend_chunk(g, pos, queries, window, c, &mut part);
                Partial::merge(acc, &part, self.head_dim);
            }
        }
    }

    /// Consecutive query tokens, the first at position `pos`, each with the `group` query
    /// heads of key/value head `g` (`[group, head_dim]`), over the positions of chunk `c`
    /// each sees: the [`Partial`] of every query head (`[tokens, group]`) into `out`.
    fn attend_chunk(
        &self,
        g: usize,
        pos: usize,
        queries: &[&[f32]],
        window: Option<usize>,
        c: usize,
        out: &mut [f32],
    ) {
        let hd = self.head_dim;
        let group = queries[0].len() / hd;
        let scale = 1.0 / (hd as f32).sqrt();
        let (lo, hi) = (c * CHUNK, ((c + 1) * CHUNK).min(pos + queries.len()));
        let blocks = lo / KEYS..hi.div_ceil(KEYS);
        let base = g * self.rows * hd;
        // Query head `n` (token `n / group`) sees positions `from(n)..seen(n)`; of this chunk,
        // the first `inside(n)` but the first `before(n)` of those (outside the window), which
        // weigh exactly nothing: the chunk's arithmetic is the same whichever tokens share it.
        let seen = |n: usize| pos + n / group + 1;
        let from = |n: usize| first_seen(seen(n) - 1, window);
        let inside = |n: usize| {
            if from(n) >= hi {
                0
            } else {
                seen(n).min(hi).saturating_sub(lo)
            }
        };
        let before = |n: usize| from(n).saturating_sub(lo).min(inside(n));
        let heads: Vec<&[f32]> = queries.iter().flat_map(|q| q.chunks_exact(hd)).collect();
        let mut rows = vec![0f32; KEYS * hd];
        // Scores `[heads, blocks * KEYS]`.
        let stride = blocks.len() * KEYS;
        let mut scores = vec![0f32; heads.len() * stride];
        for (i, b) in blocks.clone().enumerate() {
            let at = base + b * KEYS * hd;
            // `[head_dim, KEYS]`: the block's keys, dimension-major.
            f16_slice_ref(&self.keys[at..at + KEYS * hd]).convert_to_f32_slice(&mut rows);
            // Heads are in token order, so the ones that see this block are a suffix.
            let first = (0..heads.len())
                .find(|&n| b * KEYS < seen(n))
                .unwrap_or(heads.len());
            for (c, qs) in heads[first..].chunks(HEADS).enumerate() {
                let n0 = first + c * HEADS;
                let mut s = [[0f32; KEYS]; HEADS];
                match qs.len() {
                    1 => dots::<1>(&rows, qs, &mut s),
                    2 => dots::<2>(&rows, qs, &mut s),
                    3 => dots::<3>(&rows, qs, &mut s),
                    _ => dots::<HEADS>(&rows, qs, &mut s),
                }
                for (j, s) in s[..qs.len()].iter().enumerate() {
                    let o = &mut scores[(n0 + j) * stride + i * KEYS..][..KEYS];
                    o.iter_mut().zip(s).for_each(|(o, v)| *o = v * scale);
                }
            }
        }
        let part = Partial::split(out, hd);
        for (n, s) in scores.chunks_exact_mut(stride).enumerate() {
            (part.max[n], part.sum[n]) = match inside(n) {
                0 => (f32::NEG_INFINITY, 0.0),
                k => {
                    s[..before(n)].fill(f32::NEG_INFINITY);
                    exp_shifted(&mut s[..k])
                }
            };
        }
        part.values.fill(0.0);
        // Value rows of the current block each query head sees (one buffer for the call).
        let mut visible = vec![0usize; heads.len()];
        for (i, b) in blocks.enumerate() {
            let at = base + b * KEYS * hd;
            f16_slice_ref(&self.values[at..at + KEYS * hd]).convert_to_f32_slice(&mut rows);
            for (n, v) in visible.iter_mut().enumerate() {
                *v = inside(n).saturating_sub(i * KEYS).min(KEYS);
            }
            weighted_sums(&rows, &scores[i * KEYS..], stride, &visible, part.values);
        }
    }
}

/// The first position a query at `pos` sees: `pos + 1 − window`, or 0.
fn first_seen(pos: usize, window: Option<usize>) -> usize {
    window.map_or(0, |w| (pos + 1).saturating_sub(w))
}

/// Cache positions per chunk of the softmax (a multiple of [`KEYS`]). A query head's scores
/// are reduced chunk by chunk into a [`Partial`], and the chunks merged in order, whichever
/// thread computed them: a decoding step spreads a long context over the threads by chunk
/// (each key and value read once, the threads evenly loaded), and a query's arithmetic is
/// the same as in a batch.
const CHUNK: usize = 256;

/// One chunk's share of the attention of `n` query heads, laid out in one `f32` buffer as
/// `[max; n]`, `[sum; n]`, `[values; n × head_dim]`: the largest score, the sum of
/// `exp(score − max)` and the value rows weighted by those exponentials. A head that sees
/// none of the chunk has max −∞ and sum 0.
struct Partial<'a> {
    max: &'a mut [f32],
    sum: &'a mut [f32],
    values: &'a mut [f32],
}

impl<'a> Partial<'a> {
    /// Floats of the partial of `n` heads of `hd`.
    fn len(n: usize, hd: usize) -> usize {
        n * (hd + 2)
    }

    fn split(buf: &'a mut [f32], hd: usize) -> Partial<'a> {
        let n = buf.len() / (hd + 2);
        let (max, rest) = buf.split_at_mut(n);
        let (sum, values) = rest.split_at_mut(n);
        Partial { max, sum, values }
    }

    /// Folds the next chunk's partial `next` into `acc`: both rescaled to the larger max.
    fn merge(acc: &mut [f32], next: &[f32], hd: usize) {
        let acc = Partial::split(acc, hd);
        let heads = acc.max.len();
        let (max, sum, values) = (&next[..heads], &next[heads..2 * heads], &next[2 * heads..]);
        for n in 0..heads {
            if sum[n] == 0.0 {
                continue; // the head sees none of the chunk
            }
            let m = acc.max[n].max(max[n]);
            let (a, b) = ((acc.max[n] - m).exp(), (max[n] - m).exp());
            acc.max[n] = m;
            acc.sum[n] = acc.sum[n] * a + sum[n] * b;
            let y = &values[n * hd..(n + 1) * hd];
            acc.values[n * hd..(n + 1) * hd]
                .iter_mut()
                .zip(y)
                .for_each(|(x, y)| *x = *x * a + y * b);
        }
    }
}

/// Query heads whose scores share each load of a key block.
const HEADS: usize = 4;

/// Scores of `H` query heads against a block of keys `kt` `[head_dim, KEYS]`: `out[h][k]`
/// is the sum over dimensions, in order, of `q[h][d] · kt[d][k]`, whatever `H`.
fn dots<const H: usize>(kt: &[f32], q: &[&[f32]], out: &mut [[f32; KEYS]; HEADS]) {
    assert!(q.len() == H && H <= HEADS && q.iter().all(|q| q.len() * KEYS == kt.len()));
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: the lengths were checked; the CPU features are enabled at compile time.
    unsafe {
        avx2::dots::<H>(kt, q, out)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    for (h, q) in q.iter().enumerate() {
        for k in 0..KEYS {
            out[h][k] = q
                .iter()
                .enumerate()
                .fold(0f32, |a, (d, x)| x.mul_add(kt[d * KEYS + k], a));
        }
    }
}

/// For each query head `n` (outputs `[heads, head_dim]` in `out`): `out[n] += Σ p[n][k] ·
/// rows[k]` over the first `visible[n]` value rows of the block, in order, where `p[n]`
/// starts at `p[n * stride]`.
fn weighted_sums(rows: &[f32], p: &[f32], stride: usize, visible: &[usize], out: &mut [f32]) {
    let hd = rows.len() / KEYS;
    assert!(rows.len() == KEYS * hd && hd.is_multiple_of(8) && out.len().is_multiple_of(hd));
    let heads = out.len() / hd;
    assert!(heads == 0 || p.len() >= (heads - 1) * stride + KEYS);
    assert!(visible.len() == heads && visible.iter().all(|&v| v <= KEYS));
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: the lengths were checked; the CPU features are enabled at compile time.
    unsafe {
        avx2::weighted_sums(rows, p, stride, visible, out)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    for (n, o) in out.chunks_exact_mut(hd).enumerate() {
        for k in 0..visible[n] {
            let pk = p[n * stride + k];
            for (o, v) in o.iter_mut().zip(&rows[k * hd..(k + 1) * hd]) {
                *o = pk.mul_add(*v, *o);
            }
        }
    }
}

/// `exp(s − max)` in place, eight at a time; returns the max and the sum of the exponentials.
fn exp_shifted(s: &mut [f32]) -> (f32, f32) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut chunks = s.chunks_exact_mut(8);
    for c in &mut chunks {
        let e = exp8(std::array::from_fn(|i| c[i] - max));
        c.copy_from_slice(&e);
    }
    let tail = chunks.into_remainder();
    let mut e = [0f32; 8];
    e[..tail.len()]
        .iter_mut()
        .zip(tail.iter())
        .for_each(|(e, v)| *e = v - max);
    let e = exp8(e);
    tail.copy_from_slice(&e[..tail.len()]);
    (max, s.iter().sum())
}

/// `exp` of eight values `<= 0` (Cephes' `expf`: 2^n times a degree-5 polynomial on
/// `|r| <= ln2/2`, relative error ~2e-7; below -87.3 the result is 0).
fn exp8(x: [f32; 8]) -> [f32; 8] {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: features enabled at build.
    unsafe {
        avx2::exp8(x)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    x.map(|v| {
        if v < EXP_MIN {
            return 0.0;
        }
        let n = (v * std::f32::consts::LOG2_E).round_ties_even();
        let r = n.mul_add(-EXP_LN2_HI, v);
        let r = n.mul_add(-EXP_LN2_LO, r);
        let p = EXP_POLY.iter().fold(0f32, |p, c| p.mul_add(r, *c));
        let p = p.mul_add(r * r, r) + 1.0;
        p * f32::from_bits(((n as i32 + 127) as u32) << 23)
    })
}

/// Below this, `exp` is 0 in f32 (normal range).
const EXP_MIN: f32 = -87.3;
/// ln 2 split in two so that `n · ln2` is exact in the reduction.
const EXP_LN2_HI: f32 = 0.693_359_4;
const EXP_LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `expf` coefficients, highest degree first.
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// The attention kernels with AVX2/FMA intrinsics.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{EXP_LN2_HI, EXP_LN2_LO, EXP_MIN, EXP_POLY, HEADS, KEYS};

    /// # Safety
    /// `kt` holds `[q[h].len(), KEYS]` floats; `H <= HEADS` queries.
    pub(super) unsafe fn dots<const H: usize>(
        kt: &[f32],
        q: &[&[f32]],
        out: &mut [[f32; KEYS]; HEADS],
    ) {
        let hd = q[0].len();
        let mut acc = [_mm256_setzero_ps(); H];
        for d in 0..hd {
            let k = _mm256_loadu_ps(kt.as_ptr().add(d * KEYS));
            for (a, q) in acc.iter_mut().zip(q) {
                *a = _mm256_fmadd_ps(_mm256_set1_ps(*q.get_unchecked(d)), k, *a);
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            _mm256_storeu_ps(o.as_mut_ptr(), a);
        }
    }

    /// # Safety
    /// As [`super::weighted_sums`] checks.
    pub(super) unsafe fn weighted_sums(
        rows: &[f32],
        p: &[f32],
        stride: usize,
        visible: &[usize],
        out: &mut [f32],
    ) {
        let hd = rows.len() / KEYS;
        let seen = visible;
        for c in (0..hd).step_by(8) {
            let v: [__m256; KEYS] =
                std::array::from_fn(|k| _mm256_loadu_ps(rows.as_ptr().add(k * hd + c)));
            for (n, &seen) in seen.iter().enumerate().filter(|(_, &s)| s > 0) {
                let o = out.as_mut_ptr().add(n * hd + c);
                let mut acc = _mm256_loadu_ps(o);
                for (k, v) in v.iter().enumerate().take(seen) {
                    acc =
                        _mm256_fmadd_ps(_mm256_set1_ps(*p.get_unchecked(n * stride + k)), *v, acc);
                }
                _mm256_storeu_ps(o, acc);
            }
        }
    }

    /// # Safety
    /// Needs AVX2 and FMA.
    pub(super) unsafe fn exp8(x: [f32; 8]) -> [f32; 8] {
        let x = _mm256_loadu_ps(x.as_ptr());
        let zero = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_MIN), _CMP_LT_OQ);
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-EXP_LN2_HI), x);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-EXP_LN2_LO), r);
        let mut p = _mm256_setzero_ps();
        for c in EXP_POLY {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let p = _mm256_add_ps(
            _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
            _mm256_set1_ps(1.0),
        );
        let two_n = _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
            23,
        ));
        let e = _mm256_andnot_ps(zero, _mm256_mul_ps(p, two_n));
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), e);
        out
    }
}

fn f16_slice(bits: &mut [u16]) -> &mut [f16] {
    bits.reinterpret_cast_mut()
}

fn f16_slice_ref(bits: &[u16]) -> &[f16] {
    bits.reinterpret_cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 2.0)
            .collect()
    }

    /// Keys, values (`[n, kv_heads * hd]`) and queries (`[n, heads * hd]`) of `n` positions.
    fn kvq(n: usize, kv_heads: usize, heads: usize, hd: usize, seed: usize) -> [Vec<f32>; 3] {
        [
            values(n * kv_heads * hd, seed),
            values(n * kv_heads * hd, seed + 1),
            values(n * heads * hd, seed + 2),
        ]
    }

    /// `got` (`[heads, hd]`) against a plain f64 softmax attention of the query at `pos` over
    /// the f16-rounded keys and values of positions `0..=pos` (the last `window` of them).
    fn assert_matches_plain_softmax(
        [k, v, q]: &[&[f32]; 3],
        (kv_heads, heads, hd): (usize, usize, usize),
        (pos, window): (usize, Option<usize>),
        got: &[f32],
    ) {
        let round = |x: f32| f16::from_f32(x).to_f64();
        let seen = first_seen(pos, window)..=pos;
        for h in 0..heads {
            let g = h / (heads / kv_heads);
            let qh = &q[(pos * heads + h) * hd..(pos * heads + h + 1) * hd];
            let s: Vec<f64> = seen
                .clone()
                .map(|j| {
                    (0..hd)
                        .map(|d| qh[d] as f64 * round(k[(j * kv_heads + g) * hd + d]))
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|x| (x - max).exp()).sum();
            for d in 0..hd {
                let exact: f64 = (seen.clone().zip(&s))
                    .map(|(j, s)| (s - max).exp() / z * round(v[(j * kv_heads + g) * hd + d]))
                    .sum();
                let got = got[h * hd + d] as f64;
                assert!(
                    (got - exact).abs() < 1e-5,
                    "position {pos} head {h} dim {d}: {got} vs {exact}"
                );
            }
        }
    }

    /// Against a plain f64 softmax attention over the f16-rounded keys and values, for a
    /// batch of tokens after cached ones; then the same tokens one by one give the same bits.
    #[test]
    fn attention_matches_a_plain_softmax_and_batching_changes_nothing() {
        let (kv_heads, heads, hd, cap) = (2, 6, 16, 64);
        let (start, t) = (5, 7);
        let n = start + t;
        let [k, v, q] = kvq(n, kv_heads, heads, hd, 1);
        let mut cache = KvBlock::new(kv_heads, cap, hd).unwrap();
        cache
            .write(0, &k[..start * kv_heads * hd], &v[..start * kv_heads * hd])
            .unwrap();
        let mut batch = vec![0f32; t * heads * hd];
        cache
            .write(
                start,
                &k[start * kv_heads * hd..],
                &v[start * kv_heads * hd..],
            )
            .unwrap();
        cache
            .attend(start, &q[start * heads * hd..], heads, None, &mut batch)
            .unwrap();

        for i in 0..t {
            let got = &batch[i * heads * hd..(i + 1) * heads * hd];
            assert_matches_plain_softmax(
                &[&k, &v, &q],
                (kv_heads, heads, hd),
                (start + i, None),
                got,
            );
        }

        let mut one = KvBlock::new(kv_heads, cap, hd).unwrap();
        for pos in 0..n {
            let kv = pos * kv_heads * hd..(pos + 1) * kv_heads * hd;
            one.write(pos, &k[kv.clone()], &v[kv]).unwrap();
            let mut out = vec![0f32; heads * hd];
            one.attend(
                pos,
                &q[pos * heads * hd..(pos + 1) * heads * hd],
                heads,
                None,
                &mut out,
            )
            .unwrap();
            if pos >= start {
                assert_eq!(
                    out,
                    batch[(pos - start) * heads * hd..(pos - start + 1) * heads * hd]
                );
            }
        }
        assert!(cache
            .attend(
                cap,
                &q[..heads * hd],
                heads,
                None,
                &mut vec![0f32; heads * hd]
            )
            .is_err());
        assert!(cache.write(0, &k[..3], &v[..3]).is_err());
    }

    /// The vectorised exponential against the standard library over the range a softmax
    /// feeds it, and zero far below.
    #[test]
    fn exp8_is_within_a_few_ulp_of_expf() {
        let mut worst = 0f64;
        for i in 0..=8700 {
            let x = -(i as f32) * 0.01;
            let got = exp8([x; 8])[3] as f64;
            let want = (x as f64).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp8([-100.0; 8]), [0.0; 8]);
        assert_eq!(exp8([0.0; 8]), [1.0; 8]);
    }

    /// At long context the one-token calls spread the chunks of the softmax over the
    /// threads, a batch does not: the same bits either way, and both a plain softmax.
    #[test]
    fn long_context_single_tokens_equal_the_batch() {
        let (kv_heads, heads, hd, cap) = (2, 6, 16, 1100);
        // Three query tiles, the middle one across the boundary of two chunks.
        let (start, t) = (1012, 24);
        let n = start + t;
        let [k, v, q] = kvq(n, kv_heads, heads, hd, 4);
        let mut cache = KvBlock::new(kv_heads, cap, hd).unwrap();
        cache.write(0, &k, &v).unwrap();
        let mut batch = vec![0f32; t * heads * hd];
        cache
            .attend(start, &q[start * heads * hd..], heads, None, &mut batch)
            .unwrap();
        for i in 0..t {
            let pos = start + i;
            let mut one = vec![0f32; heads * hd];
            let qi = &q[pos * heads * hd..(pos + 1) * heads * hd];
            cache.attend(pos, qi, heads, None, &mut one).unwrap();
            assert_eq!(
                one,
                batch[i * heads * hd..(i + 1) * heads * hd],
                "token {i}"
            );
            if i % 5 == 0 {
                assert_matches_plain_softmax(
                    &[&k, &v, &q],
                    (kv_heads, heads, hd),
                    (pos, None),
                    &one,
                );
            }
        }
    }

    /// A sliding window (Gemma's local layers): each query sees only the last `window`
    /// positions, in a batch whose tiles start their windows in different chunks and one
    /// token at a time alike, with the same bits, against a plain softmax over the window.
    #[test]
    fn a_sliding_window_sees_only_its_last_positions() {
        // windows that start in two chunks; single tokens spread over the threads by chunk
        let (kv_heads, heads, hd, cap, window) = (1, 4, 16, 1200, 600);
        let (start, t) = (1100, 40);
        let n = start + t;
        let [k, v, q] = kvq(n, kv_heads, heads, hd, 7);
        let mut cache = KvBlock::new(kv_heads, cap, hd).unwrap();
        cache.write(0, &k, &v).unwrap();
        let mut batch = vec![0f32; t * heads * hd];
        cache
            .attend(
                start,
                &q[start * heads * hd..],
                heads,
                Some(window),
                &mut batch,
            )
            .unwrap();
        for i in 0..t {
            let pos = start + i;
            let qi = &q[pos * heads * hd..(pos + 1) * heads * hd];
            let mut one = vec![0f32; heads * hd];
            cache
                .attend(pos, qi, heads, Some(window), &mut one)
                .unwrap();
            assert_eq!(
                one,
                batch[i * heads * hd..(i + 1) * heads * hd],
                "token {i}"
            );
            assert_matches_plain_softmax(
                &[&k, &v, &q],
                (kv_heads, heads, hd),
                (pos, Some(window)),
                &one,
            );
            let mut all = vec![0f32; heads * hd];
            cache.attend(pos, qi, heads, None, &mut all).unwrap();
            assert_ne!(all, one, "the window changes what token {i} sees");
        }
        // a window wider than the context is no window
        let mut wide = vec![0f32; heads * hd];
        let mut none = vec![0f32; heads * hd];
        cache
            .attend(
                100,
                &q[100 * heads * hd..101 * heads * hd],
                heads,
                Some(window),
                &mut wide,
            )
            .unwrap();
        cache
            .attend(
                100,
                &q[100 * heads * hd..101 * heads * hd],
                heads,
                None,
                &mut none,
            )
            .unwrap();
        assert_eq!(wide, none);
        assert!(cache.attend(100, &none, heads, Some(0), &mut wide).is_err());
    }
}
