//! A recorded session (XDF) reduced to what fitting needs: the high-gamma
//! stream as a `[samples, electrodes]` matrix and the final transcript (after
//! every revision and retraction, applied in arrival order exactly as the live
//! server applies them) embedded by the language model with full context.
use super::{ModelMeta, Session, SessionWord};
use crate::lm::Engine;
use crate::transcript::{parse_message, TranscriptState};
use crate::xdf::{self, ReadOptions, Samples, Stream};
use anyhow::{bail, Context};
use std::path::Path;

/// Which streams of the recording to use, and how much of it.
#[derive(Debug, Clone, Default)]
pub struct XdfSessionOptions {
    /// Name of the high-gamma stream; default: the first regular numeric
    /// stream at ≤ 200 Hz.
    pub neural: Option<String>,
    /// Name of the transcript stream; default: the first string stream of
    /// type `Transcript`.
    pub transcript: Option<String>,
    /// Keep only this leading fraction of the session (e.g. 0.7 to fit on the
    /// first 70 % and replay the rest).
    pub fraction: Option<f64>,
}

/// Words per forward call when embedding the transcript.
const BATCH_TOKENS: usize = 256;

/// Loads `path` and embeds its transcript with `engine` (whose context is reset).
pub fn load_xdf(
    path: &Path,
    opts: &XdfSessionOptions,
    engine: &mut Engine,
) -> anyhow::Result<(Session, ModelMeta)> {
    let file = xdf::read_with(path, ReadOptions::pyxdf())
        .with_context(|| format!("reading {}", path.display()))?;
    let neural = pick(&file.streams, opts.neural.as_deref(), "high-gamma", |s| {
        s.info.channel_format != xdf::ChannelFormat::String
            && s.info.nominal_srate > 0.0
            && s.info.nominal_srate <= 200.0
    })?;
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
    for (msg, &ts) in messages.iter().zip(&transcript.time_stamps) {
        match parse_message(msg, ts) {
            Ok(event) => {
                // Rejections are counted in `state`; they never stop loading.
                let _ = state.apply(event, ts);
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
    Ok((session, model))
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
