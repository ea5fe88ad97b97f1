//! `neuralign streams`: the LSL streams visible now.
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

use crate::ingest::{apply_lsl_config, list_streams};
use crate::pipeline::Config;

/// List the LSL streams visible now.
#[derive(Args, Debug)]
pub struct StreamsArgs {
    /// Print JSON (one array of streams) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for streams to answer, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Server config naming the LSL config (default: configs/bedside.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Lists the streams.
pub fn run(args: StreamsArgs) -> anyhow::Result<()> {
    let (config, base) = Config::load_or_default(args.config.as_deref())?;
    apply_lsl_config(&config.lsl, &base)?;
    let streams = list_streams(args.timeout).context("cannot list LSL streams")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&streams)?);
        return Ok(());
    }
    if streams.is_empty() {
        println!(
            "no LSL streams visible within {} s (is the amplifier app running on this machine?)",
            args.timeout
        );
        return Ok(());
    }
    println!(
        "{:<24} {:<12} {:>8} {:>9} {:<9} {:<24} host",
        "name", "type", "channels", "rate Hz", "format", "source_id"
    );
    for s in &streams {
        println!(
            "{:<24} {:<12} {:>8} {:>9} {:<9} {:<24} {}",
            s.name, s.kind, s.channels, s.rate, s.format, s.source_id, s.host
        );
    }
    Ok(())
}
