//! The models' RMSNorm layers: weights as f32, applied on the calling thread by
//! [`neuralign_kernels::norm`] (candle's `rms_norm` runs on rayon, a hand-off to a worker
//! and back at every call, which at one token a step cost more than the norm itself).
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use neuralign_kernels::norm::rms_norm_rows;

use super::LmError;

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * weight`.
pub struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    /// The norm of a GGUF weight vector, with the model's `eps`.
    pub fn new(weight: &QTensor, eps: f64) -> Result<RmsNorm, LmError> {
        let weight = (weight.dequantize(&Device::Cpu)?.flatten_all()?).to_vec1::<f32>()?;
        Ok(RmsNorm {
            weight,
            eps: eps as f32,
        })
    }

    /// Normalises `x` `[.., dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, LmError> {
        let mut rows = x.flatten_all()?.to_vec1::<f32>()?;
        self.rows(&mut rows)?;
        Ok(Tensor::from_vec(rows, x.shape(), x.device())?)
    }

    /// Normalises `rows` (`[n, dim]`, row-major) in place.
    pub fn rows(&self, rows: &mut [f32]) -> Result<(), LmError> {
        Ok(rms_norm_rows(rows, &self.weight, self.eps)?)
    }

    /// Bytes of its weights.
    pub fn bytes(&self) -> usize {
        self.weight.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit for bit candle's `rms_norm` (which the models used before), on rows of a model's
    /// scale: the states do not move.
    #[test]
    fn is_candles_rms_norm_bit_for_bit() {
        let dim = 64;
        let weight: Vec<f32> = (0..dim).map(|i| 0.5 + (i % 9) as f32 * 0.7).collect();
        let x: Vec<f32> = (0..3 * dim)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.13)
            .collect();
        let x = Tensor::from_vec(x, (3, dim), &Device::Cpu).unwrap();
        let w = Tensor::from_vec(weight.clone(), dim, &Device::Cpu).unwrap();
        let norm = RmsNorm { weight, eps: 1e-6 };
        let ours = norm.forward(&x).unwrap().flatten_all().unwrap();
        let theirs = candle_nn::ops::rms_norm(&x, &w, 1e-6).unwrap();
        assert_eq!(
            ours.to_vec1::<f32>().unwrap(),
            theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
