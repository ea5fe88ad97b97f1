//! The output-frame clock: frames fall on an exact grid of `k / output_rate`
//! seconds after the first input sample, whatever the ratio of the rates, and
//! each frame is linearly interpolated between the two input samples around it.

/// Decides after each input sample whether an output frame is due.
#[derive(Clone, Debug)]
pub struct FrameClock {
    /// Input samples per output frame (need not be an integer).
    ratio: f64,
    /// Index of the next frame to emit.
    next_frame: u64,
}

impl FrameClock {
    /// A clock for `input_rate` resampled to `output_rate` (`output_rate <
    /// input_rate`, so at most one frame falls due per input sample).
    pub fn new(input_rate: f64, output_rate: f64) -> Self {
        Self {
            ratio: input_rate / output_rate,
            next_frame: 0,
        }
    }

    /// After input sample `n` (0-based), the interpolation weight of sample `n`
    /// against sample `n − 1` if a frame falls in `(n − 1, n]`, else `None`.
    /// The frame position is computed from its index, never accumulated, so it
    /// cannot drift.
    pub fn due(&mut self, n: u64) -> Option<f32> {
        let pos = self.next_frame as f64 * self.ratio;
        if pos <= n as f64 {
            self.next_frame += 1;
            Some((pos - (n as f64 - 1.0)) as f32)
        } else {
            None
        }
    }

    /// Frames emitted so far.
    pub fn frames(&self) -> u64 {
        self.next_frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_land_on_the_exact_grid_without_drift() {
        for &fs in &[512.0, 1000.0, 1024.0, 2000.0, 2048.0] {
            let mut clock = FrameClock::new(fs, 100.0);
            let samples: u64 = 10_000_000;
            let mut last = None;
            for n in 0..samples {
                if let Some(w) = clock.due(n) {
                    assert!(w > 0.0 && w <= 1.0, "weight {w}");
                    // The frame's position in input samples, reconstructed.
                    let pos = n as f64 - 1.0 + f64::from(w);
                    let k = clock.frames() - 1;
                    assert!(
                        (pos - k as f64 * fs / 100.0).abs() < 1e-3,
                        "fs {fs} frame {k}"
                    );
                    last = Some(k);
                }
            }
            // Frames at 0, ratio, 2·ratio, … up to the last sample.
            let expected = ((samples - 1) as f64 * 100.0 / fs).floor() as u64;
            assert_eq!(last, Some(expected), "fs {fs}");
        }
    }
}
