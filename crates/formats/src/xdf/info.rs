//! Stream metadata: the StreamHeader XML of an XDF stream (the same document
//! an LSL outlet publishes) and its channel format.
use super::xml::{escape, Element};
use super::XdfError;

/// The value type of every channel of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelFormat {
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Double64,
    /// 8-bit signed integer.
    Int8,
    /// 16-bit signed integer.
    Int16,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// Variable-length UTF-8 string.
    String,
}

impl ChannelFormat {
    /// Every format, in XDF's order of names.
    pub const ALL: [ChannelFormat; 7] = [
        ChannelFormat::Float32,
        ChannelFormat::Double64,
        ChannelFormat::Int8,
        ChannelFormat::Int16,
        ChannelFormat::Int32,
        ChannelFormat::Int64,
        ChannelFormat::String,
    ];

    /// The name used in stream headers (`float32`, `double64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ChannelFormat::Float32 => "float32",
            ChannelFormat::Double64 => "double64",
            ChannelFormat::Int8 => "int8",
            ChannelFormat::Int16 => "int16",
            ChannelFormat::Int32 => "int32",
            ChannelFormat::Int64 => "int64",
            ChannelFormat::String => "string",
        }
    }

    /// Parses a header's `channel_format`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Bytes per value on disk (0 for strings, which vary).
    pub fn value_bytes(self) -> usize {
        match self {
            ChannelFormat::Int8 => 1,
            ChannelFormat::Int16 => 2,
            ChannelFormat::Float32 | ChannelFormat::Int32 => 4,
            ChannelFormat::Double64 | ChannelFormat::Int64 => 8,
            ChannelFormat::String => 0,
        }
    }
}

impl std::fmt::Display for ChannelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A stream's metadata, parsed from (and kept alongside) its header XML.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// Stream name (`info/name`).
    pub name: String,
    /// Content type, e.g. `iEEG`, `Markers` (`info/type`).
    pub stream_type: String,
    /// Channels per sample.
    pub channel_count: usize,
    /// Nominal rate in Hz; 0 for irregular streams.
    pub nominal_srate: f64,
    /// Value type of every channel.
    pub channel_format: ChannelFormat,
    /// Unique source identifier, may be empty.
    pub source_id: String,
    /// Host that served the stream, may be empty.
    pub hostname: String,
    /// `desc/channels/channel/label` values, empty when the header has none.
    pub channel_labels: Vec<String>,
    /// The whole header document; the writer stores it verbatim so that a
    /// read-then-write keeps every vendor field.
    pub xml: String,
}

impl StreamInfo {
    /// Metadata for a new stream without channel labels; `xml` is rendered
    /// from the fields.
    pub fn new(
        name: &str,
        stream_type: &str,
        channel_count: usize,
        nominal_srate: f64,
        channel_format: ChannelFormat,
        source_id: &str,
    ) -> Self {
        let mut info = StreamInfo {
            name: name.into(),
            stream_type: stream_type.into(),
            channel_count,
            nominal_srate,
            channel_format,
            source_id: source_id.into(),
            hostname: hostname(),
            channel_labels: Vec::new(),
            xml: String::new(),
        };
        info.xml = info.render_xml();
        info
    }

    /// Metadata for a new stream with one label per channel (written under
    /// `desc/channels/channel/label`).
    pub fn with_labels(
        name: &str,
        stream_type: &str,
        nominal_srate: f64,
        channel_format: ChannelFormat,
        source_id: &str,
        channel_labels: Vec<String>,
    ) -> Self {
        let mut info = Self::new(
            name,
            stream_type,
            channel_labels.len(),
            nominal_srate,
            channel_format,
            source_id,
        );
        info.channel_labels = channel_labels;
        info.xml = info.render_xml();
        info
    }

    /// Replaces the header's `desc` element with `desc` (the element's inner XML, e.g.
    /// `<channels>…</channels><recording>…</recording>`), keeping the other fields.
    pub fn with_desc(mut self, desc: &str) -> Self {
        let rendered = self.render_xml();
        let start = rendered
            .find("\t<desc")
            .expect("render_xml writes a desc element");
        let end = rendered.rfind("</info>").expect("render_xml closes info");
        self.xml = format!(
            "{}\t<desc>\n{desc}\t</desc>\n{}",
            &rendered[..start],
            &rendered[end..]
        );
        self
    }

    /// Renders the header document from the fields (LSL's layout).
    pub fn render_xml(&self) -> String {
        let mut x = String::from("<?xml version=\"1.0\"?>\n<info>\n");
        let mut field = |k: &str, v: &str| x.push_str(&format!("\t<{k}>{}</{k}>\n", escape(v)));
        field("name", &self.name);
        field("type", &self.stream_type);
        field("channel_count", &self.channel_count.to_string());
        field("nominal_srate", &format_rate(self.nominal_srate));
        field("channel_format", self.channel_format.name());
        field("source_id", &self.source_id);
        field("version", "1.1000000000000001");
        field("hostname", &self.hostname);
        if self.channel_labels.is_empty() {
            x.push_str("\t<desc />\n");
        } else {
            x.push_str(&format!("\t<desc>\n{}\t</desc>\n", self.channels_xml()));
        }
        x.push_str("</info>\n");
        x
    }

    /// The `desc` element with the channel labels and one more entry, `<element><key>value
    /// </key>…</element>` (e.g. which model a results stream belongs to), replacing any other
    /// `desc` content.
    pub fn with_desc_entry(self, element: &str, fields: &[(&str, &str)]) -> Self {
        self.with_desc_entries(&[(element, fields)])
    }

    /// [`StreamInfo::with_desc_entry`] with several entries, in order.
    pub fn with_desc_entries(self, entries: &[(&str, &[(&str, &str)])]) -> Self {
        let mut desc = self.channels_xml();
        for (element, fields) in entries {
            desc.push_str(&format!("\t\t<{element}>\n"));
            for (key, value) in *fields {
                desc.push_str(&format!("\t\t\t<{key}>{}</{key}>\n", escape(value)));
            }
            desc.push_str(&format!("\t\t</{element}>\n"));
        }
        self.with_desc(&desc)
    }

    /// `<channels>` with one `<channel><label>` per label; empty without labels.
    fn channels_xml(&self) -> String {
        if self.channel_labels.is_empty() {
            return String::new();
        }
        let mut x = String::from("\t\t<channels>\n");
        for label in &self.channel_labels {
            x.push_str(&format!(
                "\t\t\t<channel>\n\t\t\t\t<label>{}</label>\n\t\t\t</channel>\n",
                escape(label)
            ));
        }
        x.push_str("\t\t</channels>\n");
        x
    }

    /// Parses a StreamHeader document.
    pub fn parse(xml: &str) -> Result<Self, XdfError> {
        let root = Element::parse(xml).map_err(XdfError::BadHeader)?;
        let text = |p: &str| root.text_at(p).unwrap_or("").to_string();
        let channel_count = text("channel_count").parse().map_err(|_| {
            XdfError::BadHeader(format!("channel_count {:?}", text("channel_count")))
        })?;
        let nominal_srate = text("nominal_srate").parse().map_err(|_| {
            XdfError::BadHeader(format!("nominal_srate {:?}", text("nominal_srate")))
        })?;
        let channel_format =
            ChannelFormat::from_name(&text("channel_format")).ok_or_else(|| {
                XdfError::BadHeader(format!("channel_format {:?}", text("channel_format")))
            })?;
        let channel_labels = root
            .child("desc")
            .and_then(|d| d.child("channels"))
            .map(|chs| {
                chs.children
                    .iter()
                    .filter(|c| c.name == "channel")
                    .map(|c| c.text_at("label").unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        Ok(StreamInfo {
            name: text("name"),
            stream_type: text("type"),
            channel_count,
            nominal_srate,
            channel_format,
            source_id: text("source_id"),
            hostname: text("hostname"),
            channel_labels,
            xml: xml.to_string(),
        })
    }

    /// The `desc` element of the header, for copying vendor metadata (e.g.
    /// into an LSL outlet).
    pub fn desc(&self) -> Option<Element> {
        Element::parse(&self.xml).ok()?.child("desc").cloned()
    }
}

/// Rates as LSL writes them: integral rates without a fraction.
fn format_rate(r: f64) -> String {
    if r.fract() == 0.0 && r.abs() < 1e15 {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
