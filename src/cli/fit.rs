//! `neuralign fit`: fit per-electrode encoders on a recorded session and
//! write the encoder file.
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use crate::encode::{self, FitConfig, HighGammaMeta, Provenance};
use std::path::PathBuf;

/// Arguments of `neuralign fit`.
#[derive(Args, Debug)]
pub struct FitArgs {
    /// The session: a safetensors file with `hg`, `onsets` and `embeddings`
    /// (see docs/encoders.md).
    pub session: PathBuf,
    /// Where to write the encoder file.
    #[arg(long)]
    pub out: PathBuf,
    /// Layers to fit: `all` or a comma-separated list of model layers.
    #[arg(long, default_value = "all")]
    pub layers: String,
    /// First lag after word onset, seconds.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub tmin: f64,
    /// Last lag after word onset, seconds.
    #[arg(long, default_value_t = 0.5)]
    pub tmax: f64,
    /// Principal components per layer.
    #[arg(long, default_value_t = 16)]
    pub pcs: usize,
    /// Contiguous cross-validation folds for choosing alpha.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Fraction held out at the end of the session for the outer test r.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Write layer `--dump-layer`'s dense design and solution here (for
    /// checking against an independent ridge implementation).
    #[arg(long, hide = true)]
    pub dump_design: Option<PathBuf>,
    /// Encoder layer index dumped by `--dump-design`.
    #[arg(long, hide = true, default_value_t = 0)]
    pub dump_layer: usize,
}

/// Runs `neuralign fit`.
pub fn run(args: FitArgs) -> anyhow::Result<()> {
    let ext = args.session.extension().and_then(|e| e.to_str()).unwrap_or_default();
    if ext != "safetensors" {
        bail!(
            "{}: fit reads session arrays (.safetensors with hg, onsets, embeddings); XDF sessions need the XDF reader and the language-model engine",
            args.session.display()
        );
    }
    let (session, model) = encode::session_file::load(&args.session)
        .with_context(|| format!("reading session {}", args.session.display()))?;
    let model = model.context("the session file names no model (metadata `model`: name, sha256); encoders must record which model they fit")?;
    let layers = match args.layers.as_str() {
        "all" => None,
        list => Some(
            list.split(',')
                .map(|s| s.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--layers `{list}`: expected `all` or numbers like 0,6,12"))?,
        ),
    };
    let cfg = FitConfig { tmin: args.tmin, tmax: args.tmax, pcs: args.pcs, folds: args.folds, holdout: args.holdout, layers, ..FitConfig::default() };
    let provenance = Provenance {
        model,
        high_gamma: HighGammaMeta { source: args.session.display().to_string(), band_hz: [70.0, 150.0], extracted_by: "session file".into() },
        description: format!(
            "{}: {} samples at {} Hz, {} electrodes, {} words",
            args.session.display(),
            session.samples(),
            session.rate,
            session.electrodes(),
            session.words.len()
        ),
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("fitting layer {pos}/{len} {wide_bar} {elapsed} (eta {eta})").expect("template"),
    );
    let started = std::time::Instant::now();
    let enc = encode::fit(&session, &cfg, &provenance, &bar).context("fitting encoders")?;
    enc.save(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
    let best = enc.cv_r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        layers = enc.layers,
        electrodes = enc.electrodes,
        best_r = best,
        "wrote {}",
        args.out.display()
    );
    if let Some(path) = &args.dump_design {
        if args.dump_layer >= enc.layers {
            bail!("--dump-layer {} but only {} layers were fit", args.dump_layer, enc.layers);
        }
        encode::dump_design(&session, &cfg, &enc, args.dump_layer)?.save(path)?;
    }
    Ok(())
}
