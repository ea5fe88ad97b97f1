//! The audio inlet: one OS thread that resolves the session's audio stream (a microphone as
//! LabRecorder's AudioCapture publishes it, `neuralign play`'s `-audio` outlet), pulls it in
//! chunks of at most 100 ms in its own sample format with the sender's time stamps, and hands
//! each chunk to a tap (`serve`'s recorder) with the clock offset to the server clock every
//! few seconds, as LabRecorder records a stream: the stamps stay as sent (an XDF writer stores
//! a stamp exactly 1/rate after the previous one in one byte), and a reader that synchronises
//! clocks (pyxdf's default) puts the audio on the server clock of the other streams.
//! Nothing else in the server reads the audio: it is recorded so that a session can be
//! transcribed again, or checked, afterwards (`neuralign transcribe SESSION.xdf --stream`).
//!
//! A lost stream (an error from liblsl, or no data for [`LOST_AFTER_S`]) is counted and
//! re-resolved; when it returns with the same layout its record goes on (the outage is a jump
//! in its time stamps), another layout is announced as a stream of its own. Memory stays
//! bounded: liblsl buffers at most [`BUFFER_S`] seconds, and the tap never waits.
use lsl::Pullable;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock_follow::{ClockFollower, CLOCK_REFRESH_S};
use super::inlet_thread::{lock_unpoisoned, InletThread};
use super::link::connect;
use super::resolve::{format_name, StreamSummary};
use super::{IngestError, LinkState, StreamSelector};
use crate::xdf::{ChannelFormat, Samples, StreamInfo};

/// An audio stream without data for this long is lost and re-resolved, seconds.
pub const LOST_AFTER_S: f64 = 2.0;
/// Seconds of audio liblsl buffers while the inlet thread is held up.
const BUFFER_S: i32 = 60;
/// How long one blocking pull waits before checking for a stop request or a stall, seconds.
const PULL_WAIT_S: f64 = 0.05;
/// Longest chunk handed to the tap, seconds of audio (samples for an irregular stream: 64).
const CHUNK_S: f64 = 0.1;

/// What the audio inlet hands on.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioRecord {
    /// The stream's header as its sender describes it (`desc` included), before its first
    /// samples; sent again only when a returning stream has another layout.
    Stream(StreamInfo),
    /// Samples: time stamps (the sender's clock) and `[samples, channels]` values in the
    /// stream's own format.
    Samples(Vec<f64>, Samples),
    /// A clock offset, as an XDF ClockOffset chunk holds it: at `time` (the sender's clock)
    /// the server clock was `value` seconds ahead (liblsl's time correction plus an announced
    /// sender clock's newest correction). One at each connection, then every few seconds.
    ClockOffset {
        /// When it was measured, sender clock.
        time: f64,
        /// Server clock − sender clock, seconds.
        value: f64,
    },
}

/// Called with every header and chunk; must not block.
pub type AudioTap = Box<dyn FnMut(AudioRecord) + Send>;

/// A snapshot of the audio inlet's health.
#[derive(Debug, Clone, Serialize)]
pub struct AudioStatus {
    /// Link state.
    pub state: LinkState,
    /// The stream, once connected.
    pub stream: Option<StreamSummary>,
    /// Samples received.
    pub samples: u64,
    /// Time stamps of the first and the newest sample, on the server clock (the offset of the
    /// moment added).
    pub first_time: Option<f64>,
    /// The newest sample's time stamp.
    pub watermark: Option<f64>,
    /// Times the stream was lost.
    pub losses: u64,
    /// Times it was found again after a loss.
    pub recoveries: u64,
    /// Seconds added to the sender's time stamps to put them on the server clock; `None`
    /// until liblsl has an estimate.
    pub clock_correction: Option<f64>,
    /// Last problem seen with the stream (a format that is not audio), if any.
    pub error: Option<String>,
}

impl AudioStatus {
    /// Samples per second over the received span (0 until two samples arrived).
    pub fn measured_rate(&self) -> f64 {
        match (self.first_time, self.watermark) {
            (Some(first), Some(last)) if last > first && self.samples > 1 => {
                (self.samples - 1) as f64 / (last - first)
            }
            _ => 0.0,
        }
    }
}

/// Handle on the running audio inlet thread.
pub struct AudioInlet {
    status: Arc<Mutex<AudioStatus>>,
    thread: InletThread,
}

impl AudioInlet {
    /// Starts the inlet thread on the stream `stream`; every header and chunk goes to `tap`.
    pub fn spawn(
        stream: StreamSelector,
        resolve_timeout_s: f64,
        tap: AudioTap,
    ) -> Result<Self, IngestError> {
        let status = Arc::new(Mutex::new(AudioStatus {
            state: LinkState::Searching,
            stream: None,
            samples: 0,
            first_time: None,
            watermark: None,
            losses: 0,
            recoveries: 0,
            clock_correction: None,
            error: None,
        }));
        let thread = {
            let shared = Arc::clone(&status);
            InletThread::spawn("audio", "lsl-audio", move |stop| {
                Worker {
                    stream,
                    resolve_timeout_s,
                    status: shared,
                    tap,
                    stop,
                }
                .run()
            })?
        };
        Ok(Self { status, thread })
    }

    /// The inlet's health now.
    pub fn status(&self) -> AudioStatus {
        lock_unpoisoned(&self.status).clone()
    }

    /// Stops the thread (after it has handed on what it pulled) and returns the final status.
    pub fn stop(mut self) -> AudioStatus {
        self.shutdown();
        self.status()
    }

    fn shutdown(&mut self) {
        self.thread.join();
        lock_unpoisoned(&self.status).state = LinkState::Stopped;
    }
}

impl Drop for AudioInlet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    stream: StreamSelector,
    resolve_timeout_s: f64,
    status: Arc<Mutex<AudioStatus>>,
    stop: Arc<AtomicBool>,
    tap: AudioTap,
}

impl Worker {
    fn run(mut self) {
        let mut recorded: Option<StreamSummary> = None;
        let (selector, stop) = (self.stream.clone(), self.stop.clone());
        while let Some((inlet, mut info)) = connect(
            &selector,
            self.resolve_timeout_s,
            BUFFER_S,
            &stop,
            &mut || {},
        ) {
            let summary = StreamSummary::from_info(&info);
            let header = match header(&info, &summary) {
                Ok(header) => header,
                Err(e) => {
                    tracing::error!("{e}");
                    lock_unpoisoned(&self.status).error = Some(e.to_string());
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            // the same stream back goes on in its record; another layout is a stream of its own
            if recorded.as_ref() != Some(&summary) {
                (self.tap)(AudioRecord::Stream(header.clone()));
                recorded = Some(summary.clone());
            }
            {
                let mut status = lock_unpoisoned(&self.status);
                if status.state == LinkState::Lost {
                    status.recoveries += 1;
                }
                status.state = LinkState::Streaming;
                status.error = None;
                tracing::info!(stream = %summary.name, channels = summary.channels, rate = summary.rate, format = %summary.format, "audio stream connected (recorded)");
                status.stream = Some(summary);
            }
            let clock = ClockFollower::announced(&mut info, self.resolve_timeout_s);
            self.stream(&inlet, &header, clock);
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }

    /// Pulls until the stream is lost, stalls or a stop is requested.
    fn stream(
        &mut self,
        inlet: &lsl::StreamInlet,
        header: &StreamInfo,
        mut clock: Option<ClockFollower>,
    ) {
        let channels = header.channel_count;
        let max_samples = match header.nominal_srate > 0.0 {
            true => ((header.nominal_srate * CHUNK_S).ceil() as usize).max(1),
            false => 64,
        };
        let mut last_data = lsl::local_clock();
        let (mut clock_at, mut offset) = (f64::NEG_INFINITY, 0.0);
        while !self.stop.load(Ordering::Relaxed) {
            if last_data - clock_at > CLOCK_REFRESH_S {
                clock_at = last_data;
                let sender = clock.as_mut().and_then(|c| c.latest()).unwrap_or(0.0);
                if let Ok(liblsl) = inlet.time_correction(0.0) {
                    offset = liblsl + sender;
                    lock_unpoisoned(&self.status).clock_correction = Some(offset);
                    let time = lsl::local_clock() - offset;
                    (self.tap)(AudioRecord::ClockOffset {
                        time,
                        value: offset,
                    });
                }
            }
            let mut stamps = Vec::with_capacity(max_samples);
            let (samples, outcome) = pull_chunk(
                inlet,
                header.channel_format,
                channels,
                max_samples,
                &mut stamps,
            );
            let now = lsl::local_clock();
            if !stamps.is_empty() {
                last_data = now;
                let mut status = lock_unpoisoned(&self.status);
                status.samples += stamps.len() as u64;
                status.first_time = status.first_time.or(stamps.first().map(|t| t + offset));
                status.watermark = stamps.last().map(|t| t + offset);
                drop(status);
                (self.tap)(AudioRecord::Samples(stamps, samples));
            }
            let lost = match outcome {
                Err(e) => Some(format!("{e:?}")),
                Ok(()) if now - last_data > LOST_AFTER_S => {
                    Some(format!("no data for {LOST_AFTER_S:.1} s"))
                }
                Ok(()) => None,
            };
            if let Some(why) = lost {
                let mut status = lock_unpoisoned(&self.status);
                status.state = LinkState::Lost;
                status.losses += 1;
                tracing::warn!(stream = %header.name, "audio stream lost ({why}); re-resolving");
                return;
            }
        }
    }
}

/// The header to record: the sender's own description (LabRecorder records the same XML),
/// for a numeric stream with at least one channel; anything else is refused with the reason.
fn header(info: &lsl::StreamInfo, summary: &StreamSummary) -> Result<StreamInfo, IngestError> {
    let refused = |expected| IngestError::Format {
        stream: summary.name.clone(),
        format: summary.format.clone(),
        expected,
    };
    let numeric = ChannelFormat::from_name(format_name(info.channel_format()))
        .filter(|f| *f != ChannelFormat::String);
    if numeric.is_none() || summary.channels == 0 {
        return Err(refused(
            "the audio stream must have numeric samples (int8, int16, int32, int64, float32 or double64) and at least one channel",
        ));
    }
    let xml = info
        .to_xml()
        .map_err(|_| refused("its description could not be read"))?;
    StreamInfo::parse(&xml).map_err(|_| refused("its description could not be read"))
}

/// Pulls one chunk in the stream's own format: `max` samples, or fewer when the stream pauses
/// for [`PULL_WAIT_S`] (none when it has nothing for that long). Returns what was pulled
/// (also when liblsl failed part way) and whether the stream is still there.
fn pull_chunk(
    inlet: &lsl::StreamInlet,
    format: ChannelFormat,
    channels: usize,
    max: usize,
    stamps: &mut Vec<f64>,
) -> (Samples, Result<(), lsl::Error>) {
    match format {
        ChannelFormat::Float32 => wrap(pull(inlet, channels, max, stamps), Samples::Float32),
        ChannelFormat::Double64 => wrap(pull(inlet, channels, max, stamps), Samples::Double64),
        ChannelFormat::Int8 => wrap(pull(inlet, channels, max, stamps), Samples::Int8),
        ChannelFormat::Int16 => wrap(pull(inlet, channels, max, stamps), Samples::Int16),
        ChannelFormat::Int32 => wrap(pull(inlet, channels, max, stamps), Samples::Int32),
        ChannelFormat::Int64 => wrap(pull(inlet, channels, max, stamps), Samples::Int64),
        ChannelFormat::String => unreachable!("refused by `header`"),
    }
}

fn wrap<T>(
    (values, outcome): (Vec<T>, Result<(), lsl::Error>),
    samples: fn(Vec<T>) -> Samples,
) -> (Samples, Result<(), lsl::Error>) {
    (samples(values), outcome)
}

fn pull<T: Clone + Default>(
    inlet: &lsl::StreamInlet,
    channels: usize,
    max: usize,
    stamps: &mut Vec<f64>,
) -> (Vec<T>, Result<(), lsl::Error>)
where
    lsl::StreamInlet: Pullable<T>,
{
    let mut row = vec![T::default(); channels];
    let mut values = Vec::with_capacity(max * channels);
    while stamps.len() < max {
        match inlet.pull_sample_buf(&mut row, PULL_WAIT_S) {
            Ok(0.0) => break,
            Ok(stamp) => {
                stamps.push(stamp);
                values.extend_from_slice(&row);
            }
            Err(e) => return (values, Err(e)),
        }
    }
    (values, Ok(()))
}
