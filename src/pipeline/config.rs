//! The server config (`configs/bedside.toml`): one section per module, each module owning its
//! section's struct; the pipeline's own sections (`[encoders]`, `[recording]`, `[pipeline]`)
//! are defined here. Missing sections and fields take their defaults; unknown sections and
//! fields are errors that name them.
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::ingest::{LslConfig, NeuralConfig, TranscriptConfig};

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
    /// `[encoders]`: the encoder file (required for serve).
    pub encoders: EncodersConfig,
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

/// `[recording]`: where everything received is written as XDF.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingConfig {
    /// Record at all.
    pub enabled: bool,
    /// Folder for the recordings (relative to the config's folder); each session gets a new
    /// file `neuralign-YYYYmmdd-HHMMSS.xdf`, never overwriting one.
    pub directory: PathBuf,
    /// Items queued for the recorder; beyond it items are dropped and counted.
    pub channel_capacity: usize,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            directory: PathBuf::from("recordings"),
            channel_capacity: 4096,
        }
    }
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
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            alignment_hz: 10.0,
            status_hz: 1.0,
            word_queue: 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{NeuralMode, StreamSelector};

    #[test]
    fn the_documented_bedside_config_parses_to_the_defaults_it_documents() {
        let config: Config = toml::from_str(include_str!("../../configs/bedside.toml")).unwrap();
        assert_eq!(
            config.lsl.api_config.as_deref(),
            Some(Path::new("lsl_api.cfg"))
        );
        assert_eq!(config.neural.stream, StreamSelector::Type("iEEG".into()));
        assert_eq!(config.neural.mode, NeuralMode::HighGamma);
        let defaults = NeuralConfig::default();
        assert_eq!(config.neural.max_chunk, defaults.max_chunk);
        assert_eq!(
            config.neural.gap_tolerance_periods,
            defaults.gap_tolerance_periods
        );
        assert_eq!(
            config.transcript.silence_timeout_s,
            TranscriptConfig::default().silence_timeout_s
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
