//! `neuralign compare`: every model of `--models` embeds and is fit on the same session with
//! the same settings, then the brain scores, layer profiles and peak depths are compared
//! (`docs/statistics.md`, §7) into an HTML page, a TSV, JSON and SVG figures.
use super::fit::{fit_and_save, FitSettings, XdfArgs};
use crate::lm::ModelRef;
use crate::report::compare::{self, CompareConfig, ModelFit};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `neuralign compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The session: an XDF recording with a neural and a transcript stream.
    pub session: PathBuf,
    /// The models, comma-separated (registry names, `smollm2-135m-untrained[:SEED]` or
    /// PATH.gguf).
    #[arg(long, value_delimiter = ',', required = true)]
    pub models: Vec<ModelRef>,
    /// The folder to write `index.html`, `models.tsv`, `compare.json`, the figures and
    /// each model's encoder file into.
    #[arg(long)]
    pub out: PathBuf,
    /// Fit this many layers of each model, evenly spaced in relative depth from the
    /// embeddings to the last block (overrides `--layers`, whose numbers mean different
    /// depths in models of different depth).
    #[arg(long)]
    pub layers_per_model: Option<usize>,
    /// Bootstrap replicates over electrodes for the intervals and differences.
    #[arg(long, default_value_t = 2000)]
    pub replicates: usize,
    /// Print the comparison as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// How the session is read.
    #[command(flatten)]
    pub xdf: XdfArgs,
    /// What is fit, and how: the same for every model.
    #[command(flatten)]
    pub settings: FitSettings,
}

/// `n` layers of a model with `model_layers` hidden states, evenly spaced from 0 to the last.
fn evenly_spaced(n: usize, model_layers: usize) -> Vec<usize> {
    let last = model_layers.saturating_sub(1);
    let mut layers: Vec<usize> = (0..n)
        .map(|i| (i as f64 * last as f64 / (n.max(2) - 1) as f64).round() as usize)
        .collect();
    layers.dedup();
    layers
}

/// A model's name as a file name.
fn slug(model: &ModelRef) -> String {
    let name = match model {
        ModelRef::File(p) => p
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned()),
        other => other.to_string(),
    };
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs `neuralign compare`.
pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.layers_per_model.is_none_or(|n| n >= 2),
        "--layers-per-model must be at least 2 (the embeddings and the last block)"
    );
    anyhow::ensure!(args.replicates >= 100, "--replicates must be at least 100");
    let mut cfg = args.settings.config()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut fits = Vec::new();
    for model in &args.models {
        tracing::info!(%model, "embedding and fitting");
        let loaded = args
            .xdf
            .load(&args.session, Some(model.clone()))
            .with_context(|| format!("{model}: reading {}", args.session.display()))?;
        if let Some(n) = args.layers_per_model {
            cfg.layers = Some(evenly_spaced(n, loaded.session.layers));
        }
        let out = args
            .out
            .join(format!("encoders-{}.safetensors", slug(model)));
        let enc = fit_and_save(&loaded, &cfg, &out).with_context(|| format!("fitting {model}"))?;
        let statistics = enc.meta.statistics.clone().with_context(|| {
            format!(
                "{model}: the held-out tail is too short for the statistics; give more --holdout"
            )
        })?;
        fits.push(ModelFit {
            name: model.to_string(),
            sha256: loaded.model.sha256.clone(),
            model_layers: loaded.session.layers,
            encoders: out.display().to_string(),
            statistics,
        });
    }
    let config = CompareConfig {
        replicates: args.replicates,
        seed: args.settings.seed,
        ..CompareConfig::default()
    };
    let comparison = compare::compare(&args.session.display().to_string(), &fits, &config)?;
    compare::write_all(&comparison, &args.out)?;
    for m in &comparison.models {
        tracing::info!(
            rank = m.rank,
            model = %m.model,
            brain_score = m.brain_score,
            significant = m.significant,
            peak_relative_depth = ?m.peak_relative_depth,
        );
    }
    tracing::info!("wrote {}", args.out.join(compare::INDEX).display());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_evenly_spaced_from_the_embeddings_to_the_last_block() {
        assert_eq!(evenly_spaced(4, 31), vec![0, 10, 20, 30]);
        assert_eq!(evenly_spaced(4, 19), vec![0, 6, 12, 18]);
        assert_eq!(evenly_spaced(40, 3), vec![0, 1, 2]);
    }
}
