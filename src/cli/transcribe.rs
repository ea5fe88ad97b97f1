//! `neuralign transcribe FILE.wav --out words.csv [--json]`: speech recognition with word
//! times (Whisper tiny.en, `docs/transcribe.md`), written as the word table that `play`,
//! `embed` and `fit` read. Live: `transcribe --lsl AUDIO_STREAM` or `FILE.wav --live
//! [--speed 1|K|max]` publish the words on a transcript outlet as they are committed. A
//! recorded session: `transcribe SESSION.xdf --stream NAME` writes a copy of it with the
//! words as a new transcript stream.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::app::Shutdown;
use crate::asr::fetch::ensure_asr_model;
use crate::asr::live::{self, LiveOptions, LiveReport, LslAudio, Publisher};
use crate::asr::recognise::RecogniserOptions;
use crate::asr::resample::model_audio;
use crate::asr::session::transcribe_session;
use crate::asr::{clipped_samples, Recogniser, Recognition};
use crate::ingest::StreamSelector;
use crate::replay::Speed;
use crate::word_table::{word_table_csv, TableWord};

/// Arguments of `neuralign transcribe`.
#[derive(Args, Debug)]
pub struct TranscribeArgs {
    /// The audio (WAV: PCM or float, 8–48 kHz, channels averaged), or with `--stream` an XDF
    /// session.
    #[arg(required_unless_present = "lsl", conflicts_with = "lsl")]
    pub file: Option<PathBuf>,
    /// Recognise this LSL audio stream live (`NAME`, `type=T` or `source_id=ID`; int16,
    /// int32, int8, float32 or double64 samples at 8–48 kHz) until interrupted.
    #[arg(long)]
    pub lsl: Option<String>,
    /// Recognise this audio stream of the XDF session FILE (`NAME`, `type=T` or
    /// `source_id=ID`) and write a copy of the session with the words as a new transcript
    /// stream (named by `--outlet`) to `--out` (default: FILE.transcribed.xdf).
    #[arg(long, requires = "file", conflicts_with_all = ["live", "lsl"])]
    pub stream: Option<String>,
    /// The channel of the audio stream to recognise (0-based); all channels averaged by
    /// default.
    #[arg(long)]
    pub channel: Option<usize>,
    /// Recognise FILE as a live stream: decoded step by step, words committed when two
    /// decodes agree, published as they are.
    #[arg(long)]
    pub live: bool,
    /// With `--live`: feed FILE at `1` (real time), `K` times faster, or `max`.
    #[arg(long, default_value = "1", requires = "live")]
    pub speed: Speed,
    /// The transcript outlet live words are published on, or the stream added to a session
    /// (name and source id).
    #[arg(long, default_value = "neuralign-transcribe")]
    pub outlet: String,
    /// Live, but publish nothing on LSL (the word table and report only).
    #[arg(long)]
    pub no_outlet: bool,
    /// Live: also publish the words not yet agreed on, as tentative (`final: false`), revised
    /// or retracted as later decodes change them.
    #[arg(long)]
    pub tentative: bool,
    /// With `--live`: hold the audio until the transcript outlet has a consumer (at most 30 s).
    #[arg(long)]
    pub wait_for_consumers: bool,
    /// With `--lsl`: stop after this many seconds (default: at Ctrl-C).
    #[arg(long = "for", value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Write the word table (`word,start,end`) here; without it, print it. With `--stream`,
    /// the copy of the session.
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
    /// Samples at full scale (clipping) in the channels' mix.
    clipped_samples: u64,
    #[serde(flatten)]
    recognition: Recognition,
}

/// Runs `neuralign transcribe`.
pub fn run(args: TranscribeArgs) -> anyhow::Result<()> {
    let model = match &args.model {
        Some(path) => path.clone(),
        None => ensure_asr_model().context("fetching the speech model")?,
    };
    let recogniser = Recogniser::load(&model, RecogniserOptions::default())?;
    match args.file.clone() {
        Some(file) if args.stream.is_some() => session(args, file, recogniser),
        Some(file) if !args.live => batch(args, file, recogniser),
        _ => run_live(args, recogniser),
    }
}

/// Live recognition of a WAV file or an LSL stream, published on the transcript outlet.
fn run_live(args: TranscribeArgs, recogniser: Recogniser) -> anyhow::Result<()> {
    let shutdown = Shutdown::default();
    shutdown.trigger_on_ctrl_c();
    let flag = shutdown.flag();
    let live_clock = args.file.is_none() || args.speed == Speed::Factor(1.0);
    let outlet = (!args.no_outlet).then_some(args.outlet.as_str());
    let publisher = Publisher::new(outlet, live_clock)?;
    if args.wait_for_consumers && !publisher.await_consumer(Duration::from_secs(30), &flag) {
        tracing::warn!("no consumer of {} within 30 s; going on", args.outlet);
    }
    let mut options = LiveOptions::default();
    options.agreement.tentative = args.tentative;
    let report = match (&args.file, &args.lsl) {
        (Some(file), _) => {
            let wav = super::read_audio(file)?;
            live::run_wav(&wav, recogniser, args.speed, publisher, options, &flag)
                .with_context(|| format!("recognising {} live", file.display()))?
        }
        (None, Some(selector)) => {
            if let Some(seconds) = args.duration {
                anyhow::ensure!(
                    seconds > 0.0 && seconds.is_finite(),
                    "--for takes seconds > 0"
                );
                let shutdown = shutdown.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs_f64(seconds));
                    shutdown.trigger();
                });
            }
            let source = LslAudio {
                stream: StreamSelector::parse(selector),
                channel: args.channel,
            };
            live::run_lsl(&source, recogniser, publisher, options, &flag)
                .with_context(|| format!("recognising the audio stream {selector}"))?
        }
        (None, None) => unreachable!("clap requires FILE or --lsl"),
    };
    write_table(&args, &report.words)?;
    print_live(&args, &report)
}

fn print_live(args: &TranscribeArgs, report: &LiveReport) -> anyhow::Result<()> {
    tracing::info!(
        words = report.word_count,
        decodes = report.decodes,
        gaps = report.gaps,
        "recognised {:.1} s of audio live (decode p50 {:.0} ms, real-time factor {:.2})",
        report.audio_seconds,
        report.decode.p50_ms,
        report.real_time_factor
    );
    if args.json {
        println!("{}", serde_json::to_string(report)?);
    }
    Ok(())
}

/// Writes the word table to `--out`, or prints it when there is no `--out` and no `--json`.
fn write_table(args: &TranscribeArgs, table: &[TableWord]) -> anyhow::Result<()> {
    let csv = word_table_csv(table);
    match &args.out {
        Some(out) => {
            std::fs::write(out, &csv).with_context(|| format!("writing {}", out.display()))?
        }
        None if !args.json => print!("{csv}"),
        None => {}
    }
    Ok(())
}

/// A recorded session's audio stream, written back as a transcript stream of a copy.
fn session(args: TranscribeArgs, file: PathBuf, mut recogniser: Recogniser) -> anyhow::Result<()> {
    let selector = StreamSelector::parse(args.stream.as_deref().expect("checked by the caller"));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| file.with_extension("transcribed.xdf"));
    let spinner = indicatif::ProgressBar::new_spinner()
        .with_message(format!("recognising {selector} of {}", file.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = transcribe_session(
        &file,
        &selector,
        args.channel,
        &mut recogniser,
        &args.outlet,
        &out,
    )
    .with_context(|| format!("transcribing {selector} of {}", file.display()));
    spinner.finish_and_clear();
    let report = report?;
    tracing::info!(
        words = report.words,
        runs = report.runs,
        "recognised {:.1} s of {}; the copy with stream {} is {}",
        report.audio_seconds,
        report.audio_stream,
        report.transcript_stream,
        report.out.display()
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Batch recognition of a whole file.
fn batch(args: TranscribeArgs, file: PathBuf, mut recogniser: Recogniser) -> anyhow::Result<()> {
    let wav = super::read_audio(&file)?;
    let audio = model_audio(&wav).with_context(|| format!("{}", file.display()))?;
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
    write_table(&args, &table)?;
    tracing::info!(
        words = recognition.words.len(),
        gated_segments = recognition.gated_segments,
        silent = recognition.silent,
        "recognised {:.1} s of audio in {decode_seconds:.1} s",
        wav.seconds()
    );
    if args.json {
        let report = TranscribeReport {
            file,
            audio_seconds: wav.seconds(),
            decode_seconds,
            real_time_factor: decode_seconds / wav.seconds().max(1e-9),
            clipped_samples: clipped_samples(&wav.mono()),
            recognition,
        };
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
