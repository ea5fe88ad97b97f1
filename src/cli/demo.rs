//! `neuralign demo`: the main job on built-in defaults, in one command. Fetches
//! the model, simulates a session with known ground truth, fits encoders on its
//! first part (for each model of `--models`, when given), replays the rest over LSL
//! (loopback) at 1×, and serves the live pipeline with its dashboard until Ctrl-C.
//! `--speech`: the session's words are spoken (espeak-ng), the speech is replayed as an
//! audio stream instead of the transcript, and the transcript comes from recognising it
//! live (`transcribe --lsl`); the server records the audio with the rest.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::app::Feed;
use crate::asr::fetch::ensure_asr_model;
use crate::asr::live::{self, LiveOptions, LslAudio, Publisher};
use crate::asr::recognise::RecogniserOptions;
use crate::asr::Recogniser;
use crate::encode::session_xdf::{load_xdf, XdfSessionOptions};
use crate::encode::FitConfig;
use crate::ingest::StreamSelector;
use crate::lm::{Engine, LmConfig, ModelRef};
use crate::pipeline::{Config, LiveModel};
use crate::replay::{self, ReplayOptions};
use crate::sim::session::{simulate, SimConfig, SimStream};

/// Arguments of `neuralign demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Electrodes of the simulated session.
    #[arg(long, default_value_t = 64)]
    pub electrodes: usize,
    /// Length of the simulated session, minutes.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Seed of the simulated session.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Leading fraction of the session the encoders are fit on; the rest is replayed.
    #[arg(long, default_value_t = 0.7)]
    pub fit_fraction: f64,
    /// Principal components per layer in the encoders.
    #[arg(long, default_value_t = 8)]
    pub pcs: usize,
    /// Dashboard and WebSocket address (default from configs/demo.toml: 127.0.0.1:8787).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Simulate and fit again even when this session's files exist.
    #[arg(long)]
    pub fresh: bool,
    /// Speech in: the words spoken by espeak-ng, replayed as audio and recognised live into
    /// the transcript the server reads.
    #[arg(long)]
    pub speech: bool,
    /// Two or more models live side by side, comma-separated (e.g.
    /// `smollm2-135m,smollm2-135m-untrained`), each with encoders fit on the session; the
    /// session is simulated from the default model either way.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<ModelRef>,
}

/// The transcript outlet of `demo --speech`'s recogniser for the session of `seed` (its name
/// and source id: another demo's recogniser on the machine has another).
fn speech_transcript(seed: u64) -> String {
    format!("neuralign-demo-{seed}-transcribe")
}
/// The transcript's silence timeout with the recogniser, seconds: above its buffer's bound
/// (15 s, past which it commits what it holds).
const SPEECH_SILENCE_TIMEOUT_S: f64 = 20.0;

/// Runs the demo until Ctrl-C.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.fit_fraction > 0.0 && args.fit_fraction < 1.0,
        "--fit-fraction must be between 0 and 1 (exclusive)"
    );
    anyhow::ensure!(
        args.models.len() != 1,
        "--models is for two or more models (one model: leave it out)"
    );
    let dir = crate::lm::fetch::home_dir().join("demo").join(format!(
        "e{}-m{}-s{}{}",
        args.electrodes,
        args.minutes,
        args.seed,
        if args.speech { "-speech" } else { "" }
    ));
    if args.fresh && dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut config: Config = toml::from_str(include_str!("../../configs/demo.toml"))
        .expect("configs/demo.toml is valid");
    if let Some(bind) = args.bind {
        config.server.bind = bind;
    }
    // LSL stays on loopback: liblsl reads its config once, before the first call.
    std::fs::write(
        dir.join("lsl_api.cfg"),
        include_str!("../../configs/lsl_api.cfg"),
    )?;
    crate::ingest::apply_lsl_config(&config.lsl, &dir)?;

    let lm = LmConfig::default();
    let session = dir.join("session.xdf");
    if !session.exists() {
        eprintln!(
            "[1/3] simulating {} electrodes × {} minutes",
            args.electrodes, args.minutes
        );
        let sim = SimConfig {
            electrodes: args.electrodes,
            minutes: args.minutes,
            seed: args.seed,
            speech: args.speech,
            ..Default::default()
        };
        simulate(&session, &sim, |words| {
            super::simulate::embed_with_model(&lm, words)
        })
        .with_context(|| format!("simulating into {}", session.display()))?;
    }
    // one model: `encoders.safetensors` for the default model; several: a file per model
    let models: Vec<Option<ModelRef>> = match args.models.is_empty() {
        true => vec![None],
        false => args.models.iter().cloned().map(Some).collect(),
    };
    for model in &models {
        let encoders = dir.join(encoders_file(model.as_ref()));
        if !encoders.exists() {
            let name = model
                .as_ref()
                .map_or("the model".into(), ModelRef::to_string);
            eprintln!(
                "[2/3] fitting encoders of {name} on the first {:.0} % of the session",
                args.fit_fraction * 100.0
            );
            let lm = LmConfig {
                model: model.clone(),
                ..LmConfig::default()
            };
            fit_encoders(&session, &encoders, &lm, args.fit_fraction, args.pcs)?;
        }
    }
    if models.len() > 1 {
        config.encoders.path = None;
        config.models = (models.into_iter())
            .map(|model| LiveModel {
                encoders: encoders_file(model.as_ref()).into(),
                model,
            })
            .collect();
    }
    let start_at = session_seconds(&session)? * args.fit_fraction;
    eprintln!(
        "[3/3] replaying the rest ({start_at:.0} s on) at 1× over LSL and serving; Ctrl-C stops"
    );
    // this session's streams by their source ids (which hold the seed): another session's
    // stream of the same name on this machine (a second demo, a test's replay) is not taken
    let by_source = |stream: SimStream| StreamSelector::SourceId(stream.source_id(args.seed));
    config.neural.stream = by_source(SimStream::HighGamma);
    config.transcript.stream = by_source(SimStream::Transcript);
    let stop = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    let recogniser = if args.speech {
        // the audio instead of the simulated transcript; the recogniser's words instead
        streams = vec![SimStream::HighGamma.name(), SimStream::Audio.name()];
        let transcript = speech_transcript(args.seed);
        config.transcript.stream = StreamSelector::SourceId(transcript.clone());
        // the recording holds the audio beside the neural stream and the transcript
        config.recording.audio = Some(by_source(SimStream::Audio));
        // the recogniser publishes when two decodes agree, which under load can take longer
        // than the simulated transcript's 3 s: its silence is not the end of speech
        config.transcript.silence_timeout_s = SPEECH_SILENCE_TIMEOUT_S;
        Some(spawn_recogniser(
            by_source(SimStream::Audio),
            transcript,
            stop.clone(),
        )?)
    } else {
        None
    };
    let replay = spawn_replay(session.clone(), start_at, streams, stop.clone())?;
    let server = config.server.clone();
    let feed = Feed::Live {
        config: Box::new(config),
        base_dir: dir,
    };
    let served = super::serve::serve(server, feed);
    stop.store(true, Ordering::Relaxed);
    replay
        .join()
        .map_err(|_| anyhow::anyhow!("the replay thread panicked"))??;
    if let Some(recogniser) = recogniser {
        recogniser
            .join()
            .map_err(|_| anyhow::anyhow!("the recogniser thread panicked"))??;
    }
    served
}

/// Recognises the replayed audio stream `audio` live onto the outlet `transcript` until `stop`.
fn spawn_recogniser(
    audio: StreamSelector,
    transcript: String,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    let model = ensure_asr_model().context("fetching the speech model")?;
    let recogniser = Recogniser::load(&model, RecogniserOptions::default())?;
    let source = LslAudio {
        stream: audio,
        channel: None,
    };
    Ok(std::thread::Builder::new()
        .name("demo recogniser".into())
        .spawn(move || {
            // an outlet stays on the thread that made it
            let publisher = Publisher::new(Some(&transcript), true)?;
            let report = live::run_lsl(
                &source,
                recogniser,
                publisher,
                LiveOptions::default(),
                &stop,
            )
            .context("recognising the demo's speech")?;
            tracing::info!(
                words = report.word_count,
                "recognised {:.0} s of speech",
                report.audio_seconds
            );
            Ok(())
        })?)
}

/// The demo's encoder file for `model` (`None`: the default model alone).
fn encoders_file(model: Option<&ModelRef>) -> String {
    match model {
        None => "encoders.safetensors".into(),
        Some(model) => {
            let name: String = (model.to_string().chars())
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("encoders-{name}.safetensors")
        }
    }
}

/// Fits encoders on the leading `fraction` of the recording.
fn fit_encoders(
    session: &Path,
    out: &Path,
    lm: &LmConfig,
    fraction: f64,
    pcs: usize,
) -> anyhow::Result<()> {
    let mut engine =
        Engine::load(lm).context("loading the language model (try `neuralign model fetch`)")?;
    let opts = XdfSessionOptions {
        fraction: Some(fraction),
        ..Default::default()
    };
    let loaded = load_xdf(session, &opts, &mut engine)?;
    let cfg = FitConfig {
        pcs,
        ..FitConfig::default()
    };
    super::fit::fit_and_save(&loaded, &cfg, out)?;
    Ok(())
}

/// Length of the recording's high-gamma stream, seconds.
fn session_seconds(session: &Path) -> anyhow::Result<f64> {
    let file =
        crate::xdf::read(session).with_context(|| format!("reading {}", session.display()))?;
    let span = file
        .streams
        .iter()
        .filter(|s| s.info.nominal_srate > 0.0 && s.len() > 1)
        .map(|s| s.time_stamps[s.len() - 1] - s.time_stamps[0])
        .fold(0.0, f64::max);
    anyhow::ensure!(span > 0.0, "{} holds no regular stream", session.display());
    Ok(span)
}

/// Replays `streams` of the session (all when empty) from `start_at` in a loop until `stop`.
fn spawn_replay(
    session: PathBuf,
    start_at: f64,
    streams: Vec<String>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    let options = ReplayOptions {
        looped: true,
        start_at,
        streams,
        ..Default::default()
    };
    Ok(std::thread::Builder::new()
        .name("demo replay".into())
        .spawn(move || {
            replay::run(&session, &options, stop).context("replaying the demo session")?;
            Ok(())
        })?)
}
