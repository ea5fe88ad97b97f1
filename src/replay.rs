//! Plays an XDF recording as LSL outlets, one OS thread per stream (liblsl
//! handles are not `Send`).
//!
//! Timing: clock offsets are applied first (each stream onto the recorder's
//! clock), then every stream is re-based by the same shift so that the
//! earliest sample of the session lands just after start-up on this
//! machine's LSL clock; cross-stream alignment and the recorded spacing of
//! time stamps are kept at every speed. At `--speed K` a sample is sent when
//! `(t - t0) / K` has elapsed; at 1× stamps and send times coincide (the
//! sender sleeps until shortly before each sample, then spins). At
//! `Speed::Max` each outlet waits for a consumer, pauses whenever it has
//! none, and sends as fast as liblsl takes the samples. liblsl gives the
//! sender no view of a consumer's progress, so backpressure is by buffering:
//! without `--loop` the outlet buffer holds the whole pass (memory is used
//! only while a consumer lags), and the consumer's own inlet buffer must
//! hold what it has not pulled yet (neuralign's inlets wait for the pipeline,
//! see `lsl_buffer_s`); with `--loop` the buffer is
//! [`ReplayOptions::buffer_seconds`] and a consumer further behind loses the
//! oldest samples, liblsl's own rule.
//!
//! Transcript messages carry `start`/`end` (and watermarks `time`) on the
//! sender's clock: they are shifted by the same amount as the sample's time
//! stamp, so words stay aligned with the neural data; on `--loop` word ids
//! are shifted past the previous pass so that passes are not revisions.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

use lsl::ExPushable;

use crate::transcript::{parse_message, TranscriptEvent, Word, BARE_WORD_ID_BASE};
use crate::xdf::xml::Element;
use crate::xdf::{read, sync, ReadOptions, Samples, Stream, StreamInfo, XdfError};

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// `K` times real time (1.0 = as recorded).
    Factor(f64),
    /// As fast as the consumers take it.
    Max,
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(k) if k > 0.0 && k.is_finite() => Ok(Speed::Factor(k)),
            _ => Err(format!(
                "speed {s:?}: expected a positive number or \"max\""
            )),
        }
    }
}

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Replay speed.
    pub speed: Speed,
    /// Start again at the end, until shut down.
    pub looped: bool,
    /// Stream names to replay; all streams when empty.
    pub streams: Vec<String>,
    /// Outlet buffer, in seconds of data (liblsl's `max_buffered`).
    pub buffer_seconds: i32,
    /// With `Speed::Max`: how long to wait for a first consumer before
    /// giving up on an outlet.
    pub consumer_timeout: Duration,
    /// Skip the session's first seconds (e.g. the part encoders were fit on).
    pub start_at: f64,
    /// Hold the first sample until every outlet has a consumer (at most
    /// `consumer_timeout`), so that a consumer started after the replay misses nothing.
    pub wait_for_consumers: bool,
    /// With `Speed::Max`: how long the outlets stay open after the last sample while a
    /// consumer is connected, so that it can take the tail (liblsl drops what is still
    /// queued when an outlet goes, and tells the sender nothing of a consumer's progress).
    pub linger: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            speed: Speed::Factor(1.0),
            looped: false,
            streams: Vec::new(),
            buffer_seconds: 360,
            consumer_timeout: Duration::from_secs(60),
            start_at: 0.0,
            wait_for_consumers: false,
            linger: Duration::from_secs(10),
        }
    }
}

/// What one outlet sent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamReplay {
    /// Stream name.
    pub name: String,
    /// Samples pushed (all passes).
    pub samples: u64,
    /// Passes completed.
    pub passes: u64,
    /// Send lateness against schedule, seconds (median, 99th percentile,
    /// max); zeros at `Speed::Max`, which has no schedule.
    pub lateness_p50: f64,
    /// 99th percentile of send lateness, seconds.
    pub lateness_p99: f64,
    /// Largest send lateness, seconds.
    pub lateness_max: f64,
}

/// Errors of a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error(transparent)]
    Xdf(#[from] XdfError),
    /// `--streams` named streams the file lacks.
    #[error("no stream named {missing:?} in the file (it has {available:?})")]
    NoSuchStream {
        /// Names asked for but absent.
        missing: Vec<String>,
        /// Names present.
        available: Vec<String>,
    },
    /// liblsl refused to create an outlet.
    #[error("stream {name:?}: cannot create an LSL outlet: {reason}")]
    Outlet {
        /// Stream name.
        name: String,
        /// liblsl's reason.
        reason: String,
    },
    /// No consumer connected within the timeout at `Speed::Max`.
    #[error(
        "stream {0:?}: no consumer connected; start the receiving program or use a timed speed"
    )]
    NoConsumer(String),
}

/// A stream ready to send: time stamps re-based to the session's start.
struct Prepared {
    stream: Stream,
    /// Synchronised stamps minus the session's first stamp.
    rel: Vec<f64>,
    /// String streams: each sample's clock correction (synchronised minus recorded stamp).
    /// Sender-clock fields move by one shift per pass plus this, not by `stamp − recorded`
    /// per sample: that difference of large numbers varies in the last bits from sample to
    /// sample, and a word start equal to an earlier watermark would land an ulp before it.
    clock_shift: Vec<f64>,
    /// Session time that lands on the pass's base.
    origin: f64,
    max_word_id: u64,
}

/// Replays `file` until done (or, with `looped`, until `shutdown`).
pub fn run(
    file: &std::path::Path,
    options: &ReplayOptions,
    shutdown: Arc<AtomicBool>,
) -> Result<Vec<StreamReplay>, ReplayError> {
    let xdf = read(file)?;
    let available: Vec<String> = xdf.streams.iter().map(|s| s.info.name.clone()).collect();
    let missing: Vec<String> = options
        .streams
        .iter()
        .filter(|n| !available.contains(n))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(ReplayError::NoSuchStream { missing, available });
    }
    let chosen: Vec<Stream> = xdf
        .streams
        .into_iter()
        .filter(|s| options.streams.is_empty() || options.streams.contains(&s.info.name))
        .filter(|s| !s.is_empty())
        .collect();
    let synced: Vec<Vec<f64>> = chosen.iter().map(synced_stamps).collect();
    let t0 = synced
        .iter()
        .filter_map(|t| t.first())
        .copied()
        .fold(f64::INFINITY, f64::min);
    let t_end = synced
        .iter()
        .filter_map(|t| t.last())
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let prepared: Vec<Prepared> = chosen
        .into_iter()
        .zip(synced)
        .map(|(mut stream, synced)| {
            let skip = synced.partition_point(|s| s - t0 < options.start_at);
            if skip > 0 {
                let per_sample = stream.data.value_count() / stream.len().max(1);
                let values = stream.data.value_count();
                stream.data = stream.data.slice(skip * per_sample, values);
                stream.time_stamps.drain(..skip);
            }
            let rel = synced[skip..]
                .iter()
                .map(|s| s - t0 - options.start_at)
                .collect();
            let max_word_id = max_word_id(&stream.data);
            let clock_shift = match stream.data {
                Samples::String(_) => synced[skip..]
                    .iter()
                    .zip(&stream.time_stamps)
                    .map(|(s, t)| s - t)
                    .collect(),
                _ => Vec::new(),
            };
            Prepared {
                stream,
                rel,
                clock_shift,
                origin: t0 + options.start_at,
                max_word_id,
            }
        })
        .collect();
    // One pass lasts the session plus one second of silence before looping.
    let pass_seconds = (t_end - t0 - options.start_at).max(0.0) + 1.0;
    let ready = Arc::new(Barrier::new(prepared.len() + 1));
    let base = Arc::new(OnceLock::<f64>::new());
    let go = Arc::new(Barrier::new(prepared.len() + 1));
    let handles: Vec<_> = prepared
        .into_iter()
        .map(|p| {
            let (ready, go, base, shutdown) =
                (ready.clone(), go.clone(), base.clone(), shutdown.clone());
            let options = options.clone();
            std::thread::Builder::new()
                .name(format!("replay {}", p.stream.info.name))
                .spawn(move || {
                    let buffer_seconds = match options.speed {
                        Speed::Max if !options.looped => options
                            .buffer_seconds
                            .max(pass_seconds.ceil().min(i32::MAX as f64) as i32),
                        _ => options.buffer_seconds,
                    };
                    let outlet = make_outlet(&p.stream.info, buffer_seconds);
                    if let (true, Ok(o)) = (options.wait_for_consumers, &outlet) {
                        await_consumer(o, options.consumer_timeout, &shutdown);
                    }
                    ready.wait();
                    go.wait();
                    let outlet = outlet?;
                    let base = *base.get().expect("set before go");
                    send(&outlet, &p, &options, base, pass_seconds, &shutdown)
                })
                .expect("spawning a replay thread")
        })
        .collect();
    ready.wait();
    // Half a second for consumers to see the new outlets before the first sample.
    base.set(lsl::local_clock() + 0.5).expect("set once");
    go.wait();
    handles
        .into_iter()
        .map(|h| h.join().expect("replay thread panicked"))
        .collect()
}

/// The stream's time stamps with its clock offsets applied.
fn synced_stamps(s: &Stream) -> Vec<f64> {
    let mut shadow = Stream {
        id: s.id,
        info: s.info.clone(),
        time_stamps: s.time_stamps.clone(),
        data: Samples::empty(s.info.channel_format),
        clock_offsets: s.clock_offsets.clone(),
        footer_xml: s.footer_xml.clone(),
        effective_srate: 0.0,
        segments: Vec::new(),
        clock_segments: Vec::new(),
    };
    sync::process(
        &mut shadow,
        &ReadOptions {
            sync_clocks: true,
            ..Default::default()
        },
    );
    // pylsl#67 truncation may have dropped a trailing sample's stamp.
    shadow
        .time_stamps
        .resize(s.len(), *shadow.time_stamps.last().unwrap_or(&0.0));
    shadow.time_stamps
}

fn lsl_format(f: crate::xdf::ChannelFormat) -> lsl::ChannelFormat {
    use crate::xdf::ChannelFormat as F;
    match f {
        F::Float32 => lsl::ChannelFormat::Float32,
        F::Double64 => lsl::ChannelFormat::Double64,
        F::Int8 => lsl::ChannelFormat::Int8,
        F::Int16 => lsl::ChannelFormat::Int16,
        F::Int32 => lsl::ChannelFormat::Int32,
        F::Int64 => lsl::ChannelFormat::Int64,
        F::String => lsl::ChannelFormat::String,
    }
}

/// An outlet with the recorded stream info, its `desc` copied verbatim.
fn make_outlet(info: &StreamInfo, buffer_seconds: i32) -> Result<lsl::StreamOutlet, ReplayError> {
    let err = |e: lsl::Error| ReplayError::Outlet {
        name: info.name.clone(),
        reason: e.to_string(),
    };
    let mut lsl_info = lsl::StreamInfo::new(
        &info.name,
        &info.stream_type,
        info.channel_count as u32,
        info.nominal_srate,
        lsl_format(info.channel_format),
        &info.source_id,
    )
    .map_err(err)?;
    if let Some(desc) = info.desc() {
        let mut target = lsl_info.desc();
        for child in &desc.children {
            copy_element(&mut target, child);
        }
    }
    lsl::StreamOutlet::new(&lsl_info, 0, buffer_seconds).map_err(err)
}

fn copy_element(parent: &mut lsl::XMLElement, el: &Element) {
    if el.children.is_empty() {
        parent.append_child_value(&el.name, el.text.trim());
    } else {
        let mut child = parent.append_child(&el.name);
        for c in &el.children {
            copy_element(&mut child, c);
        }
    }
}

/// The largest word id of the transcript messages in a string stream.
fn max_word_id(data: &Samples) -> u64 {
    let Samples::String(v) = data else { return 0 };
    v.iter()
        .filter_map(|m| match parse_message(m, 0.0) {
            Ok(TranscriptEvent::Word(w)) if w.id < BARE_WORD_ID_BASE => Some(w.id),
            Ok(TranscriptEvent::Retract { id }) => Some(id),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Shifts a transcript message's sender-clock times by `shift` seconds and its word id by
/// `id_shift`, written back in the contract's form; anything that is not a JSON transcript
/// message (a bare word, a malformed message kept as evidence) passes unchanged.
pub fn retime_message(msg: &str, shift: f64, id_shift: u64) -> String {
    if !msg.trim_start().starts_with('{') {
        return msg.to_string();
    }
    let Ok(event) = parse_message(msg, 0.0) else {
        return msg.to_string();
    };
    let event = match event.shifted(shift) {
        TranscriptEvent::Word(w) => TranscriptEvent::Word(Word {
            id: w.id + id_shift,
            ..w
        }),
        TranscriptEvent::Retract { id } => TranscriptEvent::Retract { id: id + id_shift },
        watermark => watermark,
    };
    event.to_json()
}

/// Sleeps until `target` on the LSL clock: coarse sleep to 1.5 ms before,
/// then a yielding spin (send jitter stays well under a millisecond).
pub(crate) fn wait_until(target: f64, shutdown: &AtomicBool) {
    loop {
        let left = target - lsl::local_clock();
        if left <= 0.0 || shutdown.load(Ordering::Relaxed) {
            return;
        }
        if left > 0.0015 {
            std::thread::sleep(Duration::from_secs_f64((left - 0.0015).min(0.1)));
        } else {
            std::thread::yield_now();
        }
    }
}

/// Waits for a consumer; false on shutdown or timeout.
pub(crate) fn await_consumer(
    outlet: &lsl::StreamOutlet,
    timeout: Duration,
    shutdown: &AtomicBool,
) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while !shutdown.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
        if outlet.wait_for_consumers(0.1) {
            return true;
        }
    }
    false
}

fn send(
    outlet: &lsl::StreamOutlet,
    p: &Prepared,
    options: &ReplayOptions,
    base: f64,
    pass_seconds: f64,
    shutdown: &AtomicBool,
) -> Result<StreamReplay, ReplayError> {
    let info = &p.stream.info;
    let ch = info.channel_count;
    let mut lateness = Vec::new();
    let (mut samples, mut passes) = (0u64, 0u64);
    'passes: loop {
        let pass_base = base + passes as f64 * pass_seconds;
        for (i, &rel) in p.rel.iter().enumerate() {
            if shutdown.load(Ordering::Relaxed) {
                break 'passes;
            }
            let stamp = pass_base + rel;
            match options.speed {
                Speed::Factor(k) => {
                    let due = base + (passes as f64 * pass_seconds + rel) / k;
                    wait_until(due, shutdown);
                    lateness.push(lsl::local_clock() - due);
                }
                Speed::Max => {
                    if !outlet.have_consumers()
                        && !await_consumer(outlet, options.consumer_timeout, shutdown)
                    {
                        if shutdown.load(Ordering::Relaxed) {
                            break 'passes;
                        }
                        return Err(ReplayError::NoConsumer(info.name.clone()));
                    }
                }
            }
            let pushed = push_sample(outlet, i, ch, stamp, pass_base, p, passes);
            if let Err(e) = pushed {
                return Err(ReplayError::Outlet {
                    name: info.name.clone(),
                    reason: e.to_string(),
                });
            }
            samples += 1;
        }
        passes += 1;
        if !options.looped {
            break;
        }
    }
    // liblsl drops what is still queued when an outlet is destroyed: give
    // connected consumers time to take the tail (a burst at max speed is long).
    let linger = match options.speed {
        Speed::Max => options.linger,
        Speed::Factor(_) => Duration::from_secs(1),
    };
    let until = std::time::Instant::now() + linger;
    while outlet.have_consumers()
        && std::time::Instant::now() < until
        && !shutdown.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (lateness_p50, lateness_p99, lateness_max) = lateness_summary(lateness);
    Ok(StreamReplay {
        name: info.name.clone(),
        samples,
        passes,
        lateness_p50,
        lateness_p99,
        lateness_max,
    })
}

/// Median, 99th percentile and largest of send lateness, seconds (zeros when none).
pub(crate) fn lateness_summary(mut lateness: Vec<f64>) -> (f64, f64, f64) {
    lateness.sort_by(f64::total_cmp);
    let q = |f: f64| {
        lateness
            .get(((lateness.len() as f64 - 1.0) * f).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (q(0.5), q(0.99), lateness.last().copied().unwrap_or(0.0))
}

fn push_sample(
    outlet: &lsl::StreamOutlet,
    i: usize,
    ch: usize,
    stamp: f64,
    pass_base: f64,
    p: &Prepared,
    pass: u64,
) -> Result<(), lsl::Error> {
    let row = i * ch..(i + 1) * ch;
    match &p.stream.data {
        Samples::Float32(v) => outlet.push_sample_ex(&v[row].to_vec(), stamp, true),
        Samples::Double64(v) => outlet.push_sample_ex(&v[row].to_vec(), stamp, true),
        Samples::Int8(v) => outlet.push_sample_ex(&v[row].to_vec(), stamp, true),
        Samples::Int16(v) => outlet.push_sample_ex(&v[row].to_vec(), stamp, true),
        Samples::Int32(v) => outlet.push_sample_ex(&v[row].to_vec(), stamp, true),
        Samples::Int64(v) => outlet.push_sample_ex(&v[row].to_vec(), stamp, true),
        Samples::String(v) => {
            // Sender-clock fields move with the sample's stamp.
            let shift = (pass_base - p.origin) + p.clock_shift[i];
            let id_shift = pass * (p.max_word_id + 1);
            let msgs: Vec<String> = v[row]
                .iter()
                .map(|m| retime_message(m, shift, id_shift))
                .collect();
            outlet.push_sample_ex(&msgs, stamp, true)
        }
    }
}
