//! One WebSocket connection: a writer that drains the client's queue (plus its
//! control replies and periodic `status` frames) into the socket, and a reader that
//! applies `subscribe` messages and answers bad ones with `error` frames.

use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::frames::{encode, ClientMessage, ErrorCode, ErrorFrame, SubscribedFrame};
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

/// Serves one connection until the client leaves or the hub shuts down.
pub async fn serve_connection(
    socket: WebSocket,
    mut client: ClientHandle,
    metrics: std::sync::Arc<Metrics>,
    max_message_bytes: usize,
    status_interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (mut sink, mut stream) = socket.split();
    let Some(mut queue) = client.take_queue() else {
        return;
    };
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Control>(CONTROL_QUEUE);

    let writer = async {
        let mut tick = tokio::time::interval(status_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; hello comes first
        loop {
            let message = tokio::select! {
                biased;
                ctl = ctl_rx.recv() => match ctl {
                    Some(Control::Text(text)) => Message::Text(text),
                    Some(Control::Close(code, reason)) => {
                        let frame = CloseFrame { code, reason: reason.into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        return;
                    }
                    None => return,
                },
                out = queue.next() => match out {
                    Some(out) => {
                        if sink.send(Message::Text(out.text.clone())).await.is_err() {
                            return;
                        }
                        client.sent(&out);
                        continue;
                    }
                    None => return,
                },
                _ = tick.tick() => Message::Text(client.status_text()),
            };
            if sink.send(message).await.is_err() {
                return;
            }
        }
    };

    let reader = async {
        while let Some(message) = stream.next().await {
            let reply = match message {
                Ok(Message::Text(text)) => handle_text(&text, &client, max_message_bytes),
                Ok(Message::Binary(_)) => Some(error_text(
                    ErrorCode::UnsupportedBinary,
                    "binary messages are not part of the protocol; send JSON text",
                )),
                Ok(Message::Close(_)) => break,
                Ok(Message::Ping(_) | Message::Pong(_)) => None,
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
}

type Reply = (Option<ErrorCode>, Utf8Bytes);

fn error_text(code: ErrorCode, message: &str) -> Reply {
    (
        Some(code),
        encode("error", &ErrorFrame { code, message }).into(),
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
                "subscribed",
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
