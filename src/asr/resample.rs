//! Band-limited resampling of mono audio to the model's rate: a windowed-sinc (Blackman)
//! interpolator whose cut-off is the lower Nyquist frequency, so that downsampling does not
//! alias. Rates of 8–48 kHz (the range an LSL audio stream may have) are accepted.
use super::AsrError;

/// Half the kernel length in input samples at unit cut-off.
const HALF_TAPS: f64 = 16.0;

/// The lowest and highest input rates accepted.
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=48_000;

/// Distinct kernel phases precomputed at most (`to / gcd(from, to)` of them); rates with more
/// compute each output sample's kernel as they go.
const MAX_PHASES: usize = 4096;

/// `input` at `from` Hz resampled to `to` Hz. Output sample `j` lies at input position
/// `j · from / to`; its kernel depends only on that position's fraction, of which there are
/// `to / gcd(from, to)` (320 from 22.05 kHz, 1 from 48 kHz), so the kernels are computed once
/// per phase rather than per sample (the trigonometry was most of a decode's resampling).
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
    let g = gcd(from, to);
    let (up, down) = ((to / g) as usize, (from / g) as usize);
    // Cut-off relative to the input's Nyquist frequency.
    let cutoff = (f64::from(to) / f64::from(from)).min(1.0);
    let half = (HALF_TAPS / cutoff).ceil() as usize;
    let table: Option<Vec<Vec<f64>>> =
        (up <= MAX_PHASES).then(|| (0..up).map(|p| kernel(p, up, half, cutoff)).collect());
    let n_out = input.len() * up / down;
    let mut out = Vec::with_capacity(n_out);
    for j in 0..n_out {
        let (base, phase) = ((j * down) / up, (j * down) % up);
        let computed;
        let weights: &[f64] = match &table {
            Some(t) => &t[phase],
            None => {
                computed = kernel(phase, up, half, cutoff);
                &computed
            }
        };
        // taps at input samples base - half + 1 ..= base + half
        let first = base as isize - half as isize + 1;
        let acc: f64 = weights
            .iter()
            .enumerate()
            .filter_map(|(k, w)| {
                let i = usize::try_from(first + k as isize).ok()?;
                input.get(i).map(|&s| w * f64::from(s))
            })
            .sum();
        out.push(acc as f32);
    }
    Ok(out)
}

/// The normalised windowed-sinc weights of the `2 · half` taps around an output sample at
/// fraction `phase / up` past an input sample.
fn kernel(phase: usize, up: usize, half: usize, cutoff: f64) -> Vec<f64> {
    let frac = phase as f64 / up as f64;
    let w: Vec<f64> = (0..2 * half)
        .map(|k| {
            let x = k as f64 - half as f64 + 1.0 - frac;
            window(x / half as f64) * sinc(x * cutoff)
        })
        .collect();
    let norm: f64 = w.iter().sum();
    w.into_iter().map(|v| v / norm).collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
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

    /// The per-phase kernels equal the windowed sinc computed for each output sample (the
    /// definition, written out here), at a common rate and at one with too many phases for a
    /// table (11 025 · 16 000 / gcd: 640 phases; 44 099 Hz: 16 000).
    #[test]
    fn phase_kernels_equal_the_kernel_of_each_sample() {
        let noise: Vec<f32> = (0..30_000u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 8) as f32 / (1u32 << 24) as f32) - 0.5)
            .collect();
        for from in [22_050, 11_025, 44_099] {
            let input = &noise[..(from as usize / 2)];
            let out = resample(input, from, 16_000).unwrap();
            let ratio = 16_000.0 / f64::from(from);
            let half = (HALF_TAPS / ratio.min(1.0)).ceil();
            for (j, &o) in out.iter().enumerate().step_by(37) {
                let centre = j as f64 / ratio;
                let (mut acc, mut norm) = (0.0, 0.0);
                let first = centre.floor() - half + 1.0;
                for k in 0..(2.0 * half) as usize {
                    let i = first + k as f64;
                    let x = i - centre;
                    let w = window(x / half) * sinc(x * ratio.min(1.0));
                    norm += w;
                    if i >= 0.0 && (i as usize) < input.len() {
                        acc += w * f64::from(input[i as usize]);
                    }
                }
                assert!(
                    (f64::from(o) - acc / norm).abs() < 1e-5,
                    "{from} Hz, sample {j}: {o} vs {}",
                    acc / norm
                );
            }
        }
    }

    #[test]
    fn rates_out_of_range_are_an_error() {
        assert!(resample(&[0.0; 10], 4_000, 16_000).is_err());
        assert!(resample(&[0.0; 10], 96_000, 16_000).is_err());
    }
}
