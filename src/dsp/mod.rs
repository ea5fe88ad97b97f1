//! Causal high-gamma extraction from raw iEEG, for the live server.
//!
//! Offline tools (naplib-python, Edwards et al. 2009) filter each channel with
//! eight Gaussian bands between 70 and 150 Hz in the frequency domain, take the
//! Hilbert envelope of each and average them. A live server sees each sample
//! once, so here every band is a complex demodulation followed by a causal
//! lowpass (a cascade of one-pole stages) whose shape approximates the Gaussian;
//! its magnitude is the band envelope. Line noise is notched first, the mean
//! envelope is resampled onto an exact output-rate grid and z-scored with
//! running statistics. The extractor reports the delay that its causal filters
//! add, to be subtracted from output timestamps.

mod config;
mod decimate;
mod filterbank;
mod high_gamma;
mod notch;
mod zscore;

pub use config::{HighGammaConfig, HIGH_GAMMA_BAND_HZ, HIGH_GAMMA_CENTERS_HZ, HIGH_GAMMA_RATE_HZ};
pub use filterbank::{naplib_sigma_hz, Band};
pub use high_gamma::{HighGamma, LANES};
pub use notch::Notch;

/// Why a high-gamma extractor could not be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DspError {
    /// The stream has no channels.
    #[error("the neural stream has no channels")]
    NoChannels,
    /// The config lists no bands.
    #[error("high_gamma.center_freqs_hz is empty: list at least one band")]
    NoBands,
    /// A band does not fit below the Nyquist frequency of the input.
    #[error(
        "input rate {input_rate} Hz is too low for the {center_hz:.1} Hz band (needs at least \
         {needed:.0} Hz); stream raw iEEG at a higher rate, or set the stream kind to \
         high-gamma if it is already extracted"
    )]
    InputRateTooLow {
        /// Rate of the raw stream.
        input_rate: f64,
        /// Centre of the band that does not fit.
        center_hz: f64,
        /// Smallest input rate that fits it.
        needed: f64,
    },
    /// Decimation needs an output rate below the input rate.
    #[error(
        "high_gamma.output_rate {output_rate} Hz must be below the input rate {input_rate} Hz"
    )]
    OutputRateTooHigh {
        /// Requested output rate.
        output_rate: f64,
        /// Rate of the raw stream.
        input_rate: f64,
    },
    /// A setting is out of its range.
    #[error("high_gamma.{name} = {value} is invalid: {reason}")]
    InvalidSetting {
        /// Name of the setting in the config.
        name: &'static str,
        /// Its value.
        value: f64,
        /// What it must be.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests;
