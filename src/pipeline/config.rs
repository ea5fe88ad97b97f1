//! The server config (`configs/bedside.toml`): one section per module, each module owning its
//! section's struct; the pipeline's own sections (`[encoders]`, `[[models]]`, `[recording]`,
//! `[pipeline]`) are defined here. Missing sections and fields take their defaults; unknown sections and
//! fields are errors that name them.
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::recorder::RecordingName;
use crate::ingest::{LslConfig, NeuralConfig, StreamSelector, TranscriptConfig};

/// The whole server config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[lsl]`: liblsl config and resolve timeout.
    pub lsl: LslConfig,
    /// `[neural]`: the iEEG inlet.
    pub neural: NeuralConfig,
    /// `[transcript]`: the word stream.
    pub transcript: TranscriptConfig,
    /// `[server]`: WebSocket and dashboard address, token and limits.
    pub server: crate::serve::ServerConfig,
    /// `[high_gamma]`: causal extraction when `[neural] mode = "raw"`.
    pub high_gamma: crate::dsp::HighGammaConfig,
    /// `[lm]`: the language model.
    pub lm: crate::lm::LmConfig,
    /// `[encoders]`: the encoder file (required for serve with one model).
    pub encoders: EncodersConfig,
    /// `[[models]]`: two or more language models live on the same transcript, each with its
    /// encoder file; empty for the one model of `[lm] model` and `[encoders] path`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<LiveModel>,
    /// `[align]`: rolling window, chance shift, summary threshold.
    pub align: crate::align::AlignConfig,
    /// `[recording]`: the XDF recording of everything received.
    pub recording: RecordingConfig,
    /// `[pipeline]`: publishing rates and queues.
    pub pipeline: PipelineSettings,
}

impl Config {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).with_context(|| {
            format!(
                "config {} is not valid (see configs/bedside.toml)",
                path.display()
            )
        })
    }

    /// The config at `path` if given, else `configs/bedside.toml` when it exists, else the
    /// defaults; with the folder relative paths in it are resolved against.
    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<(Self, PathBuf)> {
        let default = Path::new("configs/bedside.toml");
        match path {
            Some(path) => Ok((Self::load(path)?, parent_dir(path))),
            None if default.exists() => Ok((Self::load(default)?, parent_dir(default))),
            None => Ok((Self::default(), PathBuf::from("."))),
        }
    }
}

impl Config {
    /// The models `serve` runs, each with its encoder file (resolved against `base_dir`):
    /// the `[[models]]` entries, or the one model of `[lm] model` with `[encoders] path`.
    pub fn live_models(&self, base_dir: &Path) -> Result<Vec<LiveModel>, ConfigError> {
        let models = match self.models.as_slice() {
            [] => {
                let encoders = self.encoders.path.clone().ok_or(ConfigError::NoEncoders)?;
                vec![LiveModel {
                    model: self.lm.model.clone(),
                    encoders,
                }]
            }
            _ if self.lm.model.is_some() || self.encoders.path.is_some() => {
                return Err(ConfigError::ModelsTwice)
            }
            [_] => return Err(ConfigError::OneModelEntry),
            models => models.to_vec(),
        };
        Ok(models
            .into_iter()
            .map(|m| LiveModel {
                model: m.model.map(|r| r.relative_to(base_dir)),
                encoders: base_dir.join(m.encoders),
            })
            .collect())
    }
}

/// A config whose models cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Neither `[encoders] path` nor `[[models]]`.
    #[error(
        "no encoder file: set [encoders] path in the config (fit one with `neuralign fit \
         SESSION.xdf --out encoders.safetensors`), or list [[models]] with their encoders"
    )]
    NoEncoders,
    /// `[[models]]` beside `[lm] model` or `[encoders] path`.
    #[error(
        "[[models]] lists the models with their encoders: leave [lm] model and [encoders] \
         path unset beside it"
    )]
    ModelsTwice,
    /// A single `[[models]]` entry.
    #[error("[[models]] is for two or more models; one model is [lm] model with [encoders] path")]
    OneModelEntry,
}

/// `[[models]]`: one language model aligned live, with the encoder file fit on its embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveModel {
    /// A model by name (`smollm2-135m`, `gemma3-270m`, `smollm2-135m-untrained[:SEED]`) or a
    /// GGUF path (relative to the config's folder); unset: the default model.
    #[serde(default)]
    pub model: Option<crate::lm::ModelRef>,
    /// Its encoder file from `neuralign fit` (relative to the config's folder); the file
    /// names the model's hash and `serve` refuses another model's.
    pub encoders: PathBuf,
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `[encoders]`: the pretrained encoder file the pipeline aligns with (required for serve).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncodersConfig {
    /// Encoder file written by `neuralign fit` (relative to the config's folder).
    pub path: Option<PathBuf>,
    /// Run with the electrodes the stream carries when some encoder electrodes are missing
    /// (otherwise a missing electrode is an error).
    pub allow_subset: bool,
}

/// `[recording]`: where everything received is written as XDF, and under which names.
///
/// Each run gets a new file named as BIDS names files,
/// `<directory>/sub-<subject>/ses-<session>/sub-<subject>_ses-<session>_task-<task>_run-<NN>_ieeg.xdf`,
/// with the first free run number: a recording is never overwritten.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingConfig {
    /// Record at all.
    pub enabled: bool,
    /// Folder for the recordings (relative to the config's folder). Unset: the user's data
    /// folder ([`default_recordings_dir`]), outside any source tree, since recordings hold
    /// patient data.
    pub directory: Option<PathBuf>,
    /// BIDS subject label (letters and digits).
    pub subject: String,
    /// BIDS session label (letters and digits); unset: today's date, UTC (`YYYYmmdd`).
    pub session: Option<String>,
    /// BIDS task label (letters and digits).
    pub task: String,
    /// Items queued for the recorder; beyond it items are dropped and counted.
    pub channel_capacity: usize,
    /// The session's audio stream to record beside the neural stream and the transcript (a
    /// microphone as LabRecorder's AudioCapture publishes it, `neuralign play`'s `-audio`):
    /// `{ name = "..." }`, `{ type = "..." }` or `{ source_id = "..." }`. Unset (the default):
    /// no audio is recorded, since a room's audio holds more than the patient's consent for
    /// the session may cover; naming the stream is the decision to record it.
    pub audio: Option<StreamSelector>,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            directory: None,
            subject: "unknown".into(),
            session: None,
            task: "listening".into(),
            channel_capacity: 4096,
            audio: None,
        }
    }
}

impl RecordingConfig {
    /// The folder recordings go to, relative paths resolved against `base_dir`.
    pub fn directory(&self, base_dir: &Path) -> PathBuf {
        self.directory
            .as_ref()
            .map_or_else(default_recordings_dir, |d| base_dir.join(d))
    }

    /// The recording's BIDS entities, checked.
    pub fn name(&self) -> anyhow::Result<RecordingName> {
        let session = self.session.clone().unwrap_or_else(super::recorder::today);
        for (field, label) in [
            ("subject", &self.subject),
            ("session", &session),
            ("task", &self.task),
        ] {
            anyhow::ensure!(
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric()),
                "[recording] {field} = {label:?}: BIDS labels are letters and digits only"
            );
        }
        Ok(RecordingName {
            subject: self.subject.clone(),
            session,
            task: self.task.clone(),
        })
    }
}

/// `$NEURALIGN_DATA/recordings`, else `$XDG_DATA_HOME/neuralign/recordings`, else
/// `~/.local/share/neuralign/recordings`.
pub fn default_recordings_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let data = var("NEURALIGN_DATA")
        .map(PathBuf::from)
        .or_else(|| var("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("neuralign")))
        .unwrap_or_else(|| {
            let home = var("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".local/share/neuralign")
        });
    data.join("recordings")
}

/// `[pipeline]`: how often the pipeline publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// `alignment` (and `trace`) frames per second.
    pub alignment_hz: f64,
    /// `status` updates per second.
    pub status_hz: f64,
    /// Embedded words queued from the LM thread to the core loop.
    pub word_queue: usize,
    /// Publish the results (alignment, peak layers, significance, words) as LSL outlets
    /// (`docs/lsl.md`, "Results outlets").
    pub results_outlets: bool,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            alignment_hz: 10.0,
            status_hz: 1.0,
            word_queue: 1024,
            results_outlets: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEDSIDE: &str = include_str!("../../configs/bedside.toml");

    #[test]
    fn the_bedside_config_shows_every_default() {
        let mut config: Config = toml::from_str(BEDSIDE).unwrap();
        // the one deliberate difference: the LSL config shipped beside it keeps LSL on loopback
        assert_eq!(
            config.lsl.api_config.take().as_deref(),
            Some(Path::new("lsl_api.cfg"))
        );
        let (shown, defaults) = (
            serde_json::to_value(&config).unwrap(),
            serde_json::to_value(Config::default()).unwrap(),
        );
        assert_eq!(shown, defaults, "bedside.toml documents the defaults");
        // and every default that has a value is written out, not left implicit
        let table: toml::Table = toml::from_str(BEDSIDE).unwrap();
        for (section, fields) in defaults.as_object().unwrap() {
            for (field, value) in fields.as_object().unwrap() {
                if !value.is_null() {
                    assert!(
                        table[section].get(field).is_some(),
                        "configs/bedside.toml does not show [{section}] {field}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_unknown_section_or_field_is_an_error_that_names_it() {
        for (text, name) in [
            (
                "[nerual]
mode = \"raw\"",
                "nerual",
            ),
            (
                "[high_gamma]
line_frequency = 50",
                "line_frequency",
            ),
            (
                "[recording]
directory = \"x\"
subjet = \"p1\"",
                "subjet",
            ),
            (
                "[align]
window = 5",
                "window",
            ),
            (
                "[server]
allowed_orgins = []",
                "allowed_orgins",
            ),
        ] {
            let err = toml::from_str::<Config>(text).unwrap_err().to_string();
            assert!(err.contains(name), "{text:?}: {err}");
        }
    }

    #[test]
    fn models_come_from_models_entries_or_from_lm_and_encoders() {
        let base = Path::new("/cfg");
        let one: Config =
            toml::from_str("[lm]\nmodel = \"a.gguf\"\n[encoders]\npath = \"e.safetensors\"")
                .unwrap();
        assert_eq!(
            one.live_models(base).unwrap(),
            vec![LiveModel {
                model: Some(crate::lm::ModelRef::File("/cfg/a.gguf".into())),
                encoders: "/cfg/e.safetensors".into(),
            }]
        );
        assert_eq!(
            Config::default().live_models(base),
            Err(ConfigError::NoEncoders)
        );
        let two = "[[models]]\nmodel = \"smollm2-135m\"\nencoders = \"s.safetensors\"\n\
                   [[models]]\nmodel = \"smollm2-135m-untrained:3\"\nencoders = \"u.safetensors\"\n";
        let config: Config = toml::from_str(two).unwrap();
        let models = config.live_models(base).unwrap();
        assert_eq!(models.len(), 2);
        assert_eq!(
            models[1].model.as_ref().unwrap().to_string(),
            "smollm2-135m-untrained:3"
        );
        assert_eq!(models[1].encoders, Path::new("/cfg/u.safetensors"));
        let both: Config = toml::from_str(&format!("{two}[encoders]\npath = \"e\"")).unwrap();
        assert_eq!(both.live_models(base), Err(ConfigError::ModelsTwice));
        let single: Config = toml::from_str("[[models]]\nencoders = \"s.safetensors\"").unwrap();
        assert_eq!(single.live_models(base), Err(ConfigError::OneModelEntry));
        let typo = toml::from_str::<Config>("[[models]]\nencoder = \"s\"").unwrap_err();
        assert!(typo.to_string().contains("encoder"), "{typo}");
    }

    #[test]
    fn recording_labels_are_checked_and_the_session_defaults_to_today() {
        let mut recording = RecordingConfig::default();
        let name = recording.name().unwrap();
        assert_eq!(name.session.len(), 8, "{name:?}");
        recording.subject = "p 07/..".into();
        let err = recording.name().unwrap_err().to_string();
        assert!(err.contains("subject"), "{err}");
        assert!(recording
            .directory(Path::new("/cfg"))
            .ends_with("recordings"));
        recording.directory = Some("rec".into());
        assert_eq!(
            recording.directory(Path::new("/cfg")),
            Path::new("/cfg/rec")
        );
    }

    #[test]
    fn selectors_and_typos_are_checked() {
        let config: Config =
            toml::from_str("[neural]\nstream = { source_id = \"amp-7\" }\nmode = \"raw\"").unwrap();
        assert_eq!(
            config.neural.stream,
            StreamSelector::SourceId("amp-7".into())
        );
        assert!(
            toml::from_str::<Config>("[neural]\ndejiter = true").is_err(),
            "unknown field"
        );
        assert!(
            toml::from_str::<Config>("[neural]\nstream = { host = \"x\" }").is_err(),
            "unknown selector"
        );
    }
}
