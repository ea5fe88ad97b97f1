//! `neuralign model ...`: manage the language model file.
use clap::Subcommand;

/// Model management subcommands.
#[derive(Subcommand)]
pub enum ModelCommand {
    /// Fetch the default model into the cache and verify its checksums.
    Fetch,
}

/// Runs a model subcommand.
pub fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Fetch => anyhow::bail!("not implemented yet"),
    }
}
