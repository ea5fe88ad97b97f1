//! Rotary position embeddings applied in place to rows of heads, `[t, heads, head_dim]`.
use crate::KernelError;

/// Which dimensions of a head rotate together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// (2i, 2i+1): llama.cpp's layout for llama-family GGUFs.
    Adjacent,
    /// (i, i + head_dim/2): the GPT-NeoX layout (Qwen2).
    Halves,
}

/// cos and sin of position × frequency for every position up to a capacity.
pub struct RopeTables {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTables {
    /// Tables for heads of `head_dim` and positions `0..capacity`, frequencies `base^(-2i/head_dim)`.
    pub fn new(head_dim: usize, base: f32, capacity: usize) -> RopeTables {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / base.powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        let (mut cos, mut sin) = (
            Vec::with_capacity(capacity * half),
            Vec::with_capacity(capacity * half),
        );
        for p in 0..capacity {
            for f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        RopeTables { half, cos, sin }
    }

    /// Rotates `x` `[t, heads, head_dim]` whose rows sit at positions `start..start + t`.
    pub fn apply(
        &self,
        x: &mut [f32],
        heads: usize,
        start: usize,
        pairing: Pairing,
    ) -> Result<(), KernelError> {
        let half = self.half;
        let row = heads * 2 * half;
        if row == 0 || !x.len().is_multiple_of(row) {
            return Err(KernelError::Shape(format!(
                "{} values are not rows of {heads} heads of {}",
                x.len(),
                2 * half
            )));
        }
        let t = x.len() / row;
        if (start + t) * half > self.cos.len() {
            return Err(KernelError::Shape(format!(
                "positions up to {} exceed the rotary tables",
                start + t
            )));
        }
        for (i, tokens) in x.chunks_exact_mut(row).enumerate() {
            let at = (start + i) * half;
            let (cos, sin) = (&self.cos[at..at + half], &self.sin[at..at + half]);
            for head in tokens.chunks_exact_mut(2 * half) {
                for j in 0..half {
                    let (a, b) = match pairing {
                        Pairing::Adjacent => (2 * j, 2 * j + 1),
                        Pairing::Halves => (j, j + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * cos[j] - x1 * sin[j];
                    head[b] = x0 * sin[j] + x1 * cos[j];
                }
            }
        }
        Ok(())
    }
}
