//! RMSNorm over rows, on the calling thread. candle's `rms_norm` runs on rayon: at one token
//! a step each call is a hand-off to a rayon worker and back, which cost more than the norm
//! (Gemma 3 makes 108 a token: ~7 % of a step in futex calls, profiled at 256 tokens).
use crate::KernelError;

/// Normalises each row of `rows` (`[n, weight.len()]`, row-major) in place:
/// `x / sqrt(mean(x²) + eps) * weight`, in f32 and in the order candle's `rms_norm` computes
/// it, so that the states are bit for bit those of candle's kernel. (Summing in f64 moved
/// SmolLM2's states by as much as 8-bit activations move them: their rounding, not the sum's
/// precision, is what sets the distance to an exact forward pass.)
pub fn rms_norm_rows(rows: &mut [f32], weight: &[f32], eps: f32) -> Result<(), KernelError> {
    let dim = weight.len();
    if dim == 0 || !rows.len().is_multiple_of(dim) {
        return Err(KernelError::Shape(format!(
            "{} values are not rows of {dim}",
            rows.len()
        )));
    }
    for row in rows.chunks_exact_mut(dim) {
        let sum2: f32 = row.iter().map(|&v| v * v).sum();
        let m = (sum2 / dim as f32 + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v / m * w;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of mean square m² come out as `x / sqrt(m² + eps) * w`, each row on its own.
    #[test]
    fn each_row_is_scaled_by_its_own_root_mean_square() {
        let weight = [1.0, 2.0, 0.5, -1.0];
        let mut rows = vec![3.0, -3.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, -1.0, 1.0];
        rms_norm_rows(&mut rows, &weight, 1e-6).unwrap();
        let s = 1.0 / (9.0f32 + 1e-6).sqrt();
        let want = [3.0 * s, -6.0 * s, 1.5 * s, -3.0 * s, 0.0, 0.0, 0.0, 0.0];
        for (got, want) in rows.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        let s = 1.0 / (1.0f32 + 1e-6).sqrt();
        assert!((rows[9] - 2.0 * s).abs() < 1e-6 && (rows[11] + s).abs() < 1e-6);
    }

    #[test]
    fn rows_that_do_not_fit_the_weight_are_refused() {
        assert!(rms_norm_rows(&mut [1.0; 5], &[1.0; 4], 1e-6).is_err());
    }
}
