//! `neuralign listen`: connect to the neural and/or transcript stream for a while and report
//! what arrived.
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

use crate::ingest::listen::{listen, ListenReport};
use crate::ingest::{apply_lsl_config, StreamSelector};
use crate::pipeline::Config;

/// Connect to streams for a while and report samples, rate, gaps, latency, words and rejects.
#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Neural stream: NAME, name=NAME, type=TYPE or source_id=ID (default: from the config).
    #[arg(long)]
    pub neural: Option<String>,
    /// Transcript stream: NAME, name=NAME, type=TYPE or source_id=ID (default: from the config).
    #[arg(long)]
    pub transcript: Option<String>,
    /// How long to listen, seconds.
    #[arg(long)]
    pub seconds: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Server config (default: configs/bedside.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Listens and prints the report.
pub fn run(args: ListenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.seconds > 0.0 && args.seconds.is_finite(),
        "--seconds must be a positive number"
    );
    let (mut config, base) = Config::load_or_default(args.config.as_deref())?;
    apply_lsl_config(&config.lsl, &base)?;
    // Named streams only; with neither named, both from the config.
    let both = args.neural.is_none() && args.transcript.is_none();
    let neural = match &args.neural {
        Some(sel) => Some(StreamSelector::parse(sel)),
        None => both.then(|| config.neural.stream.clone()),
    };
    let transcript = match &args.transcript {
        Some(sel) => Some(StreamSelector::parse(sel)),
        None => both.then(|| config.transcript.stream.clone()),
    };
    let neural = neural.map(|stream| {
        config.neural.stream = stream;
        config.neural.clone()
    });
    let transcript = transcript.map(|stream| {
        config.transcript.stream = stream;
        config.transcript.clone()
    });
    let report = listen(
        &config.lsl,
        neural,
        transcript,
        Duration::from_secs_f64(args.seconds),
    )
    .context("listening failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(report: &ListenReport) {
    println!("listened {:.1} s", report.seconds);
    if let Some(n) = &report.neural {
        let s = &n.status;
        match &s.stream {
            Some(meta) => println!(
                "neural      {} ({}, {} ch, {} Hz nominal, {}) state {:?}",
                meta.summary.name,
                meta.summary.kind,
                meta.summary.channels,
                meta.summary.rate,
                meta.summary.format,
                s.state
            ),
            None => println!("neural      not found (state {:?})", s.state),
        }
        println!(
            "            samples {}  rate {:.2} Hz  gaps {} ({} samples missing)  dropped chunks {}  losses {}  recoveries {}",
            s.samples, n.measured_rate, s.gap_count, s.missing_samples, s.dropped_chunks, s.losses, s.recoveries
        );
        println!(
            "            latency p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            s.latency.p50_ms, s.latency.p99_ms, s.latency.max_ms
        );
        if let Some(e) = &s.error {
            println!("            error: {e}");
        }
    }
    if let Some(t) = &report.transcript {
        match &t.stream {
            Some(meta) => println!(
                "transcript  {} ({}) state {:?}  clock offset {:.6} s",
                meta.name, meta.kind, t.state, t.clock_offset
            ),
            None => println!("transcript  not found (state {:?})", t.state),
        }
        let c = &t.counts;
        println!(
            "            messages {}  words {}  revisions {}  retractions {}  watermarks {}  rejected {}",
            t.messages,
            c.words,
            c.revisions,
            c.retractions,
            c.watermarks,
            c.rejected_total()
        );
        for (reason, count) in &c.rejected {
            println!("              {reason:<22} {count}");
        }
        if let Some(e) = &t.error {
            println!("            error: {e}");
        }
    }
}
