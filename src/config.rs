//! The server config (`configs/bedside.toml`): one section per module, each module owning its
//! section's struct. Missing sections and fields take their defaults.
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::ingest::{LslConfig, NeuralConfig, TranscriptConfig};

/// The whole server config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `[lsl]`: liblsl config and resolve timeout.
    pub lsl: LslConfig,
    /// `[neural]`: the iEEG inlet.
    pub neural: NeuralConfig,
    /// `[transcript]`: the word stream.
    pub transcript: TranscriptConfig,
}

impl Config {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config {} is not valid (see configs/bedside.toml)", path.display()))
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
    path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{NeuralMode, StreamSelector};

    #[test]
    fn the_documented_bedside_config_parses_to_the_defaults_it_documents() {
        let config: Config = toml::from_str(include_str!("../configs/bedside.toml")).unwrap();
        assert_eq!(config.lsl.api_config.as_deref(), Some(Path::new("lsl_api.cfg")));
        assert_eq!(config.neural.stream, StreamSelector::Type("iEEG".into()));
        assert_eq!(config.neural.mode, NeuralMode::HighGamma);
        let defaults = NeuralConfig::default();
        assert_eq!(config.neural.max_chunk, defaults.max_chunk);
        assert_eq!(config.neural.gap_tolerance_periods, defaults.gap_tolerance_periods);
        assert_eq!(config.transcript.silence_timeout_s, TranscriptConfig::default().silence_timeout_s);
    }

    #[test]
    fn selectors_and_typos_are_checked() {
        let config: Config = toml::from_str("[neural]\nstream = { source_id = \"amp-7\" }\nmode = \"raw\"").unwrap();
        assert_eq!(config.neural.stream, StreamSelector::SourceId("amp-7".into()));
        assert!(toml::from_str::<Config>("[neural]\ndejiter = true").is_err(), "unknown field");
        assert!(toml::from_str::<Config>("[neural]\nstream = { host = \"x\" }").is_err(), "unknown selector");
    }
}
