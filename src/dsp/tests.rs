//! Behaviour of the whole extractor: validation, chunking, the exact frame
//! grid, band response, notches and non-finite input.

use super::*;
use rand::{Rng, SeedableRng};
use std::f64::consts::TAU;

fn raw_config() -> HighGammaConfig {
    HighGammaConfig {
        zscore: false,
        ..HighGammaConfig::default()
    }
}

/// `seconds` of `[n, channels]` samples from `f(channel, time_s)`.
fn signal(fs: f64, seconds: f64, channels: usize, f: impl Fn(usize, f64) -> f32) -> Vec<f32> {
    let n = (fs * seconds) as usize;
    (0..n)
        .flat_map(|i| (0..channels).map(move |c| (c, i as f64 / fs)))
        .map(|(c, t)| f(c, t))
        .collect()
}

fn run(hg: &mut HighGamma, samples: &[f32]) -> Vec<f32> {
    let mut out = Vec::new();
    let frames = hg.process(samples, &mut out);
    assert_eq!(out.len(), frames * hg.channels());
    out
}

/// Steady-state output for a pure tone, from the design: the mean over bands of
/// the cascade's and the notches' gains, times the amplitude (×2 analytic, ÷2
/// for the single sideband of a real tone).
fn designed_tone_gain(hg: &HighGamma, freq: f64) -> f64 {
    let fs = hg.input_rate();
    let notch: f64 = hg.notches().iter().map(|n| n.gain_at(freq, fs)).product();
    let bands = hg.bands();
    let mean_band = bands
        .iter()
        .map(|b| {
            let w = TAU * (freq - b.center_hz) / fs;
            let a = f64::from(b.alpha);
            // |a / (1 − (1 − a)e^{−iw})| per stage.
            let den = (1.0 - (1.0 - a) * w.cos()).hypot((1.0 - a) * w.sin());
            (a / den).powi(b.stages as i32)
        })
        .sum::<f64>()
        / bands.len() as f64;
    notch * mean_band
}

#[test]
fn rejects_unusable_settings() {
    let cfg = HighGammaConfig::default();
    assert_eq!(
        HighGamma::new(0, 2048.0, &cfg).err(),
        Some(DspError::NoChannels)
    );
    assert!(matches!(
        HighGamma::new(4, 256.0, &cfg),
        Err(DspError::InputRateTooLow { .. })
    ));
    let slow = HighGammaConfig {
        output_rate: 4096.0,
        ..cfg.clone()
    };
    assert!(matches!(
        HighGamma::new(4, 2048.0, &slow),
        Err(DspError::OutputRateTooHigh { .. })
    ));
    let bad_tau = HighGammaConfig {
        zscore_tau_s: 0.0,
        ..cfg.clone()
    };
    assert!(matches!(
        HighGamma::new(4, 2048.0, &bad_tau),
        Err(DspError::InvalidSetting {
            name: "zscore_tau_s",
            ..
        })
    ));
    for rate in [512.0, 1000.0, 1024.0, 2000.0, 2048.0] {
        assert!(HighGamma::new(4, rate, &cfg).is_ok(), "{rate}");
    }
}

#[test]
fn config_reads_partial_toml_and_rejects_typos() {
    let cfg: HighGammaConfig = toml::from_str("line_freq = 50.0\nzscore_tau_s = 20.0").unwrap();
    assert_eq!(cfg.line_freq, 50.0);
    assert_eq!(cfg.output_rate, 100.0);
    assert_eq!(cfg.center_freqs_hz.len(), 8);
    assert!(toml::from_str::<HighGammaConfig>("line_frequency = 50.0").is_err());
}

#[test]
fn chunk_boundaries_do_not_change_the_output() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let channels = 11; // one full group of 8 and a partial one
    let samples: Vec<f32> = (0..2048 * channels)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let cfg = HighGammaConfig::default();
    let whole = run(
        &mut HighGamma::new(channels, 2048.0, &cfg).unwrap(),
        &samples,
    );
    for chunk in [1, 7, 33, 500] {
        let mut hg = HighGamma::new(channels, 2048.0, &cfg).unwrap();
        let mut out = Vec::new();
        for part in samples.chunks(chunk * channels) {
            hg.process(part, &mut out);
        }
        assert_eq!(out, whole, "chunks of {chunk} samples");
    }
}

#[test]
fn frames_follow_the_output_grid() {
    for rate in [512.0, 1000.0, 1024.0, 2000.0, 2048.0] {
        let mut hg = HighGamma::new(2, rate, &raw_config()).unwrap();
        let n = (rate * 3.0) as usize + 5;
        let frames = run(&mut hg, &vec![0.0; n * 2]).len() / 2;
        // Frames at k/100 s for every k with k/100 ≤ (n−1)/rate.
        let expected = ((n - 1) as f64 * 100.0 / rate).floor() as usize + 1;
        assert_eq!(frames, expected, "rate {rate}");
        assert_eq!(hg.frames_out(), expected as u64);
    }
}

#[test]
fn tone_envelope_matches_the_designed_response() {
    for (rate, freq) in [(2048.0, 100.0), (1000.0, 75.0), (512.0, 140.0)] {
        let mut hg = HighGamma::new(1, rate, &raw_config()).unwrap();
        let amp = 3.0;
        let x = signal(rate, 3.0, 1, |_, t| (amp * (TAU * freq * t).sin()) as f32);
        let out = run(&mut hg, &x);
        let expected = amp * designed_tone_gain(&hg, freq);
        // After the filters settle (1 s), the envelope is flat at the designed gain.
        for &v in &out[100..] {
            assert!(
                (f64::from(v) / expected - 1.0).abs() < 0.01,
                "{rate} Hz: {v} vs {expected}"
            );
        }
        // And the design is close to the Gaussian filterbank it approximates.
        let gaussian = hg
            .bands()
            .iter()
            .map(|b| (-0.5 * ((freq - b.center_hz) / b.sigma_hz).powi(2)).exp())
            .sum::<f64>()
            / hg.bands().len() as f64;
        assert!(
            (expected / amp / gaussian - 1.0).abs() < 0.15,
            "{expected} vs {gaussian}"
        );
    }
}

#[test]
fn line_noise_and_harmonics_are_removed() {
    let rate = 2048.0;
    let mut hg = HighGamma::new(1, rate, &raw_config()).unwrap();
    // Large 60 Hz and 120 Hz (inside the band) line noise, a small 100 Hz tone.
    let x = signal(rate, 6.0, 1, |_, t| {
        (100.0 * (TAU * 60.0 * t).sin()
            + 20.0 * (TAU * 120.0 * t + 1.0).sin()
            + (TAU * 100.0 * t).sin()) as f32
    });
    let out = run(&mut hg, &x);
    let tone = designed_tone_gain(&hg, 100.0);
    // Narrow notches ring for a few seconds; judge the last second.
    for &v in &out[500..] {
        assert!(
            (f64::from(v) / tone - 1.0).abs() < 0.05,
            "{v} vs tone alone {tone}"
        );
    }
    // Without the notch the line noise would dominate.
    let mut plain = HighGamma::new(
        1,
        rate,
        &HighGammaConfig {
            line_freq: 0.0,
            ..raw_config()
        },
    )
    .unwrap();
    let out = run(&mut plain, &x);
    assert!(f64::from(out[500]) > 3.0 * tone);
}

#[test]
fn nonfinite_samples_are_held_counted_and_isolated() {
    let rate = 1000.0;
    let clean = signal(rate, 2.0, 2, |c, t| {
        ((TAU * 90.0 * t + c as f64).sin() * (1.0 + t)) as f32
    });
    let mut dirty = clean.clone();
    for i in (500..700).step_by(3) {
        dirty[i * 2 + 1] = if i % 2 == 0 { f32::NAN } else { f32::INFINITY };
    }
    let injected = (500..700).step_by(3).count() as u64;
    let mut hg = HighGamma::new(2, rate, &HighGammaConfig::default()).unwrap();
    let out = run(&mut hg, &dirty);
    let reference = run(
        &mut HighGamma::new(2, rate, &HighGammaConfig::default()).unwrap(),
        &clean,
    );
    assert_eq!(hg.nonfinite_count(), injected);
    assert!(out.iter().all(|v| v.is_finite()));
    // Channel 0 never saw a bad sample and is untouched.
    let ch0 = |v: &[f32]| v.iter().step_by(2).copied().collect::<Vec<_>>();
    assert_eq!(ch0(&out), ch0(&reference));
    // Channel 1 recovers: its last frames match the clean run closely.
    let n = out.len();
    for i in (n - 20..n).filter(|i| i % 2 == 1) {
        assert!(
            (out[i] - reference[i]).abs() < 0.05,
            "{} vs {}",
            out[i],
            reference[i]
        );
    }
}

#[test]
fn overflowing_input_resets_the_channel_and_recovers() {
    let rate = 512.0;
    let mut hg = HighGamma::new(1, rate, &raw_config()).unwrap();
    let tone = |t: f64| (TAU * 100.0 * t).sin() as f32;
    let mut x = signal(rate, 4.0, 1, |_, t| tone(t));
    for v in &mut x[512..520] {
        *v = 3.0e38;
    }
    let out = run(&mut hg, &x);
    assert!(hg.reset_count() > 0);
    assert!(out.iter().all(|v| v.is_finite()));
    let expected = designed_tone_gain(&hg, 100.0);
    let last = f64::from(*out.last().unwrap());
    assert!((last / expected - 1.0).abs() < 0.02, "{last} vs {expected}");
}
