//! Latency and throughput benchmarks behind `neuralign bench`, one module per
//! part of the pipeline; each returns a [`report::PartReport`] that
//! [`report`] prints, plots and writes as JSON.

pub mod asr;
pub mod dsp;
pub mod e2e;
pub mod encode;
pub mod import;
pub mod lm;
pub mod lsl;
pub mod models;
pub mod report;

use std::time::Duration;

use report::Outcome;

/// What every part is given.
#[derive(Debug, Clone)]
pub struct Settings {
    /// About how long to measure each part.
    pub duration: Duration,
    /// A model by name or path instead of the default model (the `lm` and `e2e` parts).
    pub model: Option<crate::lm::ModelRef>,
    /// The models the `models` part runs together.
    pub models: Vec<crate::lm::ModelRef>,
    /// Minutes of synthetic session the `encode` part fits on (0 skips the fit).
    pub fit_minutes: f64,
    /// Minutes of the synthetic EDF the `import` part converts.
    pub import_minutes: f64,
}

/// A part of the pipeline `neuralign bench` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Per-word LM step, incremental against full recompute.
    Lm,
    /// Two or more models live on the same words, per word together.
    Models,
    /// Raw iEEG → high-gamma extraction.
    Dsp,
    /// LSL arrival over loopback.
    Lsl,
    /// Encoder kernels per word.
    Encode,
    /// Replay → serve → client, every stage.
    E2e,
    /// EDF → XDF conversion (`neuralign import`).
    Import,
    /// Speech recognition, batch and live, against espeak-ng's word times.
    Asr,
}

impl Part {
    /// Every part, in the order `bench all` runs them.
    pub const ALL: [Part; 8] = [
        Part::Lsl,
        Part::Dsp,
        Part::Lm,
        Part::Models,
        Part::Encode,
        Part::E2e,
        Part::Import,
        Part::Asr,
    ];

    /// The part's name on the command line and key in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Part::Lm => "lm",
            Part::Models => "models",
            Part::Dsp => "dsp",
            Part::Lsl => "lsl",
            Part::Encode => "encode",
            Part::E2e => "e2e",
            Part::Import => "import",
            Part::Asr => "asr",
        }
    }

    /// Measures this part for about `settings.duration`; an error is [`Outcome::Failed`].
    pub fn run(self, settings: &Settings) -> Outcome {
        let measured = match self {
            Part::Dsp => dsp::run(settings.duration),
            Part::Lsl => lsl::run(settings.duration),
            Part::Lm => lm::run(&lm::LmBenchOptions::for_duration(
                settings.duration,
                settings.model.clone(),
            )),
            Part::Models => models::run(&models::ModelsBenchOptions::for_duration(
                settings.duration,
                settings.models.clone(),
            )),
            Part::Encode => encode::run(settings.duration, settings.fit_minutes),
            Part::E2e => e2e::run(settings),
            Part::Import => import::run(settings.import_minutes),
            Part::Asr => asr::run(settings),
        };
        measured.map_or_else(Outcome::Failed, Outcome::Done)
    }
}
