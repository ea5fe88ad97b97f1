//! `neuralign bench`: measures the chosen parts of the pipeline, prints one
//! table per part, and writes the JSON report and the SVG plot.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::bench::report::{self, Machine, Outcome};
use crate::bench::{Part, Settings};
use crate::ingest::apply_lsl_config;
use crate::pipeline::Config;

/// Seconds per part in `--quick` mode (CI smoke test: `bench all` in under a minute).
const QUICK_S: f64 = 2.0;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Every part.
    All,
    /// Per-word LM step, incremental (KV cache) against full recompute.
    Lm,
    /// Two or more models live together (`--models`), per word at 1024 tokens of context.
    Models,
    /// Raw iEEG → high-gamma extraction.
    Dsp,
    /// LSL arrival over loopback.
    Lsl,
    /// Encoder kernels per word.
    Encode,
    /// Replay → serve → client, every stage.
    E2e,
    /// EDF → XDF import of a large recording: MB/s and peak memory.
    Import,
    /// Speech recognition on espeak-ng speech: batch speed, live commit latency and CPU
    /// share beside the LM, word error rate and onset error.
    Asr,
}

/// Latency and throughput figures, side by side.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Parts to measure (default: all).
    #[arg(value_enum)]
    pub targets: Vec<Target>,
    /// Seconds to measure each part.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Short run for smoke tests: 2 s per part (overrides --duration).
    #[arg(long)]
    pub quick: bool,
    /// Write the report (machine, then one object per part) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Plot latency percentiles per stage (log scale) as SVG here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// A model (registry name or PATH.gguf) instead of the default model (the `lm` and
    /// `e2e` parts).
    #[arg(long)]
    pub model: Option<crate::lm::ModelRef>,
    /// The models the `models` part runs together, comma-separated (default: SmolLM2 and
    /// its untrained control; e.g. `smollm2-135m,gemma3-270m`).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<crate::lm::ModelRef>,
    /// Minutes of synthetic session the `encode` part fits 256 electrodes × 31 layers on
    /// (0 skips the fit, as `--quick` does: the fit is tested in tests/encode.rs).
    #[arg(long, default_value_t = 30.0)]
    pub fit_minutes: f64,
    /// Minutes of the synthetic 200-channel, 512 Hz EDF the `import` part converts
    /// (`--quick`: 2).
    #[arg(long, default_value_t = 30.0)]
    pub import_minutes: f64,
    /// Server config naming the LSL config (default: configs/bedside.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs the benchmarks and reports them; fails after writing the reports if
/// any part failed.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let seconds = if args.quick { QUICK_S } else { args.duration };
    anyhow::ensure!(
        seconds > 0.0 && seconds.is_finite(),
        "--duration must be a positive number of seconds"
    );
    let settings = Settings {
        duration: Duration::from_secs_f64(seconds),
        model: args.model,
        models: match args.models.is_empty() {
            true => crate::bench::models::ModelsBenchOptions::default_models(),
            false => args.models,
        },
        fit_minutes: if args.quick { 0.0 } else { args.fit_minutes },
        import_minutes: if args.quick { 2.0 } else { args.import_minutes },
    };
    // The LSL part opens outlets: keep them on the configured (loopback) interfaces.
    let (config, base) = Config::load_or_default(args.config.as_deref())?;
    apply_lsl_config(&config.lsl, &base)?;

    let machine = Machine::detect();
    print_machine(&machine);
    let parts = selected(&args.targets);
    let mut outcomes = Vec::with_capacity(parts.len());
    for part in parts {
        let spinner = ProgressBar::new_spinner()
            .with_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
            )
            .with_message(format!("measuring {} for {seconds} s", part.name()));
        spinner.enable_steady_tick(Duration::from_millis(200));
        let outcome = part.run(&settings);
        spinner.finish_and_clear();
        if let Outcome::Failed(e) = &outcome {
            tracing::error!(part = part.name(), "benchmark failed: {e:#}");
        }
        report::print_outcome(part.name(), &outcome);
        outcomes.push((part.name(), outcome));
    }

    if let Some(path) = &args.json {
        report::write_json(path, &report::to_json(&machine, &outcomes))?;
        println!("\nJSON report: {}", path.display());
    }
    if let Some(path) = &args.plot {
        if report::write_plot(path, &machine, &outcomes)? {
            println!("plot: {}", path.display());
        } else {
            tracing::warn!(
                "no part measured a latency: no plot written to {}",
                path.display()
            );
        }
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .map(|(name, _)| *name)
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "benchmark(s) failed: {} (see the errors above)",
        failed.join(", ")
    );
    Ok(())
}

impl Target {
    /// The part this target names; `None` for `all`.
    fn part(self) -> Option<Part> {
        match self {
            Target::All => None,
            Target::Lm => Some(Part::Lm),
            Target::Models => Some(Part::Models),
            Target::Dsp => Some(Part::Dsp),
            Target::Lsl => Some(Part::Lsl),
            Target::Encode => Some(Part::Encode),
            Target::E2e => Some(Part::E2e),
            Target::Import => Some(Part::Import),
            Target::Asr => Some(Part::Asr),
        }
    }
}

/// The parts named, in `bench all` order, each once; none named means all.
fn selected(targets: &[Target]) -> Vec<Part> {
    let all = targets.is_empty() || targets.contains(&Target::All);
    Part::ALL
        .into_iter()
        .filter(|&p| all || targets.iter().any(|t| t.part() == Some(p)))
        .collect()
}

fn print_machine(m: &Machine) {
    println!(
        "neuralign {} ({}, commit {}) on {} ({} logical / {} physical cores, {}), {}",
        m.version,
        m.profile,
        m.git_commit.as_deref().unwrap_or("unknown"),
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.logical_cores,
        m.physical_cores,
        m.os,
        m.date_utc
    );
    if m.is_debug() {
        let warning = "DEBUG BUILD: these figures are not representative; \
                       measure with `cargo build --release` and target/release/neuralign";
        println!("!!! {warning} !!!");
        tracing::warn!("{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_select_parts_once_in_order() {
        assert_eq!(selected(&[]), Part::ALL.to_vec());
        assert_eq!(selected(&[Target::All, Target::Dsp]), Part::ALL.to_vec());
        assert_eq!(
            selected(&[Target::E2e, Target::Dsp, Target::Dsp]),
            vec![Part::Dsp, Part::E2e]
        );
    }
}
