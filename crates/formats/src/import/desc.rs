//! The metadata an imported stream carries in its header's `desc`, in the XDF/LSL channel
//! meta-data convention (<https://github.com/sccn/xdf/wiki/Meta-Data>):
//! `channels/channel/{label,type,unit,location/{X,Y,Z},group,size,status}` and a
//! `recording` element for what concerns the whole file. `fit` reads them back
//! ([`ChannelMeta::from_desc`], [`RecordingMeta::from_desc`]).
use crate::xdf::xml::{escape, Element};

/// One channel's metadata.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct ChannelMeta {
    /// Label, unique in the recording.
    pub label: String,
    /// Channel type: BIDS's (`ECOG`, `SEEG`, `DBS`, `EEG`, `MISC`, `TRIG`...) when known.
    pub kind: String,
    /// Unit of the stored values: `volts`, or the file's unit when it is not a voltage.
    pub unit: String,
    /// Electrode position (`location/X,Y,Z`), in [`RecordingMeta::coordinate_units`].
    pub location: Option<[f64; 3]>,
    /// Electrode group: the shaft, strip or grid.
    pub group: Option<String>,
    /// Electrode size (BIDS `size`, mm²).
    pub size: Option<String>,
    /// Marked bad (BIDS `status`): excluded from fitting, shown as bad.
    pub bad: bool,
    /// Why, when given (BIDS `status_description`).
    pub status_description: Option<String>,
}

/// What concerns the whole recording.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct RecordingMeta {
    /// The file it was imported from.
    pub source_file: String,
    /// Its format (`EDF+C`, `BrainVision 1.0`...).
    pub format: String,
    /// The first sample's wall-clock time as the file states it (ISO 8601, no time zone).
    pub start: Option<String>,
    /// Mains frequency in Hz (BIDS `PowerLineFrequency`): the notch `fit` uses.
    pub power_line_frequency: Option<f64>,
    /// Electrode coordinate system (BIDS `iEEGCoordinateSystem`).
    pub coordinate_system: Option<String>,
    /// Unit of electrode coordinates (BIDS `iEEGCoordinateUnits`).
    pub coordinate_units: Option<String>,
}

impl ChannelMeta {
    /// The channels listed in a stream header's `desc` (empty when there are none).
    pub fn from_desc(desc: &Element) -> Vec<ChannelMeta> {
        let Some(channels) = desc.child("channels") else {
            return Vec::new();
        };
        channels
            .children
            .iter()
            .filter(|c| c.name == "channel")
            .map(|c| {
                let text = |p: &str| c.text_at(p).map(str::to_owned);
                let location = c.child("location").and_then(|l| {
                    let axis = |a: &str| l.text_at(a)?.parse::<f64>().ok();
                    Some([axis("X")?, axis("Y")?, axis("Z")?])
                });
                ChannelMeta {
                    label: text("label").unwrap_or_default(),
                    kind: text("type").unwrap_or_default(),
                    unit: text("unit").unwrap_or_default(),
                    location,
                    group: text("group"),
                    size: text("size"),
                    bad: c.text_at("status") == Some("bad"),
                    status_description: text("status_description"),
                }
            })
            .collect()
    }

    fn render(&self, x: &mut String) {
        x.push_str("\t\t\t<channel>\n");
        let mut field = |k: &str, v: &str| {
            x.push_str(&format!("\t\t\t\t<{k}>{}</{k}>\n", escape(v)));
        };
        field("label", &self.label);
        field("type", &self.kind);
        field("unit", &self.unit);
        if let Some(g) = &self.group {
            field("group", g);
        }
        if let Some(s) = &self.size {
            field("size", s);
        }
        if self.bad {
            field("status", "bad");
        }
        if let Some(d) = &self.status_description {
            field("status_description", d);
        }
        if let Some([px, py, pz]) = self.location {
            x.push_str(&format!(
                "\t\t\t\t<location>\n\t\t\t\t\t<X>{px}</X>\n\t\t\t\t\t<Y>{py}</Y>\n\t\t\t\t\t<Z>{pz}</Z>\n\t\t\t\t</location>\n"
            ));
        }
        x.push_str("\t\t\t</channel>\n");
    }
}

impl RecordingMeta {
    /// The `recording` element of a stream header's `desc`, if any.
    pub fn from_desc(desc: &Element) -> Option<RecordingMeta> {
        let r = desc.child("recording")?;
        let text = |p: &str| r.text_at(p).map(str::to_owned);
        Some(RecordingMeta {
            source_file: text("source_file").unwrap_or_default(),
            format: text("format").unwrap_or_default(),
            start: text("start"),
            power_line_frequency: text("power_line_frequency").and_then(|f| f.parse().ok()),
            coordinate_system: text("coordinate_system"),
            coordinate_units: text("coordinate_units"),
        })
    }

    fn render(&self, x: &mut String) {
        x.push_str("\t\t<recording>\n");
        let mut field = |k: &str, v: &str| {
            x.push_str(&format!("\t\t\t<{k}>{}</{k}>\n", escape(v)));
        };
        field("source_file", &self.source_file);
        field("format", &self.format);
        if let Some(s) = &self.start {
            field("start", s);
        }
        if let Some(f) = self.power_line_frequency {
            field("power_line_frequency", &f.to_string());
        }
        if let Some(c) = &self.coordinate_system {
            field("coordinate_system", c);
        }
        if let Some(u) = &self.coordinate_units {
            field("coordinate_units", u);
        }
        x.push_str("\t\t</recording>\n");
    }
}

/// The inner XML of a `desc` element with these channels and this recording.
pub fn render_desc(channels: &[ChannelMeta], recording: &RecordingMeta) -> String {
    let mut x = String::from("\t\t<channels>\n");
    for c in channels {
        c.render(&mut x);
    }
    x.push_str("\t\t</channels>\n");
    recording.render(&mut x);
    x
}
