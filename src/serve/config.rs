//! Server settings (the `[server]` table of a config file) and their safety checks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hub::HubConfig;
use super::ServeError;

/// Environment variable holding the access token when the config has none.
pub const TOKEN_ENV: &str = "NEURALIGN_TOKEN";

/// Settings of the HTTP/WebSocket server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; loopback unless a token is set.
    pub bind: SocketAddr,
    /// Access token for `/ws` and `/metrics` (`?token=`, `Authorization: Bearer`,
    /// or `X-Neuralign-Token`). Required when `bind` is not a loopback address.
    pub token: Option<String>,
    /// Most WebSocket clients at once; more are refused with 503.
    pub max_clients: usize,
    /// Largest client message answered normally; larger ones get an `error` frame.
    /// Messages over 16 times this close the connection (1009).
    pub max_message_bytes: usize,
    /// Frames queued per client before newer frames are dropped for it.
    pub queue_frames: usize,
    /// Interval between a client's `status` frames, milliseconds.
    pub status_interval_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8787),
            token: None,
            max_clients: 32,
            max_message_bytes: 16 * 1024,
            queue_frames: 64,
            status_interval_ms: 1000,
        }
    }
}

impl ServerConfig {
    /// Takes the token from `NEURALIGN_TOKEN` when the config sets none.
    pub fn with_env_token(mut self) -> Self {
        if self.token.is_none() {
            self.token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
        }
        self
    }

    /// Refuses settings that would expose the server or cannot work.
    pub fn validate(&self) -> Result<(), ServeError> {
        if matches!(&self.token, Some(t) if t.trim().is_empty()) {
            return Err(ServeError::Config("server.token is empty".into()));
        }
        if !self.bind.ip().is_loopback() && self.token.is_none() {
            return Err(ServeError::TokenRequired(self.bind));
        }
        for (name, v) in [
            ("max_clients", self.max_clients),
            ("max_message_bytes", self.max_message_bytes),
            ("queue_frames", self.queue_frames),
            ("status_interval_ms", self.status_interval_ms as usize),
        ] {
            if v == 0 {
                return Err(ServeError::Config(format!("server.{name} must be > 0")));
            }
        }
        Ok(())
    }

    /// The hub's share of these settings.
    pub fn hub_config(&self) -> HubConfig {
        HubConfig {
            queue_frames: self.queue_frames,
            max_clients: self.max_clients,
            max_message_bytes: self.max_message_bytes,
        }
    }

    /// Interval between `status` frames.
    pub fn status_interval(&self) -> Duration {
        Duration::from_millis(self.status_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_token() {
        let mut c = ServerConfig {
            bind: "0.0.0.0:8787".parse().unwrap(),
            ..Default::default()
        };
        assert!(matches!(c.validate(), Err(ServeError::TokenRequired(_))));
        c.token = Some("  ".into());
        assert!(matches!(c.validate(), Err(ServeError::Config(_))));
        c.token = Some("s3cret".into());
        assert!(c.validate().is_ok());
        assert!(ServerConfig::default().validate().is_ok());
    }

    #[test]
    fn parses_a_server_table() {
        let c: ServerConfig = toml::from_str("bind = \"127.0.0.1:9000\"\nmax_clients = 4").unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.max_clients, 4);
        assert_eq!(c.queue_frames, ServerConfig::default().queue_frames);
        assert!(toml::from_str::<ServerConfig>("bnd = 1").is_err());
    }
}
