//! One WebSocket connection: a writer that drains the client's queue (plus its
//! control replies, periodic `status` frames and pings) into the socket, and a reader
//! that applies `subscribe` messages, answers bad ones with `error` frames and notes
//! pongs. A client whose writes stall or that stops answering pings is evicted, so
//! that it does not hold a slot.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval, interval_at, sleep_until, timeout, Instant, MissedTickBehavior};

use super::config::ServerConfig;
use super::frames::{encode, ClientMessage, ErrorCode, ErrorFrame, FrameKind, SubscribedFrame};
use super::hub::{ClientHandle, HubError};
use super::metrics::Metrics;

/// Transport limit: messages this many times `max_message_bytes` close the socket.
pub const HARD_LIMIT_FACTOR: usize = 16;

/// Replies from the reader to the writer. Kept few: a client that floods bad
/// messages without reading loses replies, not server memory.
const CONTROL_QUEUE: usize = 8;

enum Control {
    Text(Utf8Bytes),
    Close(u16, &'static str),
}

/// Serves one connection until the client leaves, is evicted, or the hub shuts down.
pub async fn serve_connection(
    socket: WebSocket,
    mut client: ClientHandle,
    metrics: Arc<Metrics>,
    config: &ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (mut sink, mut stream) = socket.split();
    let Some(mut queue) = client.take_queue() else {
        return;
    };
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Control>(CONTROL_QUEUE);
    // the reader bumps this on every pong; the writer waits on it
    let (pong_tx, mut pong_rx) = watch::channel(());
    let write_timeout = config.write_timeout();

    let writer = async {
        let mut tick = interval(config.status_interval());
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; hello comes first
        let mut ping = interval_at(
            Instant::now() + config.ping_interval(),
            config.ping_interval(),
        );
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // when the oldest unanswered ping runs out
        let mut pong_due: Option<Instant> = None;
        loop {
            // awaited only while a ping is unanswered (the guard below)
            let pong_deadline = pong_due.unwrap_or_else(Instant::now);
            let message = tokio::select! {
                biased;
                ctl = ctl_rx.recv() => match ctl {
                    Some(Control::Text(text)) => Message::Text(text),
                    Some(Control::Close(code, reason)) => {
                        let frame = CloseFrame { code, reason: reason.into() };
                        let close = Message::Close(Some(frame));
                        write(&mut sink, close, write_timeout, &metrics).await;
                        return;
                    }
                    None => return,
                },
                Ok(()) = pong_rx.changed() => {
                    pong_due = None;
                    continue;
                }
                () = sleep_until(pong_deadline), if pong_due.is_some() => {
                    metrics.evicted_ping_timeout.fetch_add(1, Relaxed);
                    tracing::warn!(
                        timeout_ms = config.ping_timeout_ms,
                        "evicting a WebSocket client that does not answer pings"
                    );
                    let frame = CloseFrame {
                        code: close_code::POLICY,
                        reason: "no pong within ping_timeout_ms".into(),
                    };
                    // best effort: a dead client may not take it
                    let close = Message::Close(Some(frame));
                    let _ = timeout(write_timeout, sink.send(close)).await;
                    return;
                }
                _ = ping.tick() => {
                    pong_due.get_or_insert(Instant::now() + config.ping_timeout());
                    Message::Ping(Default::default())
                }
                // before the queue, so that a client that is behind still hears of its drops
                _ = tick.tick() => Message::Text(client.status_text()),
                out = queue.next() => match out {
                    Some(out) => {
                        let text = Message::Text(out.text.clone());
                        if !write(&mut sink, text, write_timeout, &metrics).await {
                            return;
                        }
                        client.sent(&out);
                        continue;
                    }
                    None => return,
                },
            };
            if !write(&mut sink, message, write_timeout, &metrics).await {
                return;
            }
        }
    };

    let reader = async {
        while let Some(message) = stream.next().await {
            let reply = match message {
                Ok(Message::Text(text)) => handle_text(&text, &client, config.max_message_bytes),
                Ok(Message::Binary(_)) => Some(error_text(
                    ErrorCode::UnsupportedBinary,
                    "binary messages are not part of the protocol; send JSON text",
                )),
                Ok(Message::Close(_)) => break,
                Ok(Message::Pong(_)) => {
                    pong_tx.send_replace(());
                    None
                }
                // tungstenite answers pings itself
                Ok(Message::Ping(_)) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket read failed; closing");
                    if is_capacity(&e) {
                        metrics.client_error(ErrorCode::MessageTooLarge);
                        let _ = ctl_tx
                            .send(Control::Close(close_code::SIZE, "message too large"))
                            .await;
                        // let the writer send the close frame, then it ends the connection
                        std::future::pending::<()>().await;
                    }
                    break;
                }
            };
            if let Some((code, text)) = reply {
                if let Some(code) = code {
                    metrics.client_error(code);
                }
                // a client that does not read its replies loses them
                let _ = ctl_tx.try_send(Control::Text(text));
            }
        }
    };

    tokio::select! {
        _ = writer => {}
        _ = reader => {}
        _ = shutdown => {}
    }
    // dropping the socket here closes it and the handle frees the hub slot
}

/// Writes one message. False when the connection is over: the client left, or the
/// write did not complete within `limit` (its TCP window stayed full), which evicts it.
async fn write(
    sink: &mut SplitSink<WebSocket, Message>,
    message: Message,
    limit: Duration,
    metrics: &Metrics,
) -> bool {
    match timeout(limit, sink.send(message)).await {
        Ok(sent) => sent.is_ok(),
        Err(_) => {
            metrics.evicted_write_timeout.fetch_add(1, Relaxed);
            tracing::warn!(
                timeout_ms = limit.as_millis() as u64,
                "evicting a WebSocket client whose socket write stalled"
            );
            false
        }
    }
}

type Reply = (Option<ErrorCode>, Utf8Bytes);

fn error_text(code: ErrorCode, message: &str) -> Reply {
    (
        Some(code),
        encode(FrameKind::Error, &ErrorFrame { code, message }).into(),
    )
}

fn handle_text(text: &str, client: &ClientHandle, max_message_bytes: usize) -> Option<Reply> {
    if text.len() > max_message_bytes {
        return Some(error_text(
            ErrorCode::MessageTooLarge,
            &format!(
                "message of {} bytes exceeds the limit of {max_message_bytes}",
                text.len()
            ),
        ));
    }
    let message: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return Some(error_text(
                ErrorCode::Malformed,
                &format!("not a valid client message: {e}"),
            ))
        }
    };
    let ClientMessage::Subscribe(request) = message;
    Some(match client.subscribe(&request) {
        Ok(subscription) => (
            None,
            encode(
                FrameKind::Subscribed,
                &SubscribedFrame {
                    subscription: &subscription,
                },
            )
            .into(),
        ),
        Err(HubError::Subscription(why)) => error_text(ErrorCode::BadSubscription, &why),
        Err(e) => error_text(ErrorCode::BadSubscription, &e.to_string()),
    })
}

fn is_capacity(e: &axum::Error) -> bool {
    // axum hides tungstenite's error type; its capacity errors say so in their text
    e.to_string().starts_with("Space limit exceeded")
}
