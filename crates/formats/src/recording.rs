//! The shape every clinical recording reader (`edf`, `brainvision`) returns: channels with
//! their own rates and samples in volts, annotations, the start time and the warnings met.

/// A whole recording read into memory.
///
/// Samples are `f64`: BDF's 24-bit values sit on DC offsets of hundreds of millivolts
/// (`test_edf_stim_channel.edf` spans 175921..175946 µV), which needs more than `f32`'s
/// 24-bit mantissa to keep every digital step; readers that must save memory stream records
/// instead ([`crate::edf::EdfReader`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Ordinary signals in file order (annotation signals are not channels).
    pub channels: Vec<Channel>,
    /// Annotations or markers, onsets relative to the first sample.
    pub annotations: Vec<Annotation>,
    /// When the first sample was taken, as written in the file (no time zone).
    pub start: Option<StartTime>,
    /// Contiguous stretches of data. Each channel's samples are the segments' samples
    /// concatenated: segment `k` holds `duration_s * rate_hz` samples of a channel. One
    /// segment for continuous files; EDF+D has one per data record.
    pub segments: Vec<Segment>,
    /// Problems that did not stop the reading (renamed labels, unknown units, a partial
    /// last record...), each naming the file and field; each also went to the log.
    pub warnings: Vec<String>,
}

/// One channel (signal) of a [`Recording`].
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// Label, decoded as UTF-8 or else latin-1, trimmed and made unique (see
    /// [`unique_labels`]).
    pub label: String,
    /// The unit as written in the file (`uV`, `µV`, `V`, `BS`...), trimmed.
    pub unit: String,
    /// What [`Channel::samples`] hold.
    pub values: Values,
    /// Sampling rate in Hz: this signal's own, never resampled.
    pub rate_hz: f64,
    /// The samples, in the unit [`Channel::values`] names.
    pub samples: Vec<f64>,
}

/// The unit of a channel's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Volts: the file's unit was a voltage and was converted.
    Volts,
    /// The file's physical unit ([`Channel::unit`]), not a voltage, so left unscaled.
    Physical,
    /// Raw digital values: the file gave no usable scaling (digital min == max).
    Digital,
}

/// An annotation (EDF+ TAL) or marker (BrainVision).
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Seconds from the first sample.
    pub onset_s: f64,
    /// Seconds; 0 when the file gives none.
    pub duration_s: f64,
    /// The text. BrainVision markers read `type/description`, as MNE writes them.
    pub text: String,
}

/// A contiguous stretch of data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Seconds from the first sample.
    pub onset_s: f64,
    /// Length in seconds.
    pub duration_s: f64,
}

/// A wall-clock date and time as the file states it (time zone unknown).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartTime {
    /// Four-digit year.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// Seconds with the fraction (EDF+ sub-second start, BrainVision microseconds).
    pub second: f64,
}

/// Volts per unit for a voltage unit (`V`, `mV`, `uV`/`µV`/`μV`, `nV`), `None` otherwise.
pub fn volts_per_unit(unit: &str) -> Option<f64> {
    match unit {
        "V" => Some(1.0),
        "mV" => Some(1e-3),
        "uV" | "µV" | "μV" => Some(1e-6),
        "nV" => Some(1e-9),
        _ => None,
    }
}

/// Decodes a text field: UTF-8 when it is valid UTF-8, latin-1 otherwise (EDF and old
/// BrainVision files are written in the recording PC's codepage, mostly latin-1).
pub fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Makes labels unique: the first `X` keeps its name, later ones become `X-1`, `X-2`...
/// (skipping names already taken). Unlike MNE, which renames every copy (`X-0`, `X-1`), the
/// first keeps its label so that adding a duplicate never renames an existing channel.
/// Returns one warning per renamed label.
pub fn unique_labels(labels: &mut [String]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for i in 0..labels.len() {
        if taken.insert(labels[i].clone()) {
            continue;
        }
        let base = labels[i].clone();
        let mut n = 1;
        while taken.contains(&format!("{base}-{n}"))
            || labels[i + 1..].contains(&format!("{base}-{n}"))
        {
            n += 1;
        }
        labels[i] = format!("{base}-{n}");
        taken.insert(labels[i].clone());
        warnings.push(format!("duplicate label {base:?} renamed {:?}", labels[i]));
    }
    warnings
}
