//! `neuralign simulate --out FILE.xdf`: a synthetic session with known
//! ground truth, embeddings from the real language model.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::lm::{Engine, LmConfig};
use crate::sim::session::{simulate, Embeddings, SimConfig};

/// Arguments of `neuralign simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Where to write the recording (must not exist); the ground truth goes
    /// beside it as FILE.truth.json and FILE.truth.safetensors.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of electrodes.
    #[arg(long, default_value_t = 64)]
    pub electrodes: usize,
    /// Session length in minutes.
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    /// Random seed (same seed, same bytes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write a raw iEEG stream (1024 Hz) carrying the high-gamma.
    #[arg(long)]
    pub raw: bool,
    /// Speak the words with espeak-ng (onsets from its word events) and write the speech as
    /// an `Audio` stream (22 050 Hz, int16) on the session's clock.
    #[arg(long)]
    pub speech: bool,
    /// Median signal-to-noise ratio (variance) of responsive electrodes.
    #[arg(long, default_value_t = 0.5)]
    pub snr: f64,
    /// Share of electrodes that do not respond to words at all (their truth
    /// says `"responsive": false`): the nulls that statistics must not call.
    #[arg(long, default_value_t = 0.2)]
    pub null_fraction: f64,
    /// The model that generates the ground truth (registry name or PATH.gguf); default
    /// smollm2-135m.
    #[arg(long)]
    pub model: Option<crate::lm::ModelRef>,
}

/// Runs `neuralign simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.null_fraction),
        "--null-fraction {} must be between 0 and 1",
        args.null_fraction
    );
    let cfg = SimConfig {
        responsive_fraction: 1.0 - args.null_fraction,
        electrodes: args.electrodes,
        minutes: args.minutes,
        seed: args.seed,
        raw: args.raw,
        speech: args.speech,
        snr: args.snr,
        ..Default::default()
    };
    let lm = LmConfig {
        model: args.model.clone(),
        ..Default::default()
    };
    let out = simulate(&args.out, &cfg, |words| embed_with_model(&lm, words))
        .with_context(|| format!("simulating into {}", args.out.display()))?;
    println!(
        "{}\n{}\n{}",
        out.xdf.display(),
        out.truth_json.display(),
        out.truth_safetensors.display()
    );
    Ok(())
}

/// Embeds the session's words with the language model (full context, batched),
/// with a progress bar: the embedding source of `simulate` here and in `demo`.
pub(crate) fn embed_with_model(lm: &LmConfig, words: &[&str]) -> anyhow::Result<Embeddings> {
    let mut engine =
        Engine::load(lm).context("loading the language model (try `neuralign model fetch`)")?;
    let bar = indicatif::ProgressBar::new(words.len() as u64).with_message("embedding words");
    let mut per_word = Vec::with_capacity(words.len());
    let (mut layers, mut dim) = (0, 0);
    // Chunks only pace the progress bar: the engine keeps the context across calls.
    for chunk in words.chunks(64) {
        for e in engine.embed_words(chunk, 256)? {
            (layers, dim) = (e.layers, e.dim);
            per_word.push(e.data);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Embeddings {
        layers,
        dim,
        per_word,
    })
}
