//! `neuralign serve`: the live server — dashboard at `/`, JSON frames at `/ws`.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::serve::synthetic::{self, SyntheticConfig};
use crate::serve::{pipeline, Hub, Server};
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
    let (session_config, base_dir) = Config::load_or_default(args.config.as_deref())?;
    let mut config = session_config.server.clone();
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    let config = config.with_env_token();
    if !args.synthetic {
        return serve_live(config, session_config, base_dir);
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

/// Serves the live pipeline (LSL in, frames out, XDF recording) until Ctrl-C or until the
/// pipeline stops on an error.
fn serve_live(
    config: crate::serve::ServerConfig,
    session: Config,
    base_dir: PathBuf,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let has_token = config.token.is_some();
        let hub = Hub::new(config.hub_config());
        let server = Server::bind(config, hub.clone()).await?;
        println!(
            "dashboard: http://{}/{}",
            server.local_addr(),
            if has_token { "?token=<your token>" } else { "" }
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let pipeline = std::thread::Builder::new().name("pipeline".into()).spawn({
            let stop = stop.clone();
            move || {
                let report = pipeline::run(&session, &base_dir, hub, stop);
                let _ = done_tx.send(());
                report
            }
        })?;
        let shutdown = {
            let stop = stop.clone();
            async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
                    _ = done_rx => {}
                }
                stop.store(true, Ordering::Relaxed);
            }
        };
        server.run(shutdown).await?;
        stop.store(true, Ordering::Relaxed);
        let report = tokio::task::spawn_blocking(move || pipeline.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))??;
        if let Some(path) = &report.recording {
            println!("recording: {}", path.display());
        }
        println!("{}", serde_json::to_string(&report)?);
        anyhow::Ok(())
    })
}
