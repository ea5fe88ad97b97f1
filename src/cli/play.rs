//! `neuralign play STIMULUS.wav --words words.csv [--loop] [--speed X] [--from S] [--json]`:
//! publishes a stimulus's audio, its words and their onset markers as LSL streams on one clock.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::app::Shutdown;
use crate::play::{self, PlayOptions};
use crate::replay::Speed;
use crate::word_table::read_word_table;

/// Arguments of `neuralign play`.
#[derive(Args, Debug)]
pub struct PlayArgs {
    /// The stimulus audio (WAV: PCM or float).
    pub file: PathBuf,
    /// Its word table (`word,start,end`, seconds from audio onset).
    #[arg(long)]
    pub words: PathBuf,
    /// `1` for real time, `K` for K times faster, `max` for as fast as the consumers take it.
    #[arg(long, default_value = "1")]
    pub speed: Speed,
    /// Start again at the end until interrupted.
    #[arg(long = "loop")]
    pub looped: bool,
    /// Start this many seconds into the audio.
    #[arg(long, default_value_t = 0.0)]
    pub from: f64,
    /// Stream name prefix: `NAME-audio`, `NAME-transcript`, `NAME-markers`.
    #[arg(long, default_value = "neuralign-play")]
    pub name: String,
    /// Hold the first chunk until every stream has a consumer.
    #[arg(long)]
    pub wait_for_consumers: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `neuralign play`.
pub fn run(args: PlayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.from >= 0.0 && args.from.is_finite(),
        "--from must be a non-negative number of seconds"
    );
    let wav = super::read_audio(&args.file)?;
    let table = read_word_table(&args.words)?;
    for (line, why) in &table.skipped {
        tracing::warn!("{} line {line}: skipped ({why})", args.words.display());
    }
    let shutdown = Shutdown::default();
    shutdown.trigger_on_ctrl_c();
    let options = PlayOptions {
        speed: args.speed,
        looped: args.looped,
        start_at: args.from,
        name: args.name,
        wait_for_consumers: args.wait_for_consumers,
        ..Default::default()
    };
    tracing::info!(
        "playing {} ({} Hz, {} ch, {:.1} s) with {} words at speed {:?}",
        args.file.display(),
        wav.rate,
        wav.channels,
        wav.seconds(),
        table.words.len(),
        options.speed
    );
    let flag = shutdown.flag();
    let report = play::run(&wav, &table, &options, &flag)
        .with_context(|| format!("playing {}", args.file.display()))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} frames in {} chunks; {}: {} words, {} watermarks; {} passes; {} rows skipped",
            report.audio_stream,
            report.frames,
            report.chunks,
            report.transcript_stream,
            report.words,
            report.watermarks,
            report.passes,
            report.skipped_rows.len()
        );
        println!(
            "send lateness p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            report.lateness_p50 * 1e3,
            report.lateness_p99 * 1e3,
            report.lateness_max * 1e3
        );
    }
    Ok(())
}
