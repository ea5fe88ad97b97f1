//! The running server as one lifecycle: an [`App`] owns the async runtime, the [`Hub`], the
//! bound HTTP/WebSocket [`Server`], what feeds the hub (the live [`pipeline`] on its own
//! thread, or a synthetic session), and one [`Shutdown`] signal that stops them in order.
//!
//! `serve`, `demo`, `bench e2e` and the tests start the server only through here:
//! ```text
//! App::start(server, feed) → hub, local_addr, shutdown handle
//!     … Ctrl-C (App::stop_on_ctrl_c), a test's trigger(), or the pipeline stopping …
//! App::wait() → the pipeline's report
//! ```
//! Order at shutdown: the pipeline stops its producers and finishes the recording; then the
//! server stops accepting, closes every WebSocket and returns.
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::pipeline::{self, PipelineReport};
use crate::serve::{Hub, ServeError, Server, ServerConfig};
use crate::sim::dashboard::SyntheticConfig;

/// What publishes into the hub.
#[derive(Debug, Clone)]
pub enum Feed {
    /// The live pipeline: LSL in, encoders, alignment, XDF recording.
    Live {
        /// The whole server config (its `[server]` table is ignored: see [`App::start`]).
        config: Box<pipeline::Config>,
        /// The folder the config's relative paths are relative to.
        base_dir: PathBuf,
    },
    /// A synthetic session, for trying clients and the dashboard without streams or a model.
    Synthetic(SyntheticConfig),
}

/// One shutdown signal for every part of the server: a flag the pipeline's threads poll and a
/// future the async parts await. Cloning shares the signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    /// Asks everything to stop (idempotent).
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.tx.send_replace(true);
    }

    /// Whether [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// The flag that threads poll (the pipeline, a replay).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Resolves once the signal is triggered.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Triggers the signal on Ctrl-C (SIGINT), from a small thread with a runtime of its own,
    /// so that any command (the server, a replay) handles it the same way, in one place.
    pub fn trigger_on_ctrl_c(&self) {
        let shutdown = self.clone();
        let watcher = std::thread::Builder::new()
            .name("ctrl-c".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let Ok(runtime) = runtime else { return };
                runtime.block_on(async {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {
                            tracing::info!("shutting down");
                            shutdown.trigger();
                        }
                        _ = shutdown.wait() => {}
                    }
                });
            });
        if let Err(e) = watcher {
            tracing::warn!("Ctrl-C will not stop this cleanly: {e}");
        }
    }
}

/// The running server. Dropping it without [`App::wait`] triggers the shutdown and waits.
pub struct App {
    runtime: Option<tokio::runtime::Runtime>,
    hub: Hub,
    addr: SocketAddr,
    token: bool,
    shutdown: Shutdown,
    server: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
    pipeline: Option<std::thread::JoinHandle<anyhow::Result<PipelineReport>>>,
}

impl App {
    /// Binds the server (`server`, e.g. from the config's `[server]` table with the token
    /// from the environment) and starts `feed`. Fails before anything runs when the address
    /// cannot be bound or the settings are unsafe.
    pub fn start(server: ServerConfig, feed: Feed) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        let token = server.token.is_some();
        let hub = Hub::new(server.hub_config());
        let bound = runtime.block_on(Server::bind(server, hub.clone()))?;
        let addr = bound.local_addr();
        let shutdown = Shutdown::default();
        let server = runtime.spawn(bound.run(shutdown.wait()));
        let pipeline = match feed {
            Feed::Live { config, base_dir } => {
                let (hub, stop) = (hub.clone(), shutdown.clone());
                let thread = std::thread::Builder::new()
                    .name("pipeline".into())
                    .spawn(move || {
                        let report = pipeline::run(&config, &base_dir, hub, stop.flag());
                        // a pipeline that stops on its own (an error) stops the server too
                        stop.trigger();
                        report
                    })
                    .context("cannot start the pipeline thread")?;
                Some(thread)
            }
            Feed::Synthetic(config) => {
                runtime.spawn(crate::sim::dashboard::run(
                    hub.clone(),
                    config,
                    shutdown.wait(),
                ));
                None
            }
        };
        Ok(Self {
            runtime: Some(runtime),
            hub,
            addr,
            token,
            shutdown,
            server: Some(server),
            pipeline,
        })
    }

    /// The hub the feed publishes into (metrics, clients, session).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The dashboard's URL, as `serve` prints it (scripts and the browser test read it).
    pub fn dashboard_url(&self) -> String {
        let token = if self.token {
            "?token=<your token>"
        } else {
            ""
        };
        format!("http://{}/{token}", self.addr)
    }

    /// A handle on the shutdown signal.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The async runtime the server runs on (for clients in the same process).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    /// Whether the pipeline thread has ended (it stops on an error or on shutdown).
    pub fn pipeline_finished(&self) -> bool {
        self.pipeline.as_ref().is_some_and(|p| p.is_finished())
    }

    /// Triggers the shutdown on Ctrl-C ([`Shutdown::trigger_on_ctrl_c`]).
    pub fn stop_on_ctrl_c(&self) {
        self.shutdown.trigger_on_ctrl_c();
    }

    /// Waits until the shutdown is triggered (or the pipeline stops on its own), then stops
    /// every part in order; returns the pipeline's report (none for a synthetic feed).
    pub fn wait(mut self) -> anyhow::Result<Option<PipelineReport>> {
        let report = self.join_pipeline();
        let server = self.join_server();
        let report = report?;
        server?;
        Ok(report)
    }

    /// Triggers the shutdown and waits for it ([`App::wait`]).
    pub fn stop(self) -> anyhow::Result<Option<PipelineReport>> {
        self.shutdown.trigger();
        self.wait()
    }

    fn join_pipeline(&mut self) -> anyhow::Result<Option<PipelineReport>> {
        let Some(thread) = self.pipeline.take() else {
            self.runtime().block_on(self.shutdown.wait());
            return Ok(None);
        };
        let report = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"));
        self.shutdown.trigger();
        Ok(Some(report??))
    }

    fn join_server(&mut self) -> anyhow::Result<()> {
        let Some(server) = self.server.take() else {
            return Ok(());
        };
        self.shutdown.trigger();
        self.runtime()
            .block_on(server)
            .context("the server task failed")??;
        Ok(())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.trigger();
        let _ = self.join_pipeline();
        let _ = self.join_server();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
