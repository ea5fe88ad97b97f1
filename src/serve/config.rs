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
    /// Browser origins (`scheme://host[:port]`, exact) allowed to open `/ws` besides
    /// the server's own. Requests without an `Origin` header (non-browser clients)
    /// are always allowed; the token guards those.
    pub allowed_origins: Vec<String>,
    /// A socket write that takes longer than this evicts the client (its TCP
    /// window stayed full), milliseconds.
    pub write_timeout_ms: u64,
    /// Interval between the server's pings to each client, milliseconds.
    pub ping_interval_ms: u64,
    /// A client that has not answered a ping this long after it was sent is
    /// evicted, milliseconds.
    pub ping_timeout_ms: u64,
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
            allowed_origins: Vec::new(),
            write_timeout_ms: 5000,
            ping_interval_ms: 5000,
            ping_timeout_ms: 10_000,
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
            ("write_timeout_ms", self.write_timeout_ms as usize),
            ("ping_interval_ms", self.ping_interval_ms as usize),
            ("ping_timeout_ms", self.ping_timeout_ms as usize),
        ] {
            if v == 0 {
                return Err(ServeError::Config(format!("server.{name} must be > 0")));
            }
        }
        for origin in &self.allowed_origins {
            check_origin(origin).map_err(|why| {
                ServeError::Config(format!("server.allowed_origins: {origin:?} {why}"))
            })?;
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

    /// Longest a socket write may take before the client is evicted.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// Interval between pings.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// Longest a ping may go unanswered before the client is evicted.
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }
}

/// Checks that an allow-list entry has the form browsers send in `Origin`, so that
/// it can match at all (a path or trailing slash never would).
fn check_origin(origin: &str) -> Result<(), &'static str> {
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if authority.is_empty() || authority.contains(['/', '?', '#', '*', ' ']) {
        return Err("must be scheme://host[:port] with no path, wildcard or trailing slash");
    }
    Ok(())
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

    #[test]
    fn timeouts_and_origins_are_checked() {
        let c: ServerConfig = toml::from_str(
            "allowed_origins = [\"https://lab.example.org\", \"http://10.0.0.5:8080\"]\n\
             write_timeout_ms = 250",
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.write_timeout(), Duration::from_millis(250));
        assert_eq!(c.ping_timeout(), ServerConfig::default().ping_timeout());
        for bad in [
            "*",
            "lab.example.org",
            "https://lab.example.org/",
            "http://",
        ] {
            let c = ServerConfig {
                allowed_origins: vec![bad.into()],
                ..Default::default()
            };
            assert!(matches!(c.validate(), Err(ServeError::Config(_))), "{bad}");
        }
        let c = ServerConfig {
            ping_timeout_ms: 0,
            ..Default::default()
        };
        assert!(
            matches!(c.validate(), Err(ServeError::Config(m)) if m.contains("ping_timeout_ms"))
        );
    }
}
