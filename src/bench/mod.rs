//! Latency and throughput benchmarks behind `neuralign bench`, one module per
//! part of the pipeline; each returns a [`report::PartReport`] that
//! [`report`] prints, plots and writes as JSON.

pub mod dsp;
pub mod lm;
pub mod lsl;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use report::Outcome;

/// What every part is given.
#[derive(Debug, Clone)]
pub struct Settings {
    /// About how long to measure each part.
    pub duration: Duration,
    /// A local GGUF instead of the default model (the `lm` part).
    pub model: Option<PathBuf>,
}

/// A part of the pipeline `neuralign bench` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Per-word LM step, incremental against full recompute.
    Lm,
    /// Raw iEEG → high-gamma extraction.
    Dsp,
    /// LSL arrival over loopback.
    Lsl,
    /// Encoder kernels per word.
    Encode,
    /// Replay → serve → client, every stage.
    E2e,
}

impl Part {
    /// Every part, in the order `bench all` runs them.
    pub const ALL: [Part; 5] = [Part::Lsl, Part::Dsp, Part::Lm, Part::Encode, Part::E2e];

    /// The part's name on the command line and key in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Part::Lm => "lm",
            Part::Dsp => "dsp",
            Part::Lsl => "lsl",
            Part::Encode => "encode",
            Part::E2e => "e2e",
        }
    }

    /// Measures this part for about `settings.duration`; a part this build
    /// lacks is [`Outcome::NotAvailable`], an error is [`Outcome::Failed`].
    pub fn run(self, settings: &Settings) -> Outcome {
        let measured = match self {
            Part::Dsp => dsp::run(settings.duration),
            Part::Lsl => lsl::run(settings.duration),
            Part::Lm => lm::run(&lm::LmBenchOptions::for_duration(
                settings.duration,
                settings.model.clone(),
            )),
            Part::Encode => {
                return not_available("the encoder benchmark (bench::encode) has not landed yet")
            }
            Part::E2e => return not_available("the server is not yet wired to the live pipeline"),
        };
        measured.map_or_else(Outcome::Failed, Outcome::Done)
    }
}

fn not_available(reason: &str) -> Outcome {
    Outcome::NotAvailable(reason.to_string())
}
