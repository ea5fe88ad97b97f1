//! Design of the causal band filters: each Gaussian band of the offline
//! filterbank becomes a demodulation to 0 Hz followed by a cascade of identical
//! one-pole lowpass stages, and the delay of that approximation is measured.
//!
//! A cascade of K one-pole stages, each with DC delay τ, has magnitude
//! `(1 + (ωτ)²)^(−K/2) ≈ exp(−K·ω²τ²/2)`: a Gaussian of standard deviation
//! `1/(2π·√K·τ)` Hz. Every band gets the same total delay `D = K·τ`, so the
//! band envelopes line up when averaged; narrow (low) bands need fewer stages.

use std::f64::consts::PI;

/// Standard deviation in Hz of the Gaussian band centred at `center_hz`, as
/// naplib-python's `filterbank_hilbert` defines it: `σ = 10^(log10 0.39 +
/// 0.5·log10 f)`, widened by √2.
pub fn naplib_sigma_hz(center_hz: f64) -> f64 {
    0.39 * center_hz.sqrt() * std::f64::consts::SQRT_2
}

/// One band of the causal filterbank.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    /// Centre frequency in Hz (the demodulation frequency).
    pub center_hz: f64,
    /// Standard deviation in Hz of the Gaussian it approximates.
    pub sigma_hz: f64,
    /// Number of one-pole stages in its lowpass.
    pub stages: usize,
    /// Update gain of each stage: `s += alpha·(x − s)`.
    pub alpha: f32,
}

/// Designs the bands for `centers_hz` at `input_rate`, the lowest-σ band having
/// `order` stages; returns them with their common DC delay in seconds.
pub fn design_bands(centers_hz: &[f64], input_rate: f64, order: usize) -> (Vec<Band>, f64) {
    let sigma_min = centers_hz
        .iter()
        .map(|&f| naplib_sigma_hz(f))
        .fold(f64::INFINITY, f64::min);
    let delay_s = (order as f64).sqrt() / (2.0 * PI * sigma_min);
    let bands = centers_hz
        .iter()
        .map(|&center_hz| {
            let sigma_hz = naplib_sigma_hz(center_hz);
            let ideal = (2.0 * PI * sigma_hz * delay_s).powi(2);
            let stages = (ideal.round() as usize).max(order);
            let tau = delay_s * input_rate / stages as f64; // samples per stage
            Band {
                center_hz,
                sigma_hz,
                stages,
                alpha: (1.0 / (1.0 + tau)) as f32,
            }
        })
        .collect();
    (bands, delay_s)
}

/// The lag in seconds at which the band's causal impulse response best matches
/// (cross-correlates with) the zero-phase Gaussian kernel it approximates.
///
/// The cascade's impulse response is skewed: its centroid (the DC group delay)
/// lies later than its bulk, and an envelope filtered by it correlates best with
/// the non-causal Gaussian-filtered envelope at this shorter lag.
pub fn envelope_delay_s(band: &Band, input_rate: f64) -> f64 {
    let alpha = f64::from(band.alpha);
    let tau = (1.0 - alpha) / alpha;
    let len = (12.0 * tau * band.stages as f64).ceil() as usize + 16;
    let mut h = vec![0.0f64; len];
    h[0] = 1.0;
    for _ in 0..band.stages {
        let mut s = 0.0;
        for v in h.iter_mut() {
            s += alpha * (*v - s);
            *v = s;
        }
    }
    // Gaussian impulse response of the band's lowpass, σ in samples.
    let sigma_t = input_rate / (2.0 * PI * band.sigma_hz);
    let gauss = |d: f64| (-0.5 * (d / sigma_t).powi(2)).exp();
    let xcorr = |lag: usize| -> f64 {
        h.iter()
            .enumerate()
            .map(|(n, &v)| v * gauss(n as f64 - lag as f64))
            .sum()
    };
    let scores: Vec<f64> = (0..len / 2).map(xcorr).collect();
    let best = scores
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0);
    // Parabolic refinement between neighbouring lags.
    let offset = if best > 0 && best + 1 < scores.len() {
        let (l, c, r) = (scores[best - 1], scores[best], scores[best + 1]);
        let curvature = l - 2.0 * c + r;
        if curvature < 0.0 {
            0.5 * (l - r) / curvature
        } else {
            0.0
        }
    } else {
        0.0
    };
    (best as f64 + offset) / input_rate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::HIGH_GAMMA_CENTERS_HZ;

    #[test]
    fn sigma_follows_naplib() {
        // naplib: sigma_f = 10**(log10(0.39) + 0.5*log10(cf)), sds = sigma_f*sqrt(2)
        let s = naplib_sigma_hz(71.985_375_93);
        assert!((s - 4.679_524_69).abs() < 1e-6, "{s}");
        assert!((naplib_sigma_hz(143.970_751_86) - 6.617_847_29).abs() < 1e-6);
    }

    #[test]
    fn bands_share_one_delay_and_match_their_gaussian_width() {
        let fs = 2048.0;
        let (bands, delay) = design_bands(&HIGH_GAMMA_CENTERS_HZ, fs, 4);
        assert_eq!(bands[0].stages, 4);
        assert!(bands[7].stages > bands[0].stages);
        for b in &bands {
            let tau = (1.0 - f64::from(b.alpha)) / f64::from(b.alpha) / fs;
            assert!((tau * b.stages as f64 - delay).abs() < 1e-6);
            // Width of the cascade's Gaussian approximation within 12 % of σ
            // (stage counts are rounded).
            let width = 1.0 / (2.0 * PI * (b.stages as f64).sqrt() * tau);
            assert!((width / b.sigma_hz - 1.0).abs() < 0.12, "{b:?} {width}");
        }
    }

    #[test]
    fn envelope_delay_lies_between_mode_and_centroid() {
        let fs = 1000.0;
        let (bands, centroid) = design_bands(&HIGH_GAMMA_CENTERS_HZ, fs, 4);
        for b in &bands {
            let d = envelope_delay_s(b, fs);
            let tau = centroid / b.stages as f64;
            let mode = (b.stages - 1) as f64 * tau;
            assert!(d > mode && d < centroid, "{d} not in ({mode}, {centroid})");
        }
    }
}
