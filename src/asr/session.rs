//! `transcribe SESSION.xdf --stream NAME`: the audio stream of a recorded session recognised
//! and written back as a new transcript stream (`docs/transcript.md`) of a copy of the session.
//!
//! The copy is the original file byte for byte, then the new stream's chunks
//! ([`XdfWriter::append_to_copy`]), so every reader sees the session as it was plus the words.
//! The audio is recognised run by run: a jump in its time stamps (a dropout) ends a run, and
//! nothing is recognised across it. Times are on the audio stream's clock: a word's onset is
//! the time stamp of its first sample, and the new stream carries the audio stream's clock
//! offsets, so that a reader that synchronises clocks moves both alike. As `neuralign play`
//! publishes a word table, each word is stamped at its onset, and a watermark follows every
//! [`WATERMARK_EVERY_S`] of audio and the end of each run.
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::resample::{resample, RATE_RANGE};
use super::{AsrError, Recogniser, MODEL_RATE};
use crate::ingest::StreamSelector;
use crate::transcript::{TranscriptEvent, Word};
use crate::xdf::{self, ChannelFormat, Samples, StreamInfo, XdfWriter};

/// A jump in the audio's time stamps larger than this ends a run, seconds.
const GAP_S: f64 = 0.1;
/// Audio between two watermarks of the written stream, seconds.
const WATERMARK_EVERY_S: f64 = 0.5;

/// What `transcribe SESSION.xdf --stream NAME` did.
#[derive(Debug, Clone, Serialize)]
pub struct SessionTranscript {
    /// The copy of the session with the transcript stream.
    pub out: PathBuf,
    /// The audio stream recognised.
    pub audio_stream: String,
    /// The transcript stream added (name and source id).
    pub transcript_stream: String,
    /// Its stream id in the copy.
    pub transcript_stream_id: u32,
    /// Audio recognised, seconds.
    pub audio_seconds: f64,
    /// Runs of audio between dropouts.
    pub runs: usize,
    /// Words written.
    pub words: usize,
    /// Messages written (words and watermarks).
    pub messages: usize,
    /// Segments gated as no speech.
    pub gated_segments: u32,
    /// Samples at full scale (clipping) in the recognised channel or the channels' mix.
    pub clipped_samples: u64,
    /// Decoding time over audio time.
    pub real_time_factor: f64,
}

/// Recognises the stream `selector` of the session at `path` (channel `channel`, or all
/// averaged) and writes the copy with the transcript stream `name` to `out`.
pub fn transcribe_session(
    path: &Path,
    selector: &StreamSelector,
    channel: Option<usize>,
    recogniser: &mut Recogniser,
    name: &str,
    out: &Path,
) -> Result<SessionTranscript, AsrError> {
    let xdf_err = |e: xdf::XdfError| AsrError::Audio(format!("{}: {e}", path.display()));
    let file = xdf::read(path).map_err(xdf_err)?;
    if let Some(problem) = file.warnings.first() {
        return Err(AsrError::Audio(format!(
            "{} is damaged ({problem}); a copy would not read back: repair or re-record it first",
            path.display()
        )));
    }
    let (property, value) = selector.property();
    let stream = file
        .streams
        .iter()
        .find(|s| {
            let info = &s.info;
            match property {
                "type" => info.stream_type == value,
                "source_id" => info.source_id == value,
                _ => info.name == value,
            }
        })
        .ok_or_else(|| {
            let names: Vec<&str> = file.streams.iter().map(|s| s.info.name.as_str()).collect();
            AsrError::Audio(format!(
                "{} has no stream {selector}; its streams: {}",
                path.display(),
                names.join(", ")
            ))
        })?;
    let rate = audio_rate(&stream.info)?;
    let mono = mono(&stream.info, &stream.data, channel)?;

    let mut events: Vec<(f64, TranscriptEvent)> = Vec::new();
    let (mut gated, mut decode_s, mut runs) = (0, 0.0, 0);
    let first_id = super::live::first_word_id();
    let mut words = 0u64;
    for (from, to) in runs_of(&stream.time_stamps) {
        runs += 1;
        let audio = resample(&mono[from..to], rate, MODEL_RATE)?;
        let started = Instant::now();
        let recognition = recogniser.recognise(&audio)?;
        decode_s += started.elapsed().as_secs_f64();
        gated += recognition.gated_segments;
        let t0 = stream.time_stamps[from];
        let run_end = t0 + (to - from) as f64 / f64::from(rate);
        let mut run_words = Vec::new();
        for w in &recognition.words {
            let (start, end) = (t0 + w.start, (t0 + w.end).min(run_end));
            run_words.push(start);
            events.push((
                start,
                TranscriptEvent::Word(Word {
                    id: first_id + words,
                    text: w.text.clone(),
                    start,
                    end: end.max(start),
                    is_final: true,
                    confidence: Some(w.confidence.clamp(0.0, 1.0)),
                }),
            ));
            words += 1;
        }
        // a watermark every WATERMARK_EVERY_S after the words before it, and at the run's end
        let ticks = (1..)
            .map(|k| t0 + k as f64 * WATERMARK_EVERY_S)
            .take_while(|&t| t < run_end)
            .chain([run_end]);
        events.extend(ticks.map(|time| (time, TranscriptEvent::Watermark { time })));
    }
    // words before the watermarks at the same time
    let rank = |e: &TranscriptEvent| matches!(e, TranscriptEvent::Watermark { .. });
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(rank(&a.1).cmp(&rank(&b.1))));

    let last_id = file.streams.iter().map(|s| s.id).max().unwrap_or(0);
    let mut writer = XdfWriter::append_to_copy(path, out, last_id).map_err(xdf_err)?;
    let info = StreamInfo::new(name, "Transcript", 1, 0.0, ChannelFormat::String, name);
    let id = writer.add_stream(&info).map_err(xdf_err)?;
    let stamps: Vec<f64> = events.iter().map(|(t, _)| *t).collect();
    let messages = Samples::String(events.iter().map(|(_, e)| e.to_json()).collect());
    writer
        .write_samples(id, &stamps, &messages)
        .map_err(xdf_err)?;
    for offset in &stream.clock_offsets {
        writer
            .clock_offset(id, offset.time, offset.value)
            .map_err(xdf_err)?;
    }
    writer.finish().map_err(xdf_err)?;
    let audio_seconds = mono.len() as f64 / f64::from(rate);
    Ok(SessionTranscript {
        out: out.to_path_buf(),
        audio_stream: stream.info.name.clone(),
        transcript_stream: name.to_string(),
        transcript_stream_id: id,
        audio_seconds,
        runs,
        words: words as usize,
        messages: events.len(),
        gated_segments: gated,
        clipped_samples: super::clipped_samples(&mono),
        real_time_factor: decode_s / audio_seconds.max(1e-9),
    })
}

/// The stream's rate if it is audio the recogniser can take.
fn audio_rate(info: &StreamInfo) -> Result<u32, AsrError> {
    let rate = info.nominal_srate;
    if rate.fract() != 0.0 || !RATE_RANGE.contains(&(rate as u32)) {
        return Err(AsrError::Audio(format!(
            "stream {} has nominal rate {rate} Hz: audio needs a regular rate of {}–{} Hz",
            info.name,
            RATE_RANGE.start(),
            RATE_RANGE.end()
        )));
    }
    Ok(rate as u32)
}

/// The samples as mono audio in [-1, 1]: channel `channel`, or all averaged.
fn mono(info: &StreamInfo, data: &Samples, channel: Option<usize>) -> Result<Vec<f32>, AsrError> {
    let channels = info.channel_count;
    if channels == 0 || channel.is_some_and(|c| c >= channels) {
        return Err(AsrError::Audio(format!(
            "stream {} has {channels} channels; channel {channel:?} was asked for",
            info.name
        )));
    }
    let values: Vec<f32> = match data {
        Samples::Int16(v) => v.iter().map(|&x| f32::from(x) / 32_768.0).collect(),
        Samples::Int32(v) => v.iter().map(|&x| x as f32 / 2_147_483_648.0).collect(),
        Samples::Int8(v) => v.iter().map(|&x| f32::from(x) / 128.0).collect(),
        // what `serve` records of an int64 stream (no audio device sends it; full scale 2^63)
        Samples::Int64(v) => v.iter().map(|&x| (x as f64 / 9.223_372_036_854_776e18) as f32).collect(),
        Samples::Float32(v) => v.clone(),
        Samples::Double64(v) => v.iter().map(|&x| x as f32).collect(),
        _ => {
            return Err(AsrError::Audio(format!(
                "stream {} has {} samples: audio must be int16, int32, int64, int8, float32 or double64",
                info.name,
                data.format()
            )))
        }
    };
    Ok(values
        .chunks_exact(channels)
        .map(|row| match channel {
            Some(c) => row[c],
            None => row.iter().sum::<f32>() / channels as f32,
        })
        .map(|x| if x.is_finite() { x } else { 0.0 })
        .collect())
}

/// Sample ranges `[from, to)` between jumps in the time stamps (forward by more than
/// [`GAP_S`] beyond one sample, or backwards).
fn runs_of(stamps: &[f64]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut from = 0;
    for i in 1..stamps.len() {
        let step = stamps[i] - stamps[i - 1];
        if !(0.0..=GAP_S).contains(&step) {
            runs.push((from, i));
            from = i;
        }
    }
    if from < stamps.len() {
        runs.push((from, stamps.len()));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_end_at_jumps_forward_or_back() {
        let mut stamps: Vec<f64> = (0..10).map(|i| i as f64 * 0.01).collect();
        stamps.extend((0..5).map(|i| 5.0 + i as f64 * 0.01));
        stamps.extend((0..3).map(|i| 1.0 + i as f64 * 0.01));
        assert_eq!(runs_of(&stamps), [(0, 10), (10, 15), (15, 18)]);
        assert!(runs_of(&[]).is_empty());
    }

    #[test]
    fn channels_are_chosen_or_averaged() {
        let info = StreamInfo::new("mic", "Audio", 2, 16_000.0, ChannelFormat::Int16, "");
        let data = Samples::Int16(vec![16_384, 0, -32_768, 16_384]);
        assert_eq!(mono(&info, &data, Some(0)).unwrap(), [0.5, -1.0]);
        assert_eq!(mono(&info, &data, None).unwrap(), [0.25, -0.25]);
        assert!(mono(&info, &data, Some(2)).is_err());
        let strings = Samples::String(vec!["a".into(), "b".into()]);
        assert!(mono(&info, &strings, None)
            .unwrap_err()
            .to_string()
            .contains("audio must be"));
        // int64, as `serve` records an int64 stream: full scale 2^63
        let info = StreamInfo::new("mic", "Audio", 1, 16_000.0, ChannelFormat::Int64, "");
        let data = Samples::Int64(vec![i64::MIN, 1 << 62, 0]);
        assert_eq!(mono(&info, &data, None).unwrap(), [-1.0, 0.5, 0.0]);
    }
}
