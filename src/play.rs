//! Plays a stimulus (a WAV file and its word table) as three LSL outlets on one clock:
//! - the audio, as LabRecorder's AudioCapture publishes a microphone: type `Audio`, `int16`,
//!   the file's rate as the nominal rate, one labelled channel per file channel, chunks of
//!   [`PlayOptions::chunk_s`] stamped on the audio clock (sample `n` of a pass at
//!   `base + n / rate`);
//! - the transcript (type `Transcript`, `docs/transcript.md`): each word of the table as a
//!   [`TranscriptEvent::Word`] whose `start`/`end` are its table times on that audio clock,
//!   sent when the audio reaches its onset, and a watermark every
//!   [`PlayOptions::watermark_every_s`] of audio (and at the end of each pass);
//! - onset markers (type `Markers`): the word as a bare string stamped at its onset.
//!
//! Timing follows `replay`: stamps keep the file's spacing at every speed; at `--speed K` an
//! event is sent when `(t − t0) / K` has elapsed; at `max`, as soon as every outlet has a
//! consumer. One thread sends everything from one merged schedule, in time order. No sound is played: the audio goes to LSL
//! only (see `docs/transcribe.md`).
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lsl::ExPushable;

use crate::replay::{await_consumer, lateness_summary, wait_until, Speed};
use crate::transcript::{TranscriptEvent, Word};
use crate::wav::{to_i16, Wav};
use crate::word_table::WordTable;

/// How to play.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    /// Playback speed.
    pub speed: Speed,
    /// Start again at the end, until shut down.
    pub looped: bool,
    /// Start this many seconds into the audio (words before it are not sent).
    pub start_at: f64,
    /// Stream names are `{name}-audio`, `{name}-transcript` and `{name}-markers` (also the
    /// source ids).
    pub name: String,
    /// Seconds of audio per chunk.
    pub chunk_s: f64,
    /// Seconds of audio between watermarks.
    pub watermark_every_s: f64,
    /// Hold the first chunk until every outlet has a consumer (at most `consumer_timeout`).
    pub wait_for_consumers: bool,
    /// How long to wait for consumers.
    pub consumer_timeout: Duration,
    /// Seconds the outlets stay open after the end while a consumer is connected.
    pub linger: Duration,
}

impl Default for PlayOptions {
    fn default() -> Self {
        PlayOptions {
            speed: Speed::Factor(1.0),
            looped: false,
            start_at: 0.0,
            name: "neuralign-play".into(),
            chunk_s: 0.01,
            watermark_every_s: 0.5,
            wait_for_consumers: false,
            consumer_timeout: Duration::from_secs(60),
            linger: Duration::from_secs(2),
        }
    }
}

/// What `play` sent.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PlayReport {
    /// Audio stream name.
    pub audio_stream: String,
    /// Transcript stream name.
    pub transcript_stream: String,
    /// Marker stream name.
    pub marker_stream: String,
    /// Audio frames sent (all passes).
    pub frames: u64,
    /// Audio chunks sent.
    pub chunks: u64,
    /// Words sent on the transcript stream (and as markers).
    pub words: u64,
    /// Watermarks sent.
    pub watermarks: u64,
    /// Passes completed.
    pub passes: u64,
    /// Rows of the word table skipped when it was read, and words without an onset.
    pub skipped_rows: Skipped,
    /// The LSL time of the first frame of the first pass (the audio clock's zero, plus `--from`).
    pub audio_start: f64,
    /// Send lateness against schedule, seconds: median (zeros at `max`).
    pub lateness_p50: f64,
    /// 99th percentile of send lateness, seconds.
    pub lateness_p99: f64,
    /// Largest send lateness, seconds.
    pub lateness_max: f64,
}

/// Why `play` could not run.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    /// The audio has no frames after `--from`.
    #[error("no audio after {from} s (the file lasts {seconds:.3} s)")]
    NoAudio {
        /// `--from`.
        from: f64,
        /// The file's length.
        seconds: f64,
    },
    /// The word table gives no onsets at all.
    #[error("the word table has no word with a start time: play needs `word,start[,end]` rows")]
    NoTimes,
    /// liblsl refused to create or feed an outlet.
    #[error("stream {name:?}: {reason}")]
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

/// One word of the stimulus, in seconds from the first frame played.
#[derive(Debug, Clone, PartialEq)]
struct StimulusWord {
    text: String,
    start: f64,
    end: f64,
}

/// One thing to send, at `rel` seconds of audio into the pass.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Due {
    /// Audio frames `[from, to)` of the pass (sent when the last has been "captured").
    Chunk { from: usize, to: usize },
    /// Word `i` (transcript message and marker).
    Word(usize),
    /// A watermark at `rel`.
    Watermark,
}

/// Skipped rows of a word table: `(1-based line, why)`.
type Skipped = Vec<(u64, String)>;

/// The words played, in seconds from `start_at`; rows without an onset are reported.
fn stimulus_words(
    table: &WordTable,
    start_at: f64,
) -> Result<(Vec<StimulusWord>, Skipped), PlayError> {
    let mut skipped = table.skipped.clone();
    let mut words = Vec::new();
    if table.words.iter().all(|w| w.start.is_none()) && !table.words.is_empty() {
        return Err(PlayError::NoTimes);
    }
    for (i, w) in table.words.iter().enumerate() {
        let Some(start) = w.start else {
            skipped.push((i as u64 + 2, format!("{:?} has no start time", w.text)));
            continue;
        };
        if start < start_at {
            continue;
        }
        let end = w.end.unwrap_or(start);
        words.push(StimulusWord {
            text: w.text.clone(),
            start: start - start_at,
            end: end - start_at,
        });
    }
    words.sort_by(|a, b| a.start.total_cmp(&b.start));
    Ok((words, skipped))
}

/// The pass's schedule, in send order: chunks at their last frame, words at their onsets, a
/// watermark every `every` seconds (after the words at that time) and one at the end.
fn schedule(
    frames: usize,
    rate: f64,
    chunk: usize,
    words: &[StimulusWord],
    every: f64,
) -> Vec<(f64, Due)> {
    let mut due = Vec::new();
    let mut from = 0;
    while from < frames {
        let to = (from + chunk).min(frames);
        due.push(((to - 1) as f64 / rate, Due::Chunk { from, to }));
        from = to;
    }
    due.extend(
        words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.start, Due::Word(i))),
    );
    let pass = frames as f64 / rate;
    let ticks = (1..).map(|k| k as f64 * every).take_while(|&t| t < pass);
    due.extend(ticks.map(|t| (t, Due::Watermark)));
    due.push((pass, Due::Watermark));
    let rank = |d: &Due| match d {
        Due::Chunk { .. } => 0,
        Due::Word(_) => 1,
        Due::Watermark => 2,
    };
    due.sort_by(|a, b| a.0.total_cmp(&b.0).then(rank(&a.1).cmp(&rank(&b.1))));
    due
}

struct Outlets {
    audio: lsl::StreamOutlet,
    transcript: lsl::StreamOutlet,
    markers: lsl::StreamOutlet,
}

fn outlet(
    name: &str,
    kind: &str,
    channels: u32,
    rate: f64,
    format: lsl::ChannelFormat,
    buffer_s: i32,
    labels: &[String],
) -> Result<lsl::StreamOutlet, PlayError> {
    let err = |e: lsl::Error| PlayError::Outlet {
        name: name.into(),
        reason: e.to_string(),
    };
    let mut info = lsl::StreamInfo::new(name, kind, channels, rate, format, name).map_err(err)?;
    if !labels.is_empty() {
        let mut chans = info.desc().append_child("channels");
        for label in labels {
            let mut ch = chans.append_child("channel");
            ch.append_child_value("label", label);
            ch.append_child_value("type", "Audio");
            ch.append_child_value("unit", "int16");
        }
    }
    lsl::StreamOutlet::new(&info, 0, buffer_s).map_err(err)
}

fn channel_labels(channels: u16) -> Vec<String> {
    match channels {
        1 => vec!["mono".into()],
        2 => vec!["left".into(), "right".into()],
        n => (1..=n).map(|c| format!("channel {c}")).collect(),
    }
}

/// Plays `wav` with the words of `table` until done (or, with `looped`, until `shutdown`).
pub fn run(
    wav: &Wav,
    table: &WordTable,
    options: &PlayOptions,
    shutdown: &AtomicBool,
) -> Result<PlayReport, PlayError> {
    let rate = f64::from(wav.rate);
    let ch = usize::from(wav.channels);
    let first = ((options.start_at.max(0.0) * rate).round() as usize).min(wav.frames());
    let frames = wav.frames() - first;
    if frames == 0 {
        return Err(PlayError::NoAudio {
            from: options.start_at,
            seconds: wav.seconds(),
        });
    }
    let start_at = first as f64 / rate;
    let (words, skipped_rows) = stimulus_words(table, start_at)?;
    let pcm: Vec<i16> = wav.samples[first * ch..]
        .iter()
        .map(|&s| to_i16(s))
        .collect();
    let chunk = ((options.chunk_s * rate).round() as usize).max(1);
    let due = schedule(
        frames,
        rate,
        chunk,
        &words,
        options.watermark_every_s.max(0.01),
    );
    let pass_s = frames as f64 / rate;
    let buffer_s = match options.speed {
        Speed::Max if !options.looped => pass_s.ceil().clamp(360.0, i32::MAX as f64) as i32,
        _ => 360,
    };
    let names = ["audio", "transcript", "markers"].map(|s| format!("{}-{s}", options.name));
    let outlets = Outlets {
        audio: outlet(
            &names[0],
            "Audio",
            u32::from(wav.channels),
            rate,
            lsl::ChannelFormat::Int16,
            buffer_s,
            &channel_labels(wav.channels),
        )?,
        transcript: outlet(
            &names[1],
            "Transcript",
            1,
            0.0,
            lsl::ChannelFormat::String,
            buffer_s,
            &[],
        )?,
        markers: outlet(
            &names[2],
            "Markers",
            1,
            0.0,
            lsl::ChannelFormat::String,
            buffer_s,
            &[],
        )?,
    };
    let all = [&outlets.audio, &outlets.transcript, &outlets.markers];
    if options.wait_for_consumers || options.speed == Speed::Max {
        for (o, name) in all.iter().zip(&names) {
            if !await_consumer(o, options.consumer_timeout, shutdown)
                && options.speed == Speed::Max
                && !shutdown.load(Ordering::Relaxed)
            {
                return Err(PlayError::NoConsumer(name.clone()));
            }
        }
    }
    // Half a second for consumers to see the outlets before the first chunk.
    let base = lsl::local_clock() + 0.5;
    let mut report = PlayReport {
        audio_stream: names[0].clone(),
        transcript_stream: names[1].clone(),
        marker_stream: names[2].clone(),
        skipped_rows,
        audio_start: base,
        ..Default::default()
    };
    let mut lateness = Vec::new();
    let push_err = |name: &str| {
        let name = name.to_string();
        move |e: lsl::Error| PlayError::Outlet {
            name,
            reason: e.to_string(),
        }
    };
    'passes: loop {
        let pass = report.passes;
        let pass_base = base + pass as f64 * pass_s;
        for &(rel, what) in &due {
            if shutdown.load(Ordering::Relaxed) {
                break 'passes;
            }
            if let Speed::Factor(k) = options.speed {
                let at = base + (pass as f64 * pass_s + rel) / k;
                wait_until(at, shutdown);
                lateness.push(lsl::local_clock() - at);
            }
            match what {
                Due::Chunk { from, to } => {
                    let rows: Vec<Vec<i16>> = pcm[from * ch..to * ch]
                        .chunks_exact(ch)
                        .map(<[i16]>::to_vec)
                        .collect();
                    let last = pass_base + (to - 1) as f64 / rate;
                    outlets
                        .audio
                        .push_chunk_ex(&rows, last, true)
                        .map_err(push_err(&names[0]))?;
                    report.frames += (to - from) as u64;
                    report.chunks += 1;
                }
                Due::Word(i) => {
                    let w = &words[i];
                    let event = TranscriptEvent::Word(Word {
                        id: pass * words.len() as u64 + i as u64,
                        text: w.text.clone(),
                        start: pass_base + w.start,
                        end: pass_base + w.end,
                        is_final: true,
                        confidence: None,
                    });
                    let stamp = pass_base + w.start;
                    outlets
                        .transcript
                        .push_sample_ex(&vec![event.to_json()], stamp, true)
                        .map_err(push_err(&names[1]))?;
                    outlets
                        .markers
                        .push_sample_ex(&vec![w.text.clone()], stamp, true)
                        .map_err(push_err(&names[2]))?;
                    report.words += 1;
                }
                Due::Watermark => {
                    let event = TranscriptEvent::Watermark {
                        time: pass_base + rel,
                    };
                    outlets
                        .transcript
                        .push_sample_ex(&vec![event.to_json()], pass_base + rel, true)
                        .map_err(push_err(&names[1]))?;
                    report.watermarks += 1;
                }
            }
        }
        report.passes += 1;
        if !options.looped {
            break;
        }
    }
    crate::replay::linger(&all, options.linger, || shutdown.load(Ordering::Relaxed));
    (
        report.lateness_p50,
        report.lateness_p99,
        report.lateness_max,
    ) = lateness_summary(lateness);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::word_table::parse_word_table;

    #[test]
    fn words_are_shifted_by_from_and_rows_without_onsets_reported() {
        let table = parse_word_table("word,start,end\nthe,0.5,0.7\ncat,,\nsat,2.0,2.4\n");
        let (words, skipped) = stimulus_words(&table, 1.0).unwrap();
        assert_eq!(
            words,
            vec![StimulusWord {
                text: "sat".into(),
                start: 1.0,
                end: 1.4
            }]
        );
        assert_eq!(skipped, vec![(3, "\"cat\" has no start time".into())]);
        let plain = parse_word_table("the cat sat");
        assert!(matches!(
            stimulus_words(&plain, 0.0),
            Err(PlayError::NoTimes)
        ));
    }

    #[test]
    fn the_schedule_orders_chunks_words_and_watermarks_by_time() {
        let words = [StimulusWord {
            text: "a".into(),
            start: 0.5,
            end: 0.6,
        }];
        // 10 frames per second, chunks of 5 frames: chunks due at 0.4 and 0.9.
        let due = schedule(10, 10.0, 5, &words, 0.5);
        assert_eq!(
            due,
            vec![
                (0.4, Due::Chunk { from: 0, to: 5 }),
                (0.5, Due::Word(0)),
                (0.5, Due::Watermark),
                (0.9, Due::Chunk { from: 5, to: 10 }),
                (1.0, Due::Watermark),
            ]
        );
    }
}
