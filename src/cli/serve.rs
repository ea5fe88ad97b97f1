//! `neuralign serve`: the live server — dashboard at `/`, JSON frames at `/ws`.
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::Config;
use crate::serve::synthetic::{self, SyntheticConfig};
use crate::serve::{Hub, Server};
use anyhow::Context;
use clap::Args;

/// Arguments of `neuralign serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Session config (TOML, default `configs/bedside.toml` when present); its
    /// `[server]` table sets address, token and limits.
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

/// Runs the server until Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load_or_default(args.config.as_deref())?.0.server;
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
