//! HTTP side of the server: routes (dashboard, `/ws`, `/metrics`), origin and token
//! checks, the client limit, and the listener's lifecycle.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

use super::config::ServerConfig;
use super::hub::Hub;
use super::ws::{serve_connection, HARD_LIMIT_FACTOR};
use super::ServeError;

const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
const STYLE_CSS: &str = include_str!("../../assets/dashboard/style.css");

#[derive(Clone)]
struct AppState {
    hub: Hub,
    config: Arc<ServerConfig>,
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    hub: Hub,
}

impl Server {
    /// Checks the settings and binds the listener. Fails before binding when the
    /// address is not loopback and no token is set.
    pub async fn bind(config: ServerConfig, hub: Hub) -> Result<Self, ServeError> {
        config.validate()?;
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr()?;
        let state = AppState {
            hub: hub.clone(),
            config: Arc::new(config),
        };
        let router = Router::new()
            .route("/", get(|| async { Html(INDEX_HTML) }))
            .route(
                "/app.js",
                get(|| async { asset("text/javascript", APP_JS) }),
            )
            .route("/style.css", get(|| async { asset("text/css", STYLE_CSS) }))
            .route("/ws", get(websocket))
            .route("/metrics", get(metrics))
            .with_state(state);
        Ok(Self {
            listener,
            addr,
            router,
            hub,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then closes every WebSocket connection.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let hub = self.hub.clone();
        tracing::info!(addr = %self.addr, "serving dashboard and WebSocket");
        // frames are small and latency matters more than packet count
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                hub.close_all();
            })
            .await?;
        Ok(())
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Whether the request carries the configured token (always true without one).
fn authorized(config: &ServerConfig, uri: &Uri, headers: &HeaderMap) -> bool {
    let Some(expected) = &config.token else {
        return true;
    };
    let from_query = uri
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| {
            pair.strip_prefix("token=")
                .map(|v| percent_decode(v).unwrap_or_default())
        });
    let from_header = || {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| {
                headers
                    .get("x-neuralign-token")
                    .and_then(|v| v.to_str().ok())
            })
            .map(str::to_owned)
    };
    from_query
        .or_else(from_header)
        .is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
}

/// Decodes `%XX` escapes and `+` of a query value; `None` on bad escapes or UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Compares without stopping at the first difference, so timing reveals nothing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(state: &AppState) -> Response {
    state
        .hub
        .metrics()
        .rejected_unauthorized
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (
        StatusCode::UNAUTHORIZED,
        "missing or wrong token: add ?token=... or an Authorization: Bearer header\n",
    )
        .into_response()
}

/// Why a browser's `Origin` may not open `/ws`: `None` when it may. Browsers send
/// `Origin` on every WebSocket handshake and pages cannot forge it, so this keeps
/// other pages open on the machine away from the data; clients that send none
/// (not browsers) pass, and the token guards them. Without a token, the server's own
/// origin counts only under a loopback `Host`: a page whose name was made to resolve to
/// 127.0.0.1 (DNS rebinding) sends an `Origin` equal to its `Host`, and is refused.
fn foreign_origin<'h>(config: &ServerConfig, uri: &Uri, headers: &'h HeaderMap) -> Option<&'h str> {
    let origin = headers.get(header::ORIGIN)?;
    let Ok(origin) = origin.to_str() else {
        return Some("(not ASCII)");
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    // an origin's host and port are those of its URL, which for the server's own
    // page are the Host the browser sent ("null" and the like have none)
    let same_origin = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .zip(host)
        .is_some_and(|(authority, host)| {
            authority.eq_ignore_ascii_case(host) && (config.token.is_some() || loopback_host(host))
        });
    let allowed = config
        .allowed_origins
        .iter()
        .any(|a| a.eq_ignore_ascii_case(origin));
    (!same_origin && !allowed).then_some(origin)
}

/// Whether a `Host` header names this machine: a loopback address or `localhost`.
fn loopback_host(host: &str) -> bool {
    if let Ok(addr) = host.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn forbidden_origin(state: &AppState, origin: &str) -> Response {
    state
        .hub
        .metrics()
        .rejected_origin
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(
        origin,
        "refused a WebSocket handshake from a foreign origin"
    );
    (
        StatusCode::FORBIDDEN,
        format!(
            "origin {origin} may not open /ws: to allow it, add \
             allowed_origins = [\"{origin}\"] to [server] in the config\n"
        ),
    )
        .into_response()
}

async fn websocket(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(origin) = foreign_origin(&state.config, &uri, &headers) {
        return forbidden_origin(&state, origin);
    }
    if !authorized(&state.config, &uri, &headers) {
        return unauthorized(&state);
    }
    let client = match state.hub.connect() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("refused a WebSocket client: {e}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{e}; try again later\n"),
            )
                .into_response();
        }
    };
    tracing::info!(
        clients = state.hub.client_count(),
        "WebSocket client connected"
    );
    let hard = state
        .config
        .max_message_bytes
        .saturating_mul(HARD_LIMIT_FACTOR);
    let (hub, config) = (state.hub.clone(), state.config.clone());
    upgrade
        .max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| async move {
            let metrics = hub.metrics_arc();
            serve_connection(socket, client, metrics, &config, hub.closed()).await;
            tracing::info!("WebSocket client disconnected");
        })
}

async fn metrics(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    if !authorized(&state.config, &uri, &headers) {
        return unauthorized(&state);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.hub.render_metrics(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_query_or_headers() {
        let config = ServerConfig {
            token: Some("a b&c".into()),
            ..Default::default()
        };
        let none = HeaderMap::new();
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert!(authorized(&config, &uri("/ws?x=1&token=a+b%26c"), &none));
        assert!(!authorized(&config, &uri("/ws?token=a+b"), &none));
        assert!(!authorized(&config, &uri("/ws"), &none));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer a b&c".parse().unwrap());
        assert!(authorized(&config, &uri("/ws"), &h));
        let mut h = HeaderMap::new();
        h.insert("x-neuralign-token", "wrong".parse().unwrap());
        assert!(!authorized(&config, &uri("/ws"), &h));
        assert!(authorized(&ServerConfig::default(), &uri("/ws"), &none));
    }

    #[test]
    fn origin_must_be_the_servers_own_or_listed() {
        let config = ServerConfig {
            allowed_origins: vec!["https://lab.example.org".into()],
            ..Default::default()
        };
        let uri: Uri = "/ws".parse().unwrap();
        let request = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "127.0.0.1:8787".parse().unwrap());
            if let Some(o) = origin {
                h.insert(header::ORIGIN, o.parse().unwrap());
            }
            h
        };
        let foreign = |o| foreign_origin(&config, &uri, &request(o)).is_some();
        assert!(!foreign(None));
        assert!(!foreign(Some("http://127.0.0.1:8787")));
        assert!(!foreign(Some("https://127.0.0.1:8787")));
        assert!(!foreign(Some("https://LAB.example.org")));
        assert!(foreign(Some("http://evil.example")));
        assert!(foreign(Some("http://127.0.0.1:9999")));
        assert!(foreign(Some("https://lab.example.org.evil.example")));
        assert!(foreign(Some("null")));
    }

    #[test]
    fn without_a_token_only_a_loopback_host_is_its_own_origin() {
        // DNS rebinding: evil.example made to resolve to 127.0.0.1 sends Origin = Host
        let uri: Uri = "/ws".parse().unwrap();
        let request = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, host.parse().unwrap());
            h.insert(header::ORIGIN, format!("http://{host}").parse().unwrap());
            h
        };
        let open = ServerConfig::default();
        for host in [
            "127.0.0.1:8787",
            "localhost:8787",
            "[::1]:8787",
            "LOCALHOST",
        ] {
            assert!(
                foreign_origin(&open, &uri, &request(host)).is_none(),
                "{host}"
            );
        }
        assert!(foreign_origin(&open, &uri, &request("evil.example:8787")).is_some());
        let with_token = ServerConfig {
            token: Some("s3cret".into()),
            ..Default::default()
        };
        assert!(foreign_origin(&with_token, &uri, &request("lab-pc.local:8787")).is_none());
    }
}
