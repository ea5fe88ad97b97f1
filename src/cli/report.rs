//! `neuralign report`: the statistics of a session under pretrained encoders,
//! as a TSV table, SVG figures and an HTML page (`docs/statistics.md`, "Reports").
use crate::encode::session_xdf::{load_xdf, XdfSessionOptions};
use crate::encode::Encoder;
use crate::report::recording::Saved;
use crate::report::{self, page, table, OfflineOptions, Report, Span};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// Arguments of `neuralign report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The session: an XDF recording with a neural (high-gamma or raw iEEG) and a
    /// transcript stream.
    pub session: PathBuf,
    /// The encoder file (`neuralign fit`).
    #[arg(long)]
    pub encoders: PathBuf,
    /// The folder to write `index.html`, `electrodes.tsv` and the figures into.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the per-electrode summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Which samples: `auto` (the held-out tail of the encoders' own session, else
    /// the whole session), `held-out` or `whole`.
    #[arg(long, value_enum, default_value = "auto")]
    pub span: Span,
    /// Name of the neural stream (default: as `fit`).
    #[arg(long)]
    pub neural: Option<String>,
    /// Name of the transcript stream (default: the first of type `Transcript`).
    #[arg(long)]
    pub transcript: Option<String>,
    /// The language model (registry name or PATH.gguf); default: smollm2-135m. Its sha256
    /// must be the encoders'.
    #[arg(long)]
    pub model: Option<crate::lm::ModelRef>,
    /// Circular shifts of the null (default: the encoders' fit's).
    #[arg(long)]
    pub shifts: Option<usize>,
    /// Seed of the shifts and the bootstrap (default: the encoders' fit's).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs `neuralign report`.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let enc = Encoder::load(&args.encoders)
        .with_context(|| format!("reading encoders {}", args.encoders.display()))?;
    let mut stats = enc
        .meta
        .statistics
        .as_ref()
        .map(|s| s.config.clone())
        .unwrap_or_default();
    stats.shifts = args.shifts.unwrap_or(stats.shifts);
    stats.seed = args.seed.unwrap_or(stats.seed);
    let mut engine = crate::lm::Engine::load(&crate::lm::LmConfig {
        model: args.model.clone(),
        ..Default::default()
    })
    .context("loading the language model")?;
    let opts = XdfSessionOptions {
        neural: args.neural.clone(),
        transcript: args.transcript.clone(),
        ..Default::default()
    };
    let loaded = load_xdf(&args.session, &opts, &mut engine)?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("report: layer {pos}/{len} {wide_bar} {elapsed} (eta {eta})")
            .expect("template"),
    );
    let offline = OfflineOptions {
        span: args.span,
        stats,
        model_sha256: loaded.model.sha256.clone(),
    };
    let (source, statistics) = report::offline(&enc, &loaded.session, &offline, &bar)
        .with_context(|| format!("the statistics of {}", args.session.display()))?;
    bar.finish_and_clear();
    let recording = match Saved::read(&args.session, &loaded.session, &loaded.model.sha256)? {
        Some(saved) => Some(report::recording::recorded(
            saved,
            &enc,
            &loaded.session,
            &loaded.segments,
            &loaded.model.sha256,
        )?),
        None => None,
    };
    let report = Report {
        session: args.session.display().to_string(),
        encoders: args.encoders.display().to_string(),
        source,
        model: enc.meta.model.clone(),
        model_layers: loaded.session.layers,
        rate: loaded.session.rate,
        folds: enc.meta.training.folds,
        groups: statistics
            .electrodes
            .iter()
            .map(|e| report::group_of(&e.label))
            .collect(),
        statistics,
        recording,
    };
    let rows = table::rows(&report);
    page::write_all(&report, &rows, &args.out)?;
    let significant = rows.iter().filter(|r| r.significant).count();
    tracing::info!(
        significant,
        electrodes = rows.len(),
        "wrote {}",
        args.out.join(page::INDEX).display()
    );
    if args.json {
        let summary = serde_json::json!({
            "source": report.source,
            "how": page::source_sentence(&report),
            "out": args.out,
            "electrodes": rows,
            "recording": report.recording,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
