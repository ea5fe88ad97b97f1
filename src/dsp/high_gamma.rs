//! The streaming high-gamma extractor: raw samples in, z-scored high-gamma
//! frames out at the output rate.
//!
//! State is laid out channel-contiguous in groups of [`LANES`] channels, so that
//! each filter update is one SIMD operation over eight electrodes (AVX2, f32).
//! Per input sample and group: hold non-finite samples, the notch cascade, then
//! per band a demodulation by the band's oscillator (shared by all channels), the
//! one-pole cascade on the real and imaginary parts, and the magnitude.

use super::config::HighGammaConfig;
use super::decimate::FrameClock;
use super::filterbank::{design_bands, envelope_delay_s, Band};
use super::notch::Notch;
use super::zscore::RunningZScore;
use super::DspError;

/// Channels processed together by one SIMD register (8 × f32 = 256-bit AVX2).
pub const LANES: usize = 8;
type Lane = [f32; LANES];

/// Causal high-gamma extraction for one multichannel stream.
pub struct HighGamma {
    channels: usize,
    input_rate: f64,
    output_rate: f64,
    bands: Vec<Band>,
    notches: Vec<Notch>,
    /// Notch coefficients as f32 `[b0, b1, b2, a1, a2]`.
    notch_coef: Vec<[f32; 5]>,
    /// Stage gains of all bands, flattened in band order.
    stage_alpha: Vec<f32>,
    group_delay_s: f64,
    /// Per band: oscillator phase (radians) and its increment per sample.
    phase: Vec<f64>,
    phase_step: Vec<f64>,
    /// Per band: cos and sin of the current phase.
    osc: Vec<(f32, f32)>,
    groups: usize,
    /// Last finite sample per channel, `[group]`.
    hold: Vec<Lane>,
    /// Notch states, `[group][notch][2]`.
    notch_state: Vec<[Lane; 2]>,
    /// Lowpass stage states, `[group][stage]`, real and imaginary parts.
    stage_re: Vec<Lane>,
    stage_im: Vec<Lane>,
    /// Mean band envelope at the previous and the current input sample.
    env_prev: Vec<Lane>,
    env_cur: Vec<Lane>,
    clock: FrameClock,
    zscore: Option<RunningZScore>,
    samples_in: u64,
    nonfinite: u64,
    resets: u64,
}

impl HighGamma {
    /// An extractor for `channels` raw channels sampled at `input_rate` Hz.
    ///
    /// Fails when the settings are invalid or when the input rate is too low
    /// for the highest band (about 330 Hz for the default 70–150 Hz bands).
    pub fn new(channels: usize, input_rate: f64, cfg: &HighGammaConfig) -> Result<Self, DspError> {
        cfg.validate(channels, input_rate)?;
        let (bands, _centroid_s) = design_bands(&cfg.center_freqs_hz, input_rate, cfg.filter_order);
        let group_delay_s = bands
            .iter()
            .map(|b| envelope_delay_s(b, input_rate))
            .sum::<f64>()
            / bands.len() as f64;
        let notches = Notch::harmonics(cfg.line_freq, cfg.notch_bandwidth_hz, input_rate);
        let notch_coef = notches
            .iter()
            .map(|n| [n.b[0], n.b[1], n.b[2], n.a[0], n.a[1]].map(|c| c as f32))
            .collect();
        let stage_alpha: Vec<f32> = bands
            .iter()
            .flat_map(|b| std::iter::repeat_n(b.alpha, b.stages))
            .collect();
        let phase_step = bands
            .iter()
            .map(|b| std::f64::consts::TAU * b.center_hz / input_rate)
            .collect();
        let groups = channels.div_ceil(LANES);
        let zero = [0.0; LANES];
        Ok(Self {
            channels,
            input_rate,
            output_rate: cfg.output_rate,
            phase: vec![0.0; bands.len()],
            osc: vec![(1.0, 0.0); bands.len()],
            phase_step,
            groups,
            hold: vec![zero; groups],
            notch_state: vec![[zero; 2]; groups * notches.len()],
            stage_re: vec![zero; groups * stage_alpha.len()],
            stage_im: vec![zero; groups * stage_alpha.len()],
            env_prev: vec![zero; groups],
            env_cur: vec![zero; groups],
            clock: FrameClock::new(input_rate, cfg.output_rate),
            zscore: cfg
                .zscore
                .then(|| RunningZScore::new(channels, cfg.zscore_tau_s, cfg.output_rate)),
            samples_in: 0,
            nonfinite: 0,
            resets: 0,
            bands,
            notches,
            notch_coef,
            stage_alpha,
            group_delay_s,
        })
    }

    /// Consumes `samples` (`[n, channels]`, row-major) and appends the frames
    /// that fall due (`[m, channels]` at the output rate) to `out`; returns `m`.
    ///
    /// Frame `k` (counted from the first frame this extractor emitted) belongs
    /// to the time `k / output_rate` seconds after the first input sample, and
    /// its content lags that time by [`group_delay_s`](Self::group_delay_s).
    /// Chunk boundaries do not change the output. Non-finite samples are
    /// replaced by the channel's last finite value and counted.
    ///
    /// # Panics
    /// If `samples.len()` is not a multiple of the channel count (a caller bug:
    /// the ingest layer always hands over whole samples).
    pub fn process(&mut self, samples: &[f32], out: &mut Vec<f32>) -> usize {
        assert!(
            samples.len().is_multiple_of(self.channels),
            "HighGamma::process got {} values, not a whole number of {}-channel samples",
            samples.len(),
            self.channels
        );
        let mut frames = 0;
        for row in samples.chunks_exact(self.channels) {
            self.advance_oscillators();
            for group in 0..self.groups {
                self.step_group(group, row);
            }
            if let Some(weight) = self.clock.due(self.samples_in) {
                self.emit_frame(weight, out);
                frames += 1;
            }
            std::mem::swap(&mut self.env_prev, &mut self.env_cur);
            self.samples_in += 1;
        }
        frames
    }

    /// The delay in seconds that the causal filters add to the high-gamma
    /// envelope: subtract it from output timestamps. It is the lag at which the
    /// causal band filters best match the zero-phase Gaussian filters of the
    /// offline filterbank (the notches add well under a millisecond).
    pub fn group_delay_s(&self) -> f64 {
        self.group_delay_s
    }

    /// Rate of the output frames in Hz.
    pub fn output_rate(&self) -> f64 {
        self.output_rate
    }

    /// Rate of the raw input in Hz.
    pub fn input_rate(&self) -> f64 {
        self.input_rate
    }

    /// Number of channels per sample and per frame.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The band filters as designed for this input rate.
    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    /// The line-noise notches as designed for this input rate.
    pub fn notches(&self) -> &[Notch] {
        &self.notches
    }

    /// Input samples consumed so far (per channel).
    pub fn samples_in(&self) -> u64 {
        self.samples_in
    }

    /// Frames emitted so far.
    pub fn frames_out(&self) -> u64 {
        self.clock.frames()
    }

    /// Non-finite (NaN or infinite) input values seen so far, over all channels.
    pub fn nonfinite_count(&self) -> u64 {
        self.nonfinite
    }

    /// Times a channel's filter state overflowed (finite but enormous input)
    /// and was cleared.
    pub fn reset_count(&self) -> u64 {
        self.resets
    }

    fn advance_oscillators(&mut self) {
        for ((phase, &step), osc) in self
            .phase
            .iter_mut()
            .zip(&self.phase_step)
            .zip(&mut self.osc)
        {
            let (sin, cos) = phase.sin_cos();
            *osc = (cos as f32, sin as f32);
            *phase = (*phase + step) % std::f64::consts::TAU;
        }
    }

    /// One input sample through the filters for one group of channels; leaves
    /// the mean band envelope in `env_cur[group]`.
    fn step_group(&mut self, group: usize, row: &[f32]) {
        let lo = group * LANES;
        let hi = (lo + LANES).min(self.channels);
        let hold = &mut self.hold[group];
        for (lane, &v) in row[lo..hi].iter().enumerate() {
            if v.is_finite() {
                hold[lane] = v;
            } else {
                self.nonfinite += 1;
            }
        }
        let mut x = *hold;

        let notches = self.notch_coef.len();
        let states = &mut self.notch_state[group * notches..(group + 1) * notches];
        for (&[b0, b1, b2, a1, a2], [s1, s2]) in self.notch_coef.iter().zip(states) {
            // Transposed direct form II.
            for l in 0..LANES {
                let y = b0 * x[l] + s1[l];
                s1[l] = b1 * x[l] - a1 * y + s2[l];
                s2[l] = b2 * x[l] - a2 * y;
                x[l] = y;
            }
        }

        let stages = self.stage_alpha.len();
        let range = group * stages..(group + 1) * stages;
        let mut stage_re = self.stage_re[range.clone()].iter_mut();
        let mut stage_im = self.stage_im[range].iter_mut();
        let mut alphas = self.stage_alpha.iter();
        let mut env = [0.0f32; LANES];
        for (band, &(cos, sin)) in self.bands.iter().zip(&self.osc) {
            // x·e^{+iωn}: for a real signal its magnitude after a real lowpass
            // equals that of x·e^{−iωn}.
            let mut re = x.map(|v| v * cos);
            let mut im = x.map(|v| v * sin);
            for ((sr, si), &alpha) in (&mut stage_re)
                .zip(&mut stage_im)
                .zip(&mut alphas)
                .take(band.stages)
            {
                for l in 0..LANES {
                    sr[l] += alpha * (re[l] - sr[l]);
                    si[l] += alpha * (im[l] - si[l]);
                }
                re = *sr;
                im = *si;
            }
            for l in 0..LANES {
                env[l] += (re[l] * re[l] + im[l] * im[l]).sqrt();
            }
        }
        // Analytic-signal amplitude (×2) averaged over bands, as naplib does.
        let scale = 2.0 / self.bands.len() as f32;
        self.env_cur[group] = env.map(|e| e * scale);
    }

    /// Appends one frame interpolated between the previous and the current
    /// envelope (`weight` on the current one), guards it, and z-scores it.
    fn emit_frame(&mut self, weight: f32, out: &mut Vec<f32>) {
        let start = out.len();
        for group in 0..self.groups {
            let lanes = LANES.min(self.channels - group * LANES);
            let (prev, cur) = (&self.env_prev[group], &self.env_cur[group]);
            out.extend((0..lanes).map(|l| prev[l] + weight * (cur[l] - prev[l])));
        }
        for channel in 0..self.channels {
            if !out[start + channel].is_finite() {
                self.reset_channel(channel);
                out[start + channel] = 0.0;
            }
        }
        if let Some(zscore) = &mut self.zscore {
            zscore.apply(&mut out[start..]);
        }
    }

    /// Clears every filter state of one channel after an overflow.
    fn reset_channel(&mut self, channel: usize) {
        self.resets += 1;
        let (group, lane) = (channel / LANES, channel % LANES);
        let stages = self.stage_alpha.len();
        let notches = self.notch_coef.len();
        self.hold[group][lane] = 0.0;
        self.env_prev[group][lane] = 0.0;
        self.env_cur[group][lane] = 0.0;
        for s in &mut self.notch_state[group * notches..(group + 1) * notches] {
            s[0][lane] = 0.0;
            s[1][lane] = 0.0;
        }
        for k in group * stages..(group + 1) * stages {
            self.stage_re[k][lane] = 0.0;
            self.stage_im[k][lane] = 0.0;
        }
        if let Some(zscore) = &mut self.zscore {
            zscore.reset_channel(channel);
        }
    }
}
