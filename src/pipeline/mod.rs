//! The live pipeline behind `neuralign serve`: LSL ingest → language model → encoders →
//! alignment → [`Hub`], with everything received recorded to XDF.
//!
//! Threads, joined by bounded crossbeam channels (a full channel drops and counts, so nothing
//! ever blocks ingest):
//! - the neural and transcript inlets ([`crate::ingest`]), each on its own thread;
//! - the LM thread ([`lm_thread`]): follows the transcript with [`crate::lm::Engine`]
//!   (push_word, rollback on revisions and retractions);
//! - the encode thread ([`encode_thread`]): each word's kernels from the encoders bound to
//!   the neural stream, passing every LM output on in order;
//! - the core loop ([`core`], on the caller's thread): high-gamma (raw mode), [`Live`]
//!   alignment (adding the words' kernels, scoring), and every frame published to the hub;
//! - the recorder ([`recorder`]): neural samples and transcript events to an XDF file,
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

pub use config::{Config, EncodersConfig, PipelineSettings, RecordingConfig};
pub use recorder::RecordingName;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;

use crate::ingest::{NeuralInlet, TranscriptInlet};
use crate::lm::Engine;
use crate::serve::Hub;

/// What the pipeline did, returned when it stops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipelineReport {
    /// Neural samples aligned (scored up to the horizon).
    pub scored_samples: i64,
    /// Words embedded.
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
    let encoder_path = config.encoders.path.as_ref().map(|p| base_dir.join(p)).context(
        "no encoder file: set [encoders] path in the config (fit one with `neuralign fit SESSION.xdf --out encoders.safetensors`)",
    )?;
    let encoder = crate::encode::Encoder::load(&encoder_path)
        .with_context(|| format!("cannot load the encoders {}", encoder_path.display()))?;
    let mut lm = config.lm.clone();
    lm.model = lm.model.map(|m| m.relative_to(base_dir));
    let engine = Engine::load(&lm)
        .context("cannot load the language model (try `neuralign model fetch`)")?;
    let model = (
        engine.model_name().to_string(),
        engine.model_sha256().to_string(),
    );
    // fail before any stream is touched when the encoders belong to another model
    encoder.bind(
        &model.1,
        encoder.meta.grid.rate,
        &encoder.meta.labels,
        false,
    )?;
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
    let (words_tx, words_rx) = crossbeam_channel::bounded(config.pipeline.word_queue.max(1));
    let lm_thread = lm_thread::spawn(
        engine,
        transcript_rx,
        words_tx,
        recorder.as_ref().map(|r| r.sender()),
        shutdown.clone(),
    )?;
    let (encoded_tx, encoded_rx) = crossbeam_channel::bounded(encode_thread::ENCODED_QUEUE);
    let encode_thread = encode_thread::spawn(words_rx, encoded_tx, hub.clone(), shutdown.clone())?;
    let outlets = config
        .pipeline
        .results_outlets
        .then(outlets::Outlets::spawn)
        .transpose()
        .context("cannot start the results outlets")?;
    let core = core::Core::new(
        config,
        encoder,
        model,
        hub,
        (
            recorder.as_ref().map(|r| r.sender()),
            outlets.as_ref().map(|o| o.sender()),
        ),
        &encode_thread,
    );
    let result = core.run(
        &neural,
        &transcript,
        neural_rx,
        encoded_rx,
        &lm_thread,
        &shutdown,
    );
    // stop the producers first so that the recorder sees everything before it finishes
    neural.stop();
    transcript.stop();
    lm_thread.join();
    encode_thread.join();
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
