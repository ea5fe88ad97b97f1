//! `neuralign serve`: the live server — dashboard at `/`, JSON frames at `/ws`.
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::app::{App, Feed};
use crate::pipeline::Config;
use crate::serve::ServerConfig;
use crate::sim::dashboard::SyntheticConfig;

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

/// Runs the server until Ctrl-C (or until the pipeline stops on an error).
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (config, base_dir) = Config::load_or_default(args.config.as_deref())?;
    let mut server = config.server.clone();
    if let Some(bind) = args.bind {
        server.bind = bind;
    }
    let feed = if args.synthetic {
        anyhow::ensure!(args.electrodes > 0, "--electrodes must be at least 1");
        Feed::Synthetic(SyntheticConfig {
            electrodes: args.electrodes,
            ..Default::default()
        })
    } else {
        Feed::Live {
            config: Box::new(config),
            base_dir,
        }
    };
    serve(server, feed)
}

/// Serves `feed` until Ctrl-C, printing the dashboard URL first and the pipeline's report
/// (and its recording) at the end.
pub(crate) fn serve(server: ServerConfig, feed: Feed) -> anyhow::Result<()> {
    let app = App::start(server.with_env_token(), feed)?;
    // scripts (and the browser test) read this line
    println!("dashboard: {}", app.dashboard_url());
    app.stop_on_ctrl_c();
    if let Some(report) = app.wait()? {
        if let Some(path) = &report.recording {
            println!("recording: {}", path.display());
        }
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
