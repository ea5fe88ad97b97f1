//! A recorded session (XDF) reduced to what fitting needs: the high-gamma
//! stream as a `[samples, electrodes]` matrix and the final transcript (after
//! every revision and retraction, applied in arrival order exactly as the live
//! server applies them) embedded by the language model with full context.
//!
//! A raw iEEG stream (from `neuralign import`, or the server's raw-mode recordings) becomes
//! high-gamma through the same causal extractor the server runs live ([`crate::dsp`]), so
//! that encoders see the signal they will be applied to (docs/encoders.md); channels the
//! recording marks bad, and trigger or miscellaneous channels, are left out.
use super::{HighGammaMeta, ModelMeta, Session, SessionWord};
use crate::dsp::{HighGamma, HighGammaConfig, HIGH_GAMMA_BAND_HZ};
use crate::import::desc::{ChannelMeta, RecordingMeta};
use crate::lm::Engine;
use crate::transcript::{parse_message, LmAction, TranscriptState};
use crate::xdf::{self, ReadOptions, Samples, Stream};
use anyhow::{bail, Context};
use std::path::Path;

/// Streams at or below this rate are taken as high-gamma, above it as raw iEEG.
const MAX_HIGH_GAMMA_RATE_HZ: f64 = 200.0;

/// Which streams of the recording to use, and how much of it.
#[derive(Debug, Clone, Default)]
pub struct XdfSessionOptions {
    /// Name of the neural stream; default: the first regular numeric stream at ≤ 200 Hz
    /// (high-gamma), else the first regular numeric stream (raw iEEG).
    pub neural: Option<String>,
    /// Name of the transcript stream; default: the first string stream of
    /// type `Transcript`.
    pub transcript: Option<String>,
    /// Keep only this leading fraction of the session (e.g. 0.7 to fit on the
    /// first 70 % and replay the rest).
    pub fraction: Option<f64>,
    /// Whether the neural stream is raw iEEG; default: by its rate (above 200 Hz).
    pub raw: Option<bool>,
    /// How raw iEEG becomes high-gamma (the server's `[high_gamma]`).
    pub high_gamma: HighGammaConfig,
    /// Mains frequency to notch, overriding the recording's metadata
    /// (`power_line_frequency`, from BIDS) and `high_gamma.line_freq`.
    pub line_freq: Option<f64>,
}

/// A session ready to fit, with what it was fit on.
#[derive(Debug, Clone)]
pub struct LoadedSession {
    /// High-gamma and embedded words.
    pub session: Session,
    /// The model that embedded them.
    pub model: ModelMeta,
    /// Where the high-gamma came from.
    pub high_gamma: HighGammaMeta,
    /// Start times of the transcript's segments (server clock, in order), where the live
    /// server restarted its alignment statistics.
    pub segments: Vec<f64>,
}

/// Words per forward call when embedding the transcript.
const BATCH_TOKENS: usize = 256;

/// Loads `path` and embeds its transcript with `engine` (whose context is reset).
pub fn load_xdf(
    path: &Path,
    opts: &XdfSessionOptions,
    engine: &mut Engine,
) -> anyhow::Result<LoadedSession> {
    let file = xdf::read_with(path, ReadOptions::pyxdf())
        .with_context(|| format!("reading {}", path.display()))?;
    let regular = |s: &Stream| {
        s.info.channel_format != xdf::ChannelFormat::String && s.info.nominal_srate > 0.0
    };
    let neural = match opts.neural {
        Some(_) => pick(&file.streams, opts.neural.as_deref(), "neural", regular)?,
        None => pick(&file.streams, None, "high-gamma", |s| {
            regular(s) && s.info.nominal_srate <= MAX_HIGH_GAMMA_RATE_HZ
        })
        .or_else(|_| pick(&file.streams, None, "high-gamma or raw iEEG", regular))?,
    };
    let raw = opts
        .raw
        .unwrap_or(neural.info.nominal_srate > MAX_HIGH_GAMMA_RATE_HZ);
    let extracted = raw.then(|| extract_high_gamma(neural, opts)).transpose()?;
    let neural = extracted.as_ref().map_or(neural, |(stream, _)| stream);
    let high_gamma = HighGammaMeta {
        source: format!("{} stream {:?}", path.display(), neural.info.name),
        band_hz: HIGH_GAMMA_BAND_HZ,
        extracted_by: extracted
            .as_ref()
            .map_or("stream".into(), |(_, how)| format!("neuralign-dsp ({how})")),
    };
    let transcript = pick(
        &file.streams,
        opts.transcript.as_deref(),
        "transcript",
        |s| {
            s.info.channel_format == xdf::ChannelFormat::String
                && s.info.stream_type.eq_ignore_ascii_case("transcript")
        },
    )?;

    let electrodes = neural.info.channel_count;
    let mut hg = to_f32(&neural.data)
        .with_context(|| format!("stream {:?} is not numeric", neural.info.name))?;
    let t0 = *neural
        .time_stamps
        .first()
        .context("the high-gamma stream is empty")?;
    let rate = neural.info.nominal_srate;
    let mut samples = hg.len() / electrodes;
    if let Some(f) = opts.fraction {
        anyhow::ensure!(f > 0.0 && f <= 1.0, "fraction {f} must be in (0, 1]");
        samples = ((samples as f64) * f).floor() as usize;
        hg.truncate(samples * electrodes);
    }
    let t_end = t0 + samples as f64 / rate;

    let Samples::String(messages) = &transcript.data else {
        unreachable!("picked a string stream")
    };
    let mut state = TranscriptState::new(f64::INFINITY);
    let mut segments = Vec::new();
    for (msg, &ts) in messages.iter().zip(&transcript.time_stamps) {
        match parse_message(msg, ts) {
            Ok(event) => {
                // Rejections are counted in `state`; they never stop loading.
                let actions = state.apply(event, ts).unwrap_or_default();
                segments.extend(actions.iter().filter_map(|a| match a {
                    LmAction::Segment { time, .. } => Some(*time),
                    _ => None,
                }));
            }
            Err(rejection) => state.reject(&rejection, ts),
        }
    }
    let words: Vec<_> = state.words().iter().filter(|w| w.start < t_end).collect();
    let rejected = state.counts().rejected_total();
    if rejected > 0 {
        tracing::warn!(
            rejected,
            "transcript messages rejected while loading the session"
        );
    }
    if words.is_empty() {
        bail!(
            "{}: no transcript words fall within the high-gamma recording",
            path.display()
        );
    }
    let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    engine.reset();
    let embeddings = engine
        .embed_words(&texts, BATCH_TOKENS)
        .context("embedding the transcript")?;
    engine.reset();
    let session = Session {
        hg,
        rate,
        t0,
        labels: labels(neural),
        layers: engine.n_layers(),
        dim: engine.dim(),
        words: words
            .iter()
            .zip(embeddings)
            .map(|(w, e)| SessionWord {
                onset: w.start,
                embedding: e.data,
            })
            .collect(),
    };
    session.validate()?;
    let model = ModelMeta {
        name: engine.model_name().to_string(),
        sha256: engine.model_sha256().to_string(),
    };
    Ok(LoadedSession {
        session,
        model,
        high_gamma,
        segments,
    })
}

/// High-gamma of a raw stream through the live extractor, as one stream on the extractor's
/// output grid (time stamps minus its group delay, as the server places them), without the
/// bad, trigger and miscellaneous channels; and a description of the settings used.
fn extract_high_gamma(raw: &Stream, opts: &XdfSessionOptions) -> anyhow::Result<(Stream, String)> {
    let channels = raw.info.channel_count;
    let rate = raw.info.nominal_srate;
    let desc = raw.info.desc();
    let metas = desc
        .as_ref()
        .map(ChannelMeta::from_desc)
        .unwrap_or_default();
    let recording = desc.as_ref().and_then(RecordingMeta::from_desc);
    let mut cfg = opts.high_gamma.clone();
    cfg.line_freq = opts
        .line_freq
        .or(recording.and_then(|r| r.power_line_frequency))
        .unwrap_or(cfg.line_freq);
    let mut hg = HighGamma::new(channels, rate, &cfg)
        .with_context(|| format!("high-gamma from raw stream {:?}", raw.info.name))?;
    let values =
        to_f32(&raw.data).with_context(|| format!("stream {:?} is not numeric", raw.info.name))?;
    let first = *raw.time_stamps.first().context("the raw stream is empty")?;
    // samples missing from the grid (EDF+D gaps, lost samples) enter as NaN, as live: the
    // extractor holds each channel's last value through them
    let mut filled = Vec::with_capacity(values.len());
    let mut next = 0u64;
    let mut missing = 0u64;
    for (row, &t) in values.chunks_exact(channels).zip(&raw.time_stamps) {
        let index = ((t - first) * rate).round().max(0.0) as u64;
        if index > next {
            missing += index - next;
            filled.resize(filled.len() + (index - next) as usize * channels, f32::NAN);
        }
        filled.extend_from_slice(row);
        next = next.max(index + 1);
    }
    if missing > 0 {
        tracing::warn!(
            missing,
            "raw stream {:?}: samples missing from its grid held through",
            raw.info.name
        );
    }
    let mut out = Vec::new();
    let frames = hg.process(&filled, &mut out);
    drop(filled);

    let excluded = |i: usize| {
        metas.get(i).is_some_and(|m| {
            m.bad || ["TRIG", "MISC", "STIM"].contains(&m.kind.to_uppercase().as_str())
        })
    };
    let keep: Vec<usize> = (0..channels).filter(|&i| !excluded(i)).collect();
    if keep.is_empty() {
        bail!(
            "raw stream {:?}: every channel is bad, trigger or miscellaneous",
            raw.info.name
        );
    }
    let left_out: Vec<&str> = (0..channels)
        .filter(|&i| excluded(i))
        .map(|i| metas[i].label.as_str())
        .collect();
    if !left_out.is_empty() {
        tracing::info!(channels = ?left_out, "left out of the fit (bad, trigger or miscellaneous)");
    }
    let hg_values: Vec<f32> = out
        .chunks_exact(channels)
        .flat_map(|row| keep.iter().map(move |&c| row[c]))
        .collect();
    let all_labels = labels(raw);
    let kept_labels: Vec<String> = keep.iter().map(|&c| all_labels[c].clone()).collect();
    let t0 = first - hg.group_delay_s();
    let out_rate = hg.output_rate();
    let mut info = xdf::StreamInfo::with_labels(
        &raw.info.name,
        &raw.info.stream_type,
        out_rate,
        xdf::ChannelFormat::Float32,
        &raw.info.source_id,
        kept_labels,
    );
    info.hostname.clone_from(&raw.info.hostname);
    let stream = Stream {
        id: raw.id,
        info,
        time_stamps: (0..frames).map(|k| t0 + k as f64 / out_rate).collect(),
        data: Samples::Float32(hg_values),
        clock_offsets: Vec::new(),
        footer_xml: None,
        effective_srate: out_rate,
        segments: Vec::new(),
        clock_segments: Vec::new(),
    };
    let settings = format!(
        "causal filterbank from {rate} Hz to {out_rate} Hz, notch {} Hz, z-score {}",
        cfg.line_freq,
        if cfg.zscore { "running" } else { "off" }
    );
    Ok((stream, settings))
}

/// The stream named `name`, or the first that `default` accepts.
fn pick<'a>(
    streams: &'a [Stream],
    name: Option<&str>,
    what: &str,
    default: impl Fn(&Stream) -> bool,
) -> anyhow::Result<&'a Stream> {
    let found = match name {
        Some(n) => streams.iter().find(|s| s.info.name == n),
        None => streams.iter().find(|s| default(s)),
    };
    found.with_context(|| {
        let names: Vec<_> = streams
            .iter()
            .map(|s| format!("{} ({})", s.info.name, s.info.stream_type))
            .collect();
        format!(
            "no {what} stream{} in the recording (it has: {})",
            name.map(|n| format!(" named {n:?}")).unwrap_or_default(),
            names.join(", ")
        )
    })
}

/// The stream's channel labels, `ch1…chN` when it declares none.
fn labels(s: &Stream) -> Vec<String> {
    if s.info.channel_labels.len() == s.info.channel_count {
        s.info.channel_labels.clone()
    } else {
        (1..=s.info.channel_count)
            .map(|i| format!("ch{i}"))
            .collect()
    }
}

fn to_f32(data: &Samples) -> Option<Vec<f32>> {
    Some(match data {
        Samples::Float32(v) => v.clone(),
        Samples::Double64(v) => v.iter().map(|&x| x as f32).collect(),
        Samples::Int8(v) => v.iter().map(|&x| x as f32).collect(),
        Samples::Int16(v) => v.iter().map(|&x| x as f32).collect(),
        Samples::Int32(v) => v.iter().map(|&x| x as f32).collect(),
        Samples::Int64(v) => v.iter().map(|&x| x as f32).collect(),
        Samples::String(_) => return None,
    })
}
