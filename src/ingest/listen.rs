//! A timed listening session on the neural and/or transcript stream: what `neuralign listen`
//! runs to see whether the amplifier and the recogniser are visible and healthy.
use serde::Serialize;
use std::time::{Duration, Instant};

use super::{
    IngestError, LslConfig, NeuralConfig, NeuralInlet, NeuralStatus, Timeline, TranscriptConfig,
    TranscriptInlet, TranscriptStatus,
};

/// Seconds of neural data the listening timeline keeps.
const TIMELINE_S: f64 = 10.0;

/// What arrived from the neural stream.
#[derive(Debug, Clone, Serialize)]
pub struct NeuralReport {
    /// The inlet's final status (samples, gaps, latency, losses, ...).
    #[serde(flatten)]
    pub status: NeuralStatus,
    /// Measured samples per second (time stamps), including missing samples.
    pub measured_rate: f64,
    /// Samples the pipeline's timeline filled with NaN (gaps and dropped chunks).
    pub timeline_filled: u64,
}

/// What `neuralign listen` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ListenReport {
    /// Seconds listened.
    pub seconds: f64,
    /// The neural stream, if one was asked for.
    pub neural: Option<NeuralReport>,
    /// The transcript stream, if one was asked for.
    pub transcript: Option<TranscriptStatus>,
}

/// Listens for `duration` to the streams whose configs are given, and reports.
pub fn listen(
    lsl: &LslConfig,
    neural: Option<NeuralConfig>,
    transcript: Option<TranscriptConfig>,
    duration: Duration,
) -> Result<ListenReport, IngestError> {
    let neural = neural
        .map(|config| NeuralInlet::spawn(config, lsl.resolve_timeout_s))
        .transpose()?;
    let transcript = transcript
        .map(|config| TranscriptInlet::spawn(config, lsl.resolve_timeout_s))
        .transpose()?;
    let started = Instant::now();
    let mut timeline: Option<Timeline> = None;
    // Drain both channels as the pipeline would; the neural chunks go through a timeline.
    while started.elapsed() < duration {
        let tick = Duration::from_millis(20).min(duration.saturating_sub(started.elapsed()));
        if let Some((inlet, chunks)) = &neural {
            if let Ok(chunk) = chunks.recv_timeout(tick) {
                let timeline = timeline.get_or_insert_with(|| timeline_for(&inlet.status()));
                timeline.push(&chunk);
                chunks.try_iter().for_each(|chunk| timeline.push(&chunk));
            }
        } else {
            std::thread::sleep(tick);
        }
        if let Some((_, updates)) = &transcript {
            updates.try_iter().for_each(drop);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(ListenReport {
        seconds,
        neural: neural.map(|(inlet, _)| {
            let status = inlet.stop();
            NeuralReport {
                measured_rate: status.measured_rate(),
                timeline_filled: timeline.as_ref().map_or(0, Timeline::filled_samples),
                status,
            }
        }),
        transcript: transcript.map(|(inlet, _)| inlet.stop()),
    })
}

fn timeline_for(status: &NeuralStatus) -> Timeline {
    let (channels, rate) = status
        .stream
        .as_ref()
        .map_or((1, 0.0), |s| (s.summary.channels, s.summary.rate));
    Timeline::new(channels, ((rate * TIMELINE_S) as usize).max(1024))
}
