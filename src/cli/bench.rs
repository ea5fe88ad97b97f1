//! `neuralign bench`: latency and throughput figures of a pipeline stage.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::bench::lm::{run as run_lm, LmBenchOptions};

/// Which stage to measure.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchTarget {
    /// The language model: per-word latency, embed throughput, bandwidth bound.
    Lm,
}

/// Arguments of `neuralign bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The stage to benchmark.
    #[arg(value_enum, default_value = "lm")]
    pub target: BenchTarget,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A local GGUF instead of the default model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A short smoke run (contexts 16 and 256, few samples; under 20 s).
    #[arg(long)]
    pub quick: bool,
}

/// Runs `neuralign bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = match args.target {
        BenchTarget::Lm => {
            let base = if args.quick {
                LmBenchOptions::quick()
            } else {
                LmBenchOptions::default()
            };
            run_lm(&LmBenchOptions {
                model: args.model,
                ..base
            })?
        }
    };
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
