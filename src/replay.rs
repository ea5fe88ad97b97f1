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
//!
//! Loops are seamless on the stream's clock: pass `k` is the pass before it
//! moved by the span of the regular streams plus [`ReplayOptions::silence_s`],
//! so time stamps keep increasing and the neural stream pauses for just the
//! designed silence. So that nothing of one pass lands in the next, a looped
//! transcript is trimmed to that span once, before the first pass: words
//! starting outside it (and their retractions) are left out and counted, ends
//! and watermarks are clamped into it, and the messages a recogniser committed
//! after the data ended are sent at its end (a recogniser flushes at the end of
//! its audio). Each pass after the first starts with a `segment` message on the
//! transcript stream (`docs/transcript.md`), and every pass with a `pass N`
//! marker on a marker stream of its own ([`PASS_MARKERS`]).
//!
//! Simulated sender clocks ([`ReplayOptions::clocks`], `--drift-ppm`, `--offset-jump`): a
//! stream with one is stamped (time stamps and transcript times) on a clock that drifts and
//! jumps as a function of session time ([`SenderClock`]), and its correction is published on
//! a companion stream (`<name>-clock`, type [`sender_clock::CLOCK_STREAM_TYPE`], one double)
//! every [`sender_clock::PROBE_INTERVAL_S`] of session time and at every jump, before the
//! samples it applies to; the stream's `desc` names the companion's source_id.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

use lsl::ExPushable;

use crate::sender_clock::{self, SenderClock};
use crate::transcript::{parse_message, TranscriptEvent, Word, BARE_WORD_ID_BASE};
use crate::xdf::xml::Element;
use crate::xdf::{read, sync, ChannelFormat, ReadOptions, Samples, Stream, StreamInfo, XdfError};

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
    /// Start again at the end, until shut down (or `passes` are done).
    pub looped: bool,
    /// With `looped`: stop after this many passes.
    pub passes: Option<u64>,
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
    /// How long the outlets stay open after the last sample while a consumer is connected
    /// (or until shut down), so that it can take the tail (liblsl drops what is still queued
    /// when an outlet goes, and tells the sender nothing of a consumer's progress).
    pub linger: Duration,
    /// With `looped`: the silence between the end of one pass and the start of the next,
    /// seconds of session time.
    pub silence_s: f64,
    /// Simulated sender clocks, by stream name (streams not named keep the true clock).
    pub clocks: Vec<(String, SenderClock)>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            speed: Speed::Factor(1.0),
            looped: false,
            passes: None,
            streams: Vec::new(),
            buffer_seconds: 360,
            consumer_timeout: Duration::from_secs(60),
            start_at: 0.0,
            wait_for_consumers: false,
            linger: Duration::from_secs(10),
            silence_s: 1.0,
            clocks: Vec::new(),
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
    /// Messages left out of every pass of a looped transcript: words starting outside the
    /// span of the regular streams, and their retractions.
    pub trimmed: u64,
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

/// Name and type of the marker stream a looped replay announces each pass on.
pub const PASS_MARKERS: (&str, &str) = ("neuralign-replay-passes", "Markers");

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
    /// Carries transcript messages: it announces each pass (`segment`, marker) when looped.
    transcript: bool,
    /// Messages left out by the trim to the pass (looped transcripts).
    trimmed: u64,
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
        .chain(options.clocks.iter().map(|(name, _)| name))
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
    // A loop's pass spans the regular streams (every stream when there is none).
    let regular = |s: &Stream| s.info.nominal_srate > 0.0;
    let has_regular = chosen.iter().any(regular);
    let t_end = chosen
        .iter()
        .zip(&synced)
        .filter(|(s, _)| !has_regular || regular(s))
        .filter_map(|(_, t)| t.last())
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let span = (t_end - t0 - options.start_at).max(0.0);
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
            let clock_shift = match stream.data {
                Samples::String(_) => synced[skip..]
                    .iter()
                    .zip(&stream.time_stamps)
                    .map(|(s, t)| s - t)
                    .collect(),
                _ => Vec::new(),
            };
            let mut p = Prepared {
                max_word_id: max_word_id(&stream.data),
                transcript: is_transcript(&stream.data),
                stream,
                rel,
                clock_shift,
                origin: t0 + options.start_at,
                trimmed: 0,
            };
            if options.looped {
                trim_to_pass(&mut p, span);
            }
            p
        })
        .collect();
    // One pass lasts the session plus the designed silence before looping.
    let pass_seconds = span + options.silence_s.max(0.0);
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
                    let clock = options
                        .clocks
                        .iter()
                        .find(|(name, c)| *name == p.stream.info.name && c.is_drifting())
                        .map(|(_, c)| c.clone());
                    let clock_info = clock.as_ref().map(|_| clock_stream(&p.stream.info));
                    let outlet = make_outlet(
                        &p.stream.info,
                        buffer_seconds,
                        clock_info.as_ref().map(|i| i.source_id.as_str()),
                    );
                    let clock_outlet = clock_info
                        .as_ref()
                        .map(|info| make_outlet(info, buffer_seconds, None));
                    let markers = (options.looped && p.transcript).then(|| {
                        let (name, kind) = PASS_MARKERS;
                        make_outlet(
                            &StreamInfo::new(name, kind, 1, 0.0, ChannelFormat::String, name),
                            buffer_seconds,
                            None,
                        )
                    });
                    if let (true, Ok(o)) = (options.wait_for_consumers, &outlet) {
                        await_consumer(o, options.consumer_timeout, &shutdown);
                        // a consumer that follows the simulated clock opens its companion next
                        if let Some(Ok(clock)) = &clock_outlet {
                            await_consumer(clock, options.consumer_timeout, &shutdown);
                        }
                    }
                    ready.wait();
                    go.wait();
                    let outlet = outlet?;
                    let markers = markers.transpose()?;
                    let clock_outlet = clock_outlet.transpose()?;
                    let base = *base.get().expect("set before go");
                    let outlets = Outlets {
                        data: &outlet,
                        markers: markers.as_ref(),
                        clock: clock.as_ref().zip(clock_outlet.as_ref()),
                    };
                    send(outlets, &p, &options, base, pass_seconds, &shutdown)
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

/// The companion stream that publishes the simulated clock of the stream `info`.
fn clock_stream(info: &StreamInfo) -> StreamInfo {
    let name = format!("{}-clock", info.name);
    let source_id = format!("{}-clock", info.source_id);
    StreamInfo::new(
        &name,
        sender_clock::CLOCK_STREAM_TYPE,
        1,
        0.0,
        ChannelFormat::Double64,
        &source_id,
    )
}

/// An outlet with the recorded stream info, its `desc` copied verbatim, plus the source_id of
/// its simulated clock's companion stream when it has one.
pub(crate) fn make_outlet(
    info: &StreamInfo,
    buffer_seconds: i32,
    simulated_clock: Option<&str>,
) -> Result<lsl::StreamOutlet, ReplayError> {
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
    if let Some(source_id) = simulated_clock {
        lsl_info
            .desc()
            .append_child_value(sender_clock::CLOCK_DESC_KEY, source_id);
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

/// Whether a string stream carries transcript messages (JSON objects the contract parses).
fn is_transcript(data: &Samples) -> bool {
    let Samples::String(v) = data else {
        return false;
    };
    v.iter()
        .any(|m| m.trim_start().starts_with('{') && parse_message(m, 0.0).is_ok())
}

/// Trims a stream to one pass of a loop, `[0, span]` seconds after its origin: time stamps
/// past the end move to the end, and in a transcript, words starting outside the span (and
/// their retractions) are left out and counted, word ends and watermarks are clamped into it.
/// Nothing of a pass then reaches into the silence before the next one.
fn trim_to_pass(p: &mut Prepared, span: f64) {
    for r in &mut p.rel {
        *r = r.min(span);
    }
    let Samples::String(messages) = &p.stream.data else {
        return;
    };
    if !p.transcript || p.stream.info.channel_count != 1 {
        return;
    }
    let mut left_out = std::collections::HashSet::new();
    let mut keep = Vec::with_capacity(messages.len());
    let mut kept = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        // the pass on this message's sender clock
        let lo = p.origin - p.clock_shift[i];
        let hi = lo + span;
        let trimmed = match parse_message(m, 0.0) {
            Ok(_) if !m.trim_start().starts_with('{') => Some(m.clone()),
            Ok(TranscriptEvent::Word(w)) if w.start < lo || w.start > hi => {
                left_out.insert(w.id);
                None
            }
            Ok(TranscriptEvent::Word(w)) => Some(
                TranscriptEvent::Word(Word {
                    end: w.end.clamp(w.start, hi.max(w.start)),
                    ..w
                })
                .to_json(),
            ),
            Ok(TranscriptEvent::Retract { id }) if left_out.contains(&id) => None,
            Ok(TranscriptEvent::Watermark { time }) => Some(
                TranscriptEvent::Watermark {
                    time: time.clamp(lo, hi),
                }
                .to_json(),
            ),
            Ok(TranscriptEvent::Segment { time, .. }) if time < lo || time > hi => None,
            _ => Some(m.clone()),
        };
        keep.push(trimmed.is_some());
        kept.extend(trimmed);
    }
    let mut k = keep.iter();
    p.rel.retain(|_| *k.next().expect("one flag a sample"));
    let mut k = keep.iter();
    p.clock_shift
        .retain(|_| *k.next().expect("one flag a sample"));
    let mut k = keep.iter();
    p.stream
        .time_stamps
        .retain(|_| *k.next().expect("one flag a sample"));
    p.trimmed = (messages.len() - kept.len()) as u64;
    p.stream.data = Samples::String(kept);
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

/// liblsl drops what is still queued when an outlet is destroyed: keep `outlets` open while
/// any has a consumer, at most `linger` or until `stop`, so consumers take the tail (a burst at
/// max speed is long).
pub(crate) fn linger(outlets: &[&lsl::StreamOutlet], linger: Duration, stop: impl Fn() -> bool) {
    let until = std::time::Instant::now() + linger;
    while outlets.iter().any(|o| o.have_consumers()) && std::time::Instant::now() < until && !stop()
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a replay thread sends: its stream's outlet, for a looped transcript the
/// [`PASS_MARKERS`] outlet, and for a stream on a simulated clock that clock and its
/// companion outlet.
#[derive(Clone, Copy)]
struct Outlets<'a> {
    data: &'a lsl::StreamOutlet,
    markers: Option<&'a lsl::StreamOutlet>,
    clock: Option<(&'a SenderClock, &'a lsl::StreamOutlet)>,
}

impl Outlets<'_> {
    /// The sender clock's offset at `session_s` (0 on the true clock).
    fn offset(&self, session_s: f64) -> f64 {
        self.clock.map_or(0.0, |(c, _)| c.offset(session_s))
    }

    /// Announces pass `pass` (0-based) starting at `pass_base` (sender clock): a `pass N`
    /// marker, and after the first pass a `segment` message on the transcript.
    fn announce(&self, pass: u64, pass_base: f64) -> Result<(), lsl::Error> {
        let Some(markers) = self.markers else {
            return Ok(());
        };
        markers.push_sample_ex(&vec![format!("pass {}", pass + 1)], pass_base, true)?;
        if pass == 0 {
            return Ok(());
        }
        let segment = TranscriptEvent::Segment {
            id: pass,
            time: pass_base,
        };
        self.data
            .push_sample_ex(&vec![segment.to_json()], pass_base, true)
    }
}

fn send(
    outlets: Outlets,
    p: &Prepared,
    options: &ReplayOptions,
    base: f64,
    pass_seconds: f64,
    shutdown: &AtomicBool,
) -> Result<StreamReplay, ReplayError> {
    let info = &p.stream.info;
    let ch = info.channel_count;
    let outlet = outlets.data;
    let outlet_error = |e: lsl::Error| ReplayError::Outlet {
        name: info.name.clone(),
        reason: e.to_string(),
    };
    let mut lateness = Vec::new();
    let (mut samples, mut passes) = (0u64, 0u64);
    let mut probe = Probe::default();
    'passes: loop {
        let pass_base = base + passes as f64 * pass_seconds;
        if outlets.markers.is_some() {
            if let Speed::Factor(k) = options.speed {
                wait_until(base + passes as f64 * pass_seconds / k, shutdown);
            }
            let at = passes as f64 * pass_seconds;
            outlets
                .announce(passes, pass_base + outlets.offset(at))
                .map_err(outlet_error)?;
        }
        for (i, &rel) in p.rel.iter().enumerate() {
            if shutdown.load(Ordering::Relaxed) {
                break 'passes;
            }
            let session_s = passes as f64 * pass_seconds + rel;
            let offset = outlets.offset(session_s);
            let stamp = pass_base + rel + offset;
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
            if let Some((clock, clock_outlet)) = outlets.clock {
                probe
                    .publish(clock, clock_outlet, session_s, stamp)
                    .map_err(outlet_error)?;
            }
            let sample = SampleAt {
                row: i,
                stamp,
                shift: pass_base - p.origin + offset,
                pass: passes,
            };
            push_sample(outlet, ch, &sample, p).map_err(outlet_error)?;
            samples += 1;
        }
        passes += 1;
        if !options.looped || options.passes.is_some_and(|n| passes >= n) {
            break;
        }
    }
    linger(&[outlet], options.linger, || {
        shutdown.load(Ordering::Relaxed)
    });
    let (lateness_p50, lateness_p99, lateness_max) = lateness_summary(lateness);
    Ok(StreamReplay {
        name: info.name.clone(),
        samples,
        passes,
        trimmed: p.trimmed,
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

/// When the companion stream of a simulated clock publishes next.
#[derive(Default)]
struct Probe {
    /// Session time of the last sample sent (none before the first).
    last_s: Option<f64>,
    /// Session time from which the next periodic probe is due.
    next_s: f64,
}

impl Probe {
    /// Publishes the correction (`-offset`, what liblsl's `time_correction` would return for a
    /// remote clock) at `stamp` (sender clock) before the sample at `session_s` when a probe is
    /// due or a jump happened since the last sample.
    fn publish(
        &mut self,
        clock: &SenderClock,
        outlet: &lsl::StreamOutlet,
        session_s: f64,
        stamp: f64,
    ) -> Result<(), lsl::Error> {
        let jumped = self
            .last_s
            .is_some_and(|last| clock.jumps_in(last, session_s));
        self.last_s = Some(session_s);
        if session_s < self.next_s && !jumped {
            return Ok(());
        }
        let interval = sender_clock::PROBE_INTERVAL_S;
        self.next_s = ((session_s / interval).floor() + 1.0) * interval;
        outlet.push_sample_ex(&vec![-clock.offset(session_s)], stamp, true)
    }
}

/// One sample to send: its row in the stream, its stamp (sender clock), the shift of its
/// transcript times (pass and sender clock) and its pass.
struct SampleAt {
    row: usize,
    stamp: f64,
    shift: f64,
    pass: u64,
}

fn push_sample(
    outlet: &lsl::StreamOutlet,
    ch: usize,
    sample: &SampleAt,
    p: &Prepared,
) -> Result<(), lsl::Error> {
    let (i, stamp, pass) = (sample.row, sample.stamp, sample.pass);
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
            let shift = sample.shift + p.clock_shift[i];
            let id_shift = pass * (p.max_word_id + 1);
            let msgs: Vec<String> = v[row]
                .iter()
                .map(|m| retime_message(m, shift, id_shift))
                .collect();
            outlet.push_sample_ex(&msgs, stamp, true)
        }
    }
}
