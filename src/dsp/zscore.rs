//! Running z-score per electrode: exponentially weighted mean and variance
//! with a time constant, starting as plain cumulative statistics so that the
//! first seconds are already on a sensible scale.

/// Exponential running z-score over a fixed number of channels.
#[derive(Clone, Debug)]
pub struct RunningZScore {
    /// Weight of a new frame once warmed up: `1 − exp(−1 / (tau·rate))`.
    alpha: f64,
    /// Frames seen.
    count: u64,
    mean: Vec<f64>,
    var: Vec<f64>,
}

impl RunningZScore {
    /// Statistics over `channels` with time constant `tau_s` at `rate` frames/s.
    pub fn new(channels: usize, tau_s: f64, rate: f64) -> Self {
        Self {
            alpha: 1.0 - (-1.0 / (tau_s * rate)).exp(),
            count: 0,
            mean: vec![0.0; channels],
            var: vec![0.0; channels],
        }
    }

    /// Updates the statistics with one frame and replaces it by its z-scores.
    /// A channel without variance yet (the first frame, a flat signal) gives 0.
    pub fn apply(&mut self, frame: &mut [f32]) {
        self.count += 1;
        // Cumulative weights 1/k until they fall below the exponential weight.
        let w = self.alpha.max(1.0 / self.count as f64);
        for ((x, mean), var) in frame.iter_mut().zip(&mut self.mean).zip(&mut self.var) {
            let d = f64::from(*x) - *mean;
            *mean += w * d;
            *var = (1.0 - w) * (*var + w * d * d);
            // Relative floor: a flat channel's variance is rounding noise.
            let sd = var.sqrt();
            *x = if sd > 1e-9 * mean.abs() {
                ((f64::from(*x) - *mean) / sd) as f32
            } else {
                0.0
            };
        }
    }

    /// Forgets a channel's statistics (after its filter state was reset).
    pub fn reset_channel(&mut self, channel: usize) {
        self.mean[channel] = 0.0;
        self.var[channel] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn stationary_input_becomes_unit_normal() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut z = RunningZScore::new(2, 10.0, 100.0);
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let mut frame = [5.0 + 2.0 * rng.gen::<f32>(), -3.0 + 0.1 * rng.gen::<f32>()];
            z.apply(&mut frame);
            out.push(frame);
        }
        for ch in 0..2 {
            let tail: Vec<f64> = out[5000..].iter().map(|f| f64::from(f[ch])).collect();
            let mean = tail.iter().sum::<f64>() / tail.len() as f64;
            let sd =
                (tail.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
            assert!(mean.abs() < 0.05, "channel {ch} mean {mean}");
            assert!((sd - 1.0).abs() < 0.05, "channel {ch} sd {sd}");
        }
    }

    #[test]
    fn flat_channel_gives_zero_not_nan() {
        let mut z = RunningZScore::new(1, 1.0, 100.0);
        for _ in 0..10 {
            let mut frame = [3.0];
            z.apply(&mut frame);
            assert_eq!(frame[0], 0.0);
        }
    }
}
