//! Synthetic sessions with known ground truth (`neuralign simulate`); the
//! generative model is documented in `docs/simulate.md`.
//!
//! Words of the shipped text get natural speech timings; ground-truth
//! encoders turn the language model's per-layer embeddings (PCA-reduced,
//! standardised) into high-gamma responses through a gamma-shaped kernel,
//! each electrode weighting layers with a smooth profile around its own peak
//! layer; 1/f noise sets each electrode's SNR. A recogniser-like transcript
//! stream (1–3 s late, occasional revisions, watermarks) and optionally raw
//! iEEG go into the same XDF file. Everything is a function of the seed.
//! With [`SimConfig::speech`] the words are spoken by espeak-ng instead: their onsets are
//! its word events, and the speech goes into the file as an audio stream on the same clock
//! (`demo --speech` recognises it live).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use crate::transcript::{TranscriptEvent, Word};
use crate::xdf::{ChannelFormat, Samples, StreamInfo, XdfError, XdfWriter};

/// The public-domain text the simulated listener hears.
pub const TEXT: &str = include_str!("../../assets/fables.txt");
/// High-gamma rate, Hz.
pub const HG_RATE: f64 = crate::dsp::HIGH_GAMMA_RATE_HZ;
/// Raw iEEG rate, Hz.
pub const RAW_RATE: f64 = 1024.0;
/// Principal components kept per layer.
pub const PCA_DIMS: usize = 8;
/// Kernel length, seconds.
const KERNEL_SECONDS: f64 = 0.5;
/// Session clock at the first sample (any fixed value keeps files identical).
pub const T0: f64 = 1000.0;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of electrodes.
    pub electrodes: usize,
    /// Session length in minutes (the text repeats if it is shorter).
    pub minutes: f64,
    /// Random seed.
    pub seed: u64,
    /// Also write a raw iEEG stream at [`RAW_RATE`].
    pub raw: bool,
    /// Median SNR (signal variance over noise variance) of responsive electrodes.
    pub snr: f64,
    /// Share of electrodes that respond to words.
    pub responsive_fraction: f64,
    /// Line frequency for the raw stream, Hz.
    pub line_hz: f64,
    /// Words spoken by espeak-ng (onsets from its word events), the speech written as an
    /// `Audio` stream ([`SimStream::Audio`]).
    pub speech: bool,
}

/// A stream of a simulated session: its name, and a source id that holds the session's seed
/// (select by it, so that another session's stream of the same name is not taken).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimStream {
    /// High-gamma, 100 Hz.
    HighGamma,
    /// The transcript's messages.
    Transcript,
    /// Raw iEEG, 1024 Hz ([`SimConfig::raw`]).
    Raw,
    /// The spoken words ([`SimConfig::speech`]).
    Audio,
}

impl SimStream {
    fn role(self) -> &'static str {
        match self {
            SimStream::HighGamma => "hg",
            SimStream::Transcript => "transcript",
            SimStream::Raw => "raw",
            SimStream::Audio => "audio",
        }
    }

    /// The stream's name, the same in every simulated session.
    pub fn name(self) -> String {
        format!("neuralign-sim-{}", self.role())
    }

    /// The stream's source id in the session simulated with `seed`.
    pub fn source_id(self, seed: u64) -> String {
        format!("neuralign-sim-{seed}-{}", self.role())
    }
}
/// espeak-ng's speaking rate for simulated speech, words per minute.
const SPEECH_WPM: u32 = 175;

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            electrodes: 64,
            minutes: 5.0,
            seed: 0,
            raw: false,
            snr: 0.5,
            responsive_fraction: 0.8,
            line_hz: 60.0,
            speech: false,
        }
    }
}

/// Per-word, per-layer embeddings: `per_word[w]` is `[layers, dim]` row-major.
pub struct Embeddings {
    /// Layers per word.
    pub layers: usize,
    /// Width of each layer's vector.
    pub dim: usize,
    /// One `[layers, dim]` buffer per word.
    pub per_word: Vec<Vec<f32>>,
}

/// A word as heard: text and timing on the session clock.
#[derive(Debug, Clone, Serialize)]
pub struct TimedWord {
    /// The word as spoken (with punctuation).
    pub text: String,
    /// Onset, seconds.
    pub start: f64,
    /// Offset, seconds.
    pub end: f64,
}

/// Ground truth of one electrode.
#[derive(Debug, Clone, Serialize)]
pub struct ElectrodeTruth {
    /// Channel label (`e001`, ...).
    pub label: String,
    /// Whether it responds to words at all.
    pub responsive: bool,
    /// Layer its response weights peak on.
    pub peak_layer: usize,
    /// Weight of every layer (sums to 1).
    pub layer_profile: Vec<f64>,
    /// Signal variance over noise variance (0 when not responsive).
    pub snr: f64,
    /// Best achievable correlation with the noisy data, sqrt(snr/(1+snr)).
    pub noise_ceiling_r: f64,
}

/// `FILE.truth.json`.
#[derive(Debug, Serialize)]
pub struct Truth {
    /// Seed used.
    pub seed: u64,
    /// Share of electrodes drawn non-responsive (each independently).
    pub null_fraction: f64,
    /// Layers of the embedding.
    pub layers: usize,
    /// Principal components per layer.
    pub pca_dims: usize,
    /// High-gamma rate, Hz.
    pub hg_rate: f64,
    /// Kernel sample times, seconds after onset.
    pub kernel_times: Vec<f64>,
    /// Kernel values (peak 1).
    pub kernel: Vec<f64>,
    /// Every electrode.
    pub electrodes: Vec<ElectrodeTruth>,
    /// Every word with its true timing.
    pub words: Vec<TimedWord>,
}

/// Words of the text with speech timings, enough for `seconds`.
pub fn time_words(seconds: f64, rng: &mut impl Rng) -> Vec<TimedWord> {
    let words: Vec<&str> = TEXT.split_whitespace().collect();
    let mut out = Vec::new();
    let mut t = 0.5;
    for w in words.iter().cycle() {
        // ~2.5 words/s: a base duration plus one per letter, with pauses.
        let letters = w.chars().filter(|c| c.is_alphanumeric()).count() as f64;
        let dur = (0.16 + 0.032 * letters) * rng.gen_range(0.85..1.15);
        if t + dur > seconds - KERNEL_SECONDS {
            break;
        }
        out.push(TimedWord {
            text: w.to_string(),
            start: T0 + t,
            end: T0 + t + dur,
        });
        let pause = match w.chars().last() {
            Some('.' | '!' | '?') => 0.45,
            Some(',' | ';' | ':') => 0.2,
            _ => 0.04,
        };
        t += dur + pause * rng.gen_range(0.7..1.3);
    }
    out
}

/// The text spoken by espeak-ng (repeated as needed) for `seconds` of session: the words with
/// their onsets on the session clock (audio starts at [`T0`]), and the audio. A word spoken
/// with the one before it ("of the": one event) starts halfway to the next onset.
fn spoken_words(seconds: f64) -> anyhow::Result<(Vec<TimedWord>, crate::wav::Wav)> {
    let once: Vec<&str> = TEXT.split_whitespace().collect();
    // espeak-ng speaks ~3 words a second: enough repeats of the text for the session
    let repeats = ((seconds * 3.5) / once.len() as f64).ceil().max(1.0) as usize;
    let text = vec![once.join(" "); repeats].join(" ");
    let mut spoken = crate::asr::espeak::synthesise(&text, SPEECH_WPM, "en-us")?;
    let limit = seconds - KERNEL_SECONDS;
    let onsets: Vec<Option<f64>> = spoken.words.iter().map(|w| w.start).collect();
    let mut words = Vec::new();
    for (i, w) in spoken.words.iter().enumerate() {
        let next = onsets[i + 1..].iter().flatten().next().copied();
        let start = match (w.start, words.last()) {
            (Some(t), _) => t,
            (None, Some(TimedWord { start, .. })) => {
                let previous = start - T0;
                (previous + next.unwrap_or(previous + 0.6)) / 2.0
            }
            (None, None) => 0.0,
        };
        let end = next.unwrap_or(start + 0.4).max(start + 0.05);
        if end > limit {
            break;
        }
        if let Some(previous) = words.last_mut() {
            previous.end = previous.end.min(T0 + start);
        }
        words.push(TimedWord {
            text: w.text.clone(),
            start: T0 + start,
            end: T0 + end,
        });
    }
    let frames = ((seconds * f64::from(spoken.audio.rate)) as usize).min(spoken.audio.frames());
    spoken.audio.samples.truncate(frames);
    Ok((words, spoken.audio))
}

/// Top principal directions (`k × dim`) of the rows of `x` (already
/// centred), by subspace iteration.
fn pca_basis(x: &[Vec<f64>], dim: usize, k: usize, rng: &mut impl Rng) -> Vec<Vec<f64>> {
    let normal = Normal::new(0.0, 1.0).expect("valid");
    let mut q: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..dim).map(|_| normal.sample(rng)).collect())
        .collect();
    for _ in 0..30 {
        // q ← orth(Xᵀ X q)
        let mut next = vec![vec![0.0; dim]; k];
        for row in x {
            for (j, qj) in q.iter().enumerate() {
                let p: f64 = row.iter().zip(qj).map(|(a, b)| a * b).sum();
                next[j].iter_mut().zip(row).for_each(|(n, r)| *n += p * r);
            }
        }
        for j in 0..k {
            for i in 0..j {
                let d: f64 = next[j].iter().zip(&next[i]).map(|(a, b)| a * b).sum();
                let prev = next[i].clone();
                next[j].iter_mut().zip(&prev).for_each(|(a, b)| *a -= d * b);
            }
            let n = next[j]
                .iter()
                .map(|a| a * a)
                .sum::<f64>()
                .sqrt()
                .max(1e-300);
            next[j].iter_mut().for_each(|a| *a /= n);
        }
        q = next;
    }
    q
}

/// Per layer: PCA scores of every word, each component standardised.
/// Returns `[layer][word][k]` plus the per-layer (mean, basis) used.
#[allow(clippy::type_complexity)]
fn reduce(
    emb: &Embeddings,
    rng: &mut impl Rng,
) -> (Vec<Vec<Vec<f64>>>, Vec<(Vec<f64>, Vec<Vec<f64>>)>) {
    let n = emb.per_word.len();
    let mut scores = Vec::with_capacity(emb.layers);
    let mut bases = Vec::with_capacity(emb.layers);
    for l in 0..emb.layers {
        let rows: Vec<&[f32]> = emb
            .per_word
            .iter()
            .map(|w| &w[l * emb.dim..(l + 1) * emb.dim])
            .collect();
        let mean: Vec<f64> = (0..emb.dim)
            .map(|d| rows.iter().map(|r| r[d] as f64).sum::<f64>() / n as f64)
            .collect();
        let centred: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().zip(&mean).map(|(v, m)| *v as f64 - m).collect())
            .collect();
        let basis = pca_basis(&centred, emb.dim, PCA_DIMS, rng);
        let mut s: Vec<Vec<f64>> = centred
            .iter()
            .map(|r| {
                basis
                    .iter()
                    .map(|b| b.iter().zip(r).map(|(x, y)| x * y).sum())
                    .collect()
            })
            .collect();
        for k in 0..PCA_DIMS {
            let sd = (s.iter().map(|w| w[k] * w[k]).sum::<f64>() / n as f64)
                .sqrt()
                .max(1e-12);
            s.iter_mut().for_each(|w| w[k] /= sd);
        }
        scores.push(s);
        bases.push((mean, basis));
    }
    (scores, bases)
}

/// Gamma-shaped kernel (shape 3, scale 60 ms, peak 1) on the HG grid.
pub fn kernel() -> (Vec<f64>, Vec<f64>) {
    let n = (KERNEL_SECONDS * HG_RATE) as usize;
    let times: Vec<f64> = (0..n).map(|i| i as f64 / HG_RATE).collect();
    let raw: Vec<f64> = times.iter().map(|t| t * t * (-t / 0.06).exp()).collect();
    let peak = raw.iter().cloned().fold(0.0, f64::max);
    (times, raw.iter().map(|v| v / peak).collect())
}

/// Unit-variance 1/f ("pink") noise: a sum of AR(1) processes whose time
/// constants are spread over octaves (Voss-like spectrum).
fn pink_noise(n: usize, rate: f64, rng: &mut impl Rng) -> Vec<f64> {
    let normal = Normal::new(0.0, 1.0).expect("valid");
    let mut out = vec![0.0; n];
    let mut f = 0.1;
    while f < rate / 2.0 {
        let a = (-2.0 * std::f64::consts::PI * f / rate).exp();
        let g = (1.0 - a * a).sqrt();
        let mut y = normal.sample(rng);
        for o in out.iter_mut() {
            y = a * y + g * normal.sample(rng);
            *o += y;
        }
        f *= 2.0;
    }
    standardise(&mut out);
    out
}

fn standardise(v: &mut [f64]) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n)
        .sqrt()
        .max(1e-12);
    v.iter_mut().for_each(|x| *x = (*x - m) / sd);
}

/// Paths of a simulated session's files.
pub struct SimOutput {
    /// The XDF recording.
    pub xdf: PathBuf,
    /// Ground truth as JSON.
    pub truth_json: PathBuf,
    /// Ground-truth weights and PCA bases.
    pub truth_safetensors: PathBuf,
}

/// Simulates a session into `out` (which must not exist). `embed` turns the
/// session's words into per-layer embeddings (the real model in the CLI).
pub fn simulate(
    out: &Path,
    cfg: &SimConfig,
    embed: impl FnOnce(&[&str]) -> anyhow::Result<Embeddings>,
) -> anyhow::Result<SimOutput> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let seconds = cfg.minutes * 60.0;
    let (words, speech) = if cfg.speech {
        let (words, audio) = spoken_words(seconds)?;
        (words, Some(audio))
    } else {
        (time_words(seconds, &mut rng), None)
    };
    anyhow::ensure!(
        !words.is_empty(),
        "the session is too short to hold a word; give more --minutes"
    );
    let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    let emb = embed(&texts)?;
    anyhow::ensure!(
        emb.per_word.len() == words.len(),
        "embedding source returned {} words for {}",
        emb.per_word.len(),
        words.len()
    );
    let (scores, bases) = reduce(&emb, &mut rng);
    let layers = emb.layers;
    let normal = Normal::new(0.0, 1.0).expect("valid");

    // Ground-truth encoders.
    let mut truth = Vec::with_capacity(cfg.electrodes);
    let mut weights = vec![0f32; layers * cfg.electrodes * PCA_DIMS]; // [layer, electrode, k]
    for e in 0..cfg.electrodes {
        let responsive = rng.gen_bool(cfg.responsive_fraction);
        // one layer drives the electrode: the layer a per-layer encoder must find
        let peak = rng.gen_range(0..layers);
        let profile: Vec<f64> = (0..layers)
            .map(|l| f64::from(u8::from(l == peak)))
            .collect();
        let snr = if responsive {
            cfg.snr * (rng.gen_range(-1.0..1.0f64) * 1.5).exp()
        } else {
            0.0
        };
        for l in 0..layers {
            for k in 0..PCA_DIMS {
                let w = if responsive {
                    profile[l] * normal.sample(&mut rng)
                } else {
                    0.0
                };
                weights[(l * cfg.electrodes + e) * PCA_DIMS + k] = w as f32;
            }
        }
        truth.push(ElectrodeTruth {
            label: format!("e{:03}", e + 1),
            responsive,
            peak_layer: peak,
            layer_profile: profile,
            snr,
            noise_ceiling_r: (snr / (1.0 + snr)).sqrt(),
        });
    }

    // High-gamma: kernel × word drive, scaled to the SNR, plus 1/f noise.
    let n_hg = (seconds * HG_RATE) as usize;
    let (ktimes, kern) = kernel();
    let mut hg = vec![0f32; n_hg * cfg.electrodes];
    let mut envelopes = Vec::new();
    for (e, t) in truth.iter().enumerate() {
        let mut signal = vec![0.0; n_hg];
        if t.responsive {
            for (w, word) in words.iter().enumerate() {
                let drive: f64 = (0..layers)
                    .map(|l| {
                        (0..PCA_DIMS)
                            .map(|k| {
                                weights[(l * cfg.electrodes + e) * PCA_DIMS + k] as f64
                                    * scores[l][w][k]
                            })
                            .sum::<f64>()
                    })
                    .sum();
                let onset = ((word.start - T0) * HG_RATE).round() as usize;
                for (i, kv) in kern.iter().enumerate() {
                    if let Some(s) = signal.get_mut(onset + i) {
                        *s += drive * kv;
                    }
                }
            }
            standardise(&mut signal);
        }
        let noise = pink_noise(n_hg, HG_RATE, &mut rng);
        let gain = t.snr.sqrt();
        for i in 0..n_hg {
            hg[i * cfg.electrodes + e] = (gain * signal[i] + noise[i]) as f32;
        }
        if cfg.raw {
            envelopes.push(
                (0..n_hg)
                    .map(|i| hg[i * cfg.electrodes + e] as f64)
                    .collect::<Vec<_>>(),
            );
        }
    }

    let labels: Vec<String> = truth.iter().map(|t| t.label.clone()).collect();
    let mut writer = XdfWriter::create(out)?;
    let hg_info = StreamInfo::with_labels(
        &SimStream::HighGamma.name(),
        "iEEG-HG",
        HG_RATE,
        ChannelFormat::Float32,
        &SimStream::HighGamma.source_id(cfg.seed),
        labels.clone(),
    );
    let tr_info = StreamInfo::new(
        &SimStream::Transcript.name(),
        "Transcript",
        1,
        0.0,
        ChannelFormat::String,
        &SimStream::Transcript.source_id(cfg.seed),
    );
    let hg_id = writer.add_stream(&hg_info)?;
    let tr_id = writer.add_stream(&tr_info)?;
    let raw = cfg.raw.then(|| raw_ieeg(&envelopes, n_hg, cfg, &mut rng));
    let raw_id = match &raw {
        Some(_) => {
            let info = StreamInfo::with_labels(
                &SimStream::Raw.name(),
                "iEEG",
                RAW_RATE,
                ChannelFormat::Float32,
                &SimStream::Raw.source_id(cfg.seed),
                labels,
            );
            Some(writer.add_stream(&info)?)
        }
        None => None,
    };
    let audio_id = match &speech {
        Some(audio) => Some(writer.add_stream(&StreamInfo::with_labels(
            &SimStream::Audio.name(),
            "Audio",
            f64::from(audio.rate),
            ChannelFormat::Int16,
            &SimStream::Audio.source_id(cfg.seed),
            vec!["mono".into()],
        ))?),
        None => None,
    };
    let messages = transcript(&words, &mut rng);

    // Interleave one-second chunks, as a recorder would.
    let mut m = 0;
    for sec in 0..(seconds.ceil() as usize) {
        write_second(&mut writer, hg_id, &hg, cfg.electrodes, HG_RATE, sec)?;
        if let (Some(raw), Some(id)) = (&raw, raw_id) {
            write_second(&mut writer, id, raw, cfg.electrodes, RAW_RATE, sec)?;
        }
        if let (Some(audio), Some(id)) = (&speech, audio_id) {
            let rate = audio.rate as usize;
            let (a, b) = (sec * rate, ((sec + 1) * rate).min(audio.frames()));
            if a < b {
                let ts: Vec<f64> = (a..b).map(|i| T0 + i as f64 / rate as f64).collect();
                let pcm = audio.samples[a..b]
                    .iter()
                    .map(|&s| (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
                    .collect();
                writer.write_samples(id, &ts, &Samples::Int16(pcm))?;
            }
        }
        let until = T0 + (sec + 1) as f64;
        let start = m;
        while m < messages.len() && messages[m].0 < until {
            m += 1;
        }
        if m > start {
            let ts: Vec<f64> = messages[start..m].iter().map(|x| x.0).collect();
            writer.write_samples(
                tr_id,
                &ts,
                &Samples::String(messages[start..m].iter().map(|x| x.1.clone()).collect()),
            )?;
        }
        if sec % 5 == 0 {
            for id in [Some(hg_id), Some(tr_id), raw_id, audio_id]
                .into_iter()
                .flatten()
            {
                writer.clock_offset(id, T0 + sec as f64, 0.0)?;
            }
        }
    }
    if m < messages.len() {
        let ts: Vec<f64> = messages[m..].iter().map(|x| x.0).collect();
        writer.write_samples(
            tr_id,
            &ts,
            &Samples::String(messages[m..].iter().map(|x| x.1.clone()).collect()),
        )?;
    }
    writer.finish()?;

    let truth_json = with_suffix(out, "truth.json");
    let truth_st = with_suffix(out, "truth.safetensors");
    let doc = Truth {
        seed: cfg.seed,
        null_fraction: 1.0 - cfg.responsive_fraction,
        layers,
        pca_dims: PCA_DIMS,
        hg_rate: HG_RATE,
        kernel_times: ktimes,
        kernel: kern,
        electrodes: truth,
        words,
    };
    std::fs::write(&truth_json, serde_json::to_string_pretty(&doc)?)?;
    write_truth_tensors(&truth_st, &weights, layers, cfg.electrodes, &bases, emb.dim)?;
    Ok(SimOutput {
        xdf: out.to_path_buf(),
        truth_json,
        truth_safetensors: truth_st,
    })
}

/// `FILE.xdf` → `FILE.<suffix>`.
/// Writes second `sec` of a regular float32 stream `data` (`[samples, channels]` at `rate`,
/// the first sample at [`T0`]), if the stream reaches that far.
fn write_second(
    writer: &mut XdfWriter,
    id: u32,
    data: &[f32],
    channels: usize,
    rate: f64,
    sec: usize,
) -> Result<(), XdfError> {
    let n = data.len() / channels;
    let (a, b) = (sec * rate as usize, ((sec + 1) * rate as usize).min(n));
    if a < b {
        let ts: Vec<f64> = (a..b).map(|i| T0 + i as f64 / rate).collect();
        writer.write_samples(
            id,
            &ts,
            &Samples::Float32(data[a * channels..b * channels].to_vec()),
        )?;
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    path.with_extension(suffix)
}

/// Transcript messages `(stamp, json)` sorted by stamp: each word committed
/// 1–3 s after its end, 2 % first sent wrong then corrected, and a watermark
/// every 2 s (the earliest start of any word not yet sent).
fn transcript(words: &[TimedWord], rng: &mut impl Rng) -> Vec<(f64, String)> {
    let mut msgs: Vec<(f64, String)> = Vec::new();
    let word = |id: usize, text: &str, w: &TimedWord, conf: f64| {
        TranscriptEvent::Word(Word {
            id: id as u64,
            text: text.to_string(),
            start: w.start,
            end: w.end,
            is_final: true,
            confidence: Some(conf as f32),
        })
        .to_json()
    };
    // stamp of each word's last message (its correction, if any)
    let mut settled = Vec::with_capacity(words.len());
    for (id, w) in words.iter().enumerate() {
        let at = w.end + rng.gen_range(1.0..3.0);
        let conf = (rng.gen_range(0.75..1.0f64) * 100.0).round() / 100.0;
        if rng.gen_bool(0.02) {
            let wrong: String = w.text.chars().rev().collect();
            msgs.push((at, word(id, &wrong, w, conf / 2.0)));
            let corrected = at + rng.gen_range(0.2..0.8);
            msgs.push((corrected, word(id, &w.text, w, conf)));
            settled.push(corrected);
        } else {
            msgs.push((at, word(id, &w.text, w, conf)));
            settled.push(at);
        }
    }
    msgs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::with_capacity(msgs.len() + msgs.len() / 4);
    let mut next_mark = T0 + 2.0;
    let last = msgs.last().map_or(T0, |m| m.0);
    let mut i = 0;
    while next_mark <= last + 2.0 {
        while i < msgs.len() && msgs[i].0 <= next_mark {
            out.push(msgs[i].clone());
            i += 1;
        }
        // Words not yet sent (or not yet corrected) start no earlier than this; once every
        // word is settled the mark itself is the watermark, so a replay is scored to its end.
        let pending = words
            .iter()
            .zip(&settled)
            .filter(|(_, &at)| at > next_mark)
            .map(|(w, _)| w.start)
            .fold(f64::INFINITY, f64::min);
        let time = pending.min(next_mark);
        out.push((next_mark, TranscriptEvent::Watermark { time }.to_json()));
        next_mark += 2.0;
    }
    out.extend(msgs[i..].iter().cloned());
    out
}

/// Raw iEEG: the high-gamma envelope (interpolated to [`RAW_RATE`])
/// modulating 70–150 Hz band-limited noise, on broadband 1/f background plus
/// line noise. `[samples, electrodes]` row-major.
fn raw_ieeg(envelopes: &[Vec<f64>], n_hg: usize, cfg: &SimConfig, rng: &mut impl Rng) -> Vec<f32> {
    let n = (n_hg as f64 / HG_RATE * RAW_RATE) as usize;
    let e_count = envelopes.len();
    let mut out = vec![0f32; n * e_count];
    let normal = Normal::new(0.0, 1.0).expect("valid");
    // Band-pass biquad (RBJ), centre 106 Hz, Q 1.3: about 70–150 Hz.
    let w0 = 2.0 * std::f64::consts::PI * 106.0 / RAW_RATE;
    let alpha = w0.sin() / (2.0 * 1.3);
    let a0 = 1.0 + alpha;
    let (b0, b2, a1, a2) = (
        alpha / a0,
        -alpha / a0,
        -2.0 * w0.cos() / a0,
        (1.0 - alpha) / a0,
    );
    for (e, env) in envelopes.iter().enumerate() {
        let background = pink_noise(n, RAW_RATE, rng);
        let phase = rng.gen_range(0.0..std::f64::consts::TAU);
        let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..n {
            let x = normal.sample(rng);
            let y = b0 * x + b2 * x2 - a1 * y1 - a2 * y2;
            (x2, x1, y2, y1) = (x1, x, y1, y);
            let pos = i as f64 * HG_RATE / RAW_RATE;
            let j = (pos as usize).min(n_hg - 1);
            let frac = pos - j as f64;
            let hg = env[j] * (1.0 - frac) + env[(j + 1).min(n_hg - 1)] * frac;
            let gain = (0.5 * hg).exp(); // log-normal envelope: always positive
            let t = i as f64 / RAW_RATE;
            let line = 0.5 * (std::f64::consts::TAU * cfg.line_hz * t + phase).sin();
            out[i * e_count + e] = (2.0 * gain * y + 3.0 * background[i] + line) as f32;
        }
    }
    out
}

fn write_truth_tensors(
    path: &Path,
    weights: &[f32],
    layers: usize,
    electrodes: usize,
    bases: &[(Vec<f64>, Vec<Vec<f64>>)],
    dim: usize,
) -> anyhow::Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let w = bytes(weights);
    let basis: Vec<f32> = bases
        .iter()
        .flat_map(|(_, b)| b.iter().flatten().map(|&x| x as f32))
        .collect();
    let mean: Vec<f32> = bases
        .iter()
        .flat_map(|(m, _)| m.iter().map(|&x| x as f32))
        .collect();
    let (basis, mean) = (bytes(&basis), bytes(&mean));
    let views = vec![
        (
            "weights",
            TensorView::new(Dtype::F32, vec![layers, electrodes, PCA_DIMS], &w)?,
        ),
        (
            "pca_basis",
            TensorView::new(Dtype::F32, vec![layers, PCA_DIMS, dim], &basis)?,
        ),
        (
            "pca_mean",
            TensorView::new(Dtype::F32, vec![layers, dim], &mean)?,
        ),
    ];
    let meta = HashMap::from([(
        "description".to_string(),
        "neuralign simulate ground truth: weights [layer, electrode, pca]".to_string(),
    )]);
    safetensors::serialize_to_file(views, Some(meta), path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watermark contract: no word message after a watermark starts before its time,
    /// and once every word is sent the watermark passes them all.
    #[test]
    fn watermarks_never_pass_a_word_still_to_come_and_end_past_every_word() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let words = time_words(120.0, &mut rng);
        let messages = transcript(&words, &mut rng);
        let parsed: Vec<serde_json::Value> = messages
            .iter()
            .map(|(_, m)| serde_json::from_str(m).unwrap())
            .collect();
        let mut watermark = f64::NEG_INFINITY;
        for m in &parsed {
            match m["kind"].as_str().unwrap() {
                "watermark" => {
                    let time = m["time"].as_f64().unwrap();
                    assert!(time >= watermark, "watermarks never go back");
                    watermark = time;
                }
                _ => {
                    let start = m["start"].as_f64().unwrap();
                    assert!(start >= watermark, "{m} comes after watermark {watermark}");
                }
            }
        }
        let last_start = words.iter().map(|w| w.start).fold(f64::MIN, f64::max);
        assert!(watermark > last_start, "{watermark} <= {last_start}");
    }
}
