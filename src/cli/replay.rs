//! `neuralign replay FILE.xdf [--speed 1|K|max] [--loop] [--streams A,B]`:
//! plays a recording as LSL outlets until it ends (or Ctrl-C with `--loop`).
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::app::Shutdown;
use crate::replay::{self, ReplayOptions, Speed};

/// Arguments of `neuralign replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The XDF recording to play.
    pub file: PathBuf,
    /// `1` for real time, `K` for K times faster, `max` for as fast as the
    /// consumers take it.
    #[arg(long, default_value = "1")]
    pub speed: Speed,
    /// Start again at the end until interrupted.
    #[arg(long = "loop")]
    pub looped: bool,
    /// With `--loop`: stop after this many passes.
    #[arg(long, requires = "looped")]
    pub passes: Option<u64>,
    /// With `--loop`: seconds of session time between the end of one pass and the next.
    #[arg(long, default_value_t = 1.0)]
    pub silence: f64,
    /// Only these streams (names, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub streams: Vec<String>,
    /// Start this many seconds into the session.
    #[arg(long, default_value_t = 0.0)]
    pub from: f64,
    /// Hold the first sample until every stream has a consumer.
    #[arg(long)]
    pub wait_for_consumers: bool,
    /// Seconds the outlets stay open after the last sample while a consumer is connected,
    /// for it to take the tail.
    #[arg(long, default_value_t = 10.0)]
    pub linger: f64,
    /// Simulate a sender clock drifting by PPM parts per million of session time:
    /// `STREAM=PPM` (repeatable; docs/reliability.md, section Clock drift).
    #[arg(long = "drift-ppm", value_name = "STREAM=PPM")]
    pub drift_ppm: Vec<String>,
    /// Simulate a sender clock stepping by JUMP_S seconds at AT_S seconds of session time:
    /// `STREAM=AT_S:JUMP_S` (repeatable).
    #[arg(long = "offset-jump", value_name = "STREAM=AT_S:JUMP_S")]
    pub offset_jump: Vec<String>,
    /// Print the per-stream report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `neuralign replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::default();
    shutdown.trigger_on_ctrl_c();
    let options = ReplayOptions {
        speed: args.speed,
        looped: args.looped,
        passes: args.passes,
        silence_s: args.silence,
        streams: args.streams,
        start_at: args.from,
        wait_for_consumers: args.wait_for_consumers,
        linger: std::time::Duration::from_secs_f64(args.linger.max(0.0)),
        clocks: crate::sender_clock::clocks_from_options(&args.drift_ppm, &args.offset_jump)?,
        ..Default::default()
    };
    tracing::info!(
        "replaying {} at speed {:?}",
        args.file.display(),
        options.speed
    );
    let report = replay::run(&args.file, &options, shutdown.flag())
        .with_context(|| format!("replaying {}", args.file.display()))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for r in &report {
            println!(
                "{:<32} {:>9} samples  {:>3} passes  {:>3} trimmed  send lateness p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                r.name,
                r.samples,
                r.passes,
                r.trimmed,
                r.lateness_p50 * 1e3,
                r.lateness_p99 * 1e3,
                r.lateness_max * 1e3
            );
        }
    }
    Ok(())
}
