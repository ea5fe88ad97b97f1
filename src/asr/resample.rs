//! Band-limited resampling of mono audio to the model's rate: a windowed-sinc (Blackman)
//! interpolator whose cut-off is the lower Nyquist frequency, so that downsampling does not
//! alias. Rates of 8–48 kHz (the range an LSL audio stream may have) are accepted.
use super::AsrError;

/// Half the kernel length in input samples at unit cut-off.
const HALF_TAPS: f64 = 16.0;

/// The lowest and highest input rates accepted.
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=48_000;

/// `input` at `from` Hz resampled to `to` Hz.
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AsrError> {
    if !RATE_RANGE.contains(&from) {
        return Err(AsrError::Audio(format!(
            "cannot resample {from} Hz audio: rates of {} to {} Hz are accepted",
            RATE_RANGE.start(),
            RATE_RANGE.end()
        )));
    }
    if from == to {
        return Ok(input.to_vec());
    }
    let ratio = f64::from(to) / f64::from(from);
    // Cut-off relative to the input's Nyquist frequency.
    let cutoff = ratio.min(1.0);
    let half = (HALF_TAPS / cutoff).ceil() as isize;
    let n_out = (input.len() as f64 * ratio).floor() as usize;
    let mut out = Vec::with_capacity(n_out);
    for j in 0..n_out {
        let centre = j as f64 / ratio;
        let first = centre.floor() as isize - half + 1;
        let (mut acc, mut norm) = (0.0f64, 0.0f64);
        for i in first..first + 2 * half {
            let x = i as f64 - centre;
            let w = window(x / (half as f64)) * sinc(x * cutoff);
            norm += w;
            if let Some(&s) = usize::try_from(i).ok().and_then(|i| input.get(i)) {
                acc += w * f64::from(s);
            }
        }
        out.push((acc / norm) as f32);
    }
    Ok(out)
}

/// A WAV file's audio as the model hears it: channels averaged, resampled to 16 kHz.
pub fn model_audio(wav: &crate::wav::Wav) -> Result<Vec<f32>, AsrError> {
    resample(&wav.mono(), wav.rate, super::MODEL_RATE)
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let p = std::f64::consts::PI * x;
        p.sin() / p
    }
}

/// Blackman window on [-1, 1].
fn window(t: f64) -> f64 {
    if t.abs() >= 1.0 {
        return 0.0;
    }
    let a = std::f64::consts::PI * (t + 1.0);
    0.42 - 0.5 * a.cos() + 0.08 * (2.0 * a).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, seconds: f64) -> Vec<f32> {
        (0..(f64::from(rate) * seconds) as usize)
            .map(|n| (2.0 * std::f64::consts::PI * hz * n as f64 / f64::from(rate)).sin() as f32)
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn a_tone_in_band_keeps_its_shape_and_one_above_the_new_nyquist_is_removed() {
        let out = resample(&tone(22_050, 440.0, 1.0), 22_050, 16_000).unwrap();
        assert_eq!(out.len(), 16_000);
        let expected = tone(16_000, 440.0, 1.0);
        let err: Vec<f32> = out[100..15_900]
            .iter()
            .zip(&expected[100..15_900])
            .map(|(a, b)| a - b)
            .collect();
        assert!(rms(&err) < 1e-3, "in-band error {}", rms(&err));
        // 10 kHz is above 16 kHz's Nyquist: it must not alias down to 6 kHz.
        let out = resample(&tone(44_100, 10_000.0, 0.5), 44_100, 16_000).unwrap();
        assert!(
            rms(&out[100..7_900]) < 0.01,
            "aliased {}",
            rms(&out[100..7_900])
        );
        let up = resample(&tone(8_000, 300.0, 0.5), 8_000, 16_000).unwrap();
        let err: Vec<f32> = up[100..7_900]
            .iter()
            .zip(&tone(16_000, 300.0, 0.5)[100..7_900])
            .map(|(a, b)| a - b)
            .collect();
        assert!(rms(&err) < 1e-3, "upsampling error {}", rms(&err));
    }

    #[test]
    fn rates_out_of_range_are_an_error() {
        assert!(resample(&[0.0; 10], 4_000, 16_000).is_err());
        assert!(resample(&[0.0; 10], 96_000, 16_000).is_err());
    }
}
