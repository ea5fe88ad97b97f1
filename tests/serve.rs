//! The server end to end over real sockets: a tokio-tungstenite client receives
//! hello, word, alignment and trace frames; subscriptions, slow clients, bad client
//! messages, the token, the origin check, the client limit and the eviction of
//! clients that stall behave as documented.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use neuralign::serve::frames::{ModelTag, SessionModel};
use neuralign::serve::{
    AlignmentUpdate, Frame, Hub, Rates, Server, ServerConfig, Session, TraceChunk, WordEvent,
    WordStatus,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(20);

fn config() -> ServerConfig {
    ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        status_interval_ms: 100,
        ..Default::default()
    }
}

fn session(electrodes: usize, layers: usize) -> Session {
    Session {
        electrodes: (0..electrodes).map(|i| format!("E{i}")).collect(),
        layers: (0..layers).collect(),
        model: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        models: vec![SessionModel {
            tag: ModelTag {
                name: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
                sha256: "0".repeat(64),
            },
            layers: (0..layers).collect(),
            null_threshold: Vec::new(),
        }],
        rates: Rates {
            neural_hz: 1000.0,
            high_gamma_hz: 100.0,
            alignment_hz: 10.0,
        },
        horizon: Some(12.0),
        window_s: 10.0,
        electrode_info: Vec::new(),
        bad_channels: Vec::new(),
        recording: None,
        null_threshold: Vec::new(),
    }
}

/// Starts a server; dropping the returned sender shuts it down.
async fn start(config: ServerConfig) -> (Hub, SocketAddr, oneshot::Sender<()>) {
    let hub = Hub::new(config.hub_config());
    let server = Server::bind(config, hub.clone()).await.unwrap();
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    (hub, addr, tx)
}

async fn connect(addr: SocketAddr) -> Client {
    connect_async(format!("ws://{addr}/ws")).await.unwrap().0
}

/// Next JSON frame of the given type, skipping others (status frames tick by).
async fn next_of(client: &mut Client, kind: &str) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await.expect("connection open").unwrap() {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == kind {
                        return v;
                    }
                }
                Message::Close(c) => panic!("closed while waiting for {kind}: {c:?}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} frame within {WAIT:?}"))
}

fn alignment(e: usize, l: usize, time: f64) -> Frame {
    Frame::Alignment(Arc::new(AlignmentUpdate {
        model: 0,
        time,
        horizon: time,
        r: (0..e * l)
            .map(|i| ((i * 37 % 101) as f32) / 101.0 - 0.2)
            .collect(),
        chance: 0.1,
        significant: Vec::new(),
    }))
}

fn as_f32(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_receives_every_frame_kind_and_subscribes() {
    let (hub, addr, _stop) = start(config()).await;
    hub.set_session(session(6, 3));
    let mut c = connect(addr).await;

    let hello = next_of(&mut c, "hello").await;
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["session"]["electrodes"][5], "E5");
    assert_eq!(hello["session"]["layers"], json!([0, 1, 2]));
    assert_eq!(hello["session"]["horizon"], 12.0);
    assert_eq!(hello["subscription"]["electrodes"], json!([0, 1, 2, 3]));

    let word = WordEvent {
        model: 0,
        id: 42,
        text: "Paris".into(),
        onset: 12.34,
        offset: Some(12.8),
        status: WordStatus::New,
        latency_ms: BTreeMap::from([("lm".to_string(), 3.5)]),
    };
    hub.publish(Frame::Word(Arc::new(word))).unwrap();
    let w = next_of(&mut c, "word").await;
    assert_eq!(
        (w["id"].as_u64(), w["text"].as_str()),
        (Some(42), Some("Paris"))
    );
    assert_eq!(
        (w["onset"].as_f64(), w["status"].as_str()),
        (Some(12.34), Some("new"))
    );
    assert_eq!(w["latency_ms"]["lm"], 3.5);

    let Frame::Alignment(update) = alignment(6, 3, 13.0) else {
        unreachable!()
    };
    hub.publish(Frame::Alignment(update.clone())).unwrap();
    let a = next_of(&mut c, "alignment").await;
    assert_eq!(a["time"], 13.0);
    assert_eq!(a["chance"].as_f64().unwrap() as f32, 0.1);
    for e in 0..6 {
        assert_eq!(as_f32(&a["r"][e]), update.r[e * 3..e * 3 + 3]);
        let row = &update.r[e * 3..e * 3 + 3];
        let peak = (0..3).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap();
        assert_eq!(a["summary"]["peak_layer"][e], peak);
    }

    // trace values: actual = electrode*1000 + sample, predicted = that + layer/10
    let n = 5;
    let actual: Vec<f32> = (0..6 * n)
        .map(|i| ((i / n) * 1000 + i % n) as f32)
        .collect();
    let predicted: Vec<f32> = (0..6 * 3 * n)
        .map(|i| ((i / (3 * n)) * 1000 + i % n) as f32 + ((i / n) % 3) as f32 / 10.0)
        .collect();
    let chunk = TraceChunk {
        model: 0,
        t0: 12.0,
        samples: n,
        actual,
        predicted,
    };
    hub.publish(Frame::Trace(Arc::new(chunk.clone()))).unwrap();
    let t = next_of(&mut c, "trace").await;
    assert_eq!(t["electrodes"], json!([0, 1, 2, 3]));
    assert_eq!(
        (t["rate"].as_f64(), t["t0"].as_f64()),
        (Some(100.0), Some(12.0))
    );
    assert_eq!(as_f32(&t["actual"][2]), chunk.actual[2 * n..3 * n]);
    assert_eq!(
        as_f32(&t["predicted"][3][1]),
        chunk.predicted[(3 * 3 + 1) * n..(3 * 3 + 2) * n]
    );

    // subscribe by label and index to one layer
    let sub = json!({"type": "subscribe", "electrodes": ["E5", 1], "layers": [2], "rate": 0});
    c.send(Message::text(sub.to_string())).await.unwrap();
    let ack = next_of(&mut c, "subscribed").await;
    assert_eq!(ack["subscription"]["electrodes"], json!([5, 1]));
    assert_eq!(ack["subscription"]["layers"], json!([2]));
    hub.publish(Frame::Trace(Arc::new(chunk.clone()))).unwrap();
    let t = next_of(&mut c, "trace").await;
    assert_eq!(t["electrodes"], json!([5, 1]));
    assert_eq!(t["layers"], json!([2]));
    assert_eq!(as_f32(&t["actual"][0]), chunk.actual[5 * n..6 * n]);
    assert_eq!(
        as_f32(&t["predicted"][0][0]),
        chunk.predicted[(5 * 3 + 2) * n..(5 * 3 + 3) * n]
    );
    assert_eq!(
        as_f32(&t["predicted"][1][0]),
        chunk.predicted[(3 + 2) * n..(3 + 3) * n]
    );
    hub.publish(Frame::Alignment(update.clone())).unwrap();
    let a = next_of(&mut c, "alignment").await;
    assert_eq!(a["layers"], json!([2]));
    assert_eq!(as_f32(&a["r"][4]), [update.r[4 * 3 + 2]]);
    assert_eq!(
        a["summary"]["mean_r"].as_array().unwrap().len(),
        3,
        "summary spans all layers"
    );

    let status = next_of(&mut c, "status").await;
    assert_eq!(status["client"]["dropped"], 0);
    assert_eq!(status["clients"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_loses_frames_while_a_fast_one_gets_all() {
    let (hub, addr, _stop) = start(ServerConfig {
        queue_frames: 8,
        // the slow client's socket may fill while it waits: dropping, not eviction, is tested here
        write_timeout_ms: 60_000,
        ping_timeout_ms: 60_000,
        ..config()
    })
    .await;
    let (e, l) = (256, 31);
    hub.set_session(session(e, l));
    let mut slow = connect(addr).await;
    let fast = connect(addr).await;

    // the fast client reports each alignment time it reads; the publisher waits
    // for it, so the fast client is never behind by more than one frame
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let reader = tokio::spawn(async move {
        let mut fast = fast;
        loop {
            let a = next_of(&mut fast, "alignment").await;
            if seen_tx.send(a["time"].as_f64().unwrap()).is_err() {
                return;
            }
        }
    });
    let mut published = 0u64;
    while hub
        .metrics()
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed)
        < 50
    {
        assert!(published < 5000, "the slow client never filled its queue");
        let started = std::time::Instant::now();
        hub.publish(alignment(e, l, published as f64)).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "publish waited on a client"
        );
        let got = tokio::time::timeout(WAIT, seen_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got, published as f64,
            "fast client missed or reordered a frame"
        );
        published += 1;
    }
    reader.abort();

    // now the slow client reads: what it got plus what its status says it lost
    // accounts for every published frame
    let mut received = 0u64;
    let dropped = tokio::time::timeout(WAIT, async {
        loop {
            let Message::Text(t) = slow.next().await.unwrap().unwrap() else {
                continue;
            };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            match v["type"].as_str().unwrap() {
                "alignment" => received += 1,
                "status" => {
                    let dropped = v["client"]["dropped"].as_u64().unwrap();
                    if received + dropped == published {
                        return dropped;
                    }
                }
                _ => {}
            }
        }
    })
    .await
    .expect("slow client's counts never added up");
    assert!(dropped >= 50, "dropped {dropped}");
    assert!(received >= 8, "the queue held frames: {received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_error_frames_and_the_server_survives() {
    let (hub, addr, _stop) = start(ServerConfig {
        max_message_bytes: 1024,
        ..config()
    })
    .await;
    hub.set_session(session(4, 2));
    let mut c = connect(addr).await;
    next_of(&mut c, "hello").await;
    let cases = [
        (Message::text("not json"), "malformed"),
        (Message::text(r#"{"type":"unsubscribe"}"#), "malformed"),
        (Message::binary(vec![1u8, 2, 3]), "unsupported_binary"),
        (
            Message::text(r#"{"type":"subscribe","electrodes":["Z9"]}"#),
            "bad_subscription",
        ),
        (
            Message::text(r#"{"type":"subscribe","layers":[7]}"#),
            "bad_subscription",
        ),
        (
            Message::text(format!(
                r#"{{"type":"subscribe","pad":"{}"}}"#,
                "x".repeat(4000)
            )),
            "message_too_large",
        ),
    ];
    for (message, code) in cases {
        c.send(message).await.unwrap();
        let err = next_of(&mut c, "error").await;
        assert_eq!(err["code"], code, "{err}");
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    // the connection still works
    c.send(Message::text(r#"{"type":"subscribe","electrodes":[3]}"#))
        .await
        .unwrap();
    assert_eq!(
        next_of(&mut c, "subscribed").await["subscription"]["electrodes"],
        json!([3])
    );

    // past the transport limit the connection closes with 1009 ...
    let _ = c.send(Message::text("y".repeat(64 * 1024))).await;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match c.next().await {
                Some(Ok(Message::Close(Some(f)))) => return Some(u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1009));
    // ... and the server keeps serving
    let mut again = connect(addr).await;
    next_of(&mut again, "hello").await;
    let text = http_get(addr, "/metrics", "").await;
    assert!(
        text.contains("neuralign_ws_client_errors_total{code=\"malformed\"} 2"),
        "{text}"
    );
    assert!(text.contains("neuralign_ws_client_errors_total{code=\"message_too_large\"} 2"));
}

/// Plain HTTP/1.1 GET; returns status line, headers and body.
async fn http_get(addr: SocketAddr, path: &str, extra_headers: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_enforced_when_set_and_required_off_loopback() {
    let refused = Server::bind(
        ServerConfig {
            bind: "0.0.0.0:0".parse().unwrap(),
            ..config()
        },
        Hub::new(config().hub_config()),
    )
    .await;
    assert!(matches!(
        refused,
        Err(neuralign::serve::ServeError::TokenRequired(_))
    ));

    let (hub, addr, _stop) = start(ServerConfig {
        token: Some("s3cret token".into()),
        ..config()
    })
    .await;
    hub.set_session(session(2, 2));
    match connect_async(format!("ws://{addr}/ws")).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("connected without a token: {:?}", other.map(|_| ())),
    }
    match connect_async(format!("ws://{addr}/ws?token=wrong")).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("connected with a wrong token: {:?}", other.map(|_| ())),
    }
    let (mut c, _) = connect_async(format!("ws://{addr}/ws?token=s3cret%20token"))
        .await
        .unwrap();
    next_of(&mut c, "hello").await;
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", "Bearer s3cret token".parse().unwrap());
    let (mut c, _) = connect_async(request).await.unwrap();
    next_of(&mut c, "hello").await;
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("X-Neuralign-Token", "s3cret token".parse().unwrap());
    let (mut c, _) = connect_async(request).await.unwrap();
    next_of(&mut c, "hello").await;
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", "Bearer wrong".parse().unwrap());
    match connect_async(request).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("connected with a wrong bearer: {:?}", other.map(|_| ())),
    }

    assert!(http_get(addr, "/metrics", "")
        .await
        .starts_with("HTTP/1.1 401"));
    let ok = http_get(addr, "/metrics", "X-Neuralign-Token: s3cret token\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200"));
    assert!(
        ok.contains("neuralign_ws_rejected_total{reason=\"unauthorized\"} 4"),
        "{ok}"
    );
    // the dashboard itself carries no data and loads without the token
    let page = http_get(addr, "/", "").await;
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<canvas id=\"heatmap\">"));
    assert!(http_get(addr, "/app.js", "")
        .await
        .contains("text/javascript"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_the_limit_are_refused_until_one_leaves() {
    let (hub, addr, _stop) = start(ServerConfig {
        max_clients: 2,
        ..config()
    })
    .await;
    hub.set_session(session(2, 2));
    let mut a = connect(addr).await;
    let _b = connect(addr).await;
    match connect_async(format!("ws://{addr}/ws")).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("third client admitted: {:?}", other.map(|_| ())),
    }
    a.close(None).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while hub.client_count() > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("closed client never left the hub");
    let mut c = connect(addr).await;
    next_of(&mut c, "hello").await;
}

/// Opens `/ws` as a browser on the page `origin` would (`None`: not a browser);
/// the refusal's status and body when refused.
async fn open_from(addr: SocketAddr, origin: Option<&str>) -> Result<Client, (u16, String)> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    match connect_async(request).await {
        Ok((c, _)) => Ok(c),
        Err(tungstenite::Error::Http(r)) => Err((
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_other_origins_are_refused_unless_listed() {
    let (hub, addr, _stop) = start(ServerConfig {
        allowed_origins: vec!["https://lab.example.org".into()],
        ..config()
    })
    .await;
    hub.set_session(session(2, 2));

    let Err((status, body)) = open_from(addr, Some("http://evil.example")).await else {
        panic!("a foreign page connected");
    };
    assert_eq!(status, 403);
    assert!(
        body.contains(r#"allowed_origins = ["http://evil.example"]"#),
        "the refusal says what to configure: {body}"
    );
    // the server's own host on another port is another origin
    let other_port = format!("http://127.0.0.1:{}", addr.port().wrapping_add(1));
    assert!(matches!(
        open_from(addr, Some(&other_port)).await,
        Err((403, _))
    ));

    // the dashboard's own origin, a listed one, and non-browser clients get data
    for origin in [
        Some(format!("http://{addr}")),
        Some("https://lab.example.org".into()),
        None,
    ] {
        let mut c = open_from(addr, origin.as_deref())
            .await
            .unwrap_or_else(|e| panic!("{origin:?} refused: {e:?}"));
        next_of(&mut c, "hello").await;
    }
    let metrics = http_get(addr, "/metrics", "").await;
    assert!(
        metrics.contains("neuralign_ws_rejected_total{reason=\"origin\"} 2\n"),
        "{metrics}"
    );
}

/// A client that completes the handshake and then never reads: its receive window is
/// kept small so that the server's writes stall after a few megabytes, not dozens.
async fn never_reading_client(addr: SocketAddr) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(tcp))
        .await
        .unwrap()
        .0
}

/// Waits until `done` holds, polling.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not happen within {WAIT:?}"));
}

/// Reads what the server sent until the connection ends (a close frame, or the end
/// of the stream: a close frame is best effort when the client stalled).
async fn read_to_end(client: &mut Client) {
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(message)) = client.next().await {
            if let Message::Close(_) = message {
                return;
            }
        }
    })
    .await
    .expect("the server never closed the connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_writes_stall_is_evicted_and_frees_its_slot() {
    let (hub, addr, _stop) = start(ServerConfig {
        max_clients: 1,
        write_timeout_ms: 300,
        // pings play no part here
        ping_interval_ms: 600_000,
        ..config()
    })
    .await;
    let (e, l) = (256, 31);
    hub.set_session(session(e, l));
    let mut stalled = never_reading_client(addr).await;
    match connect_async(format!("ws://{addr}/ws")).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("second client admitted: {:?}", other.map(|_| ())),
    }

    // large frames, fast, until the server gives up on the client
    let metrics = hub.metrics_arc();
    let evicted = || metrics.evicted_write_timeout.load(Relaxed) > 0;
    tokio::time::timeout(WAIT, async {
        let mut time = 0.0;
        while !evicted() {
            hub.publish(alignment(e, l, time)).unwrap();
            time += 0.1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("a client that never reads was not evicted");
    wait_until("the evicted client leaving the hub", || {
        hub.client_count() == 0
    })
    .await;

    let mut next = connect(addr).await;
    next_of(&mut next, "hello").await;
    let text = http_get(addr, "/metrics", "").await;
    assert!(
        text.contains("neuralign_ws_evicted_total{reason=\"write_timeout\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("neuralign_ws_evicted_total{reason=\"ping_timeout\"} 0\n"));
    // its connection is gone: once it reads, it finds the end of the stream
    read_to_end(&mut stalled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_pings_is_evicted_and_frees_its_slot() {
    let (hub, addr, _stop) = start(ServerConfig {
        max_clients: 1,
        ping_interval_ms: 200,
        ping_timeout_ms: 1000,
        ..config()
    })
    .await;
    hub.set_session(session(2, 2));
    // tungstenite answers pings only while it is read
    let mut silent = connect(addr).await;
    let metrics = hub.metrics_arc();
    wait_until(
        "the eviction of a client that does not answer pings",
        || metrics.evicted_ping_timeout.load(Relaxed) == 1,
    )
    .await;
    wait_until("the evicted client leaving the hub", || {
        hub.client_count() == 0
    })
    .await;

    // a client that reads answers pings and keeps its slot across many timeouts
    let mut reading = connect(addr).await;
    next_of(&mut reading, "hello").await;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        next_of(&mut reading, "status").await;
    }
    assert_eq!(metrics.evicted_ping_timeout.load(Relaxed), 1);
    assert_eq!(metrics.evicted_write_timeout.load(Relaxed), 0);
    assert_eq!(hub.client_count(), 1);

    // the silent one's connection is gone: once it reads, it finds the end
    read_to_end(&mut silent).await;
}
