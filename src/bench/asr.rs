//! `bench asr`: speech recognition on speech whose word times are known (espeak-ng,
//! [`crate::asr::espeak`]), batch and live.
//!
//! - **Batch**: the whole passage recognised on one thread: speed (× real time), CPU share,
//!   word error rate and word-onset error against espeak-ng's onsets.
//! - **Live**: the passage played at real time as an LSL audio stream (as `neuralign play`
//!   does) and recognised from it (`transcribe --lsl`, tentative words on) while the language
//!   model embeds a word at the passage's word rate on another thread, as in `serve`: commit
//!   latency (the audio time of a word's end to its publication on the transcript outlet, on
//!   the LSL clock), first-publication latency (tentative or committed), the recogniser's
//!   share of one core (the process's CPU time less the player's and the language model's
//!   threads, the kernel pool's workers included), its word error rate and onset error.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::report::{Figure, PartReport, Row};
use super::Settings;
use crate::asr::agreement::normalise;
use crate::asr::espeak::{self, Synthesis};
use crate::asr::fetch::ensure_asr_model;
use crate::asr::live::{self, LiveOptions, LslAudio, Publisher};
use crate::asr::recognise::RecogniserOptions;
use crate::asr::resample::model_audio;
use crate::asr::Recogniser;
use crate::ingest::StreamSelector;
use crate::lm::{Engine, LmConfig};
use crate::metrics::{
    named_threads_cpu_seconds, process_cpu_seconds, thread_cpu_seconds, Percentiles,
};
use crate::play::{self, PlayOptions};
use crate::word_table::{TableWord, WordTable};
use neuralign_kernels::pool::KERNEL_WORKER_THREAD;

/// The passage spoken (252 words, ≈ 74 s at 175 words a minute).
const PASSAGE: &str = include_str!("../../tests/data/speech/passage.txt");
/// Speaking rate, words per minute (espeak-ng's default).
const WPM: u32 = 175;
/// Audio of a `--quick` run, seconds (cut at a word's onset).
const QUICK_AUDIO_S: f64 = 12.0;

/// How recognised words compare with the words spoken.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Score {
    /// Word edits (Levenshtein, normalised words) over the words spoken.
    pub word_error_rate: f64,
    /// Words recognised equal to the word spoken at their place in the alignment.
    pub matched: usize,
    /// Median |recognised onset − true onset| of the matched words with an onset, seconds.
    pub onset_error_median_s: f64,
    /// 90th percentile of the same, seconds.
    pub onset_error_p90_s: f64,
}

/// Scores `heard` (onsets in seconds from the audio's start) against `truth`.
pub fn score(truth: &[TableWord], heard: &[(String, f64)]) -> Score {
    let reference: Vec<String> = truth.iter().map(|w| normalise(&w.text)).collect();
    let heard: Vec<(String, f64)> = heard
        .iter()
        .map(|(w, t)| (normalise(w), *t))
        .filter(|(w, _)| !w.is_empty())
        .collect();
    let hypothesis: Vec<&str> = heard.iter().map(|(w, _)| w.as_str()).collect();
    let reference: Vec<&str> = reference.iter().map(String::as_str).collect();
    let (distance, pairs) = align(&reference, &hypothesis);
    let mut errors: Vec<f64> = pairs
        .iter()
        .filter_map(|&(i, j)| truth[i].start.map(|t| (heard[j].1 - t).abs()))
        .collect();
    errors.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        if errors.is_empty() {
            f64::NAN
        } else {
            // linear interpolation between order statistics (numpy's default)
            let x = q * (errors.len() - 1) as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            errors[lo] + (errors[hi] - errors[lo]) * (x - lo as f64)
        }
    };
    Score {
        word_error_rate: distance as f64 / reference.len().max(1) as f64,
        matched: pairs.len(),
        onset_error_median_s: quantile(0.5),
        onset_error_p90_s: quantile(0.9),
    }
}

/// Levenshtein distance between word sequences and the pairs `(reference, hypothesis)` of
/// equal words on one best alignment.
fn align(reference: &[&str], hypothesis: &[&str]) -> (usize, Vec<(usize, usize)>) {
    let (n, m) = (reference.len(), hypothesis.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let substitute = d[i - 1][j - 1] + usize::from(reference[i - 1] != hypothesis[j - 1]);
            d[i][j] = substitute.min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
        }
    }
    let (mut pairs, mut i, mut j) = (Vec::new(), n, m);
    while i > 0 && j > 0 {
        let same = reference[i - 1] == hypothesis[j - 1];
        if d[i][j] == d[i - 1][j - 1] + usize::from(!same) {
            if same {
                pairs.push((i - 1, j - 1));
            }
            (i, j) = (i - 1, j - 1);
        } else if d[i][j] == d[i - 1][j] + 1 {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    pairs.reverse();
    (d[n][m], pairs)
}

/// The passage synthesised, cut to about `QUICK_AUDIO_S` when `quick`.
fn speech(quick: bool) -> anyhow::Result<Synthesis> {
    let text = PASSAGE.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut speech = espeak::synthesise(&text, WPM, "en-us")?;
    if quick {
        // end just before the first onset past the cut: whole words only
        let end = speech
            .words
            .iter()
            .filter_map(|w| w.start)
            .find(|&t| t > QUICK_AUDIO_S)
            .map_or(speech.audio.seconds(), |t| t - 0.05);
        speech.words.retain(|w| w.start.is_none_or(|t| t < end));
        // a trailing word without an onset went with a word that was cut
        while speech.words.last().is_some_and(|w| w.start.is_none()) {
            speech.words.pop();
        }
        let frames = (end * f64::from(speech.audio.rate)) as usize;
        speech.audio.samples.truncate(frames);
    }
    Ok(speech)
}

/// Runs the benchmark (`settings.duration` below 10 s: the first ~12 s of the passage only).
pub fn run(settings: &Settings) -> anyhow::Result<PartReport> {
    let quick = settings.duration < Duration::from_secs(10);
    let speech = speech(quick).context("synthesising the passage with espeak-ng")?;
    let audio_s = speech.audio.seconds();
    let model = ensure_asr_model().context("fetching the speech model")?;

    // batch: the whole audio on this thread
    let mut recogniser = Recogniser::load(&model, RecogniserOptions::default())?;
    let samples = model_audio(&speech.audio)?;
    let (cpu0, started) = (thread_cpu_seconds(), Instant::now());
    let recognition = recogniser.recognise(&samples)?;
    let batch_wall = started.elapsed().as_secs_f64();
    let batch_cpu = thread_cpu_seconds() - cpu0;
    let batch_words: Vec<(String, f64)> = recognition
        .words
        .iter()
        .map(|w| (w.text.clone(), w.start))
        .collect();
    let batch = score(&speech.words, &batch_words);

    let live = live_run(&speech, recogniser)?;

    let speed = audio_s / batch_wall;
    let mut rows = vec![Row {
        label: "asr live decode".into(),
        latency: live.decode,
        throughput: None,
    }];
    rows.extend(live.commit_latency.map(|latency| Row {
        label: "asr commit latency (word end → committed on LSL)".into(),
        latency,
        throughput: None,
    }));
    rows.extend(live.first_latency.map(|latency| Row {
        label: "asr first publication (word end → tentative or committed)".into(),
        latency,
        throughput: None,
    }));
    let figures = vec![
        Figure::new("batch speed (one thread)", speed, "× real time"),
        Figure::new(
            "batch CPU share",
            batch_cpu / batch_wall.max(1e-9),
            "of a core",
        ),
        Figure::new("batch WER", batch.word_error_rate * 100.0, "%"),
        Figure::new(
            "batch onset error p50",
            batch.onset_error_median_s * 1e3,
            "ms",
        ),
        Figure::new("batch onset error p90", batch.onset_error_p90_s * 1e3, "ms"),
        Figure::new(
            "live recogniser CPU (LM running)",
            live.recogniser_cpu_share,
            "of a core",
        ),
        Figure::new("live WER", live.score.word_error_rate * 100.0, "%"),
        Figure::new(
            "live onset error p50",
            live.score.onset_error_median_s * 1e3,
            "ms",
        ),
        Figure::new("LM words embedded meanwhile", live.lm_words as f64, "words"),
    ];
    Ok(PartReport {
        title: format!(
            "speech recognition (Whisper tiny.en, whisper.cpp, one thread) on {audio_s:.1} s of \
             espeak-ng speech ({} words at {WPM} words/min): batch, then live over LSL at real \
             time with the language model embedding a word every {:.0} ms",
            speech.words.len(),
            live.lm_interval_s * 1e3
        ),
        rows,
        figures,
        details: json!({
            "audio_seconds": audio_s,
            "words": speech.words.len(),
            "batch": {
                "wall_s": batch_wall,
                "cpu_s": batch_cpu,
                "speed_x_real_time": speed,
                "score": batch,
                "gated_segments": recognition.gated_segments,
            },
            "live": {
                "score": live.score,
                "recogniser_cpu_share": live.recogniser_cpu_share,
                "process_cpu_share": live.process_cpu_share,
                "lm_cpu_share": live.lm_cpu_share,
                "lm_words": live.lm_words,
                "report": live.report,
            },
        }),
    })
}

/// What the live run measured.
struct LiveRun {
    decode: Percentiles,
    commit_latency: Option<Percentiles>,
    first_latency: Option<Percentiles>,
    score: Score,
    recogniser_cpu_share: f64,
    process_cpu_share: f64,
    lm_cpu_share: f64,
    lm_words: usize,
    lm_interval_s: f64,
    report: live::LiveReport,
}

/// Seconds of silence played before the passage: the recogniser finds the stream and
/// connects meanwhile (an inlet receives only what is pushed after it connects).
const LEAD_S: f64 = 2.0;
/// Seconds of silence played after the passage, so that its last words are committed by
/// agreement (as in a session that goes on) rather than at the end of the stream.
const TAIL_S: f64 = 3.0;

/// Plays the speech over LSL at real time and recognises it from the stream while the
/// language model embeds the passage's words at its word rate.
fn live_run(speech: &Synthesis, recogniser: Recogniser) -> anyhow::Result<LiveRun> {
    let name = format!("neuralign-bench-asr-{}", std::process::id());
    // set when the player is done (or a minute past the audio's length): the language model
    // stops (the recogniser ends on its own, when the player's stream is lost)
    let stop = Arc::new(AtomicBool::new(false));
    let process0 = process_cpu_seconds();
    // the language model's matrix products run partly on the kernel pool's workers
    let workers0 = named_threads_cpu_seconds(KERNEL_WORKER_THREAD);

    let lm_interval_s = speech.audio.seconds() / speech.words.len().max(1) as f64;
    let lm = {
        let stop = Arc::clone(&stop);
        let words: Vec<String> = speech.words.iter().map(|w| w.text.clone()).collect();
        std::thread::spawn(move || -> anyhow::Result<(f64, usize)> {
            let mut engine = Engine::load(&LmConfig::default())
                .context("loading the language model that runs beside the recogniser")?;
            let cpu0 = thread_cpu_seconds();
            let started = Instant::now();
            let mut embedded = 0;
            for (k, word) in words.iter().cycle().enumerate() {
                let due = started + Duration::from_secs_f64(k as f64 * lm_interval_s);
                while Instant::now() < due && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                engine.push_word(word)?;
                embedded += 1;
            }
            Ok((thread_cpu_seconds() - cpu0, embedded))
        })
    };
    let player = {
        let (stop, name) = (Arc::clone(&stop), name.clone());
        let mut audio = speech.audio.clone();
        let silence = |s: f64| vec![0.0; (s * f64::from(audio.rate)) as usize];
        audio.samples = [silence(LEAD_S), audio.samples, silence(TAIL_S)].concat();
        let table = WordTable {
            words: speech
                .words
                .iter()
                .map(|w| TableWord {
                    text: w.text.clone(),
                    start: w.start.map(|t| t + LEAD_S),
                    end: w.end.map(|t| t + LEAD_S),
                })
                .collect(),
            skipped: Vec::new(),
        };
        let limit = Duration::from_secs_f64(audio.seconds() + 60.0);
        std::thread::spawn(move || -> anyhow::Result<(f64, f64)> {
            // no lingering: the recogniser is stopped when the player returns
            let options = PlayOptions {
                name,
                linger: Duration::ZERO,
                ..PlayOptions::default()
            };
            let watchdog = {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let started = Instant::now();
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    stop.store(true, Ordering::Relaxed);
                })
            };
            let cpu0 = thread_cpu_seconds();
            let played = play::run(&audio, &table, &options, &stop);
            let cpu = thread_cpu_seconds() - cpu0;
            stop.store(true, Ordering::Relaxed);
            let _ = watchdog.join();
            Ok((cpu, played?.audio_start))
        })
    };
    let source = LslAudio {
        stream: StreamSelector::parse(&format!("{name}-audio")),
        channel: None,
    };
    let mut options = LiveOptions::default();
    options.agreement.tentative = true;
    // the recogniser decodes all it was sent, however far behind a loaded machine put it: it
    // ends when the player's outlet is gone and its queue is empty (or a minute past the
    // audio's length)
    options.end_when_lost = true;
    let recogniser_stop = AtomicBool::new(false);
    let publisher = Publisher::new(Some(&format!("{name}-words")), true)?;
    let limit = Duration::from_secs_f64(speech.audio.seconds() + LEAD_S + TAIL_S + 60.0);
    let report = std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let recogniser_stop = &recogniser_stop;
        scope.spawn(move || {
            let timeout = finished.recv_timeout(limit);
            if matches!(timeout, Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
                recogniser_stop.store(true, Ordering::Relaxed);
            }
        });
        let report = live::run_lsl(&source, recogniser, publisher, options, recogniser_stop);
        drop(done);
        report
    });
    stop.store(true, Ordering::Relaxed);
    let (player_cpu, audio_start) = player
        .join()
        .map_err(|_| anyhow::anyhow!("the player panicked"))??;
    let (lm_cpu, lm_words) = lm
        .join()
        .map_err(|_| anyhow::anyhow!("the language model thread panicked"))??;
    let report = report.context("recognising the played passage from LSL")?;
    // shares of a core for real-time audio: CPU time over the audio played (the recogniser's
    // drain after the player, and the wait for the stream to be lost, add no audio)
    let wall = speech.audio.seconds() + LEAD_S + TAIL_S;
    let process_cpu = process_cpu_seconds() - process0;
    let lm_cpu = lm_cpu + named_threads_cpu_seconds(KERNEL_WORKER_THREAD) - workers0;

    let origin = report.origin.unwrap_or(audio_start);
    let heard: Vec<(String, f64)> = report
        .words
        .iter()
        .map(|w| {
            let t = origin + w.start.unwrap_or(0.0) - audio_start - LEAD_S;
            (w.text.clone(), t)
        })
        .collect();
    Ok(LiveRun {
        decode: report.decode,
        commit_latency: report.commit_latency,
        first_latency: report.first_latency,
        score: score(&speech.words, &heard),
        recogniser_cpu_share: (process_cpu - player_cpu - lm_cpu) / wall,
        process_cpu_share: process_cpu / wall,
        lm_cpu_share: lm_cpu / wall,
        lm_words,
        lm_interval_s,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, start: Option<f64>) -> TableWord {
        TableWord {
            text: text.into(),
            start,
            end: None,
        }
    }

    #[test]
    fn word_errors_and_onsets_follow_the_alignment() {
        let truth = [
            word("The", Some(0.0)),
            word("cat", Some(0.5)),
            word("sat", Some(1.0)),
            word("on", Some(1.5)),
            word("the", None),
            word("mat.", Some(2.0)),
        ];
        // "sat" missed, "the" heard as "a": 2 edits of 6
        let heard: Vec<(String, f64)> = [
            ("the", 0.1),
            ("Cat,", 0.4),
            ("on", 1.7),
            ("a", 1.8),
            ("mat", 2.0),
        ]
        .iter()
        .map(|&(w, t)| (w.to_string(), t))
        .collect();
        let s = score(&truth, &heard);
        assert!((s.word_error_rate - 2.0 / 6.0).abs() < 1e-12, "{s:?}");
        assert_eq!(s.matched, 4);
        // onset errors 0.1, 0.1, 0.2, 0.0
        assert!((s.onset_error_median_s - 0.1).abs() < 1e-9, "{s:?}");
        assert!((s.onset_error_p90_s - 0.17).abs() < 1e-9, "{s:?}");
    }
}
