//! The hub: fans frames from the pipeline out to every WebSocket client.
//!
//! [`Hub::publish`] never waits on a client. Each frame is encoded to JSON once per
//! distinct client view (all clients with the same subscription share the bytes)
//! and offered to each client's bounded queue; a full queue drops the frame for
//! that client only, and the drop is counted and reported in its `status` frames.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, watch};

use super::frames::{
    encode, AlignmentFrame, AlignmentSummary, AlignmentUpdate, ClientCounters, ClientLimits, Frame,
    FrameKind, HelloFrame, PipelineStatus, ResolvedSubscription, Session, SessionModel,
    StageSummary, StatusFrame, SubscribeRequest, TraceChunk, TraceFrame, WordEvent, WordFrame,
    PROTOCOL_VERSION,
};
use super::metrics::Metrics;
use super::subscription::{default_subscription, resolve, View};
use crate::metrics::Stage;

/// Server name and version announced in `hello`.
const SERVER: &str = concat!("neuralign ", env!("CARGO_PKG_VERSION"));

/// Why the hub refused something.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HubError {
    /// `max_clients` are connected already.
    #[error("client limit reached ({0} clients)")]
    Full(usize),
    /// A frame arrived before [`Hub::set_session`].
    #[error("no session yet: call Hub::set_session before publishing {0} frames")]
    NoSession(&'static str),
    /// A frame names a model the session does not have.
    #[error("{kind} frame of model {model}: the session has {models} models")]
    UnknownModel {
        /// Frame kind.
        kind: &'static str,
        /// The model index the frame names.
        model: usize,
        /// Models in the session.
        models: usize,
    },
    /// A frame's arrays do not match the session's electrodes and the model's layers.
    #[error("{kind} frame has {got} values, the session needs {expected}")]
    Shape {
        /// Frame kind.
        kind: &'static str,
        /// Values in the frame.
        got: usize,
        /// Values the session's shape implies.
        expected: usize,
    },
    /// A subscription could not be applied.
    #[error("{0}")]
    Subscription(String),
}

/// Hub limits.
#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    /// Frames queued per client before newer ones are dropped.
    pub queue_frames: usize,
    /// Most clients connected at once.
    pub max_clients: usize,
    /// Largest client message accepted (announced in `hello`).
    pub max_message_bytes: usize,
}

/// One encoded frame on its way to a client.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The JSON text, shared between clients.
    pub text: Utf8Bytes,
    /// When the pipeline published it (for the send-latency histogram).
    pub published: Instant,
    /// LSL clock at which the oldest sample it carries was due to go out (end-to-end
    /// latency, see [`Stage::EndToEnd`]).
    pub origin: Option<f64>,
}

/// A client's counters, shared by its hub slot and its connection.
#[derive(Debug, Default)]
struct ClientStats {
    dropped: AtomicU64,
    sent: AtomicU64,
}

struct ClientSlot {
    tx: mpsc::Sender<Outgoing>,
    subscription: Option<ResolvedSubscription>,
    view: Option<View>,
    /// When the last throttled frame of each kind went, per model.
    last_alignment: Vec<Option<Instant>>,
    last_trace: Vec<Option<Instant>>,
    stats: Arc<ClientStats>,
}

impl ClientSlot {
    /// Offers a frame to the client's queue; a full queue counts a drop.
    fn offer(&self, out: &Outgoing, metrics: &Metrics) -> bool {
        match self.tx.try_send(out.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Relaxed);
                metrics.dropped.fetch_add(1, Relaxed);
                false
            }
            // the connection is closing; its slot goes with its handle
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether a throttled frame of model `model` may go now (and notes that it did).
    fn throttle(last: &mut Vec<Option<Instant>>, model: usize, rate: f64, now: Instant) -> bool {
        if last.len() <= model {
            last.resize(model + 1, None);
        }
        let last = &mut last[model];
        if rate > 0.0 {
            if let Some(t) = *last {
                if now.duration_since(t) < Duration::from_secs_f64(1.0 / rate) {
                    return false;
                }
            }
        }
        *last = Some(now);
        true
    }
}

#[derive(Default)]
struct State {
    session: Option<Arc<Session>>,
    status: PipelineStatus,
    clients: HashMap<u64, ClientSlot>,
}

struct Inner {
    config: HubConfig,
    limits: ClientLimits,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    next_id: AtomicU64,
    started: Instant,
    shutdown: watch::Sender<bool>,
}

/// Fan-out point between the pipeline and the clients; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Hub {
    /// A hub with no session and no clients.
    pub fn new(config: HubConfig) -> Self {
        let limits = ClientLimits {
            max_message_bytes: config.max_message_bytes,
            queue_frames: config.queue_frames,
        };
        Self {
            inner: Arc::new(Inner {
                config,
                limits,
                state: Mutex::new(State::default()),
                metrics: Arc::new(Metrics::default()),
                next_id: AtomicU64::new(1),
                started: Instant::now(),
                shutdown: watch::channel(false).0,
            }),
        }
    }

    /// The hub's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The hub's counters, shared.
    pub fn metrics_arc(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// Prometheus text for `/metrics`: the counters, stream health from the latest
    /// pipeline status (lags against the LSL clock now) and the stage histograms.
    pub fn render_metrics(&self) -> String {
        // a copy, so that publishing never waits on the rendering
        let status = self.state().status.clone();
        self.inner.metrics.render(&status, lsl::local_clock())
    }

    /// The hub's limits.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // a panic elsewhere must not take the server down with it
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts (or changes) the session and sends `hello` to every client.
    /// Subscriptions are kept where they still fit the new session.
    pub fn set_session(&self, session: Session) {
        let session = Arc::new(session);
        let now = Instant::now();
        let mut state = self.state();
        state.session = Some(session.clone());
        for slot in state.clients.values_mut() {
            let sub = slot
                .subscription
                .take()
                .unwrap_or_else(|| default_subscription(&session));
            let view = View::new(sub, &session);
            slot.subscription = Some(view.subscription.clone());
            let out = Outgoing {
                text: self.hello_text(&session, &view.subscription),
                published: now,
                origin: None,
            };
            slot.view = Some(view);
            slot.offer(&out, &self.inner.metrics);
        }
    }

    fn hello_text(&self, session: &Session, subscription: &ResolvedSubscription) -> Utf8Bytes {
        encode(
            FrameKind::Hello,
            &HelloFrame {
                protocol: PROTOCOL_VERSION,
                server: SERVER,
                session,
                subscription,
                limits: &self.inner.limits,
            },
        )
        .into()
    }

    /// Registers a client. Its queue starts with `hello` when a session exists.
    pub fn connect(&self) -> Result<ClientHandle, HubError> {
        let (tx, rx) = mpsc::channel(self.inner.config.queue_frames.max(1));
        let stats = Arc::new(ClientStats::default());
        let id = self.inner.next_id.fetch_add(1, Relaxed);
        let mut state = self.state();
        if state.clients.len() >= self.inner.config.max_clients {
            self.inner
                .metrics
                .rejected_client_limit
                .fetch_add(1, Relaxed);
            return Err(HubError::Full(self.inner.config.max_clients));
        }
        let mut slot = ClientSlot {
            tx,
            subscription: None,
            view: None,
            last_alignment: Vec::new(),
            last_trace: Vec::new(),
            stats: stats.clone(),
        };
        if let Some(session) = state.session.clone() {
            let view = View::new(default_subscription(&session), &session);
            let out = Outgoing {
                text: self.hello_text(&session, &view.subscription),
                published: Instant::now(),
                origin: None,
            };
            slot.subscription = Some(view.subscription.clone());
            slot.view = Some(view);
            slot.offer(&out, &self.inner.metrics);
        }
        state.clients.insert(id, slot);
        self.inner
            .metrics
            .clients
            .store(state.clients.len() as u64, Relaxed);
        self.inner.metrics.connections.fetch_add(1, Relaxed);
        Ok(ClientHandle {
            hub: self.clone(),
            id,
            queue: Some(ClientQueue(rx)),
            stats,
        })
    }

    /// Applies a client's `subscribe` request; returns the subscription in force.
    fn subscribe(
        &self,
        id: u64,
        request: &SubscribeRequest,
    ) -> Result<ResolvedSubscription, HubError> {
        let mut state = self.state();
        let session = state.session.clone().ok_or_else(|| {
            HubError::Subscription("no session yet: subscribe after hello".into())
        })?;
        let slot = state
            .clients
            .get_mut(&id)
            .ok_or_else(|| HubError::Subscription("client is disconnecting".into()))?;
        let current = slot
            .subscription
            .clone()
            .unwrap_or_else(|| default_subscription(&session));
        let resolved = resolve(request, &current, &session).map_err(HubError::Subscription)?;
        let view = View::new(resolved, &session);
        slot.subscription = Some(view.subscription.clone());
        slot.view = Some(view);
        Ok(slot.subscription.clone().expect("just set"))
    }

    /// Hands a frame to every client without waiting on any of them. Returns how
    /// many client queues took it (clients throttled by their `rate` or with a
    /// full queue do not count).
    pub fn publish(&self, frame: Frame) -> Result<usize, HubError> {
        self.publish_traced(frame, None)
    }

    /// [`Hub::publish`] for a frame whose oldest sample was due to go out at `origin` (LSL
    /// clock): its socket writes are recorded as end-to-end latency ([`Stage::EndToEnd`]).
    pub fn publish_traced(&self, frame: Frame, origin: Option<f64>) -> Result<usize, HubError> {
        let now = Instant::now();
        let kind = frame.kind();
        let metrics = &self.inner.metrics;
        metrics.published[kind as usize].fetch_add(1, Relaxed);
        match frame {
            Frame::Status(status) => {
                self.state().status = status;
                Ok(0)
            }
            Frame::Word(word) => self.publish_word(&word, now),
            Frame::Alignment(update) => self.publish_alignment(&update, now, origin),
            Frame::Trace(chunk) => self.publish_trace(&chunk, now, origin),
        }
    }

    /// A word to the clients subscribed to its model (and to those without a view yet).
    fn publish_word(&self, word: &WordEvent, now: Instant) -> Result<usize, HubError> {
        let state = self.state();
        let session = state.session.clone().ok_or(HubError::NoSession("word"))?;
        let model = session_model(&session, "word", word.model)?;
        let out = Outgoing {
            text: encode(
                FrameKind::Word,
                &WordFrame {
                    word,
                    model: &model.tag,
                },
            )
            .into(),
            published: now,
            origin: None,
        };
        let metrics = &self.inner.metrics;
        Ok(state
            .clients
            .values()
            .filter(|slot| {
                slot.view
                    .as_ref()
                    .is_none_or(|v| v.model(word.model).is_some())
            })
            .filter(|slot| slot.offer(&out, metrics))
            .count())
    }

    fn publish_alignment(
        &self,
        u: &AlignmentUpdate,
        now: Instant,
        origin: Option<f64>,
    ) -> Result<usize, HubError> {
        // one lock for the whole fan-out: views and session stay consistent
        let mut state = self.state();
        let session = state
            .session
            .clone()
            .ok_or(HubError::NoSession("alignment"))?;
        let model = session_model(&session, "alignment", u.model)?;
        let (n_e, n_l) = (session.electrodes.len(), model.layers.len());
        check_shape("alignment", u.r.len(), n_e * n_l)?;
        if !u.significant.is_empty() {
            check_shape("alignment significance", u.significant.len(), n_e)?;
        }
        let summary = AlignmentSummary::compute(&u.r, &model.layers, u.chance, &u.significant);
        let rows: Vec<&[f32]> = u.r.chunks_exact(n_l.max(1)).collect();
        let mut encoded: HashMap<Vec<usize>, Outgoing> = HashMap::new();
        let metrics = &self.inner.metrics;
        let mut queued = 0;
        for slot in state.clients.values_mut() {
            let Some((view, columns)) = slot
                .view
                .as_ref()
                .and_then(|v| Some((v, v.model(u.model)?)))
            else {
                continue;
            };
            if !ClientSlot::throttle(
                &mut slot.last_alignment,
                u.model,
                view.subscription.rate,
                now,
            ) {
                continue;
            }
            let out = encoded
                .entry(columns.layer_columns.clone())
                .or_insert_with(|| {
                    let r = rows
                        .iter()
                        .map(|row| columns.layer_columns.iter().map(|&c| row[c]).collect())
                        .collect();
                    let frame = AlignmentFrame {
                        model: &model.tag,
                        time: u.time,
                        horizon: u.horizon,
                        layers: &columns.layers,
                        r,
                        summary: &summary,
                        chance: u.chance,
                    };
                    Outgoing {
                        text: encode(FrameKind::Alignment, &frame).into(),
                        published: now,
                        origin,
                    }
                });
            queued += usize::from(slot.offer(out, metrics));
        }
        Ok(queued)
    }

    fn publish_trace(
        &self,
        c: &TraceChunk,
        now: Instant,
        origin: Option<f64>,
    ) -> Result<usize, HubError> {
        // one lock for the whole fan-out: views and session stay consistent
        let mut state = self.state();
        let session = state.session.clone().ok_or(HubError::NoSession("trace"))?;
        let model = session_model(&session, "trace", c.model)?;
        let (n_e, n_l, n) = (session.electrodes.len(), model.layers.len(), c.samples);
        check_shape("trace", c.actual.len(), n_e * n)?;
        check_shape("trace", c.predicted.len(), n_e * n_l * n)?;
        let mut encoded: HashMap<(Vec<usize>, Vec<usize>), Outgoing> = HashMap::new();
        let metrics = &self.inner.metrics;
        let mut queued = 0;
        for slot in state.clients.values_mut() {
            let Some((view, columns)) = slot
                .view
                .as_ref()
                .and_then(|v| Some((v, v.model(c.model)?)))
            else {
                continue;
            };
            if !ClientSlot::throttle(&mut slot.last_trace, c.model, view.subscription.rate, now) {
                continue;
            }
            let key = (
                view.subscription.electrodes.clone(),
                columns.layer_columns.clone(),
            );
            let out = encoded.entry(key).or_insert_with(|| {
                let sub = &view.subscription;
                let frame = TraceFrame {
                    model: &model.tag,
                    t0: c.t0,
                    rate: session.rates.high_gamma_hz,
                    electrodes: &sub.electrodes,
                    layers: &columns.layers,
                    actual: sub
                        .electrodes
                        .iter()
                        .map(|&e| &c.actual[e * n..(e + 1) * n])
                        .collect(),
                    predicted: sub
                        .electrodes
                        .iter()
                        .map(|&e| {
                            columns
                                .layer_columns
                                .iter()
                                .map(|&l| {
                                    let start = (e * n_l + l) * n;
                                    &c.predicted[start..start + n]
                                })
                                .collect()
                        })
                        .collect(),
                };
                Outgoing {
                    text: encode(FrameKind::Trace, &frame).into(),
                    published: now,
                    origin,
                }
            });
            queued += usize::from(slot.offer(out, metrics));
        }
        Ok(queued)
    }

    /// The `status` frame for one client: latest pipeline status and its counters.
    fn status_text(&self, stats: &ClientStats) -> Utf8Bytes {
        let state = self.state();
        let frame = StatusFrame {
            uptime_s: self.inner.started.elapsed().as_secs_f64(),
            horizon: state.status.horizon,
            streams: &state.status.streams,
            client: ClientCounters {
                dropped: stats.dropped.load(Relaxed),
                sent: stats.sent.load(Relaxed),
            },
            drops: &state.status.drops,
            errors: &state.status.errors,
            segments: state.status.segments,
            memory: &state.status.memory,
            memory_bound: &state.status.memory_bound,
            events: &state.status.events,
            models: &state.status.models,
            clients: state.clients.len(),
            send_latency: self.inner.metrics.send_latency(),
            stages: self
                .inner
                .metrics
                .stages
                .report()
                .into_iter()
                .map(|(stage, latency)| StageSummary {
                    stage: stage.name(),
                    latency,
                })
                .collect(),
        };
        encode(FrameKind::Status, &frame).into()
    }

    /// Asks every connection to close (server shutdown).
    pub fn close_all(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves when [`Hub::close_all`] has been called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.shutdown.subscribe();
        async move {
            // an error means the hub is gone, which is a shutdown too
            let _ = rx.wait_for(|closed| *closed).await;
        }
    }

    /// Clients connected now.
    pub fn client_count(&self) -> usize {
        self.state().clients.len()
    }
}

/// The session's model `index`, which a frame of `kind` names.
fn session_model<'s>(
    session: &'s Session,
    kind: &'static str,
    index: usize,
) -> Result<&'s SessionModel, HubError> {
    session.models.get(index).ok_or(HubError::UnknownModel {
        kind,
        model: index,
        models: session.models.len(),
    })
}

fn check_shape(kind: &'static str, got: usize, expected: usize) -> Result<(), HubError> {
    if got == expected {
        Ok(())
    } else {
        Err(HubError::Shape {
            kind,
            got,
            expected,
        })
    }
}

/// One connected client's end of the hub; dropping it disconnects the client.
pub struct ClientHandle {
    hub: Hub,
    id: u64,
    queue: Option<ClientQueue>,
    stats: Arc<ClientStats>,
}

/// The receiving end of a client's bounded queue.
pub struct ClientQueue(mpsc::Receiver<Outgoing>);

impl ClientQueue {
    /// The next frame for this client; `None` once the hub has let go of it.
    pub async fn next(&mut self) -> Option<Outgoing> {
        self.0.recv().await
    }
}

impl ClientHandle {
    /// Takes the client's queue (once), so that one task can drain it while
    /// another uses the handle.
    pub fn take_queue(&mut self) -> Option<ClientQueue> {
        self.queue.take()
    }

    /// Notes that a frame reached the socket.
    pub fn sent(&self, out: &Outgoing) {
        self.stats.sent.fetch_add(1, Relaxed);
        let metrics = self.hub.metrics();
        metrics.sent.fetch_add(1, Relaxed);
        metrics.record_send_latency(out.published.elapsed());
        if let Some(origin) = out.origin {
            metrics
                .stages
                .record_seconds(Stage::EndToEnd, lsl::local_clock() - origin);
        }
    }

    /// Applies a `subscribe` request; returns the subscription in force.
    pub fn subscribe(&self, request: &SubscribeRequest) -> Result<ResolvedSubscription, HubError> {
        self.hub.subscribe(self.id, request)
    }

    /// This client's `status` frame, now.
    pub fn status_text(&self) -> Utf8Bytes {
        self.hub.status_text(&self.stats)
    }

    /// Frames this client lost so far.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Relaxed)
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        let mut state = self.hub.state();
        state.clients.remove(&self.id);
        self.hub
            .metrics()
            .clients
            .store(state.clients.len() as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::frames::{ModelTag, Rates};

    fn hub(queue: usize, max_clients: usize) -> Hub {
        Hub::new(HubConfig {
            queue_frames: queue,
            max_clients,
            max_message_bytes: 1024,
        })
    }

    fn session(e: usize, layers: Vec<usize>) -> Session {
        Session {
            electrodes: (0..e).map(|i| format!("E{i}")).collect(),
            models: vec![SessionModel {
                tag: ModelTag {
                    name: "m".into(),
                    sha256: "h".into(),
                },
                layers: layers.clone(),
                null_threshold: Vec::new(),
            }],
            layers,
            model: "m".into(),
            rates: Rates {
                neural_hz: 100.0,
                high_gamma_hz: 100.0,
                alignment_hz: 10.0,
            },
            horizon: None,
            window_s: 5.0,
            electrode_info: Vec::new(),
            bad_channels: Vec::new(),
            recording: None,
            null_threshold: Vec::new(),
        }
    }

    fn alignment(r: Vec<f32>) -> Frame {
        Frame::Alignment(Arc::new(AlignmentUpdate {
            model: 0,
            time: 1.0,
            horizon: 1.0,
            r,
            chance: 0.1,
            significant: Vec::new(),
        }))
    }

    fn json(out: &Outgoing) -> serde_json::Value {
        serde_json::from_str(out.text.as_str()).unwrap()
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts_without_blocking() {
        let h = hub(2, 4);
        h.set_session(session(1, vec![0]));
        let mut c = h.connect().unwrap();
        let mut q = c.take_queue().unwrap();
        // hello occupies one of the two slots
        assert_eq!(h.publish(alignment(vec![0.5])).unwrap(), 1);
        assert_eq!(h.publish(alignment(vec![0.5])).unwrap(), 0);
        assert_eq!(h.publish(alignment(vec![0.5])).unwrap(), 0);
        assert_eq!(c.dropped(), 2);
        assert_eq!(h.metrics().dropped.load(Relaxed), 2);
        assert_eq!(json(&q.next().await.unwrap())["type"], "hello");
        assert_eq!(json(&q.next().await.unwrap())["type"], "alignment");
        let status: serde_json::Value = serde_json::from_str(c.status_text().as_str()).unwrap();
        assert_eq!(status["client"]["dropped"], 2);
    }

    #[tokio::test]
    async fn same_view_shares_bytes_and_shapes_are_checked() {
        let h = hub(8, 4);
        assert_eq!(
            h.publish(alignment(vec![0.1])),
            Err(HubError::NoSession("alignment"))
        );
        h.set_session(session(2, vec![0, 1]));
        let (mut ca, mut cb) = (h.connect().unwrap(), h.connect().unwrap());
        let (mut a, mut b) = (ca.take_queue().unwrap(), cb.take_queue().unwrap());
        assert!(matches!(
            h.publish(alignment(vec![0.1; 3])),
            Err(HubError::Shape {
                got: 3,
                expected: 4,
                ..
            })
        ));
        assert_eq!(h.publish(alignment(vec![0.1, 0.2, 0.3, 0.4])).unwrap(), 2);
        a.next().await;
        b.next().await;
        let (fa, fb) = (a.next().await.unwrap(), b.next().await.unwrap());
        assert_eq!(fa.text.as_str().as_ptr(), fb.text.as_str().as_ptr());
        assert_eq!(json(&fa)["r"], serde_json::json!([[0.1, 0.2], [0.3, 0.4]]));
    }

    #[test]
    fn client_limit_and_disconnect_free_slots() {
        let h = hub(8, 1);
        let c = h.connect().unwrap();
        assert!(matches!(h.connect(), Err(HubError::Full(1))));
        drop(c);
        assert_eq!(h.client_count(), 0);
        assert!(h.connect().is_ok());
    }

    #[tokio::test]
    async fn rate_throttles_per_client() {
        let h = hub(64, 4);
        h.set_session(session(1, vec![0]));
        let c = h.connect().unwrap();
        c.subscribe(&serde_json::from_str(r#"{"rate":0.001}"#).unwrap())
            .unwrap();
        assert_eq!(h.publish(alignment(vec![0.5])).unwrap(), 1);
        assert_eq!(h.publish(alignment(vec![0.5])).unwrap(), 0);
        assert_eq!(c.dropped(), 0, "throttling is not a drop");
    }

    #[tokio::test]
    async fn frames_name_their_model_and_clients_choose_models() {
        let h = hub(64, 4);
        let mut s = session(1, vec![0, 1]);
        s.models.push(SessionModel {
            tag: ModelTag {
                name: "n".into(),
                sha256: "k".into(),
            },
            layers: vec![1],
            null_threshold: Vec::new(),
        });
        h.set_session(s);
        let (mut all, mut only_n) = (h.connect().unwrap(), h.connect().unwrap());
        only_n
            .subscribe(&serde_json::from_str(r#"{"models":["n"],"rate":0.001}"#).unwrap())
            .unwrap();
        let (mut qa, mut qn) = (all.take_queue().unwrap(), only_n.take_queue().unwrap());
        let update = |model, r: Vec<f32>| {
            Frame::Alignment(Arc::new(AlignmentUpdate {
                model,
                time: 1.0,
                horizon: 1.0,
                r,
                chance: 0.1,
                significant: Vec::new(),
            }))
        };
        assert!(matches!(
            h.publish(update(2, vec![0.5])),
            Err(HubError::UnknownModel { model: 2, .. })
        ));
        assert!(matches!(
            h.publish(update(1, vec![0.5, 0.6])),
            Err(HubError::Shape { expected: 1, .. })
        ));
        assert_eq!(h.publish(update(0, vec![0.1, 0.2])).unwrap(), 1);
        // throttled per model: model n's first frame goes although model m's just went
        assert_eq!(h.publish(update(1, vec![0.3])).unwrap(), 2);
        let word = WordEvent {
            model: 0,
            id: 7,
            text: "w".into(),
            onset: 1.0,
            offset: None,
            status: crate::serve::WordStatus::New,
            latency_ms: Default::default(),
        };
        assert_eq!(h.publish(Frame::Word(Arc::new(word))).unwrap(), 1);
        assert_eq!(
            json(&qa.next().await.unwrap())["session"]["models"][1]["name"],
            "n"
        );
        let m = json(&qa.next().await.unwrap());
        assert_eq!(
            (m["model"]["name"].as_str(), m["layers"].clone()),
            (Some("m"), serde_json::json!([0, 1]))
        );
        let n = json(&qa.next().await.unwrap());
        assert_eq!(n["model"], serde_json::json!({"name": "n", "sha256": "k"}));
        assert_eq!(n["r"], serde_json::json!([[0.3]]));
        let w = json(&qa.next().await.unwrap());
        assert_eq!(
            (w["type"].as_str(), w["model"]["sha256"].as_str()),
            (Some("word"), Some("h"))
        );
        json(&qn.next().await.unwrap()); // hello
        let n = json(&qn.next().await.unwrap());
        assert_eq!(
            (n["type"].as_str(), n["model"]["name"].as_str()),
            (Some("alignment"), Some("n"))
        );
        assert!(qn.0.try_recv().is_err(), "nothing of model m");
    }
}
