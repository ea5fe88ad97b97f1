//! `neuralign import PATH [--words WORDS.csv] [--words-offset S | --words-marker NAME] --out
//! SESSION.xdf [--json]`: a clinical recording (EDF/EDF+/BDF/BDF+, BrainVision) or a BIDS iEEG
//! recording converted to an XDF session (`docs/import.md`).
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::import::{import, ImportOptions, WordsOffset};
use crate::xdf::ChannelFormat;

/// Arguments of `neuralign import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The recording: `.edf`, `.bdf`, `.vhdr`, a BIDS `*_ieeg.{edf,bdf,vhdr}` file, or a BIDS
    /// folder holding one recording.
    pub path: PathBuf,
    /// A `word,start,end` table (CSV or TSV, seconds) written as the transcript stream.
    #[arg(long)]
    pub words: Option<PathBuf>,
    /// Recording time (seconds from the first sample) of word time 0.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "words_marker")]
    pub words_offset: Option<f64>,
    /// Take the word offset from the first annotation with this text (e.g. the audio onset
    /// marker).
    #[arg(long)]
    pub words_marker: Option<String>,
    /// The XDF session to write (never replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Store samples as double64 instead of float32 (every BDF step on large DC offsets).
    #[arg(long)]
    pub double: bool,
    /// Import files that disagree with their headers (cut short, lying sizes, markers of
    /// another data file): the readable part, with the disagreements in the warnings.
    #[arg(long)]
    pub accept_damaged: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `neuralign import`.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let opts = ImportOptions {
        words: args.words.clone(),
        words_offset: match (&args.words_marker, args.words_offset) {
            (Some(name), _) => WordsOffset::Marker(name.clone()),
            (None, seconds) => WordsOffset::Seconds(seconds.unwrap_or(0.0)),
        },
        format: if args.double {
            ChannelFormat::Double64
        } else {
            ChannelFormat::Float32
        },
        accept_damaged: args.accept_damaged,
    };
    let bar = ProgressBar::new(1000).with_style(
        ProgressStyle::with_template("importing {wide_bar} {percent}% {elapsed} (eta {eta})")
            .expect("template"),
    );
    let started = std::time::Instant::now();
    let report = import(&args.path, &args.out, &opts, &mut |done| {
        bar.set_position((done * 1000.0) as u64)
    })
    .with_context(|| format!("importing {}", args.path.display()))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} → {} ({:.1} MB in {:.2} s)",
        report.input,
        report.output,
        report.bytes_written as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    for s in &report.streams {
        println!(
            "  stream {}: {} channels at {} Hz, {} samples",
            s.name,
            s.channels.len(),
            s.rate_hz,
            s.samples
        );
    }
    println!("  markers: {}", report.markers);
    if args.words.is_some() {
        println!(
            "  words: {} ({} rows skipped), offset {} s",
            report.words,
            report.words_skipped.len(),
            report.words_offset_s.unwrap_or(0.0)
        );
    }
    if !report.bad_channels.is_empty() {
        println!("  bad channels: {}", report.bad_channels.join(", "));
    }
    if !report.warnings.is_empty() {
        println!("  {} warnings (logged above)", report.warnings.len());
    }
    Ok(())
}
