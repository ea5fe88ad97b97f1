//! Whisper tiny.en through whisper.cpp (`whisper-rs`) on one thread: 16 kHz mono audio in,
//! words with onsets out.
//!
//! - Word onsets are whisper.cpp's DTW token times (the cross-attention of tiny.en's alignment
//!   heads aligned to the audio, 10 ms steps), the same heads as the model's `config.json`;
//!   a word starts at a token that begins with a space, punctuation stays attached, and a
//!   word ends where the next begins (the last word of a segment at the segment's end).
//! - Gating, counted in [`Recognition`]: audio whose every 30 ms frame is below
//!   [`RecogniserOptions::silence_dbfs`] is not decoded at all, and a segment whose no-speech
//!   probability exceeds [`RecogniserOptions::no_speech_threshold`] or whose mean token
//!   probability is below [`RecogniserOptions::min_mean_probability`] yields no words
//!   (Whisper's "Thank you." on silence or noise).
use std::path::Path;

use whisper_rs::{
    DtwMode, DtwModelPreset, FullParams, SamplingStrategy, WhisperContext,
    WhisperContextParameters, WhisperState,
};

use super::{AsrError, MODEL_RATE};

/// One recognised word; times in seconds from the start of the audio given.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecognisedWord {
    /// The word as recognised (leading space trimmed, punctuation attached).
    pub text: String,
    /// Onset, seconds.
    pub start: f64,
    /// Offset, seconds.
    pub end: f64,
    /// Mean probability of its tokens.
    pub confidence: f32,
}

/// The words of one decode, and what was gated.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Recognition {
    /// Words in onset order.
    pub words: Vec<RecognisedWord>,
    /// The whole audio was below the silence level: nothing was decoded.
    pub silent: bool,
    /// Segments dropped as no speech (or too unsure).
    pub gated_segments: u32,
}

/// How the recogniser decides what is speech.
#[derive(Debug, Clone, PartialEq)]
pub struct RecogniserOptions {
    /// Frames (30 ms) quieter than this, in dB below full scale, are silence.
    pub silence_dbfs: f32,
    /// A segment whose no-speech probability is above this yields no words.
    pub no_speech_threshold: f32,
    /// A segment whose tokens' mean probability is below this yields no words.
    pub min_mean_probability: f32,
    /// whisper.cpp threads.
    pub threads: i32,
}

impl Default for RecogniserOptions {
    fn default() -> Self {
        RecogniserOptions {
            silence_dbfs: -50.0,
            no_speech_threshold: 0.6,
            min_mean_probability: 0.4,
            threads: 1,
        }
    }
}

/// A loaded model with its decoding state.
pub struct Recogniser {
    ctx: WhisperContext,
    state: WhisperState,
    options: RecogniserOptions,
}

impl Recogniser {
    /// Loads the converted model (see [`super::fetch`]).
    pub fn load(path: &Path, options: RecogniserOptions) -> Result<Self, AsrError> {
        // whisper.cpp's own log lines go to `tracing` (target `whisper_rs`), not to stderr.
        whisper_rs::install_logging_hooks();
        let mut params = WhisperContextParameters::default();
        params.dtw_parameters.mode = DtwMode::ModelPreset {
            model_preset: DtwModelPreset::TinyEn,
        };
        let path_str = path
            .to_str()
            .ok_or_else(|| AsrError::Model(format!("{} is not a UTF-8 path", path.display())))?;
        let ctx = WhisperContext::new_with_params(path_str, params)
            .map_err(|e| AsrError::Whisper(format!("loading {}: {e}", path.display())))?;
        let state = ctx
            .create_state()
            .map_err(|e| AsrError::Whisper(format!("creating a decoding state: {e}")))?;
        Ok(Recogniser {
            ctx,
            state,
            options,
        })
    }

    /// Recognises 16 kHz mono `audio` of any length: cut at its pauses into chunks of at most
    /// [`BATCH_CHUNK_S`], each decoded with the encoder over its own length (as a live buffer
    /// is) rather than a whole 30 s window: the padded encoder work and the decoder's
    /// cross-attention over empty frames are what a 30 s window costs beyond its audio.
    pub fn recognise(&mut self, audio: &[f32]) -> Result<Recognition, AsrError> {
        let mut out = Recognition {
            silent: true,
            ..Default::default()
        };
        for chunk in pause_cuts(audio, MODEL_RATE as usize) {
            let offset = chunk.start as f64 / f64::from(MODEL_RATE);
            let part = self.recognise_live(&audio[chunk], "")?;
            out.silent &= part.silent;
            out.gated_segments += part.gated_segments;
            out.words.extend(part.words.into_iter().map(|mut w| {
                w.start += offset;
                w.end += offset;
                w
            }));
        }
        Ok(out)
    }

    /// Recognises a buffer of at most 30 s (a live buffer or a batch chunk) after the words
    /// `prompt` (a live decode's committed text before it, as whisper_streaming prompts),
    /// with the encoder run over the buffer's length only (whisper.cpp's `audio_ctx`, as its
    /// `stream` example) rather than a whole 30 s window, and at most 8 tokens a second of
    /// audio (a decode that loops on a phrase stops there).
    ///
    /// Where the decoder stops before the end of the audio (its last timestamp), the rest is
    /// decoded again, prompted with what came before, as whisper.cpp's own windows do; but
    /// here, padded to a second like any short audio. whisper.cpp's own window over such a
    /// rest is not padded, and one shorter than its DTW filter (8 frames of 20 ms) aborts the
    /// process (`WHISPER_ASSERT: filter_width < a->ne[2]`), so each call decodes one window.
    pub fn recognise_live(&mut self, audio: &[f32], prompt: &str) -> Result<Recognition, AsrError> {
        let mut out = Recognition::default();
        let mut context: Vec<String> = prompt.split_whitespace().map(String::from).collect();
        let mut from = 0;
        loop {
            let prompt = context[context.len().saturating_sub(PROMPT_WORDS)..].join(" ");
            let (part, stopped_at) = self.window(&audio[from..], &prompt)?;
            let offset = from as f64 / f64::from(MODEL_RATE);
            if from == 0 {
                out.silent = part.silent;
            }
            out.gated_segments += part.gated_segments;
            for w in part.words {
                context.push(w.text.clone());
                out.words.push(RecognisedWord {
                    start: w.start + offset,
                    end: w.end + offset,
                    ..w
                });
            }
            match stopped_at {
                Some(t) => from += (t * f64::from(MODEL_RATE)) as usize,
                None => return Ok(out),
            }
        }
    }

    /// Decodes `audio` as one window; also returns, when the decoder stopped more than 100 ms
    /// (whisper.cpp's least window) before the end, the time of its last timestamp, where
    /// whisper.cpp would start its next window.
    fn window(
        &mut self,
        audio: &[f32],
        prompt: &str,
    ) -> Result<(Recognition, Option<f64>), AsrError> {
        // 50 encoder frames a second, a second of margin, whole multiples of 64
        let seconds = audio.len() as f64 / f64::from(MODEL_RATE);
        let frames = (((seconds + 1.0) * 50.0 / 64.0).ceil() as i32 * 64).min(1500);
        let prompt = self
            .ctx
            .tokenize(prompt, 100)
            .map_err(|e| AsrError::Whisper(format!("tokenizing the prompt: {e}")))?;
        if is_silent(audio, self.options.silence_dbfs) {
            let silent = Recognition {
                silent: true,
                ..Default::default()
            };
            return Ok((silent, None));
        }
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.options.threads);
        params.set_language(Some("en"));
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_token_timestamps(true);
        params.set_suppress_blank(true);
        params.set_no_context(true);
        params.set_single_segment(true);
        params.set_audio_ctx(frames);
        params.set_tokens(&prompt);
        params.set_max_tokens((seconds * 8.0).ceil() as i32 + 8);
        // Whisper needs at least one second; pad short audio with silence.
        let min = MODEL_RATE as usize + MODEL_RATE as usize / 10;
        let padded;
        let audio = if audio.len() < min {
            padded = [audio, &vec![0.0; min - audio.len()]].concat();
            &padded[..]
        } else {
            audio
        };
        self.state
            .full(params, audio)
            .map_err(|e| AsrError::Whisper(format!("decoding: {e}")))?;
        let (eot, beg) = (self.ctx.token_eot(), self.ctx.token_beg());
        let mut out = Recognition::default();
        // one segment (`single_segment`), cut here where whisper.cpp cuts its segments: at a
        // timestamp token after text
        let segments: Vec<_> = self.state.as_iter().collect();
        let Some(no_speech) = segments.first().map(|s| s.no_speech_probability()) else {
            return Ok((out, None));
        };
        let mut pieces = vec![Piece::default()];
        // whisper.cpp's DTW time of a token is where the alignment leaves it: the onset of a
        // token is the DTW time of the token before it (special tokens included).
        let mut previous: Option<i64> = None;
        let (mut last_timestamp, mut trailing_timestamps) = (None, 0);
        let tokens = segments
            .iter()
            .flat_map(|s| (0..s.n_tokens()).filter_map(move |k| s.get_token(k)));
        for token in tokens {
            let data = token.token_data();
            let onset = previous.unwrap_or(data.t0);
            let id = token.token_id();
            if id > beg {
                // a timestamp token has no DTW time: the next word starts at the timestamp
                // (whisper.cpp's own token times are spread over the whole single segment)
                previous = Some(i64::from(id - beg) * 2);
                let time = f64::from(id - beg) * 0.02;
                last_timestamp = Some(time);
                trailing_timestamps += 1;
                let piece = pieces.last_mut().expect("never empty");
                if !piece.words.is_empty() {
                    piece.end = Some(time);
                    pieces.push(Piece::default());
                }
                continue;
            }
            previous = (data.t_dtw >= 0).then_some(data.t_dtw);
            if id >= eot {
                continue; // special tokens
            }
            trailing_timestamps = 0;
            let bytes = token.to_bytes().unwrap_or_default();
            let words = &mut pieces.last_mut().expect("never empty").words;
            if bytes.first() == Some(&b' ') || words.is_empty() {
                words.push((Vec::new(), onset as f64 / 100.0, Vec::new()));
            }
            let word = words.last_mut().expect("pushed above");
            word.0.extend_from_slice(bytes);
            word.2.push(data.p);
        }
        // where whisper.cpp would start its next window: at the last timestamp, when text
        // follows it unclosed (that text is decoded again there) or a new segment opens there
        let unclosed = pieces.last().is_some_and(|p| !p.words.is_empty());
        let stopped_at = last_timestamp
            .filter(|&t| (unclosed || trailing_timestamps >= 2) && t > 0.0 && seconds - t > 0.1);
        if stopped_at.is_some() && unclosed {
            pieces.pop();
        }
        for piece in pieces {
            let probabilities: Vec<f32> = piece
                .words
                .iter()
                .flat_map(|w| w.2.iter().copied())
                .collect();
            if probabilities.is_empty() {
                continue;
            }
            let mean_p = probabilities.iter().sum::<f32>() / probabilities.len() as f32;
            if no_speech > self.options.no_speech_threshold
                || mean_p < self.options.min_mean_probability
            {
                out.gated_segments += 1;
                continue;
            }
            let piece_end = piece.end.unwrap_or(seconds);
            let words = &piece.words;
            for (i, (bytes, start, probabilities)) in words.iter().enumerate() {
                let text = String::from_utf8_lossy(bytes).trim().to_string();
                if text.is_empty() {
                    continue;
                }
                let end = words.get(i + 1).map_or(piece_end, |w| w.1).max(*start);
                let confidence =
                    probabilities.iter().sum::<f32>() / probabilities.len().max(1) as f32;
                out.words.push(RecognisedWord {
                    text,
                    start: *start,
                    end,
                    confidence,
                });
            }
        }
        out.words.sort_by(|a, b| a.start.total_cmp(&b.start));
        Ok((out, stopped_at))
    }
}

/// Words of one whisper.cpp segment (text, onset, token probabilities) and its end, seconds.
#[derive(Default)]
struct Piece {
    words: Vec<(Vec<u8>, f64, Vec<f32>)>,
    end: Option<f64>,
}

/// The most words of prompt a window is decoded after (whisper_streaming keeps ~200
/// characters).
pub const PROMPT_WORDS: usize = 30;

/// The longest chunk a batch decode cuts the audio into, seconds.
pub const BATCH_CHUNK_S: f64 = 20.0;
/// A batch chunk is cut at the quietest 0.3 s between this and [`BATCH_CHUNK_S`] seconds.
const BATCH_CHUNK_MIN_S: f64 = 10.0;

/// Sample ranges of `audio` (at `rate`) that tile it, each at most [`BATCH_CHUNK_S`] long, cut
/// in the middle of the quietest 0.3 s (RMS of 30 ms frames) between [`BATCH_CHUNK_MIN_S`] and
/// [`BATCH_CHUNK_S`] after the chunk's start: a pause between words where there is one.
fn pause_cuts(audio: &[f32], rate: usize) -> Vec<std::ops::Range<usize>> {
    let frame = rate * 3 / 100;
    let energy: Vec<f32> = audio
        .chunks(frame)
        .map(|f| f.iter().map(|s| s * s).sum::<f32>())
        .collect();
    let (window, min_frames, max_frames) = (
        10,
        (BATCH_CHUNK_MIN_S * 100.0 / 3.0) as usize,
        (BATCH_CHUNK_S * 100.0 / 3.0) as usize,
    );
    let mut cuts = Vec::new();
    let mut start = 0;
    while energy.len() - start > max_frames {
        let quietest = (start + min_frames..start + max_frames - window)
            .min_by(|&a, &b| {
                let sum = |i: usize| energy[i..i + window].iter().sum::<f32>();
                sum(a).total_cmp(&sum(b))
            })
            .expect("the search range is not empty");
        let cut = quietest + window / 2;
        cuts.push(start * frame..cut * frame);
        start = cut;
    }
    cuts.push(start * frame..audio.len());
    cuts
}

/// Whether every 30 ms frame of 16 kHz `audio` is quieter than `dbfs` (RMS, dB full scale).
pub fn is_silent(audio: &[f32], dbfs: f32) -> bool {
    let threshold = 10f32.powf(dbfs / 20.0);
    audio.chunks(480).all(|frame| {
        let rms = (frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32).sqrt();
        rms < threshold
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_chunks_tile_the_audio_and_are_cut_at_a_pause() {
        let rate = 16_000;
        // 50 s of tone with one pause at 14.0–14.4 s
        let audio: Vec<f32> = (0..50 * rate)
            .map(|i| {
                let t = i as f64 / rate as f64;
                if (14.0..14.4).contains(&t) {
                    0.0
                } else {
                    (t * 440.0 * std::f64::consts::TAU).sin() as f32 * 0.3
                }
            })
            .collect();
        let chunks = pause_cuts(&audio, rate);
        assert_eq!(chunks.first().unwrap().start, 0);
        assert_eq!(chunks.last().unwrap().end, audio.len());
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "{chunks:?}");
        }
        for chunk in &chunks {
            assert!(
                chunk.len() as f64 <= BATCH_CHUNK_S * rate as f64,
                "{chunks:?}"
            );
        }
        let first_cut = chunks[0].end as f64 / rate as f64;
        assert!((14.0..14.4).contains(&first_cut), "cut at {first_cut} s");
        assert_eq!(pause_cuts(&audio[..5 * rate], rate), vec![0..5 * rate]);
    }

    #[test]
    fn silence_is_quiet_frames_only() {
        let mut audio = vec![0.001f32; 16_000];
        assert!(is_silent(&audio, -50.0));
        audio[8_000] = 0.9;
        assert!(!is_silent(&audio, -50.0), "one loud frame is not silence");
    }
}
