//! `neuralign transcribe FILE.wav --out words.csv [--json]`: speech recognition with word
//! times (Whisper tiny.en, `docs/transcribe.md`), written as the word table that `play`,
//! `embed` and `fit` read.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::asr::fetch::ensure_asr_model;
use crate::asr::recognise::RecogniserOptions;
use crate::asr::resample::model_audio;
use crate::asr::{Recogniser, Recognition};
use crate::wav::read_wav;
use crate::word_table::{word_table_csv, TableWord};

/// Arguments of `neuralign transcribe`.
#[derive(Args, Debug)]
pub struct TranscribeArgs {
    /// The audio (WAV: PCM or float, 8–48 kHz, channels averaged).
    pub file: PathBuf,
    /// Write the word table (`word,start,end`) here; without it, print it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The converted speech model (default: fetched into the cache by `model fetch --asr`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print a JSON report (words, gating, timing) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What `transcribe` reports with `--json`.
#[derive(Debug, serde::Serialize)]
struct TranscribeReport {
    file: PathBuf,
    audio_seconds: f64,
    decode_seconds: f64,
    real_time_factor: f64,
    #[serde(flatten)]
    recognition: Recognition,
}

/// Runs `neuralign transcribe`.
pub fn run(args: TranscribeArgs) -> anyhow::Result<()> {
    let wav = read_wav(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let audio = model_audio(&wav).with_context(|| format!("{}", args.file.display()))?;
    let model = match args.model {
        Some(path) => path,
        None => ensure_asr_model().context("fetching the speech model")?,
    };
    let mut recogniser = Recogniser::load(&model, RecogniserOptions::default())?;
    let spinner = indicatif::ProgressBar::new_spinner()
        .with_message(format!("recognising {:.1} s of audio", wav.seconds()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let started = Instant::now();
    let recognition = recogniser.recognise(&audio)?;
    let decode_seconds = started.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    let table: Vec<TableWord> = recognition
        .words
        .iter()
        .map(|w| TableWord {
            text: w.text.clone(),
            start: Some(w.start),
            end: Some(w.end),
        })
        .collect();
    let csv = word_table_csv(&table);
    match &args.out {
        Some(out) => {
            std::fs::write(out, &csv).with_context(|| format!("writing {}", out.display()))?
        }
        None if !args.json => print!("{csv}"),
        None => {}
    }
    tracing::info!(
        words = recognition.words.len(),
        gated_segments = recognition.gated_segments,
        silent = recognition.silent,
        "recognised {:.1} s of audio in {decode_seconds:.1} s",
        wav.seconds()
    );
    if args.json {
        let report = TranscribeReport {
            file: args.file,
            audio_seconds: wav.seconds(),
            decode_seconds,
            real_time_factor: decode_seconds / wav.seconds().max(1e-9),
            recognition,
        };
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
