//! The server: WebSocket API and live dashboard.
//!
//! The pipeline pushes [`Frame`]s into a [`Hub`] (never blocking on clients); the
//! [`Server`] serves the dashboard at `/`, the JSON frames at `/ws` and Prometheus
//! counters at `/metrics`. The protocol is documented in `docs/websocket.md`.

pub mod config;
pub mod frames;
mod http;
pub mod hub;
pub mod metrics;
pub mod subscription;
mod ws;

use std::net::SocketAddr;

pub use config::ServerConfig;
pub use frames::{
    AlignmentSummary, AlignmentUpdate, ElectrodeInfo, Frame, FrameKind, PipelineStatus, Rates,
    Session, StreamStatus, TraceChunk, WordEvent, WordStatus,
};
pub use http::Server;
pub use hub::{Hub, HubConfig, HubError};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bound beyond loopback without a token.
    #[error(
        "refusing to listen on {0} without a token: set server.token in the config or \
         NEURALIGN_TOKEN, or bind 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    /// A setting is out of range.
    #[error("invalid server setting: {0}")]
    Config(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another server using the port?)")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}
