//! The neural inlet: one OS thread that resolves the iEEG (or high-gamma) stream, pulls it in
//! chunks with liblsl clock correction (and optional dejitter), places every sample on the
//! stream's sample grid (gaps detected and counted), and hands [`NeuralChunk`]s to the
//! pipeline through a bounded channel. A lost stream is reported, re-resolved and resumed on
//! the same grid, so that the outage shows up as a gap.
//!
//! In raw mode the chunks are raw iEEG; the pipeline runs them through the causal high-gamma
//! extraction (`dsp`) on its own thread, so that filtering never delays the LSL pulls.
use crossbeam_channel::{Receiver, SendTimeoutError, Sender};
use lsl::Pullable;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock_follow::{ClockFollower, CLOCK_REFRESH_S};
use super::inlet_thread::{lock_unpoisoned, InletThread};
use super::link::{connect, Latency};
use super::resolve::{channel_labels, channel_meta, StreamSummary};
use super::{Gap, GapTracker, IngestError, LatencySummary, LinkState, NeuralChunk, NeuralConfig};

/// Most gaps kept in the status (all are counted).
const MAX_GAPS_KEPT: usize = 1000;
/// How long one blocking pull waits before checking for a stop request or a stall, seconds.
const PULL_WAIT_S: f64 = 0.05;

/// The connected stream as the pipeline needs to know it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamMeta {
    /// What `neuralign streams` shows for it.
    #[serde(flatten)]
    pub summary: StreamSummary,
    /// Channel labels (from the description, or `ch1…chN`).
    pub labels: Vec<String>,
    /// Each channel's description (`desc/channels/channel`: type, group, status, location)
    /// when the stream describes every channel, else empty. Sent once in `hello`, not in
    /// every status.
    #[serde(skip)]
    pub channels: Vec<crate::import::desc::ChannelMeta>,
}

/// A snapshot of the neural inlet's health.
#[derive(Debug, Clone, Serialize)]
pub struct NeuralStatus {
    /// Link state.
    pub state: LinkState,
    /// The stream, once connected.
    pub stream: Option<StreamMeta>,
    /// Samples received.
    pub samples: u64,
    /// Time stamps (server clock) of the first and the newest sample.
    pub first_time: Option<f64>,
    /// Newest sample's time stamp: the neural watermark.
    pub watermark: Option<f64>,
    /// Gaps detected (all counted in `gap_count`; the first 1000 kept).
    pub gaps: Vec<Gap>,
    /// Number of gaps.
    pub gap_count: u64,
    /// Sample periods missing in all gaps.
    pub missing_samples: u64,
    /// Time stamps that went backwards.
    pub backward_steps: u64,
    /// Chunks (and their samples) dropped because the pipeline's channel was full.
    pub dropped_chunks: u64,
    /// Samples in dropped chunks.
    pub dropped_samples: u64,
    /// Times the stream was lost.
    pub losses: u64,
    /// Times it was found again after a loss.
    pub recoveries: u64,
    /// Arrival latency (server clock − corrected time stamp) at pull time.
    pub latency: LatencySummary,
    /// Seconds added to the sender's time stamps to put them on the server clock (liblsl's
    /// time correction plus an announced sender clock's newest correction), refreshed every
    /// few seconds; `None` until liblsl has an estimate.
    pub clock_correction: Option<f64>,
    /// Last problem seen with the stream (wrong format, ...), if any.
    pub error: Option<String>,
}

impl NeuralStatus {
    /// Samples per second over the received span (0 until two samples arrived).
    pub fn measured_rate(&self) -> f64 {
        match (self.first_time, self.watermark) {
            (Some(first), Some(last)) if last > first && self.samples > 1 => {
                (self.samples + self.missing_samples - 1) as f64 / (last - first)
            }
            _ => 0.0,
        }
    }
}

struct Shared {
    status: NeuralStatus,
    latency: Latency,
    /// The stream of every connection so far, by connection number.
    connections: Vec<StreamMeta>,
}

/// Handle on the running neural inlet thread.
pub struct NeuralInlet {
    shared: Arc<Mutex<Shared>>,
    thread: InletThread,
}

impl NeuralInlet {
    /// Starts the inlet thread; chunks arrive on the returned receiver.
    pub fn spawn(
        config: NeuralConfig,
        resolve_timeout_s: f64,
    ) -> Result<(Self, Receiver<NeuralChunk>), IngestError> {
        let (sender, receiver) = crossbeam_channel::bounded(config.channel_capacity.max(1));
        let shared = Arc::new(Mutex::new(Shared {
            status: NeuralStatus {
                state: LinkState::Searching,
                stream: None,
                samples: 0,
                first_time: None,
                watermark: None,
                gaps: Vec::new(),
                gap_count: 0,
                missing_samples: 0,
                backward_steps: 0,
                dropped_chunks: 0,
                dropped_samples: 0,
                losses: 0,
                recoveries: 0,
                latency: Latency::new().percentiles(),
                clock_correction: None,
                error: None,
            },
            latency: Latency::new(),
            connections: Vec::new(),
        }));
        let thread = {
            let shared = Arc::clone(&shared);
            InletThread::spawn("neural", "lsl-neural", move |stop| {
                Worker {
                    config,
                    resolve_timeout_s,
                    shared,
                    sender,
                    stop,
                }
                .run()
            })?
        };
        Ok((Self { shared, thread }, receiver))
    }

    /// The inlet's health now.
    pub fn status(&self) -> NeuralStatus {
        let shared = lock_unpoisoned(&self.shared);
        let mut status = shared.status.clone();
        status.latency = shared.latency.percentiles();
        status
    }

    /// The stream behind connection `connection` (see [`NeuralChunk::connection`]).
    pub fn stream_of(&self, connection: u64) -> Option<StreamMeta> {
        lock_unpoisoned(&self.shared)
            .connections
            .get(connection as usize)
            .cloned()
    }

    /// Stops the thread and returns the final status.
    pub fn stop(mut self) -> NeuralStatus {
        self.shutdown();
        self.status()
    }

    fn shutdown(&mut self) {
        self.thread.join();
        lock_unpoisoned(&self.shared).status.state = LinkState::Stopped;
    }
}

impl Drop for NeuralInlet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    config: NeuralConfig,
    resolve_timeout_s: f64,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    sender: Sender<NeuralChunk>,
}

impl Worker {
    fn run(self) {
        let mut tracker: Option<(StreamMeta, GapTracker)> = None;
        let buffer_s = self.config.lsl_buffer_s.min(i32::MAX as u32) as i32;
        while let Some((inlet, mut info)) = connect(
            &self.config.stream,
            self.resolve_timeout_s,
            buffer_s,
            &self.stop,
            &mut || {},
        ) {
            let meta = StreamMeta {
                summary: StreamSummary::from_info(&info),
                labels: channel_labels(&mut info),
                channels: channel_meta(&info),
            };
            if let Err(e) = self.check(&meta) {
                tracing::error!("{e}");
                lock_unpoisoned(&self.shared).status.error = Some(e.to_string());
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            if let Err(e) = self.set_postprocessing(&inlet) {
                tracing::warn!(
                    "liblsl post-processing unavailable ({e:?}); time stamps are uncorrected"
                );
            }
            // Keep the grid across a reconnection to the same layout, so the outage is a gap.
            tracker = match tracker.take() {
                Some((old, grid)) if same_layout(&old, &meta) => Some((meta, grid)),
                old => {
                    let mut grid =
                        GapTracker::new(meta.summary.rate, self.config.gap_tolerance_periods);
                    if let Some((_, previous)) = old {
                        // A new layout starts a fresh grid, past every index already handed out.
                        grid = grid.starting_at(previous.next_index());
                    }
                    Some((meta, grid))
                }
            };
            let (meta, grid) = tracker.as_mut().expect("set above");
            let connection = self.connected(meta);
            let mut clock = ClockFollower::announced(&mut info, self.resolve_timeout_s);
            self.stream(&inlet, meta, grid, connection, clock.as_mut());
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }

    fn check(&self, meta: &StreamMeta) -> Result<(), IngestError> {
        match meta.summary.format.as_str() {
            "float32" | "double64" | "int16" | "int32" | "int8" if meta.summary.channels > 0 => Ok(()),
            _ => Err(IngestError::Format {
                stream: meta.summary.name.clone(),
                format: meta.summary.format.clone(),
                expected: "the neural stream must be numeric (float32, double64 or int16) with at least one channel",
            }),
        }
    }

    fn set_postprocessing(&self, inlet: &lsl::StreamInlet) -> Result<(), lsl::Error> {
        use lsl::ProcessingOption as P;
        if self.config.dejitter {
            inlet.set_postprocessing(&[P::ClockSync, P::Dejitter, P::Monotonize])
        } else {
            inlet.set_postprocessing(&[P::ClockSync])
        }
    }

    /// Marks the link up; returns the connection's number.
    fn connected(&self, meta: &StreamMeta) -> u64 {
        let mut shared = lock_unpoisoned(&self.shared);
        shared.connections.push(meta.clone());
        let connection = shared.connections.len() as u64 - 1;
        let status = &mut shared.status;
        if status.state == LinkState::Lost {
            status.recoveries += 1;
        }
        status.state = LinkState::Streaming;
        status.stream = Some(meta.clone());
        status.error = None;
        tracing::info!(stream = %meta.summary.name, channels = meta.summary.channels, rate = meta.summary.rate, "neural stream connected");
        connection
    }

    /// Pulls until the stream is lost, stalls or a stop is requested.
    fn stream(
        &self,
        inlet: &lsl::StreamInlet,
        meta: &StreamMeta,
        grid: &mut GapTracker,
        connection: u64,
        mut clock: Option<&mut ClockFollower>,
    ) {
        let channels = meta.summary.channels;
        let mut row: Vec<f32> = vec![0.0; channels];
        let mut pulled = Pulled::with_capacity(self.config.max_chunk, channels);
        let mut last_data = lsl::local_clock();
        let mut clock_at = f64::NEG_INFINITY;
        while !self.stop.load(Ordering::Relaxed) {
            if last_data - clock_at > CLOCK_REFRESH_S {
                clock_at = last_data;
                let sender = clock.as_mut().and_then(|c| c.latest()).unwrap_or(0.0);
                if let Ok(liblsl) = inlet.time_correction(0.0) {
                    lock_unpoisoned(&self.shared).status.clock_correction = Some(liblsl + sender);
                }
            }
            pulled.clear();
            // Block for the first sample, then drain what is already there: one chunk.
            let mut wait = PULL_WAIT_S;
            let outcome = loop {
                match inlet.pull_sample_buf(&mut row, wait) {
                    Ok(0.0) => break Ok(()),
                    Ok(stamp) => {
                        // a simulated sender clock's correction, on top of liblsl's
                        let stamp = stamp + clock.as_mut().map_or(0.0, |c| c.correction(stamp));
                        pulled.push(stamp, &row, lsl::local_clock());
                        if pulled.len() >= self.config.max_chunk {
                            break Ok(());
                        }
                        wait = 0.0;
                    }
                    Err(e) => break Err(e),
                }
            };
            let now = lsl::local_clock();
            if !pulled.is_empty() {
                last_data = now;
                self.deliver(&pulled, grid, channels, connection, now);
            }
            let lost = match outcome {
                Err(e) => Some(format!("{e:?}")),
                Ok(()) if now - last_data > self.config.lost_after_s => {
                    Some(format!("no data for {:.1} s", self.config.lost_after_s))
                }
                Ok(()) => None,
            };
            if let Some(why) = lost {
                let mut shared = lock_unpoisoned(&self.shared);
                shared.status.state = LinkState::Lost;
                shared.status.losses += 1;
                tracing::warn!(stream = %meta.summary.name, "neural stream lost ({why}); re-resolving");
                return;
            }
        }
    }

    /// Places the pulled samples on the grid, splits them at gaps and sends the chunks.
    fn deliver(
        &self,
        pulled: &Pulled,
        grid: &mut GapTracker,
        channels: usize,
        connection: u64,
        received: f64,
    ) {
        let mut chunks = Vec::new();
        let mut current: Option<NeuralChunk> = None;
        let mut gaps = Vec::new();
        let backward_before = grid.backward_steps();
        for (k, &stamp) in pulled.stamps.iter().enumerate() {
            let placement = grid.place(stamp);
            if let Some(gap) = placement.gap {
                gaps.push(gap);
                chunks.extend(current.take());
            }
            let chunk = current.get_or_insert_with(|| NeuralChunk {
                first_index: placement.index,
                timestamps: Vec::with_capacity(pulled.len() - k),
                data: Vec::with_capacity((pulled.len() - k) * channels),
                connection,
                received,
            });
            chunk.timestamps.push(stamp);
            chunk
                .data
                .extend_from_slice(&pulled.data[k * channels..(k + 1) * channels]);
        }
        chunks.extend(current);
        let mut dropped = (0, 0);
        // A busy pipeline holds this thread back; liblsl goes on buffering meanwhile.
        let patience = Duration::from_secs(self.config.lsl_buffer_s.into());
        for chunk in chunks {
            match self.sender.send_timeout(chunk, patience) {
                Ok(()) | Err(SendTimeoutError::Disconnected(_)) => {}
                Err(SendTimeoutError::Timeout(chunk)) => {
                    dropped = (dropped.0 + 1, dropped.1 + chunk.len() as u64)
                }
            }
        }
        let mut shared = lock_unpoisoned(&self.shared);
        for latency in &pulled.latencies {
            shared.latency.record_seconds(*latency);
        }
        let status = &mut shared.status;
        status.samples += pulled.len() as u64;
        status.first_time = status.first_time.or(pulled.stamps.first().copied());
        status.watermark = pulled.stamps.last().copied();
        status.backward_steps += grid.backward_steps() - backward_before;
        status.dropped_chunks += dropped.0;
        status.dropped_samples += dropped.1;
        for gap in gaps {
            tracing::warn!(
                missing = gap.missing_samples,
                after = gap.after,
                before = gap.before,
                "gap in the neural stream"
            );
            status.gap_count += 1;
            status.missing_samples += gap.missing_samples;
            if status.gaps.len() < MAX_GAPS_KEPT {
                status.gaps.push(gap);
            }
        }
    }
}

/// Samples of one pull: time stamps, row-major data and arrival latencies.
struct Pulled {
    stamps: Vec<f64>,
    data: Vec<f32>,
    latencies: Vec<f64>,
}

impl Pulled {
    fn with_capacity(samples: usize, channels: usize) -> Self {
        Self {
            stamps: Vec::with_capacity(samples),
            data: Vec::with_capacity(samples * channels),
            latencies: Vec::with_capacity(samples),
        }
    }

    fn push(&mut self, stamp: f64, row: &[f32], now: f64) {
        self.stamps.push(stamp);
        self.data.extend_from_slice(row);
        self.latencies.push(now - stamp);
    }

    fn clear(&mut self) {
        self.stamps.clear();
        self.data.clear();
        self.latencies.clear();
    }

    fn len(&self) -> usize {
        self.stamps.len()
    }

    fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }
}

fn same_layout(a: &StreamMeta, b: &StreamMeta) -> bool {
    a.summary.channels == b.summary.channels && a.summary.rate == b.summary.rate
}
