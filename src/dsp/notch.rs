//! Line-noise notch filters: one second-order IIR notch per harmonic of the
//! mains frequency below the Nyquist frequency, with the same coefficients as
//! `scipy.signal.iirnotch` so that offline references can reproduce them.

use std::f64::consts::PI;

/// A second-order notch `b = g·[1, −2cos w0, 1]`, `a = [1, −2g·cos w0, 2g − 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Notch {
    /// Frequency removed, in Hz.
    pub freq_hz: f64,
    /// Numerator `b0, b1, b2` (`a0 = 1`).
    pub b: [f64; 3],
    /// Denominator `a1, a2`.
    pub a: [f64; 2],
}

impl Notch {
    /// The notch at `freq_hz` with −3 dB width `bandwidth_hz`, as
    /// `scipy.signal.iirnotch(freq_hz, freq_hz / bandwidth_hz, fs)`.
    pub fn new(freq_hz: f64, bandwidth_hz: f64, fs: f64) -> Self {
        let w0 = 2.0 * PI * freq_hz / fs;
        let bw = 2.0 * PI * bandwidth_hz / fs;
        let gain = 1.0 / (1.0 + (bw / 2.0).tan());
        let c = w0.cos();
        Self {
            freq_hz,
            b: [gain, -2.0 * gain * c, gain],
            a: [-2.0 * gain * c, 2.0 * gain - 1.0],
        }
    }

    /// Notches at `line_hz` and each harmonic whose notch lies wholly below the
    /// Nyquist frequency; none when `line_hz` is 0.
    pub fn harmonics(line_hz: f64, bandwidth_hz: f64, fs: f64) -> Vec<Self> {
        if line_hz <= 0.0 {
            return Vec::new();
        }
        (1..)
            .map(|h| h as f64 * line_hz)
            .take_while(|&f| f + bandwidth_hz < fs / 2.0)
            .map(|f| Self::new(f, bandwidth_hz, fs))
            .collect()
    }

    /// Magnitude of the frequency response at `freq_hz`.
    pub fn gain_at(&self, freq_hz: f64, fs: f64) -> f64 {
        let w = 2.0 * PI * freq_hz / fs;
        let z1 = (w.cos(), -w.sin()); // e^{-iw}
        let z2 = ((2.0 * w).cos(), -(2.0 * w).sin());
        let num = (
            self.b[0] + self.b[1] * z1.0 + self.b[2] * z2.0,
            self.b[1] * z1.1 + self.b[2] * z2.1,
        );
        let den = (
            1.0 + self.a[0] * z1.0 + self.a[1] * z2.0,
            self.a[0] * z1.1 + self.a[1] * z2.1,
        );
        num.0.hypot(num.1) / den.0.hypot(den.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy_iirnotch() {
        // scipy.signal.iirnotch(60, 30, 1000):
        // b = [0.99375596, -1.84794186, 0.99375596], a = [1, -1.84794186, 0.98751193]
        let n = Notch::new(60.0, 2.0, 1000.0);
        let close = |x: f64, y: f64| (x - y).abs() < 1e-7;
        assert!(close(n.b[0], 0.993_755_96), "{n:?}");
        assert!(close(n.b[1], -1.847_941_86), "{n:?}");
        assert!(close(n.a[1], 0.987_511_93), "{n:?}");
        assert!(n.gain_at(60.0, 1000.0) < 1e-9);
        assert!((n.gain_at(100.0, 1000.0) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn harmonics_stay_below_nyquist() {
        let notches = Notch::harmonics(60.0, 2.0, 512.0);
        let freqs: Vec<f64> = notches.iter().map(|n| n.freq_hz).collect();
        assert_eq!(freqs, vec![60.0, 120.0, 180.0, 240.0]);
        assert_eq!(Notch::harmonics(50.0, 2.0, 2048.0).len(), 20);
        assert!(Notch::harmonics(0.0, 2.0, 2048.0).is_empty());
    }
}
