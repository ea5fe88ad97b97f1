//! The key/value cache of one transformer block and causal grouped-query attention over it.
//!
//! Keys and values are stored as f16 in one buffer each, allocated for the whole capacity
//! (`[kv_heads, capacity, head_dim]`): a step writes only its own rows, truncation is free,
//! and a head's keys for positions `0..len` are one contiguous run. For each query token and
//! each key/value head, one pass computes the scores of every query head of the group (each
//! key row is read and widened to f32 once for all of them), a softmax, and the weighted sum
//! of the value rows (each read once for the group). The work of a (token, head) pair does
//! not depend on the other tokens of the call, so running a word's tokens one by one or in a
//! batch gives the same numbers.
use crate::{pool, KernelError};
use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

/// Longest head this kernel handles (the widened key/value row lives on the stack).
pub const MAX_HEAD_DIM: usize = 256;

/// Query tokens × cache positions below which a call stays on one thread.
const PARALLEL_WORK: usize = 4096;

/// Query tokens that share each widened key and value row in a prefill.
const QUERY_TILE: usize = 8;

/// Keys and values of one block for every position up to its capacity.
pub struct KvBlock {
    kv_heads: usize,
    capacity: usize,
    head_dim: usize,
    /// f16 bits, `[kv_heads, capacity, head_dim]` (zeroed pages are mapped only once written).
    keys: Vec<u16>,
    values: Vec<u16>,
}

impl KvBlock {
    /// An empty cache for `kv_heads` heads of `head_dim` and `capacity` positions.
    pub fn new(kv_heads: usize, capacity: usize, head_dim: usize) -> Result<KvBlock, KernelError> {
        if head_dim == 0 || head_dim > MAX_HEAD_DIM || kv_heads == 0 {
            return Err(KernelError::Shape(format!(
                "{kv_heads} key/value heads of {head_dim} (1..={MAX_HEAD_DIM} supported)"
            )));
        }
        let n = kv_heads * capacity * head_dim;
        Ok(KvBlock {
            kv_heads,
            capacity,
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
            for g in 0..self.kv_heads {
                let at = (g * self.capacity + start + i) * hd;
                let from = i * row + g * hd;
                let dst = f16_slice(&mut self.keys[at..at + hd]);
                dst.convert_from_f32_slice(&keys[from..from + hd]);
                let dst = f16_slice(&mut self.values[at..at + hd]);
                dst.convert_from_f32_slice(&values[from..from + hd]);
            }
        }
        Ok(())
    }

    /// Causal attention of queries `q` `[t, heads * head_dim]` at positions
    /// `start..start + t` over cached positions `0..=` each query's own, into `out`
    /// (same shape). Query head `h` reads key/value head `h / (heads / kv_heads)`.
    pub fn attend(
        &self,
        start: usize,
        q: &[f32],
        heads: usize,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let hd = self.head_dim;
        let width = heads * hd;
        let t = q.len() / width.max(1);
        if heads % self.kv_heads != 0
            || q.len() != t * width
            || out.len() != q.len()
            || start + t > self.capacity
        {
            return Err(KernelError::Shape(format!(
                "{} queries of {heads} heads at {start} over {} key/value heads, {} positions",
                q.len(),
                self.kv_heads,
                self.capacity
            )));
        }
        let group = heads / self.kv_heads;
        // A task is a tile of consecutive query tokens of one key/value head: each key and
        // value row is widened once for the tile. Output `[t, heads * hd]` is viewed as
        // `[t, kv_heads, group * hd]`; a task gathers its tile's pieces through a buffer.
        let tiles = t.div_ceil(QUERY_TILE);
        let mut tiled = vec![0f32; t * width];
        let task = |n: usize, buf: &mut [f32]| {
            let (tile, g) = (n / self.kv_heads, n % self.kv_heads);
            let first = tile * QUERY_TILE;
            let rows = buf.len() / (group * hd);
            let queries: Vec<&[f32]> = (first..first + rows)
                .map(|i| &q[i * width + g * group * hd..i * width + (g + 1) * group * hd])
                .collect();
            self.attend_tile(g, start + first, &queries, buf);
        };
        // Pieces in task order: tile-major, then head; the last tile may be short.
        let piece = |n: usize| {
            let tile = n / self.kv_heads;
            (QUERY_TILE.min(t - tile * QUERY_TILE)) * group * hd
        };
        let mut pieces: Vec<&mut [f32]> = Vec::with_capacity(tiles * self.kv_heads);
        let mut rest = tiled.as_mut_slice();
        for n in 0..tiles * self.kv_heads {
            let (head, tail) = rest.split_at_mut(piece(n));
            pieces.push(head);
            rest = tail;
        }
        if t * (start + t) < PARALLEL_WORK {
            pieces.iter_mut().enumerate().for_each(|(n, b)| task(n, b));
        } else {
            pool::for_each_chunk(&mut pieces, 1, |n, b| task(n, &mut b[0]));
        }
        // Scatter the tiles back into `[t, heads * hd]`.
        let mut at = 0;
        for tile in 0..tiles {
            let first = tile * QUERY_TILE;
            let rows = QUERY_TILE.min(t - first);
            for g in 0..self.kv_heads {
                for r in 0..rows {
                    let dst = (first + r) * width + g * group * hd;
                    out[dst..dst + group * hd].copy_from_slice(&tiled[at..at + group * hd]);
                    at += group * hd;
                }
            }
        }
        Ok(())
    }

    /// Consecutive query tokens, the first at position `pos`, each with the `group` query
    /// heads of key/value head `g` (`[group, head_dim]`), over the positions up to its own;
    /// results `[tokens, group, head_dim]` into `out`. Each query's scores, softmax and
    /// weighted sum run in the same order as if it were alone.
    fn attend_tile(&self, g: usize, pos: usize, queries: &[&[f32]], out: &mut [f32]) {
        let hd = self.head_dim;
        let group = queries[0].len() / hd;
        let scale = 1.0 / (hd as f32).sqrt();
        let len = pos + queries.len();
        let base = g * self.capacity * hd;
        let keys = &self.keys[base..base + len * hd];
        let values = &self.values[base..base + len * hd];
        let mut row = [0f32; MAX_HEAD_DIM];
        let row = &mut row[..hd];
        // Scores `[tokens * group, len]`; query token `i` sees positions `0..pos + i + 1`.
        let mut scores = vec![0f32; queries.len() * group * len];
        for (j, k) in keys.chunks_exact(hd).enumerate() {
            f16_slice_ref(k).convert_to_f32_slice(row);
            for (i, q) in queries.iter().enumerate().filter(|(i, _)| j <= pos + i) {
                for (r, qh) in q.chunks_exact(hd).enumerate() {
                    scores[(i * group + r) * len + j] = dot(qh, row) * scale;
                }
            }
        }
        for (n, s) in scores.chunks_exact_mut(len).enumerate() {
            let s = &mut s[..pos + n / group + 1];
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for x in s.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            let inv = 1.0 / sum;
            s.iter_mut().for_each(|x| *x *= inv);
        }
        out.fill(0.0);
        for (j, v) in values.chunks_exact(hd).enumerate() {
            f16_slice_ref(v).convert_to_f32_slice(row);
            // Tokens before `j - pos` do not see position `j`.
            let blind = j.saturating_sub(pos);
            for (n, o) in out.chunks_exact_mut(hd).enumerate().skip(blind * group) {
                let p = scores[n * len + j];
                for (o, v) in o.iter_mut().zip(row.iter()) {
                    *o = p.mul_add(*v, *o);
                }
            }
        }
    }
}

/// Dot product in eight lanes (vectorised by the compiler), summed pairwise at the end.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane = x.mul_add(*y, *lane);
        }
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
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

    /// Against a plain f64 softmax attention over the f16-rounded keys and values, for a
    /// batch of tokens after cached ones; then the same tokens one by one give the same bits.
    #[test]
    fn attention_matches_a_plain_softmax_and_batching_changes_nothing() {
        let (kv_heads, heads, hd, cap) = (2, 6, 16, 64);
        let (start, t) = (5, 7);
        let n = start + t;
        let (k, v, q) = (
            values(n * kv_heads * hd, 1),
            values(n * kv_heads * hd, 2),
            values(n * heads * hd, 3),
        );
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
            .attend(start, &q[start * heads * hd..], heads, &mut batch)
            .unwrap();

        let round = |x: f32| f16::from_f32(x).to_f64();
        for i in 0..t {
            let pos = start + i;
            for h in 0..heads {
                let g = h / (heads / kv_heads);
                let qh = &q[(pos * heads + h) * hd..(pos * heads + h + 1) * hd];
                let s: Vec<f64> = (0..=pos)
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
                    let exact: f64 = (0..=pos)
                        .map(|j| (s[j] - max).exp() / z * round(v[(j * kv_heads + g) * hd + d]))
                        .sum();
                    let got = batch[(i * heads + h) * hd + d] as f64;
                    assert!(
                        (got - exact).abs() < 1e-5,
                        "token {i} head {h} dim {d}: {got} vs {exact}"
                    );
                }
            }
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
            .attend(cap, &q[..heads * hd], heads, &mut vec![0f32; heads * hd])
            .is_err());
        assert!(cache.write(0, &k[..3], &v[..3]).is_err());
    }
}
