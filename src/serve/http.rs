//! HTTP side of the server: routes (dashboard, `/ws`, `/metrics`), token checks,
//! the client limit, and the listener's lifecycle.

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

async fn websocket(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
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
    let max = state.config.max_message_bytes;
    let hard = max.saturating_mul(HARD_LIMIT_FACTOR);
    let interval = state.config.status_interval();
    let hub = state.hub.clone();
    upgrade
        .max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| async move {
            let metrics = hub.metrics_arc();
            serve_connection(socket, client, metrics, max, interval, hub.closed()).await;
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
}
