//! The transcript inlet: one OS thread that resolves the word stream, maps every message to
//! the server's clock with liblsl's time correction, applies it to a [`TranscriptState`], and
//! sends the LM what to do as [`TranscriptUpdate`]s through a bounded channel.
//!
//! A full channel never blocks the inlet: the update is dropped and counted, and the next one
//! that gets through rolls back far enough (to the earliest position any dropped update
//! touched) that the LM ends up with exactly the transcript it would have had.
use crossbeam_channel::{Receiver, Sender, TrySendError};
use lsl::Pullable;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::clock_follow::{ClockFollower, CLOCK_REFRESH_S};
use super::inlet_thread::{lock_unpoisoned, InletThread};
use super::link::{connect, Latency};
use super::resolve::StreamSummary;
use super::{IngestError, LatencySummary, LinkState, TranscriptConfig};
use crate::transcript::{parse_message, LmAction, TranscriptCounts, TranscriptState};

/// How long one blocking pull waits before checking the silence timeout and stop, seconds.
const PULL_WAIT_S: f64 = 0.05;
/// How often the clock offset to the sender is refreshed, seconds.
/// liblsl buffers this many seconds of transcript messages while the inlet is busy.
const BUFFER_S: i32 = 360;

/// What the LM must do after one message, and the transcript watermark after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscriptUpdate {
    /// Actions in order (empty for a watermark).
    pub actions: Vec<LmAction>,
    /// Transcript watermark, server clock.
    pub watermark: f64,
    /// Server clock when the message behind it was pulled (or the silence timeout fired).
    pub received: f64,
    /// The message's time stamp on the server clock; NaN for a silence-timeout watermark.
    pub stamp: f64,
}

/// A snapshot of the transcript inlet's health.
#[derive(Debug, Clone, Serialize)]
pub struct TranscriptStatus {
    /// Link state.
    pub state: LinkState,
    /// The stream, once connected.
    pub stream: Option<StreamSummary>,
    /// Messages received (accepted or not).
    pub messages: u64,
    /// Words, revisions, retractions, watermarks, and rejections by reason.
    pub counts: TranscriptCounts,
    /// Words currently in the transcript.
    pub transcript_words: usize,
    /// Bytes those words take.
    pub transcript_bytes: usize,
    /// Transcript watermark, server clock (−∞ before the first).
    pub watermark: f64,
    /// Offset added to the sender's times to put them on the server clock, seconds: liblsl's
    /// time correction plus an announced sender clock's newest correction.
    pub clock_offset: f64,
    /// Updates dropped because the pipeline's channel was full.
    pub dropped_updates: u64,
    /// Times the stream was lost.
    pub losses: u64,
    /// Times it was found again after a loss.
    pub recoveries: u64,
    /// Arrival latency of messages (server clock − corrected time stamp).
    pub latency: LatencySummary,
    /// Last problem seen with the stream, if any.
    pub error: Option<String>,
}

struct Shared {
    status: TranscriptStatus,
    latency: Latency,
}

/// Called with every transcript message as received: its time stamp (server clock) and text.
pub type MessageTap = Box<dyn FnMut(f64, &str) + Send>;

/// Handle on the running transcript inlet thread.
pub struct TranscriptInlet {
    shared: Arc<Mutex<Shared>>,
    thread: InletThread,
}

impl TranscriptInlet {
    /// Starts the inlet thread; updates arrive on the returned receiver.
    pub fn spawn(
        config: TranscriptConfig,
        resolve_timeout_s: f64,
    ) -> Result<(Self, Receiver<TranscriptUpdate>), IngestError> {
        Self::spawn_with_tap(config, resolve_timeout_s, None)
    }

    /// Like [`TranscriptInlet::spawn`], and `tap` sees every message as received, rejected
    /// ones included (the server records them all).
    pub fn spawn_with_tap(
        config: TranscriptConfig,
        resolve_timeout_s: f64,
        tap: Option<MessageTap>,
    ) -> Result<(Self, Receiver<TranscriptUpdate>), IngestError> {
        let (sender, receiver) = crossbeam_channel::bounded(config.channel_capacity.max(1));
        let shared = Arc::new(Mutex::new(Shared {
            status: TranscriptStatus {
                state: LinkState::Searching,
                stream: None,
                messages: 0,
                counts: TranscriptCounts::default(),
                transcript_words: 0,
                transcript_bytes: 0,
                watermark: f64::NEG_INFINITY,
                clock_offset: 0.0,
                dropped_updates: 0,
                losses: 0,
                recoveries: 0,
                latency: Latency::new().percentiles(),
                error: None,
            },
            latency: Latency::new(),
        }));
        let thread = {
            let shared = Arc::clone(&shared);
            InletThread::spawn("transcript", "lsl-transcript", move |stop| {
                Worker {
                    state: TranscriptState::new(config.silence_timeout_s)
                        .forgetting_after(config.forget_after_s),
                    config,
                    resolve_timeout_s,
                    shared,
                    sender,
                    resync_from: None,
                    tap,
                    stop,
                }
                .run()
            })?
        };
        Ok((Self { shared, thread }, receiver))
    }

    /// The inlet's health now.
    pub fn status(&self) -> TranscriptStatus {
        let shared = lock_unpoisoned(&self.shared);
        let mut status = shared.status.clone();
        status.latency = shared.latency.percentiles();
        status
    }

    /// Stops the thread and returns the final status.
    pub fn stop(mut self) -> TranscriptStatus {
        self.shutdown();
        self.status()
    }

    fn shutdown(&mut self) {
        self.thread.join();
        lock_unpoisoned(&self.shared).status.state = LinkState::Stopped;
    }
}

impl Drop for TranscriptInlet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    config: TranscriptConfig,
    resolve_timeout_s: f64,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    sender: Sender<TranscriptUpdate>,
    state: TranscriptState,
    /// Earliest transcript position touched by an update that was dropped.
    resync_from: Option<usize>,
    tap: Option<MessageTap>,
}

impl Worker {
    fn run(mut self) {
        // silence counts from now on, and while the stream is away (see `tick`)
        self.state.start_silence_clock(lsl::local_clock());
        let (selector, stop, timeout) = (
            self.config.stream.clone(),
            self.stop.clone(),
            self.resolve_timeout_s,
        );
        while let Some((inlet, mut info)) =
            connect(&selector, timeout, BUFFER_S, &stop, &mut || self.tick())
        {
            let summary = StreamSummary::from_info(&info);
            if summary.format != "string" || summary.channels != 1 {
                let e = IngestError::Format {
                    stream: summary.name.clone(),
                    format: summary.format.clone(),
                    expected: "the transcript stream must have one string channel",
                };
                tracing::error!("{e}");
                lock_unpoisoned(&self.shared).status.error = Some(e.to_string());
                std::thread::sleep(std::time::Duration::from_secs(1));
                continue;
            }
            let offset = inlet.time_correction(self.resolve_timeout_s).unwrap_or_else(|e| {
                tracing::warn!("no clock correction for the transcript yet ({e:?}); assuming the same clock");
                0.0
            });
            {
                let mut shared = lock_unpoisoned(&self.shared);
                let status = &mut shared.status;
                if status.state == LinkState::Lost {
                    status.recoveries += 1;
                }
                status.state = LinkState::Streaming;
                status.clock_offset = offset;
                status.error = None;
                tracing::info!(stream = %summary.name, offset, "transcript stream connected");
                status.stream = Some(summary);
            }
            let clock = ClockFollower::announced(&mut info, self.resolve_timeout_s);
            self.stream(&inlet, offset, clock);
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }

    /// Pulls messages until the stream is lost or a stop is requested.
    fn stream(
        &mut self,
        inlet: &lsl::StreamInlet,
        mut offset: f64,
        mut clock: Option<ClockFollower>,
    ) {
        let mut message: Vec<String> = Vec::new();
        let mut offset_at = lsl::local_clock();
        while !self.stop.load(Ordering::Relaxed) {
            let now = lsl::local_clock();
            if now - offset_at > CLOCK_REFRESH_S {
                offset_at = now;
                if let Ok(fresh) = inlet.time_correction(0.0) {
                    offset = fresh;
                }
                let simulated = clock.as_mut().and_then(ClockFollower::latest);
                lock_unpoisoned(&self.shared).status.clock_offset =
                    offset + simulated.unwrap_or(0.0);
            }
            match inlet.pull_sample_buf(&mut message, PULL_WAIT_S) {
                Ok(0.0) => self.tick(),
                Ok(stamp) => {
                    // a simulated sender clock's correction, on top of liblsl's
                    let simulated = clock.as_mut().map_or(0.0, |c| c.correction(stamp));
                    self.receive(&message[0], stamp, offset + simulated)
                }
                Err(e) => {
                    let mut shared = lock_unpoisoned(&self.shared);
                    shared.status.state = LinkState::Lost;
                    shared.status.losses += 1;
                    tracing::warn!("transcript stream lost ({e:?}); re-resolving");
                    return;
                }
            }
        }
    }

    /// Advances the watermark after a silence (the stream quiet, or away).
    fn tick(&mut self) {
        let now = lsl::local_clock();
        if let Some(watermark) = self.state.tick(now) {
            let forget = self.state.forget().into_iter().collect();
            self.send(forget, watermark, (now, f64::NAN));
        }
    }

    fn receive(&mut self, message: &str, stamp: f64, offset: f64) {
        let now = lsl::local_clock();
        if let Some(tap) = &mut self.tap {
            tap(stamp + offset, message);
        }
        let applied = match parse_message(message, stamp) {
            Ok(event) => self.state.apply(event.shifted(offset), now),
            Err(rejection) => {
                self.state.reject(&rejection, now);
                Err(rejection)
            }
        };
        {
            let mut shared = lock_unpoisoned(&self.shared);
            shared.latency.record_seconds(now - (stamp + offset));
            shared.status.messages += 1;
        }
        match applied {
            Ok(mut actions) => {
                actions.extend(self.state.forget());
                self.send(actions, self.state.watermark(), (now, stamp + offset));
            }
            Err(rejection) => {
                tracing::warn!("{rejection}");
                self.publish_counts();
            }
        }
    }

    /// Hands the LM the actions of one message; `(received, stamp)` as in [`TranscriptUpdate`].
    fn send(&mut self, actions: Vec<LmAction>, watermark: f64, (received, stamp): (f64, f64)) {
        let touched = match actions.first() {
            Some(LmAction::Rollback { position }) => *position,
            _ => self.state.next_position(),
        };
        let from = self
            .resync_from
            .map_or(touched, |pending| pending.min(touched));
        let actions = if self.resync_from.is_some() {
            // what the LM missed: the words forgotten since (a forget moves only forward, so
            // a repeated one is harmless), the words again from the first one it missed, then
            // this message's segment
            let forgotten = self.state.first_position();
            let mut all: Vec<LmAction> = (forgotten > 0)
                .then_some(LmAction::Forget { before: forgotten })
                .into_iter()
                .collect();
            all.extend(self.state.recompute_from(from));
            all.extend(
                actions
                    .into_iter()
                    .filter(|a| matches!(a, LmAction::Segment { .. })),
            );
            all
        } else {
            actions
        };
        match self.sender.try_send(TranscriptUpdate {
            actions,
            watermark,
            received,
            stamp,
        }) {
            Ok(()) => self.resync_from = None,
            Err(TrySendError::Full(_)) => {
                self.resync_from = Some(from);
                lock_unpoisoned(&self.shared).status.dropped_updates += 1;
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
        self.publish_counts();
    }

    fn publish_counts(&self) {
        let mut shared = lock_unpoisoned(&self.shared);
        shared.status.counts = self.state.counts().clone();
        shared.status.transcript_words = self.state.words().len();
        shared.status.transcript_bytes = self.state.heap_bytes();
        shared.status.watermark = self.state.watermark();
    }
}
