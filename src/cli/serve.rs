//! `neuralign serve`: the live server — dashboard at `/`, JSON frames at `/ws`.
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::serve::synthetic::{self, SyntheticConfig};
use crate::serve::{Hub, Server, ServerConfig};
use anyhow::Context;
use clap::Args;

/// Arguments of `neuralign serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Session config (TOML); its `[server]` table sets address, token and limits.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address, overriding the config (use port 0 for any free port).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Publish a synthetic session instead of live streams, to try the dashboard
    /// and clients without an amplifier or a model.
    #[arg(long)]
    pub synthetic: bool,
    /// Electrodes of the synthetic session.
    #[arg(long, default_value_t = 64, requires = "synthetic")]
    pub electrodes: usize,
}

/// Reads the `[server]` table of a config file (other tables belong to other stages).
fn load_server_config(path: &std::path::Path) -> anyhow::Result<ServerConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    match table.remove("server") {
        None => Ok(ServerConfig::default()),
        Some(server) => server
            .try_into()
            .with_context(|| format!("bad [server] table in {}", path.display())),
    }
}

/// Runs the server until Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => load_server_config(path)?,
        None => ServerConfig::default(),
    };
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    let config = config.with_env_token();
    if !args.synthetic {
        anyhow::bail!(
            "live serving from LSL needs the ingest → lm → encode → align pipeline, which is \
             not wired into `serve` yet; run `neuralign serve --synthetic` to try the dashboard"
        );
    }
    if args.electrodes == 0 {
        anyhow::bail!("--electrodes must be at least 1");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let has_token = config.token.is_some();
        let hub = Hub::new(config.hub_config());
        let server = Server::bind(config, hub.clone()).await?;
        let addr = server.local_addr();
        // scripts (and the browser test) read this line
        println!(
            "dashboard: http://{addr}/{}",
            if has_token { "?token=<your token>" } else { "" }
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        };
        let synthetic = SyntheticConfig {
            electrodes: args.electrodes,
            ..Default::default()
        };
        let publisher = tokio::spawn(synthetic::run(hub.clone(), synthetic, hub.closed()));
        server.run(shutdown).await?;
        publisher.await.context("synthetic publisher failed")?;
        anyhow::Ok(())
    })
}
