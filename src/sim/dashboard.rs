//! A synthetic session published straight into a [`Hub`], for exercising clients
//! and the dashboard without LSL streams or a model (`neuralign serve --synthetic`).
//!
//! Words arrive at random; each evokes a response in every electrode; the
//! prediction from layer `l` recovers that response with a fidelity that peaks at
//! an electrode-specific layer, so the dashboard's per-layer profiles have a known
//! shape. Rolling r is computed from the generated traces with exponentially
//! weighted sums, like a live scorer would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::align::EwPearson;
use crate::serve::frames::{ModelStatus, ModelTag, SessionModel};
use crate::serve::{
    AlignmentUpdate, ElectrodeInfo, Frame, Hub, PipelineStatus, Rates, Session, StreamStatus,
    TraceChunk, WordEvent, WordStatus,
};

/// Opening of *Alice's Adventures in Wonderland* (Lewis Carroll, 1865; public domain).
const TEXT: &str = "Alice was beginning to get very tired of sitting by her sister on the bank, \
and of having nothing to do: once or twice she had peeped into the book her sister was reading, \
but it had no pictures or conversations in it, and what is the use of a book, thought Alice, \
without pictures or conversations?";

/// Standard deviation of the noise on actual and predicted traces (the evoked
/// response peaks near 1).
const NOISE: f32 = 0.35;

/// Shape and pace of a synthetic session.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// Electrodes.
    pub electrodes: usize,
    /// Layers (ids 0..layers).
    pub layers: usize,
    /// High-gamma sample rate, Hz.
    pub high_gamma_hz: f64,
    /// Trace chunks per second.
    pub chunk_hz: f64,
    /// Rolling-correlation time constant, seconds.
    pub window_s: f64,
    /// Random seed.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            electrodes: 64,
            layers: 31,
            high_gamma_hz: 100.0,
            chunk_hz: 20.0,
            window_s: 10.0,
            seed: 7,
        }
    }
}

/// Contacts per letter of the synthetic labels (`A1`…`A16`, `B1`…).
const CONTACTS: usize = 16;

/// Electrodes of the synthetic 8 × 8 ECoG grid (the first ones; shafts follow).
const GRID: usize = 64;

/// The label of electrode `i`: a letter per group of [`CONTACTS`], then the contact number.
fn label(i: usize) -> String {
    format!(
        "{}{}",
        char::from(b'A' + (i / CONTACTS % 26) as u8),
        i % CONTACTS + 1
    )
}

/// Where the synthetic electrodes sit, as an implanted patient's sidecars would say: the
/// first [`GRID`] form an 8 × 8 ECoG grid `grid` at 10 mm pitch over the lateral surface, the
/// others depth shafts of [`CONTACTS`] contacts named by their letter; the last shaft (when
/// there are two or more) has no coordinates. Side view `(anterior, superior)` in mm.
fn electrode_info(electrodes: usize) -> Vec<ElectrodeInfo> {
    let shafts = electrodes.saturating_sub(GRID).div_ceil(CONTACTS);
    (0..electrodes)
        .map(|i| {
            if i < GRID {
                let (row, col) = ((i / 8) as f64, (i % 8) as f64);
                return ElectrodeInfo {
                    group: Some("grid".into()),
                    kind: "ECOG".into(),
                    xy: Some([-60.0 + 10.0 * col, -20.0 + 10.0 * row]),
                };
            }
            let shaft = (i - GRID) / CONTACTS;
            let contact = ((i - GRID) % CONTACTS) as f64;
            // entry points spread over the side view; a shaft runs medially, so its
            // contacts project onto a short oblique line
            let entry = [
                -75.0 + (shaft * 23 % 100) as f64,
                -35.0 + (shaft * 37 % 75) as f64,
            ];
            ElectrodeInfo {
                group: Some(label(i).trim_end_matches(char::is_numeric).to_string()),
                kind: "SEEG".into(),
                xy: (shafts < 2 || shaft + 1 < shafts)
                    .then(|| [entry[0] + 2.0 * contact, entry[1] - 1.1 * contact]),
            }
        })
        .collect()
}

/// Response to one word, sample by sample (0..0.5 s, peak near 150 ms).
fn kernel(rate: f64) -> Vec<f32> {
    let n = (0.5 * rate).round() as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            ((t / 0.15) * (1.0 - t / 0.15)).exp() as f32 * (t / 0.15) as f32
        })
        .collect()
}

/// Generates the session's frames chunk by chunk.
pub struct SyntheticSession {
    config: SyntheticConfig,
    rng: ChaCha8Rng,
    kernel: Vec<f32>,
    /// Prediction fidelity per electrode and layer, `[e][l]`.
    fidelity: Vec<f32>,
    /// Evoked response still to come, ring of `kernel.len()` rows × electrodes.
    pending: Vec<f32>,
    sample: u64,
    next_word_at: u64,
    word_id: u64,
    /// The live pipeline's exponentially weighted r, pairs layer-major `[l][e]`.
    rolling: EwPearson,
    /// Time constant of the rolling r, samples.
    tau: f64,
}

impl SyntheticSession {
    /// A new session with the given shape.
    pub fn new(config: SyntheticConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let (e, l) = (config.electrodes, config.layers);
        let mut fidelity = Vec::with_capacity(e * l);
        for i in 0..e {
            // peaks sweep from early to late layers across electrodes
            let peak = 0.15 * l as f64
                + 0.6 * l as f64 * i as f64 / e.max(1) as f64
                + rng.gen_range(-2.0..2.0);
            let strength = if rng.gen_bool(0.15) {
                0.05
            } else {
                rng.gen_range(0.35..0.9)
            };
            let width = 0.25 * l as f64;
            fidelity.extend(
                (0..l).map(|j| (strength * (-((j as f64 - peak) / width).powi(2)).exp()) as f32),
            );
        }
        let kernel = kernel(config.high_gamma_hz);
        Self {
            pending: vec![0.0; kernel.len() * e],
            rolling: EwPearson::new(config.window_s * config.high_gamma_hz, e * l, e),
            tau: config.window_s * config.high_gamma_hz,
            kernel,
            fidelity,
            rng,
            sample: 0,
            next_word_at: 0,
            word_id: 0,
            config,
        }
    }

    /// The session announced in `hello`.
    pub fn session(&self) -> Session {
        let c = &self.config;
        Session {
            electrodes: (0..c.electrodes).map(label).collect(),
            layers: (0..c.layers).collect(),
            model: "synthetic".into(),
            models: vec![SessionModel {
                tag: ModelTag {
                    name: "synthetic".into(),
                    sha256: String::new(),
                },
                layers: (0..c.layers).collect(),
                null_threshold: Vec::new(),
            }],
            rates: Rates {
                neural_hz: c.high_gamma_hz,
                high_gamma_hz: c.high_gamma_hz,
                alignment_hz: c.chunk_hz,
            },
            horizon: None,
            window_s: c.window_s,
            electrode_info: electrode_info(c.electrodes),
            // a contact of the stream the (imagined) channels.tsv marks bad: no encoder
            bad_channels: vec![label(c.electrodes.next_multiple_of(CONTACTS))],
            recording: None,
            null_threshold: Vec::new(),
        }
    }

    fn time(&self, sample: u64) -> f64 {
        sample as f64 / self.config.high_gamma_hz
    }

    /// Generates one chunk: words whose onsets fall in it, the trace, and the
    /// alignment at its end.
    pub fn step(&mut self) -> Vec<Frame> {
        let c = self.config.clone();
        let (n_e, n_l) = (c.electrodes, c.layers);
        let n = (c.high_gamma_hz / c.chunk_hz).round().max(1.0) as usize;
        let k = self.kernel.len();
        let t0 = self.time(self.sample);
        let mut frames = Vec::new();
        let mut actual = vec![0f32; n_e * n];
        let mut predicted = vec![0f32; n_e * n_l * n];
        let words: Vec<&str> = TEXT.split_whitespace().collect();
        let (mut pred_row, mut act_row) = (vec![0f64; n_e * n_l], vec![0f64; n_e]);
        for s in 0..n {
            if self.sample == self.next_word_at {
                let text = words[(self.word_id as usize) % words.len()];
                self.word_id += 1;
                let row = (self.sample as usize) % k;
                for e in 0..n_e {
                    let amp = 1.0 + 0.5 * self.rng.sample::<f32, _>(StandardNormal);
                    for (j, kv) in self.kernel.iter().enumerate() {
                        self.pending[((row + j) % k) * n_e + e] += amp * kv;
                    }
                }
                let onset = self.time(self.sample);
                frames.push(Frame::Word(Arc::new(WordEvent {
                    model: 0,
                    id: self.word_id,
                    text: text.to_string(),
                    onset,
                    offset: Some(onset + 0.05 * text.len() as f64),
                    status: WordStatus::New,
                    latency_ms: BTreeMap::new(),
                })));
                self.next_word_at +=
                    ((self.rng.gen_range(0.2..0.5) * c.high_gamma_hz) as u64).max(1);
            }
            let row = (self.sample as usize) % k;
            for e in 0..n_e {
                let signal = std::mem::take(&mut self.pending[row * n_e + e]);
                let y = signal + NOISE * self.rng.sample::<f32, _>(StandardNormal);
                actual[e * n + s] = y;
                act_row[e] = f64::from(y);
                for l in 0..n_l {
                    let f = self.fidelity[e * n_l + l];
                    let noise: f32 = self.rng.sample(StandardNormal);
                    let x = f * signal + (1.0 - f * f).sqrt() * NOISE * noise;
                    predicted[(e * n_l + l) * n + s] = x;
                    pred_row[l * n_e + e] = f64::from(x);
                }
            }
            self.rolling.push(&pred_row, &act_row);
            self.sample += 1;
        }
        frames.push(Frame::Trace(Arc::new(TraceChunk {
            model: 0,
            t0,
            samples: n,
            actual,
            predicted,
        })));
        let horizon = self.time(self.sample);
        frames.push(Frame::Alignment(Arc::new(AlignmentUpdate {
            model: 0,
            time: horizon,
            horizon,
            // frames are electrode-major, the rolling r layer-major
            r: (0..n_e)
                .flat_map(|e| (0..n_l).map(move |l| l * n_e + e))
                .map(|i| self.rolling.r(i) as f32)
                .collect(),
            chance: self.chance(),
            significant: Vec::new(),
        })));
        frames
    }

    /// 95th percentile of |r| for independent white noise over the window.
    fn chance(&self) -> f32 {
        let decay = (-1.0 / self.tau).exp();
        let n_eff = (1.0 + decay) / (1.0 - decay);
        (1.645 / n_eff.sqrt()) as f32
    }

    /// Stream state as a live pipeline would report it.
    pub fn status(&self) -> PipelineStatus {
        let horizon = self.time(self.sample);
        PipelineStatus {
            streams: vec![
                StreamStatus {
                    role: "neural".into(),
                    connected: true,
                    rate_hz: self.config.high_gamma_hz,
                    samples: self.sample,
                    watermark: Some(horizon),
                    clock_correction_s: None,
                    error: None,
                },
                StreamStatus {
                    role: "transcript".into(),
                    connected: true,
                    rate_hz: 0.0,
                    samples: self.word_id,
                    watermark: Some(horizon),
                    clock_correction_s: None,
                    error: None,
                },
            ],
            horizon: Some(horizon),
            drops: BTreeMap::new(),
            errors: BTreeMap::new(),
            segments: 0,
            memory: BTreeMap::new(),
            memory_bound: BTreeMap::new(),
            events: BTreeMap::new(),
            models: vec![ModelStatus {
                name: "synthetic".into(),
                words: self.word_id,
                lm_queue_waiting: 0,
                horizon: Some(horizon),
                lm_step: Default::default(),
            }],
        }
    }
}

/// Publishes a synthetic session in real time until `shutdown` resolves.
pub async fn run(
    hub: Hub,
    config: SyntheticConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut session = SyntheticSession::new(config.clone());
    hub.set_session(session.session());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / config.chunk_hz));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let status_every = config.chunk_hz.round().max(1.0) as u64;
    let publish = async {
        for chunk in 0u64.. {
            tick.tick().await;
            for frame in session.step() {
                if let Err(e) = hub.publish(frame) {
                    tracing::error!("synthetic frame refused: {e}");
                }
            }
            if chunk % status_every == 0 {
                let _ = hub.publish(Frame::Status(session.status()));
            }
        }
    };
    tokio::select! {
        _ = publish => {}
        _ = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_describes_a_grid_shafts_and_a_bad_contact() {
        let s = SyntheticSession::new(SyntheticConfig {
            electrodes: 100,
            ..Default::default()
        })
        .session();
        assert_eq!(s.electrode_info.len(), 100);
        let groups: Vec<_> = s
            .electrode_info
            .iter()
            .map(|i| i.group.clone().unwrap())
            .collect();
        assert!(groups[..64].iter().all(|g| g == "grid"));
        assert_eq!(
            [&groups[64], &groups[80], &groups[96], &groups[99]],
            ["E", "F", "G", "G"]
        );
        assert_eq!(s.electrodes[80], "F1");
        // the last shaft has no coordinates, the others all have
        let placed = s.electrode_info.iter().filter(|i| i.xy.is_some()).count();
        assert_eq!(placed, 96);
        assert!(s.electrode_info[96].xy.is_none() && s.electrode_info[95].xy.is_some());
        assert_eq!(s.bad_channels, ["H1"]);
        assert!(!s.electrodes.contains(&s.bad_channels[0]));
        assert_eq!(s.recording, None);
    }

    #[test]
    fn frames_fit_the_session_and_r_tracks_fidelity() {
        let config = SyntheticConfig {
            electrodes: 8,
            layers: 5,
            ..Default::default()
        };
        let mut s = SyntheticSession::new(config.clone());
        let hub = Hub::new(crate::serve::ServerConfig::default().hub_config());
        hub.set_session(s.session());
        let mut words = 0;
        let mut last = None;
        for _ in 0..400 {
            for f in s.step() {
                words += usize::from(matches!(f, Frame::Word(_)));
                if let Frame::Alignment(a) = &f {
                    last = Some(a.clone());
                }
                hub.publish(f).expect("frames match the session");
            }
        }
        assert!(words > 20, "{words} words in 20 s");
        let a = last.unwrap();
        // the layer with the highest fidelity has the highest r, per electrode
        for e in 0..8 {
            let fid = &s.fidelity[e * 5..e * 5 + 5];
            let r = &a.r[e * 5..e * 5 + 5];
            let best_f = (0..5).max_by(|&i, &j| fid[i].total_cmp(&fid[j])).unwrap();
            if fid[best_f] > 0.3 {
                let best_r = (0..5).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap();
                assert!(
                    (best_r as i64 - best_f as i64).abs() <= 1,
                    "electrode {e}: {r:?} vs {fid:?}"
                );
            }
        }
    }
}
