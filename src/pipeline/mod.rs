//! The live pipeline behind `neuralign serve`: LSL ingest → language model → encoders →
//! alignment → [`Hub`], with everything received recorded to XDF.
//!
//! Threads, joined by bounded crossbeam channels (a full channel drops and counts, so nothing
//! ever blocks ingest):
//! - the neural and transcript inlets ([`crate::ingest`]), each on its own thread, and the
//!   audio inlet when `[recording] audio` names a stream (recorded only);
//! - per language model (one, or the `[[models]]` of the config, each with its encoders),
//!   the LM thread ([`lm_thread`]): follows the transcript with [`crate::lm::Engine`]
//!   (push_word, rollback on revisions and retractions), and the encode thread
//!   ([`encode_thread`]): each word's kernels from that model's encoders bound to the neural
//!   stream, passing every LM output on in order; with two or more models a fan-out thread
//!   copies each transcript update to every LM thread;
//! - the core loop ([`core`], on the caller's thread): high-gamma (raw mode), [`Live`]
//!   alignment (adding the words' kernels, scoring), and every frame published to the hub;
//! - the recorder ([`recorder`]): neural samples, transcript events and audio to an XDF file,
//!   flushed at least once a second and finished (footers) on shutdown, with the server's
//!   results as streams of their own ([`results`]).
//!
//! [`run`] is the library entry: `neuralign serve` and `neuralign demo` call it with the
//! server's [`Hub`] and a shutdown flag.
//!
//! [`Live`]: crate::align::Live
pub mod config;
mod core;
mod encode_thread;
mod lm_thread;
mod memory;
mod outlets;
mod recorder;
pub mod results;

pub use config::{
    Config, ConfigError, EncodersConfig, LiveModel, PipelineSettings, RecordingConfig,
};
pub use recorder::RecordingName;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;

use crate::encode::Encoder;
use crate::ingest::{AudioInlet, AudioRecord, NeuralInlet, TranscriptInlet};
use crate::lm::Engine;
use crate::serve::frames::ModelTag;
use crate::serve::Hub;

/// What the pipeline did, returned when it stops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipelineReport {
    /// Neural samples aligned (scored up to the horizon).
    pub scored_samples: i64,
    /// Words the (first) model embedded.
    pub words: u64,
    /// The XDF recording, when one was written.
    pub recording: Option<PathBuf>,
    /// Drops by reason, as in the last `status` frame.
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// Runs the pipeline until `shutdown` is set, publishing into `hub`. `config` is the server
/// config, `base_dir` the folder its relative paths are relative to. Blocks the calling
/// thread (it runs the core loop); start it on a thread of its own next to the server.
pub fn run(
    config: &Config,
    base_dir: &Path,
    hub: Hub,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<PipelineReport> {
    crate::ingest::apply_lsl_config(&config.lsl, base_dir)
        .context("LSL must stay on the configured interfaces")?;
    // fail before any stream is touched when an encoder file belongs to another model
    let loaded = load_models(config, base_dir)?;
    let timeout = config.lsl.resolve_timeout_s;
    let recorder = config
        .recording
        .enabled
        .then(|| {
            recorder::Recorder::spawn(
                &config.recording.directory(base_dir),
                &config.recording.name()?,
                config.recording.channel_capacity,
            )
        })
        .transpose()?;
    let (neural, neural_rx) = NeuralInlet::spawn(config.neural.clone(), timeout)?;
    let tap = recorder.as_ref().map(|r| {
        let record = r.sender();
        Box::new(move |time: f64, message: &str| {
            record.send(recorder::Record::TranscriptReceived(
                time,
                message.to_string(),
            ))
        }) as crate::ingest::MessageTap
    });
    let (transcript, transcript_rx) =
        TranscriptInlet::spawn_with_tap(config.transcript.clone(), timeout, tap)?;
    // the audio is only recorded: no recording, no audio inlet
    let audio = match (&recorder, &config.recording.audio) {
        (Some(r), Some(stream)) => {
            let record = r.sender();
            let tap = Box::new(move |audio| {
                record.send(match audio {
                    AudioRecord::Stream(info) => recorder::Record::AudioStream(info),
                    AudioRecord::Samples(stamps, samples) => {
                        recorder::Record::Audio(stamps, samples)
                    }
                    AudioRecord::ClockOffset { time, value } => {
                        recorder::Record::AudioClockOffset(time, value)
                    }
                })
            });
            Some(AudioInlet::spawn(stream.clone(), timeout, tap)?)
        }
        _ => None,
    };
    let (updates, fan_out) = match loaded.len() {
        1 => (vec![transcript_rx], None),
        n => {
            let capacity = config.transcript.channel_capacity;
            let (updates, fan_out) =
                lm_thread::fan_out(transcript_rx, n, capacity, shutdown.clone())?;
            (updates, Some(fan_out))
        }
    };
    let (encoded_tx, encoded_rx) =
        crossbeam_channel::bounded(encode_thread::ENCODED_QUEUE * loaded.len());
    let (mut lm_threads, mut encode_threads, mut models) = (Vec::new(), Vec::new(), Vec::new());
    for (m, ((tag, encoder, engine), updates)) in loaded.into_iter().zip(updates).enumerate() {
        let (words_tx, words_rx) = crossbeam_channel::bounded(config.pipeline.word_queue.max(1));
        // the transcript is recorded once, as the first model's LM thread applies it
        let record = recorder.as_ref().filter(|_| m == 0).map(|r| r.sender());
        lm_threads.push(lm_thread::spawn(
            engine,
            updates,
            words_tx,
            record,
            shutdown.clone(),
        )?);
        let encode = encode_thread::spawn(
            m,
            words_rx,
            encoded_tx.clone(),
            hub.clone(),
            shutdown.clone(),
        )?;
        models.push(core::Model::new(tag, encoder, &encode));
        encode_threads.push(encode);
    }
    drop(encoded_tx);
    let outlets = config
        .pipeline
        .results_outlets
        .then(outlets::Outlets::spawn)
        .transpose()
        .context("cannot start the results outlets")?;
    let core = core::Core::new(
        config,
        models,
        fan_out
            .as_ref()
            .map(|f| f.dropped.clone())
            .unwrap_or_default(),
        hub,
        (
            recorder.as_ref().map(|r| r.sender()),
            outlets.as_ref().map(|o| o.sender()),
        ),
    );
    let result = core.run(
        core::Inlets {
            neural: &neural,
            transcript: &transcript,
            audio: audio.as_ref(),
        },
        neural_rx,
        encoded_rx,
        &lm_threads,
        &shutdown,
    );
    // stop the producers first so that the recorder sees everything before it finishes
    neural.stop();
    transcript.stop();
    if let Some(audio) = audio {
        audio.stop();
    }
    if let Some(fan_out) = fan_out {
        fan_out.join();
    }
    lm_threads.into_iter().for_each(lm_thread::LmThread::join);
    encode_threads
        .into_iter()
        .for_each(encode_thread::EncodeThread::join);
    if let Some(outlets) = outlets {
        outlets.finish();
    }
    let mut report = result?;
    if let Some(recorder) = recorder {
        report.recording = recorder
            .finish()
            .context("the XDF recording could not be finished")?;
    }
    Ok(report)
}

/// Loads every model of the config with its encoder file, in session order, checking that
/// each encoder file was fit on its model (the hash it names), that the models' names differ
/// and that every encoder file is on the same electrodes at the same rate.
fn load_models(
    config: &Config,
    base_dir: &Path,
) -> anyhow::Result<Vec<(ModelTag, Encoder, Engine)>> {
    let mut loaded: Vec<(ModelTag, Encoder, Engine)> = Vec::new();
    for live in config.live_models(base_dir)? {
        let encoder = Encoder::load(&live.encoders)
            .with_context(|| format!("cannot load the encoders {}", live.encoders.display()))?;
        let lm = crate::lm::LmConfig {
            model: live.model.clone(),
            ..config.lm.clone()
        };
        let engine = Engine::load(&lm).with_context(|| {
            let name = live
                .model
                .as_ref()
                .map_or("the default model".into(), |m| m.to_string());
            format!("cannot load the language model {name} (try `neuralign model fetch`)")
        })?;
        let tag = ModelTag {
            name: engine.model_name().to_string(),
            sha256: engine.model_sha256().to_string(),
        };
        encoder
            .bind(
                &tag.sha256,
                encoder.meta.grid.rate,
                &encoder.meta.labels,
                false,
            )
            .with_context(|| format!("{} for {}", live.encoders.display(), tag.name))?;
        if let Some((first, first_encoder, _)) = loaded.first() {
            anyhow::ensure!(
                loaded.iter().all(|(t, ..)| t.name != tag.name),
                "{} is listed twice in [[models]]",
                tag.name
            );
            let meta = (&first_encoder.meta.labels, first_encoder.meta.grid.rate);
            anyhow::ensure!(
                (&encoder.meta.labels, encoder.meta.grid.rate) == meta,
                "the encoders of {} ({}) are on other electrodes or another rate than those of {}: \
                 every model's encoders must be fit on the same session",
                tag.name,
                live.encoders.display(),
                first.name
            );
        }
        loaded.push((tag, encoder, engine));
    }
    Ok(loaded)
}
