//! BrainVision recordings: a `.vhdr` text header (versions 1.0 and 2.0), a binary `.eeg`
//! data file and a `.vmrk` marker file, read into a [`Recording`].
//!
//! Read: `DataFormat=BINARY`, `MULTIPLEXED` or `VECTORIZED`, `INT_16` / `INT_32` /
//! `IEEE_FLOAT_32`, per-channel resolution and unit (`Ch1=label,reference,resolution,unit`,
//! µV when the unit is blank or absent, `\1` for a comma), latin-1 or UTF-8 text (`Codepage=`,
//! byte-order mark), markers with the `New Segment` date as the start time.
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::recording::{
    unique_labels, volts_per_unit, Annotation, Channel, Recording, Segment, StartTime, Values,
};

/// Errors that stop a BrainVision read. Each names the file, and the field where one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum BrainVisionError {
    /// A file could not be opened or read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The first line is not a BrainVision header line.
    #[error("{file}: not a BrainVision header (first line {first_line:?})")]
    NotBrainVision {
        /// The file.
        file: String,
        /// The first line as read.
        first_line: String,
    },
    /// A header field that is missing or cannot be used.
    #[error("{file}: field {field}: {problem} (read {value:?})")]
    Field {
        /// The file.
        file: String,
        /// The field, e.g. `[Binary Infos] BinaryFormat`.
        field: String,
        /// The field's text (empty when missing).
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The data file does not hold a whole number of samples per channel.
    #[error("{file}: {bytes} bytes do not divide into VECTORIZED samples of {frame} bytes (all channels)")]
    DataSize {
        /// The data file.
        file: String,
        /// Its size.
        bytes: u64,
        /// Bytes per sample across all channels.
        frame: u64,
    },
}

/// How samples are stored in the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryFormat {
    /// Little-endian signed 16-bit.
    Int16,
    /// Little-endian signed 32-bit.
    Int32,
    /// Little-endian IEEE 754 single precision.
    Float32,
}

impl BinaryFormat {
    fn bytes(self) -> usize {
        match self {
            BinaryFormat::Int16 => 2,
            BinaryFormat::Int32 | BinaryFormat::Float32 => 4,
        }
    }

    fn decode(self, b: &[u8]) -> f64 {
        match self {
            BinaryFormat::Int16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
            BinaryFormat::Int32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            BinaryFormat::Float32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        }
    }
}

/// A parsed `.vhdr`.
#[derive(Debug, Clone, PartialEq)]
pub struct VhdrHeader {
    /// `1.0` or `2.0`, from the first line.
    pub version: String,
    /// The data file, resolved relative to the header.
    pub data_file: PathBuf,
    /// The marker file, resolved relative to the header, if named.
    pub marker_file: Option<PathBuf>,
    /// `true` for `VECTORIZED` (channel after channel), `false` for `MULTIPLEXED`.
    pub vectorized: bool,
    /// Sample encoding.
    pub binary_format: BinaryFormat,
    /// Samples per second (10⁶ / `SamplingInterval`).
    pub rate_hz: f64,
    /// `DataPoints`, when given (version 2 headers).
    pub data_points: Option<u64>,
    /// One per channel: label, reference, resolution (units per digital step), unit.
    pub channels: Vec<ChannelInfo>,
}

/// One `[Channel Infos]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelInfo {
    /// Label (`\1` decoded to a comma), trimmed.
    pub label: String,
    /// Reference channel name, possibly empty.
    pub reference: String,
    /// Physical units per stored value.
    pub resolution: f64,
    /// Unit; `µV` when blank or absent.
    pub unit: String,
}

/// An INI-like text: `[Section]` → key → value, comments dropped, keys in file order.
type Sections = HashMap<String, Vec<(String, String)>>;

/// Reads a `.vhdr` and its data and marker files.
pub fn read(vhdr: impl AsRef<Path>) -> Result<Recording, BrainVisionError> {
    let mut reader = BrainVisionReader::open(vhdr)?;
    let mut channels = reader.channels().to_vec();
    while let Some(block) = reader.next_block(BLOCK_SAMPLES)? {
        for (channel, samples) in channels.iter_mut().zip(block) {
            channel.samples.extend(samples);
        }
    }
    let segments = vec![Segment {
        onset_s: 0.0,
        duration_s: reader.samples() as f64 / reader.header.rate_hz,
    }];
    for w in &reader.warnings {
        tracing::warn!("{w}");
    }
    Ok(Recording {
        channels,
        annotations: reader.annotations,
        start: reader.start,
        segments,
        warnings: reader.warnings,
    })
}

/// Samples per channel in one block: one frame (multiplexed) or run (vectorized) per read
/// would be slow, the whole file at once would hold the recording in memory.
pub const BLOCK_SAMPLES: usize = 4096;

/// Streams a BrainVision recording block by block. The header and the markers are read when
/// it is opened; the samples, scaled to [`Channel::values`]' unit, as they are asked for.
pub struct BrainVisionReader {
    header: VhdrHeader,
    data: BufReader<File>,
    data_name: String,
    /// Sample count per channel that is read (the file's, capped by `DataPoints`).
    n: u64,
    done: u64,
    /// Multiplier per channel from stored value to the unit of its [`Values`].
    scales: Vec<f64>,
    /// Channel descriptions, samples empty.
    channels: Vec<Channel>,
    annotations: Vec<Annotation>,
    start: Option<StartTime>,
    warnings: Vec<String>,
    disagreements: Vec<String>,
    buffer: Vec<u8>,
}

impl BrainVisionReader {
    /// Parses the header and markers, checks the data file's size.
    pub fn open(vhdr: impl AsRef<Path>) -> Result<Self, BrainVisionError> {
        let vhdr = vhdr.as_ref();
        let mut warnings = Vec::new();
        let mut disagreements = Vec::new();
        let header = read_header(vhdr, &mut warnings)?;
        let data_name = header.data_file.display().to_string();
        let io = |source| BrainVisionError::Io {
            file: data_name.clone(),
            source,
        };
        let data = File::open(&header.data_file).map_err(io)?;
        let bytes = data.metadata().map_err(io)?.len();
        let n_ch = header.channels.len();
        let frame = (header.binary_format.bytes() * n_ch) as u64;
        if bytes % frame != 0 {
            if header.vectorized {
                return Err(BrainVisionError::DataSize {
                    file: data_name,
                    bytes,
                    frame,
                });
            }
            let problem = format!(
                "{data_name}: {bytes} bytes end {} bytes into a sample of {frame}; the partial sample is dropped",
                bytes % frame
            );
            warnings.push(problem.clone());
            disagreements.push(problem);
        }
        let mut n = bytes / frame;
        if let Some(points) = header.data_points.filter(|&p| p != n) {
            let problem = format!(
                "{}: DataPoints says {points} but {data_name} holds {n} samples; reading {}",
                vhdr.display(),
                points.min(n)
            );
            warnings.push(problem.clone());
            disagreements.push(problem);
            n = points.min(n);
        }

        let mut labels: Vec<String> = header.channels.iter().map(|c| c.label.clone()).collect();
        let renamed = unique_labels(&mut labels);
        warnings.extend(
            renamed
                .into_iter()
                .map(|w| format!("{}: {w}", vhdr.display())),
        );
        let mut channels = Vec::with_capacity(n_ch);
        let mut scales = Vec::with_capacity(n_ch);
        for (info, label) in header.channels.iter().zip(labels) {
            let (scale, values) = match volts_per_unit(&info.unit) {
                Some(v) => (info.resolution * v, Values::Volts),
                None => {
                    warnings.push(format!(
                        "{}: channel {label}: unit {:?} is not a voltage, samples left in it",
                        vhdr.display(),
                        info.unit
                    ));
                    (info.resolution, Values::Physical)
                }
            };
            scales.push(scale);
            channels.push(Channel {
                label,
                unit: info.unit.clone(),
                values,
                rate_hz: header.rate_hz,
                samples: Vec::new(),
            });
        }

        let (annotations, start) = match &header.marker_file {
            Some(vmrk) if vmrk.is_file() => parse_markers(
                &read_bytes(vmrk)?,
                vmrk,
                &header,
                &mut warnings,
                &mut disagreements,
            ),
            Some(vmrk) => {
                warnings.push(format!(
                    "{}: MarkerFile {} does not exist; no markers",
                    vhdr.display(),
                    vmrk.display()
                ));
                (Vec::new(), None)
            }
            None => (Vec::new(), None),
        };
        Ok(BrainVisionReader {
            header,
            data: BufReader::new(data),
            data_name,
            n,
            done: 0,
            scales,
            channels,
            annotations,
            start,
            warnings,
            disagreements,
            buffer: Vec::new(),
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &VhdrHeader {
        &self.header
    }

    /// The channels (labels made unique, unit, values, rate), samples empty.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// The markers as annotations (`type/description`), onsets from the first sample.
    pub fn annotations(&self) -> &[Annotation] {
        &self.annotations
    }

    /// The first `New Segment` date.
    pub fn start(&self) -> Option<StartTime> {
        self.start
    }

    /// Warnings of the header, markers and data size.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The warnings that say the files disagree with each other (a data file ending
    /// mid-sample, `DataPoints` against the file size, a `.vmrk` naming another data file):
    /// what was read may not be the recording the header describes.
    pub fn disagreements(&self) -> &[String] {
        &self.disagreements
    }

    /// Samples per channel that are read.
    pub fn samples(&self) -> u64 {
        self.n
    }

    /// The next block of at most `max` samples of every channel, scaled; `None` at the end.
    pub fn next_block(&mut self, max: usize) -> Result<Option<Vec<Vec<f64>>>, BrainVisionError> {
        let take = (self.n - self.done).min(max.max(1) as u64) as usize;
        if take == 0 {
            return Ok(None);
        }
        let format = self.header.binary_format;
        let width = format.bytes();
        let n_ch = self.channels.len();
        let mut block = vec![Vec::with_capacity(take); n_ch];
        let io = |source| BrainVisionError::Io {
            file: self.data_name.clone(),
            source,
        };
        if self.header.vectorized {
            // channel c's samples start at c·n: one seek and read per channel and block
            self.buffer.resize(take * width, 0);
            for (c, channel) in block.iter_mut().enumerate() {
                let at = (c as u64 * self.n + self.done) * width as u64;
                self.data.seek(SeekFrom::Start(at)).map_err(io)?;
                self.data.read_exact(&mut self.buffer).map_err(io)?;
                let scale = self.scales[c];
                channel.extend(
                    self.buffer
                        .chunks_exact(width)
                        .map(|b| format.decode(b) * scale),
                );
            }
        } else {
            let frame = width * n_ch;
            self.buffer.resize(take * frame, 0);
            self.data.read_exact(&mut self.buffer).map_err(io)?;
            for sample in self.buffer.chunks_exact(frame) {
                for ((channel, b), scale) in block
                    .iter_mut()
                    .zip(sample.chunks_exact(width))
                    .zip(&self.scales)
                {
                    channel.push(format.decode(b) * scale);
                }
            }
        }
        self.done += take as u64;
        Ok(Some(block))
    }
}

/// Reads and parses a `.vhdr`; header warnings are appended to `warnings`.
pub fn read_header(
    vhdr: &Path,
    warnings: &mut Vec<String>,
) -> Result<VhdrHeader, BrainVisionError> {
    parse_header(&read_bytes(vhdr)?, vhdr, warnings)
}

/// Parses the bytes of the `.vhdr` at `vhdr` (the path names it in messages and resolves
/// the data and marker files); header warnings are appended to `warnings`.
pub fn parse_header(
    bytes: &[u8],
    vhdr: &Path,
    warnings: &mut Vec<String>,
) -> Result<VhdrHeader, BrainVisionError> {
    let file = vhdr.display().to_string();
    let (first_line, sections) = parse_ini(bytes, &file, warnings);
    let version = [
        "Brain Vision Data Exchange Header File Version ",
        "BrainVision Data Exchange Header File Version ",
    ]
    .iter()
    .find_map(|p| first_line.strip_prefix(p))
    .map(str::to_owned)
    .ok_or_else(|| BrainVisionError::NotBrainVision {
        file: file.clone(),
        first_line: first_line.clone(),
    })?;
    let get = |section: &str, key: &str| {
        sections
            .get(section)
            .and_then(|kv| kv.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.as_str())
    };
    let field = |section: &str, key: &str, value: &str, problem| BrainVisionError::Field {
        file: file.clone(),
        field: format!("[{section}] {key}"),
        value: value.to_owned(),
        problem,
    };
    let required = |section: &str, key: &str| {
        get(section, key).ok_or_else(|| field(section, key, "", "missing"))
    };
    let dir = vhdr.parent().unwrap_or(Path::new(""));
    let data_file = dir.join(base_name(required("Common Infos", "DataFile")?, vhdr));
    let marker_file = get("Common Infos", "MarkerFile").map(|m| dir.join(base_name(m, vhdr)));
    // the one value of each that is read; an absent key means that value
    for (key, only, problem) in [
        ("DataType", "TIMEDOMAIN", "only TIMEDOMAIN is read"),
        ("DataFormat", "BINARY", "only BINARY is read"),
    ] {
        match get("Common Infos", key) {
            Some(value) if value != only => return Err(field("Common Infos", key, value, problem)),
            _ => {}
        }
    }
    let vectorized = match get("Common Infos", "DataOrientation") {
        Some("MULTIPLEXED") | None => false,
        Some("VECTORIZED") => true,
        Some(other) => {
            return Err(field(
                "Common Infos",
                "DataOrientation",
                other,
                "not MULTIPLEXED or VECTORIZED",
            ))
        }
    };
    let n_raw = required("Common Infos", "NumberOfChannels")?;
    let n_ch: usize = n_raw.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
        field(
            "Common Infos",
            "NumberOfChannels",
            n_raw,
            "not a positive integer",
        )
    })?;
    let interval_raw = required("Common Infos", "SamplingInterval")?;
    let interval: f64 = interval_raw
        .parse()
        .ok()
        .filter(|&i: &f64| i.is_finite() && i > 0.0)
        .ok_or_else(|| {
            field(
                "Common Infos",
                "SamplingInterval",
                interval_raw,
                "not a positive number of µs",
            )
        })?;
    let data_points = match get("Common Infos", "DataPoints") {
        None => None,
        Some(raw) => Some(
            raw.parse()
                .map_err(|_| field("Common Infos", "DataPoints", raw, "not an integer"))?,
        ),
    };
    let binary_format = match required("Binary Infos", "BinaryFormat")? {
        "INT_16" => BinaryFormat::Int16,
        "INT_32" => BinaryFormat::Int32,
        "IEEE_FLOAT_32" => BinaryFormat::Float32,
        other => {
            return Err(field(
                "Binary Infos",
                "BinaryFormat",
                other,
                "not INT_16, INT_32 or IEEE_FLOAT_32",
            ))
        }
    };
    // No preallocation: NumberOfChannels is untrusted until every ChN entry is found.
    let mut channels = Vec::new();
    for i in 1..=n_ch {
        let key = format!("Ch{i}");
        let raw = required("Channel Infos", &key)?;
        let parts: Vec<String> = raw.split(',').map(|p| p.replace("\\1", ",")).collect();
        let part = |k: usize| parts.get(k).map(|p| p.trim()).unwrap_or("");
        let resolution = match part(2) {
            "" => 1.0,
            r => r
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite())
                .ok_or_else(|| field("Channel Infos", &key, raw, "resolution is not a number"))?,
        };
        let unit = match part(3) {
            "" => "µV".to_owned(),
            u => u.to_owned(),
        };
        channels.push(ChannelInfo {
            label: part(0).to_owned(),
            reference: part(1).to_owned(),
            resolution,
            unit,
        });
    }
    Ok(VhdrHeader {
        version,
        data_file,
        marker_file,
        vectorized,
        binary_format,
        rate_hz: 1e6 / interval,
        data_points,
        channels,
    })
}

/// Markers as annotations (`type/description`) and the first `New Segment` date as the
/// start time, from the bytes of the `.vmrk` at `vmrk` (which names it in messages). A
/// `DataFile` other than the header's is a warning that is also appended to
/// `disagreements`.
pub fn parse_markers(
    bytes: &[u8],
    vmrk: &Path,
    header: &VhdrHeader,
    warnings: &mut Vec<String>,
    disagreements: &mut Vec<String>,
) -> (Vec<Annotation>, Option<StartTime>) {
    let file = vmrk.display().to_string();
    let (first_line, sections) = parse_ini(bytes, &file, warnings);
    if !first_line.contains("Data Exchange Marker File") {
        warnings.push(format!(
            "{file}: first line {first_line:?} is not a BrainVision marker header"
        ));
    }
    let common = sections.get("Common Infos");
    let named = common
        .and_then(|kv| kv.iter().find(|(k, _)| k == "DataFile"))
        .map(|(_, v)| base_name(v, vmrk));
    let ours = header
        .data_file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());
    if let (Some(named), Some(ours)) = (named, ours) {
        if named != ours {
            let problem = format!(
                "{file}: DataFile names {named:?} but the header's data file is {ours:?}; markers may belong to another recording"
            );
            warnings.push(problem.clone());
            disagreements.push(problem);
        }
    }
    let mut annotations = Vec::new();
    let mut start = None;
    for (key, value) in sections.get("Marker Infos").into_iter().flatten() {
        if !key.starts_with("Mk") {
            continue;
        }
        let parts: Vec<String> = value.split(',').map(|p| p.replace("\\1", ",")).collect();
        let part = |k: usize| parts.get(k).map(|p| p.trim()).unwrap_or("");
        let Some(position) = part(2).parse::<u64>().ok().filter(|&p| p >= 1) else {
            warnings.push(format!(
                "{file}: marker {key}: position {:?} is not a 1-based sample; skipped",
                part(2)
            ));
            continue;
        };
        let size: u64 = part(3).parse().unwrap_or(0);
        if part(0) == "New Segment" && start.is_none() {
            start = segment_date(part(5));
        }
        annotations.push(Annotation {
            onset_s: (position - 1) as f64 / header.rate_hz,
            duration_s: size as f64 / header.rate_hz,
            text: format!("{}/{}", part(0), part(1)),
        });
    }
    (annotations, start)
}

/// A file name from a header, with `$b` (the spec's placeholder for the naming file's own
/// base name) replaced.
fn base_name(name: &str, naming: &Path) -> String {
    let stem = naming
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    name.replace("$b", &stem)
}

/// `YYYYMMDDhhmmssuuuuuu`; `None` for an absent or all-zero date.
fn segment_date(raw: &str) -> Option<StartTime> {
    if raw.len() != 20 || !raw.bytes().all(|b| b.is_ascii_digit()) || raw.bytes().all(|b| b == b'0')
    {
        return None;
    }
    let n = |a: usize, b: usize| raw[a..b].parse::<u32>().ok();
    let time = StartTime {
        year: n(0, 4)? as u16,
        month: n(4, 6)? as u8,
        day: n(6, 8)? as u8,
        hour: n(8, 10)? as u8,
        minute: n(10, 12)? as u8,
        second: f64::from(n(12, 14)?) + f64::from(n(14, 20)?) * 1e-6,
    };
    let valid = (1..=12).contains(&time.month) && (1..=31).contains(&time.day);
    (valid && time.hour < 24 && time.minute < 60 && time.second < 61.0).then_some(time)
}

/// A whole header or marker file.
fn read_bytes(path: &Path) -> Result<Vec<u8>, BrainVisionError> {
    std::fs::read(path).map_err(|source| BrainVisionError::Io {
        file: path.display().to_string(),
        source,
    })
}

/// Parses an INI-like BrainVision text: the first line, and the sections' `key=value` lines.
/// UTF-8 when it starts with a byte-order mark or says `Codepage=UTF-8`, latin-1 otherwise.
fn parse_ini(bytes: &[u8], file: &str, warnings: &mut Vec<String>) -> (String, Sections) {
    let (bom, body) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (true, rest),
        None => (false, bytes),
    };
    let latin1: String = body.iter().map(|&b| char::from(b)).collect();
    let utf8 = bom
        || latin1
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("Codepage=UTF-8"));
    let text = if utf8 {
        match std::str::from_utf8(body) {
            Ok(s) => s.to_owned(),
            Err(e) => {
                warnings.push(format!(
                    "{file}: declared UTF-8 but byte {} is not; read as latin-1",
                    e.valid_up_to()
                ));
                latin1
            }
        }
    } else {
        latin1
    };
    let mut lines = text.lines();
    let first_line = lines.next().unwrap_or("").trim().to_owned();
    let mut sections = Sections::new();
    let mut current = String::new();
    for line in lines {
        let line = line.trim_end_matches('\r');
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|l| l.trim_end().strip_suffix(']'))
        {
            current = name.to_owned();
        } else if line.starts_with(';') || current == "Comment" {
            // Comments, and the free-text amplifier report, carry no fields.
        } else if let Some((key, value)) = line.split_once('=') {
            sections
                .entry(current.clone())
                .or_default()
                .push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (first_line, sections)
}
