//! Finding LSL streams: the selector a researcher types (name, type or source_id), the
//! summary `neuralign streams` prints, and channel labels from the stream description.
use serde::{Deserialize, Serialize};
use std::fmt;

use super::IngestError;

/// Which stream to connect to. In TOML: `stream = { name = "Amp" }`, `{ type = "iEEG" }` or
/// `{ source_id = "amp-1234" }`; on the command line `NAME`, `name=NAME`, `type=T` or
/// `source_id=ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StreamSelector {
    /// The stream's `name`.
    Name(String),
    /// The stream's `type` (content type, e.g. `iEEG`, `Markers`).
    Type(String),
    /// The stream's `source_id` (unique per device; the most robust choice).
    SourceId(String),
}

impl StreamSelector {
    /// Parses `NAME`, `name=NAME`, `type=T` or `source_id=ID`.
    pub fn parse(text: &str) -> Self {
        match text.split_once('=') {
            Some(("type", v)) => Self::Type(v.to_string()),
            Some(("source_id", v)) => Self::SourceId(v.to_string()),
            Some(("name", v)) => Self::Name(v.to_string()),
            _ => Self::Name(text.to_string()),
        }
    }

    /// The LSL property and value this selector matches.
    pub fn property(&self) -> (&'static str, &str) {
        match self {
            Self::Name(v) => ("name", v),
            Self::Type(v) => ("type", v),
            Self::SourceId(v) => ("source_id", v),
        }
    }

    /// Resolves the first stream matching this selector, waiting at most `timeout_s`.
    pub fn resolve(&self, timeout_s: f64) -> Result<Option<lsl::StreamInfo>, IngestError> {
        let (prop, value) = self.property();
        let found =
            lsl::resolve_byprop(prop, value, 1, timeout_s).map_err(|e| IngestError::Lsl {
                during: "resolve",
                source: e,
            })?;
        Ok(found.into_iter().next())
    }
}

impl fmt::Display for StreamSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prop, value) = self.property();
        write!(f, "{prop}={value}")
    }
}

/// What `neuralign streams` reports for one visible stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    /// Stream name.
    pub name: String,
    /// Content type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Number of channels.
    pub channels: usize,
    /// Nominal sampling rate in Hz (0 = irregular).
    pub rate: f64,
    /// Channel format (`float32`, `double64`, `int16`, `string`, ...).
    pub format: String,
    /// Unique source identifier (empty when the sender sets none).
    pub source_id: String,
    /// Host the outlet runs on.
    pub host: String,
}

impl StreamSummary {
    /// Summarises a resolved stream.
    pub fn from_info(info: &lsl::StreamInfo) -> Self {
        Self {
            name: info.stream_name(),
            kind: info.stream_type(),
            channels: info.channel_count().max(0) as usize,
            rate: info.nominal_srate(),
            format: format_name(info.channel_format()).to_string(),
            source_id: info.source_id(),
            host: info.hostname(),
        }
    }
}

/// All streams visible within `timeout_s`, sorted by name then source_id.
pub fn list_streams(timeout_s: f64) -> Result<Vec<StreamSummary>, IngestError> {
    let infos = lsl::resolve_streams(timeout_s).map_err(|e| IngestError::Lsl {
        during: "resolve",
        source: e,
    })?;
    let mut streams: Vec<_> = infos.iter().map(StreamSummary::from_info).collect();
    streams.sort_by(|a, b| (&a.name, &a.source_id).cmp(&(&b.name, &b.source_id)));
    Ok(streams)
}

/// The lower-case name LSL tools use for a channel format.
pub fn format_name(format: lsl::ChannelFormat) -> &'static str {
    use lsl::ChannelFormat as F;
    match format {
        F::Float32 => "float32",
        F::Double64 => "double64",
        F::String => "string",
        F::Int32 => "int32",
        F::Int16 => "int16",
        F::Int8 => "int8",
        F::Int64 => "int64",
        F::Undefined => "undefined",
    }
}

/// Each channel's description (`desc/channels/channel`: the XDF/LSL meta-data convention that
/// `neuralign import` writes and `replay` copies), parsed as the importer wrote it; empty when
/// the stream has none or describes another number of channels than it has.
pub fn channel_meta(info: &lsl::StreamInfo) -> Vec<crate::import::desc::ChannelMeta> {
    let count = info.channel_count().max(0) as usize;
    let channels = info
        .to_xml()
        .ok()
        .and_then(|xml| crate::xdf::xml::Element::parse(&xml).ok())
        .and_then(|root| root.child("desc").cloned())
        .map(|desc| crate::import::desc::ChannelMeta::from_desc(&desc))
        .unwrap_or_default();
    if channels.len() == count {
        channels
    } else {
        Vec::new()
    }
}

/// Channel labels from `desc/channels/channel/label` of a full stream info. A channel without
/// a label is `chK` (1-based); a description listing the wrong number of channels is ignored
/// altogether (`ch1…chN`), since its labels cannot be matched to channels.
pub fn channel_labels(info: &mut lsl::StreamInfo) -> Vec<String> {
    let count = info.channel_count().max(0) as usize;
    let mut described = Vec::with_capacity(count);
    let mut channel = info.desc().child("channels").child("channel");
    while channel.is_valid() {
        described.push(channel.child_value_named("label").trim().to_string());
        channel = channel.next_sibling_named("channel");
    }
    if described.len() != count {
        described = vec![String::new(); count];
    }
    described
        .into_iter()
        .enumerate()
        .map(|(k, label)| {
            if label.is_empty() {
                format!("ch{}", k + 1)
            } else {
                label
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_from_the_command_line() {
        assert_eq!(
            StreamSelector::parse("Amp"),
            StreamSelector::Name("Amp".into())
        );
        assert_eq!(
            StreamSelector::parse("name=a=b"),
            StreamSelector::Name("a=b".into())
        );
        assert_eq!(
            StreamSelector::parse("type=iEEG"),
            StreamSelector::Type("iEEG".into())
        );
        assert_eq!(
            StreamSelector::parse("source_id=amp-1"),
            StreamSelector::SourceId("amp-1".into())
        );
        assert_eq!(
            StreamSelector::SourceId("x".into()).to_string(),
            "source_id=x"
        );
    }
}
