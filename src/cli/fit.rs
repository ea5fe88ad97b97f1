//! `neuralign fit`: fit per-electrode encoders on a recorded session and
//! write the encoder file.
use crate::encode::session_xdf::{load_xdf, LoadedSession, XdfSessionOptions};
use crate::encode::{self, FitConfig, HighGammaMeta, Provenance};
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// Arguments of `neuralign fit`.
#[derive(Args, Debug)]
pub struct FitArgs {
    /// The session: an XDF recording (high-gamma and transcript streams; the
    /// transcript is embedded by the model), or a safetensors file with `hg`,
    /// `onsets` and `embeddings` (see docs/encoders.md).
    pub session: PathBuf,
    /// How an XDF session is read.
    #[command(flatten)]
    pub xdf: XdfArgs,
    /// XDF: the language model (registry name or PATH.gguf); default: smollm2-135m.
    #[arg(long)]
    pub model: Option<crate::lm::ModelRef>,
    /// Where to write the encoder file.
    #[arg(long)]
    pub out: PathBuf,
    /// What is fit, and how.
    #[command(flatten)]
    pub settings: FitSettings,
    /// Write the statistics (per electrode: label, peak_layer, peak_layer_ci,
    /// r, p, q, significant, layer profile with its null band) as JSON here;
    /// the encoder file's metadata carries the same.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the held-out predictions, actual and shifts behind the null here
    /// (for checking against an independent implementation).
    #[arg(long, hide = true)]
    pub dump_null: Option<PathBuf>,
    /// Write layer `--dump-layer`'s dense design and solution here (for
    /// checking against an independent ridge implementation).
    #[arg(long, hide = true)]
    pub dump_design: Option<PathBuf>,
    /// Encoder layer index dumped by `--dump-design`.
    #[arg(long, hide = true, default_value_t = 0)]
    pub dump_layer: usize,
}

/// How `fit` and `compare` read an XDF session.
#[derive(Args, Debug, Clone)]
pub struct XdfArgs {
    /// XDF: name of the high-gamma stream (default: the first numeric stream at ≤ 200 Hz).
    #[arg(long)]
    pub neural: Option<String>,
    /// XDF: name of the transcript stream (default: the first of type `Transcript`).
    #[arg(long)]
    pub transcript: Option<String>,
    /// XDF: fit on this leading fraction of the session only.
    #[arg(long)]
    pub fraction: Option<f64>,
    /// XDF: the neural stream is raw iEEG (default: when its rate is above 200 Hz); its
    /// high-gamma is extracted with the server's causal filterbank.
    #[arg(long)]
    pub raw: bool,
    /// XDF, raw iEEG: the server config whose `[high_gamma]` settings to extract with
    /// (default: the built-in defaults, those of configs/bedside.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// XDF, raw iEEG: mains frequency to notch, Hz (default: the recording's
    /// `power_line_frequency`, else the config's `line_freq`).
    #[arg(long)]
    pub line_freq: Option<f64>,
}

impl XdfArgs {
    /// Loads the session at `path`, its transcript embedded by `model` (default: the
    /// default model).
    pub fn load(
        &self,
        path: &std::path::Path,
        model: Option<crate::lm::ModelRef>,
    ) -> anyhow::Result<LoadedSession> {
        let mut engine = crate::lm::Engine::load(&crate::lm::LmConfig {
            model,
            ..Default::default()
        })
        .context("loading the language model")?;
        let high_gamma = match &self.config {
            Some(path) => crate::pipeline::Config::load(path)?.high_gamma,
            None => Default::default(),
        };
        let opts = XdfSessionOptions {
            neural: self.neural.clone(),
            transcript: self.transcript.clone(),
            fraction: self.fraction,
            raw: self.raw.then_some(true),
            high_gamma,
            line_freq: self.line_freq,
        };
        load_xdf(path, &opts, &mut engine)
    }
}

/// What `fit` fits and how: shared with `compare`, which fits every model with the same.
#[derive(Args, Debug, Clone)]
pub struct FitSettings {
    /// Layers to fit: `all` or a comma-separated list of model layers.
    #[arg(long, default_value = "all")]
    pub layers: String,
    /// First lag after word onset, seconds.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub tmin: f64,
    /// Last lag after word onset, seconds.
    #[arg(long, default_value_t = 0.5)]
    pub tmax: f64,
    /// Principal components per layer.
    #[arg(long, default_value_t = 16)]
    pub pcs: usize,
    /// Contiguous cross-validation folds for choosing alpha.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Fraction held out at the end of the session for the outer test r.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Circular shifts of the neural signal in the null distribution.
    #[arg(long, default_value_t = 1000)]
    pub shifts: usize,
    /// Seed of the null's shifts and of the peak-layer bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The rolling window, seconds, the live threshold is calibrated for: `serve`'s
    /// `[align] window_s` (the server uses the threshold only when they match).
    #[arg(long, default_value_t = 10.0)]
    pub live_window_s: f64,
}

impl FitSettings {
    /// Checks the settings and makes the fit's configuration.
    pub fn config(&self) -> anyhow::Result<FitConfig> {
        anyhow::ensure!(
            self.live_window_s.is_finite() && self.live_window_s > 0.0,
            "--live-window-s {}: expected a positive number of seconds",
            self.live_window_s
        );
        let layers = match self.layers.as_str() {
            "all" => None,
            list => Some(
                list.split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| {
                        format!("--layers `{list}`: expected `all` or numbers like 0,6,12")
                    })?,
            ),
        };
        Ok(FitConfig {
            tmin: self.tmin,
            tmax: self.tmax,
            pcs: self.pcs,
            folds: self.folds,
            holdout: self.holdout,
            layers,
            stats: crate::stats::StatsConfig {
                shifts: self.shifts,
                seed: self.seed,
                live_window_s: self.live_window_s,
                ..Default::default()
            },
            ..FitConfig::default()
        })
    }
}

/// Runs `neuralign fit`.
pub fn run(args: FitArgs) -> anyhow::Result<()> {
    let cfg = args.settings.config()?;
    let ext = args
        .session
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let loaded = match ext {
        "xdf" => args.xdf.load(&args.session, args.model.clone())?,
        "safetensors" => {
            let (session, model) = encode::session_file::load(&args.session)
                .with_context(|| format!("reading session {}", args.session.display()))?;
            let model = model.context("the session file names no model (metadata `model`: name, sha256); encoders must record which model they fit")?;
            LoadedSession {
                session,
                model,
                high_gamma: HighGammaMeta {
                    source: args.session.display().to_string(),
                    band_hz: crate::dsp::HIGH_GAMMA_BAND_HZ,
                    extracted_by: "stream".into(),
                },
                segments: Vec::new(),
            }
        }
        _ => bail!(
            "{}: expected an XDF recording (.xdf) or session arrays (.safetensors)",
            args.session.display()
        ),
    };
    let session = &loaded.session;
    let enc = fit_and_save(&loaded, &cfg, &args.out)?;
    if let Some(path) = &args.dump_design {
        if args.dump_layer >= enc.layers {
            bail!(
                "--dump-layer {} but only {} layers were fit",
                args.dump_layer,
                enc.layers
            );
        }
        encode::dump_design(session, &cfg, &enc, args.dump_layer)?.save(path)?;
    }
    if let Some(path) = &args.dump_null {
        encode::dump_null(session, &enc, path)?;
    }
    if let Some(path) = &args.json {
        let stats = enc.meta.statistics.as_ref().context(
            "the held-out tail is too short for the statistics (see the warning above); nothing written to --json",
        )?;
        std::fs::write(path, serde_json::to_string_pretty(stats)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Fits encoders on a loaded session with a progress bar, writes them to `out` and
/// logs the result (shared by `fit` and `demo`).
pub(crate) fn fit_and_save(
    loaded: &LoadedSession,
    cfg: &FitConfig,
    out: &std::path::Path,
) -> anyhow::Result<encode::Encoder> {
    let session = &loaded.session;
    let provenance = Provenance {
        model: loaded.model.clone(),
        high_gamma: loaded.high_gamma.clone(),
        description: format!(
            "{}: {} samples at {} Hz, {} electrodes, {} words",
            loaded.high_gamma.source,
            session.samples(),
            session.rate,
            session.electrodes(),
            session.words.len()
        ),
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("fitting layer {pos}/{len} {wide_bar} {elapsed} (eta {eta})")
            .expect("template"),
    );
    let started = std::time::Instant::now();
    let enc = encode::fit(session, cfg, &provenance, &bar).context("fitting encoders")?;
    bar.finish_and_clear();
    enc.save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    let best = enc.cv_r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let significant = enc
        .meta
        .statistics
        .as_ref()
        .map_or(0, |s| s.electrodes.iter().filter(|e| e.significant).count());
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        layers = enc.layers,
        electrodes = enc.electrodes,
        best_r = best,
        significant,
        "wrote {}",
        out.display()
    );
    Ok(enc)
}
