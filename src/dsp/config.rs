//! Settings of the causal high-gamma extractor, as read from the server's TOML
//! config (`[high_gamma]`), with their validation.

use serde::{Deserialize, Serialize};

use super::DspError;

/// The rate of high-gamma samples, Hz: the paper's (Mischler et al. 2024), the default output
/// of the extractor, and the rate `simulate` and the benchmarks use.
pub const HIGH_GAMMA_RATE_HZ: f64 = 100.0;

/// The high-gamma band, Hz: what encoder files record as their `band_hz`, and the range the
/// filterbank's bands cover.
pub const HIGH_GAMMA_BAND_HZ: [f64; 2] = [70.0, 150.0];

/// Centre frequencies (Hz) of the eight 70–150 Hz bands of the Edwards et al.
/// (2009) / naplib-python filterbank: 1/7-octave spacing.
pub const HIGH_GAMMA_CENTERS_HZ: [f64; 8] = [
    71.985_375_93,
    79.478_298_70,
    87.751_156_16,
    96.885_131_33,
    106.969_857_53,
    118.104_297_98,
    130.397_716_92,
    143.970_751_86,
];

/// How raw iEEG becomes high-gamma: filterbank, line-noise notch, output rate
/// and running z-score.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HighGammaConfig {
    /// Mains frequency in Hz (50 or 60); it and its harmonics below the Nyquist
    /// frequency are notched out. `0` disables the notch.
    pub line_freq: f64,
    /// −3 dB width of each notch in Hz.
    pub notch_bandwidth_hz: f64,
    /// Rate of the high-gamma frames in Hz (100 in the paper).
    pub output_rate: f64,
    /// Whether the output is z-scored per electrode with running statistics.
    pub zscore: bool,
    /// Time constant in seconds of the exponential running mean and variance.
    pub zscore_tau_s: f64,
    /// Centre frequencies of the Gaussian bands whose envelopes are averaged.
    /// Each band's standard deviation follows naplib: `0.39·√2·√f` Hz.
    pub center_freqs_hz: Vec<f64>,
    /// Number of one-pole stages of the lowest band's causal lowpass (higher
    /// bands get more, so that every band has the same delay). More stages fit
    /// the Gaussian better and cost delay: about `√order / (2π·σ)` seconds.
    pub filter_order: usize,
}

impl Default for HighGammaConfig {
    fn default() -> Self {
        Self {
            line_freq: 60.0,
            notch_bandwidth_hz: 2.0,
            output_rate: HIGH_GAMMA_RATE_HZ,
            zscore: true,
            zscore_tau_s: 30.0,
            center_freqs_hz: HIGH_GAMMA_CENTERS_HZ.to_vec(),
            filter_order: 4,
        }
    }
}

impl HighGammaConfig {
    /// Checks every setting on its own and against the input rate.
    pub fn validate(&self, channels: usize, input_rate: f64) -> Result<(), DspError> {
        let invalid = |name: &'static str, value: f64, reason: &'static str| {
            Err(DspError::InvalidSetting {
                name,
                value,
                reason,
            })
        };
        if channels == 0 {
            return Err(DspError::NoChannels);
        }
        if !(input_rate.is_finite() && input_rate > 0.0) {
            return invalid("input_rate", input_rate, "must be a positive number of Hz");
        }
        if !(self.output_rate.is_finite() && self.output_rate > 0.0) {
            return invalid("output_rate", self.output_rate, "must be positive");
        }
        if self.output_rate >= input_rate {
            return Err(DspError::OutputRateTooHigh {
                output_rate: self.output_rate,
                input_rate,
            });
        }
        if !(self.line_freq.is_finite() && self.line_freq >= 0.0) {
            return invalid(
                "line_freq",
                self.line_freq,
                "must be 50, 60, or 0 for no notch",
            );
        }
        if !(self.notch_bandwidth_hz.is_finite() && self.notch_bandwidth_hz > 0.0) {
            return invalid(
                "notch_bandwidth_hz",
                self.notch_bandwidth_hz,
                "must be positive",
            );
        }
        if self.zscore && !(self.zscore_tau_s.is_finite() && self.zscore_tau_s > 0.0) {
            return invalid("zscore_tau_s", self.zscore_tau_s, "must be positive");
        }
        if self.filter_order == 0 {
            return invalid("filter_order", 0.0, "needs at least one stage");
        }
        if self.center_freqs_hz.is_empty() {
            return Err(DspError::NoBands);
        }
        for &f in &self.center_freqs_hz {
            if !(f.is_finite() && f > 0.0) {
                return invalid(
                    "center_freqs_hz",
                    f,
                    "each centre must be a positive frequency",
                );
            }
            // The band must fit below the Nyquist frequency with 3 σ to spare.
            let needed = 2.0 * (f + 3.0 * super::filterbank::naplib_sigma_hz(f));
            if input_rate < needed {
                return Err(DspError::InputRateTooLow {
                    input_rate,
                    center_hz: f,
                    needed,
                });
            }
        }
        Ok(())
    }
}
