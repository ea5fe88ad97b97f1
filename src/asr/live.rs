//! Live recognition: audio from an LSL stream, or a WAV file fed as if it were captured now,
//! is decoded again every step from the policy's watermark ([`super::agreement`]), and the
//! committed words and watermarks go out on a transcript outlet (`docs/transcript.md`) with
//! their times on the audio's LSL clock.
//!
//! One thread does everything: while it decodes, liblsl buffers the audio, so a decode that
//! takes longer than a step makes the next step longer (the buffer is bounded by
//! [`LiveOptions::max_buffer_s`], past which the pending words are committed, counted). A
//! jump in the audio's time stamps or a stream that stops is a gap: the audio before it is
//! decoded and committed, and nothing is decoded across it.
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::agreement::{AgreementCounts, AgreementOptions, Emit, LocalAgreement};
use super::recognise::PROMPT_WORDS;
use super::resample::{resample, RATE_RANGE};
use super::{AsrError, Recogniser, MODEL_RATE};
use crate::ingest::StreamSelector;
use crate::metrics::{Percentiles, StageLatency};
use crate::replay::{await_consumer, linger, wait_until, Speed};
use crate::transcript::{TranscriptEvent, Word};
use crate::wav::Wav;
use crate::word_table::TableWord;

/// How live recognition steps, bounds its buffer and detects gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveOptions {
    /// New audio between two decodes, seconds.
    pub step_s: f64,
    /// The longest audio decoded at once, seconds: past it the pending words are committed.
    pub max_buffer_s: f64,
    /// Committed audio kept before the watermark as the decode's acoustic context, seconds.
    pub context_s: f64,
    /// A jump in the audio's time stamps larger than this is a gap, seconds.
    pub gap_s: f64,
    /// An LSL stream without data for this long is lost, seconds.
    pub lost_after_s: f64,
    /// Return once the LSL stream is lost (what was heard committed) rather than wait for it
    /// to return: a player that is done (`bench asr`), whose audio is all decoded that way
    /// however far behind the decodes were.
    pub end_when_lost: bool,
    /// The commitment policy's options.
    pub agreement: AgreementOptions,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            step_s: 1.0,
            max_buffer_s: 15.0,
            // 2 s: the same words as 4 s on the espeak passage, a quarter less CPU a step
            // (docs/transcribe.md)
            context_s: 2.0,
            gap_s: 0.1,
            lost_after_s: 2.0,
            end_when_lost: false,
            agreement: AgreementOptions::default(),
        }
    }
}

/// What a live run did: `transcribe --live --json`.
#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    /// Audio received, seconds.
    pub audio_seconds: f64,
    /// Decodes run.
    pub decodes: u64,
    /// Time per decode.
    pub decode: Percentiles,
    /// Decoding time over audio time.
    pub real_time_factor: f64,
    /// CPU time of the process over wall time (1.0 = one core busy).
    pub cpu_share: f64,
    /// From the audio time of a word's end to its publication as committed (LSL clock),
    /// when live.
    pub commit_latency: Option<Percentiles>,
    /// From the audio time of a word's end to its first publication, tentative or committed
    /// (LSL clock), when live; equals `commit_latency` without tentative words.
    pub first_latency: Option<Percentiles>,
    /// What the commitment policy did.
    pub agreement: AgreementCounts,
    /// Decodes whose segments were all gated as no speech, and segments gated.
    pub gated_segments: u64,
    /// Gaps in the audio (a stamp jump or a lost stream).
    pub gaps: u64,
    /// Times the buffer reached `max_buffer_s` and its pending words were committed.
    pub forced_commits: u64,
    /// Samples at or beyond full scale (clipping).
    pub clipped_samples: u64,
    /// Times the LSL stream was lost.
    pub stream_losses: u64,
    /// The audio-clock time the word table's times count from (the first committed word's
    /// onset).
    pub origin: Option<f64>,
    /// The committed words, times from `origin`.
    #[serde(skip)]
    pub words: Vec<TableWord>,
    /// Words published.
    pub word_count: usize,
}

/// The most queued audio taken in at once when a decode fell behind, seconds.
const CATCH_UP_S: f64 = 5.0;

/// The audio buffer, the policy and the recogniser of one live run.
pub struct Transcriber {
    recogniser: Recogniser,
    policy: LocalAgreement,
    options: LiveOptions,
    rate: u32,
    /// Mono audio at `rate` from `buffer_start` (audio clock).
    buffer: Vec<f32>,
    buffer_start: f64,
    /// Samples pushed since the last decode.
    since_decode: usize,
    /// The last committed words and their ends, the prompt of the audio after them.
    committed: std::collections::VecDeque<(String, f64)>,
    started: bool,
    decode_time: StageLatency,
    decode_seconds: f64,
    audio_seconds: f64,
    gated_segments: u64,
    gaps: u64,
    forced: u64,
    clipped: u64,
}

impl Transcriber {
    /// A transcriber of mono audio at `rate` Hz whose first word gets id `first_id`.
    pub fn new(
        recogniser: Recogniser,
        rate: u32,
        first_id: u64,
        options: LiveOptions,
    ) -> Result<Self, AsrError> {
        check_rate(rate)?;
        Ok(Transcriber {
            recogniser,
            policy: LocalAgreement::new(f64::NEG_INFINITY, first_id, options.agreement.clone()),
            options,
            rate,
            buffer: Vec::new(),
            buffer_start: 0.0,
            since_decode: 0,
            committed: std::collections::VecDeque::new(),
            started: false,
            decode_time: StageLatency::new(),
            decode_seconds: 0.0,
            audio_seconds: 0.0,
            gated_segments: 0,
            gaps: 0,
            forced: 0,
            clipped: 0,
        })
    }

    /// Mono samples whose first is at `time` (audio clock); returns the events to publish.
    pub fn push(&mut self, time: f64, samples: &[f32]) -> Result<Vec<Emit>, AsrError> {
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            self.restart(time);
        } else if (time - self.buffer_end()).abs() > self.options.gap_s {
            out.extend(self.gap()?);
            self.restart(time);
        }
        self.clipped += super::clipped_samples(samples);
        self.audio_seconds += samples.len() as f64 / f64::from(self.rate);
        self.buffer.extend_from_slice(samples);
        self.since_decode += samples.len();
        if self.since_decode as f64 >= self.options.step_s * f64::from(self.rate) {
            out.extend(self.decode()?);
        }
        Ok(out)
    }

    /// The audio broke off: what is buffered is decoded and committed; the watermark holds.
    pub fn gap(&mut self) -> Result<Vec<Emit>, AsrError> {
        if !self.started {
            return Ok(Vec::new());
        }
        self.gaps += 1;
        let mut out = self.decode()?;
        out.extend(self.policy.flush(self.buffer_end(), false));
        self.buffer.clear();
        self.started = false;
        Ok(out)
    }

    /// The audio ended: what is buffered is decoded and committed, the watermark moves to
    /// the end of the audio.
    pub fn finish(&mut self) -> Result<Vec<Emit>, AsrError> {
        if !self.started {
            return Ok(Vec::new());
        }
        let mut out = if self.since_decode > 0 {
            self.decode()?
        } else {
            Vec::new()
        };
        out.extend(self.policy.flush(self.buffer_end(), true));
        self.buffer.clear();
        self.started = false;
        Ok(out)
    }

    /// Audio at another rate follows (after a gap).
    pub fn set_rate(&mut self, rate: u32) -> Result<(), AsrError> {
        check_rate(rate)?;
        if self.started && rate != self.rate {
            return Err(AsrError::Audio(
                "the rate can change only after a gap".into(),
            ));
        }
        self.rate = rate;
        Ok(())
    }

    fn restart(&mut self, time: f64) {
        self.policy.resume(time);
        self.buffer.clear();
        self.buffer_start = time;
        self.since_decode = 0;
        self.committed.clear();
    }

    fn buffer_end(&self) -> f64 {
        self.buffer_start + self.buffer.len() as f64 / f64::from(self.rate)
    }

    /// Decodes the buffer, hands the hypothesis to the policy and trims what it committed.
    fn decode(&mut self) -> Result<Vec<Emit>, AsrError> {
        self.since_decode = 0;
        let end = self.buffer_end();
        let audio = resample(&self.buffer, self.rate, MODEL_RATE)?;
        let prompt: Vec<&str> = self
            .committed
            .iter()
            .filter(|(_, end)| *end <= self.buffer_start)
            .map(|(text, _)| text.as_str())
            .collect();
        let started = Instant::now();
        let recognition = self.recogniser.recognise_live(&audio, &prompt.join(" "))?;
        let took = started.elapsed();
        self.decode_time.record(took);
        self.decode_seconds += took.as_secs_f64();
        self.gated_segments += u64::from(recognition.gated_segments);
        let mut words = recognition.words;
        for w in &mut words {
            w.start += self.buffer_start;
            w.end = (w.end + self.buffer_start).min(end);
        }
        let mut out = self.policy.hypothesis(&words, end);
        if end - self.policy.watermark() > self.options.max_buffer_s {
            self.forced += 1;
            out.extend(self.policy.flush(end, false));
        }
        for event in &out {
            if let Emit::Word {
                text,
                end,
                committed: true,
                ..
            } = event
            {
                if self.committed.len() == PROMPT_WORDS {
                    self.committed.pop_front();
                }
                self.committed.push_back((text.clone(), *end));
            }
        }
        let keep_from = self.policy.watermark() - self.options.context_s;
        let drop = ((keep_from - self.buffer_start) * f64::from(self.rate))
            .floor()
            .clamp(0.0, self.buffer.len() as f64) as usize;
        self.buffer.drain(..drop);
        self.buffer_start += drop as f64 / f64::from(self.rate);
        Ok(out)
    }
}

fn check_rate(rate: u32) -> Result<(), AsrError> {
    if RATE_RANGE.contains(&rate) {
        Ok(())
    } else {
        Err(AsrError::Audio(format!(
            "cannot resample {rate} Hz audio: rates of {} to {} Hz are accepted",
            RATE_RANGE.start(),
            RATE_RANGE.end()
        )))
    }
}

/// Where the events go: a transcript outlet (optional) and the word list of the report.
pub struct Publisher {
    outlet: Option<lsl::StreamOutlet>,
    /// The audio clock's time of the first sample, for the word table's times.
    origin: Option<f64>,
    /// Whether word ends are on the live LSL clock (commit latency is measured then).
    live_clock: bool,
    commit_latency: StageLatency,
    first_latency: StageLatency,
    /// The highest word id published (ids increase: a higher one is a new word).
    newest_id: Option<u64>,
    words: Vec<TableWord>,
}

impl Publisher {
    /// Publishes on a new transcript outlet named `name` (also its source id), or only
    /// collects the words when `name` is `None`.
    pub fn new(name: Option<&str>, live_clock: bool) -> Result<Self, AsrError> {
        let outlet = name
            .map(|name| {
                let info = lsl::StreamInfo::new(
                    name,
                    "Transcript",
                    1,
                    0.0,
                    lsl::ChannelFormat::String,
                    name,
                )
                .map_err(|e| AsrError::Stream(format!("creating the outlet {name}: {e}")))?;
                lsl::StreamOutlet::new(&info, 0, 360)
                    .map_err(|e| AsrError::Stream(format!("creating the outlet {name}: {e}")))
            })
            .transpose()?;
        Ok(Publisher {
            outlet,
            origin: None,
            live_clock,
            commit_latency: StageLatency::new(),
            first_latency: StageLatency::new(),
            newest_id: None,
            words: Vec::new(),
        })
    }

    /// Waits up to `timeout` for a consumer of the outlet (none: returns at once).
    pub fn await_consumer(&self, timeout: Duration, shutdown: &AtomicBool) -> bool {
        self.outlet
            .as_ref()
            .is_none_or(|o| await_consumer(o, timeout, shutdown))
    }

    fn publish(&mut self, events: Vec<Emit>) -> Result<(), AsrError> {
        use lsl::ExPushable;
        for event in events {
            let message = match event {
                Emit::Word {
                    id,
                    text,
                    start,
                    end,
                    confidence,
                    committed,
                } => {
                    let origin = *self.origin.get_or_insert(start);
                    let latency = Duration::from_secs_f64((lsl::local_clock() - end).max(0.0));
                    if self.newest_id.is_none_or(|newest| id > newest) {
                        self.newest_id = Some(id);
                        if self.live_clock {
                            self.first_latency.record(latency);
                        }
                    }
                    if committed {
                        self.words.push(TableWord {
                            text: text.clone(),
                            start: Some(start - origin),
                            end: Some(end - origin),
                        });
                        if self.live_clock {
                            self.commit_latency.record(latency);
                        }
                    }
                    TranscriptEvent::Word(Word {
                        id,
                        text,
                        start,
                        end,
                        is_final: committed,
                        confidence: Some(confidence.clamp(0.0, 1.0)),
                    })
                }
                Emit::Retract(id) => TranscriptEvent::Retract { id },
                Emit::Watermark(time) => TranscriptEvent::Watermark { time },
            };
            if let Some(outlet) = &self.outlet {
                outlet
                    .push_sample_ex(&vec![message.to_json()], lsl::local_clock(), true)
                    .map_err(|e| {
                        AsrError::Stream(format!("publishing a transcript message: {e}"))
                    })?;
            }
        }
        Ok(())
    }

    /// The run is over: keeps the outlet open while it has a consumer (at most 2 s, even
    /// after Ctrl-C) so that the last words and watermark reach it.
    fn report(self, t: &Transcriber, cpu: (f64, Instant), losses: u64) -> LiveReport {
        let wall = cpu.1.elapsed().as_secs_f64().max(1e-9);
        let cpu_share = (crate::metrics::process_cpu_seconds() - cpu.0) / wall;
        if let Some(outlet) = &self.outlet {
            linger(&[outlet], Duration::from_secs(2), || false);
        }
        LiveReport {
            audio_seconds: t.audio_seconds,
            decodes: t.decode_time.count(),
            decode: t.decode_time.percentiles(),
            real_time_factor: t.decode_seconds / t.audio_seconds.max(1e-9),
            cpu_share,
            commit_latency: (self.live_clock && self.commit_latency.count() > 0)
                .then(|| self.commit_latency.percentiles()),
            first_latency: (self.live_clock && self.first_latency.count() > 0)
                .then(|| self.first_latency.percentiles()),
            agreement: t.policy.counts(),
            gated_segments: t.gated_segments,
            gaps: t.gaps,
            forced_commits: t.forced,
            clipped_samples: t.clipped,
            stream_losses: losses,
            origin: self.origin,
            word_count: self.words.len(),
            words: self.words,
        }
    }
}

/// The first word id of a run: microseconds since the Unix epoch, so that a restarted
/// transcriber does not revise the words of the one before.
pub fn first_word_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Feeds `wav` (channels mixed) as if it were being captured now, in chunks of 100 ms at
/// `speed`, stamped on the LSL clock from now (at `max`, as fast as it decodes).
pub fn run_wav(
    wav: &Wav,
    recogniser: Recogniser,
    speed: Speed,
    mut publisher: Publisher,
    options: LiveOptions,
    shutdown: &AtomicBool,
) -> Result<LiveReport, AsrError> {
    let cpu = (crate::metrics::process_cpu_seconds(), Instant::now());
    let mut t = Transcriber::new(recogniser, wav.rate, first_word_id(), options)?;
    let mono = wav.mono();
    let rate = f64::from(wav.rate);
    let chunk = (wav.rate / 10) as usize;
    let max_chunk = (CATCH_UP_S * rate) as usize;
    let t0 = lsl::local_clock();
    let mut pushed = 0;
    while pushed < mono.len() && !shutdown.load(Ordering::Relaxed) {
        let next = (pushed + chunk).min(mono.len());
        let end = match speed {
            Speed::Max => next,
            Speed::Factor(f) => {
                // a chunk is there once its last sample has been captured; behind (a decode
                // took longer than a step), every whole chunk captured meanwhile goes in at
                // once, as from an LSL stream
                wait_until(t0 + next as f64 / rate / f, shutdown);
                let captured = ((lsl::local_clock() - t0) * f * rate) as usize;
                (captured - captured % chunk)
                    .clamp(next, pushed + max_chunk)
                    .min(mono.len())
            }
        };
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        let time = t0 + pushed as f64 / rate;
        publisher.publish(t.push(time, &mono[pushed..end])?)?;
        pushed = end;
    }
    publisher.publish(t.finish()?)?;
    Ok(publisher.report(&t, cpu, 0))
}

/// Where the audio of an LSL stream comes from and how its channels become one.
#[derive(Debug, Clone)]
pub struct LslAudio {
    /// The audio stream.
    pub stream: StreamSelector,
    /// The channel to recognise (0-based); all channels averaged when `None`.
    pub channel: Option<usize>,
}

/// Recognises an LSL audio stream until `shutdown`, following it when it disappears and
/// returns (a gap), or until it disappears with [`LiveOptions::end_when_lost`].
pub fn run_lsl(
    source: &LslAudio,
    recogniser: Recogniser,
    mut publisher: Publisher,
    options: LiveOptions,
    shutdown: &AtomicBool,
) -> Result<LiveReport, AsrError> {
    let cpu = (crate::metrics::process_cpu_seconds(), Instant::now());
    let lost_after_s = options.lost_after_s;
    let gap_s = options.gap_s;
    let mut t: Option<Transcriber> = None;
    let mut recogniser = Some(recogniser);
    let mut losses = 0;
    let ended = |losses: u64| options.end_when_lost && losses > 0;
    while !shutdown.load(Ordering::Relaxed) && !ended(losses) {
        let Some(info) = source
            .stream
            .resolve(1.0)
            .map_err(|e| AsrError::Stream(e.to_string()))?
        else {
            continue;
        };
        let audio = AudioFormat::of(&info, source.channel)?;
        let transcriber = match t.as_mut() {
            Some(t) => {
                t.set_rate(audio.rate)?;
                t
            }
            None => t.insert(Transcriber::new(
                recogniser.take().expect("used once"),
                audio.rate,
                first_word_id(),
                options.clone(),
            )?),
        };
        let inlet = lsl::StreamInlet::new(&info, 360, 0, true)
            .map_err(|e| AsrError::Stream(format!("opening the audio stream: {e}")))?;
        inlet
            .set_postprocessing(&[lsl::ProcessingOption::ClockSync])
            .map_err(|e| AsrError::Stream(format!("opening the audio stream: {e}")))?;
        tracing::info!(stream = %source.stream, rate = audio.rate, channels = audio.channels, "recognising an audio stream");
        let mut row = vec![0f32; audio.channels];
        let (mut chunk, mut chunk_time, mut last_stamp) = (Vec::new(), 0.0, f64::NEG_INFINITY);
        let chunk_len = (audio.rate / 10) as usize;
        let max_chunk_len = (CATCH_UP_S * f64::from(audio.rate)) as usize;
        let mut last_data = lsl::local_clock();
        use lsl::Pullable;
        while !shutdown.load(Ordering::Relaxed) {
            let lost = match inlet.pull_sample_buf(&mut row, 0.1) {
                Ok(0.0) => lsl::local_clock() - last_data > lost_after_s,
                Ok(stamp) => {
                    last_data = lsl::local_clock();
                    if stamp - last_stamp > gap_s + 1.0 / f64::from(audio.rate)
                        || stamp < last_stamp
                    {
                        // a jump in the stamps: what came before goes in as it is
                        publisher.publish(transcriber.push(chunk_time, &chunk)?)?;
                        chunk.clear();
                    }
                    if chunk.is_empty() {
                        chunk_time = stamp;
                    }
                    last_stamp = stamp;
                    chunk.push(audio.mono(&row));
                    // behind (a decode took longer than a step), everything queued goes in
                    // at once: the next decode covers it, so the steps grow to the decode
                    // time instead of the backlog growing
                    if chunk.len() >= max_chunk_len
                        || chunk.len() >= chunk_len && inlet.samples_available() == 0
                    {
                        publisher.publish(transcriber.push(chunk_time, &chunk)?)?;
                        chunk.clear();
                    }
                    false
                }
                Err(e) => {
                    tracing::warn!("the audio stream broke off: {e:?}");
                    true
                }
            };
            if lost {
                losses += 1;
                tracing::warn!(stream = %source.stream, "the audio stream is lost; committing what was heard and waiting for it");
                publisher.publish(transcriber.push(chunk_time, &chunk)?)?;
                publisher.publish(transcriber.gap()?)?;
                break;
            }
        }
        if shutdown.load(Ordering::Relaxed) {
            publisher.publish(transcriber.push(chunk_time, &chunk)?)?;
            publisher.publish(transcriber.finish()?)?;
        }
    }
    let t =
        t.ok_or_else(|| AsrError::Stream(format!("no audio stream {} was found", source.stream)))?;
    Ok(publisher.report(&t, cpu, losses))
}

/// How an LSL audio stream's samples become mono audio in [-1, 1].
struct AudioFormat {
    rate: u32,
    channels: usize,
    channel: Option<usize>,
    /// Full scale of the sample format.
    scale: f32,
}

impl AudioFormat {
    fn of(info: &lsl::StreamInfo, channel: Option<usize>) -> Result<Self, AsrError> {
        let name = info.stream_name();
        let rate = info.nominal_srate();
        if rate <= 0.0 || rate.fract() != 0.0 {
            return Err(AsrError::Audio(format!(
                "stream {name} has nominal rate {rate}: audio needs a regular integer rate"
            )));
        }
        let scale = match info.channel_format() {
            lsl::ChannelFormat::Int16 => 32_768.0,
            lsl::ChannelFormat::Int32 => 2_147_483_648.0,
            lsl::ChannelFormat::Int8 => 128.0,
            lsl::ChannelFormat::Float32 | lsl::ChannelFormat::Double64 => 1.0,
            other => {
                return Err(AsrError::Audio(format!(
                    "stream {name} has samples of format {other:?}: audio must be int16, int32, int8, float32 or double64"
                )))
            }
        };
        let channels = info.channel_count().max(0) as usize;
        if channels == 0 || channel.is_some_and(|c| c >= channels) {
            return Err(AsrError::Audio(format!(
                "stream {name} has {channels} channels; channel {channel:?} was asked for"
            )));
        }
        Ok(AudioFormat {
            rate: rate as u32,
            channels,
            channel,
            scale,
        })
    }

    fn mono(&self, row: &[f32]) -> f32 {
        match self.channel {
            Some(c) => row[c] / self.scale,
            None => row.iter().sum::<f32>() / (row.len() as f32 * self.scale),
        }
    }
}
