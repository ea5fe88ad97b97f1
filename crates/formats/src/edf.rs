//! EDF, EDF+ (continuous and discontinuous), BDF and BDF+ recordings
//! (<https://www.edfplus.info/specs/>): header parsing apart from data, a streaming record
//! reader, and [`read`] for a whole file as a [`Recording`].
//!
//! Every signal keeps its own rate (samples per record / record duration). Digital values
//! are scaled to physical ones, then to volts when the physical dimension is a voltage.
//! `EDF Annotations` / `BDF Annotations` signals are parsed as TALs: the first TAL of each
//! record keeps time (record onsets, the EDF+ sub-second start), the others are annotations.
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::recording::{
    decode_text, unique_labels, volts_per_unit, Annotation, Channel, Recording, Segment, StartTime,
    Values,
};

/// Errors that stop an EDF/BDF read. Each names the file, and the field where one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum EdfError {
    /// The file could not be opened or read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The version field is neither EDF's `0` nor BDF's `\xFFBIOSEMI`.
    #[error("{file}: not an EDF or BDF file (version field {found:?})")]
    NotEdf {
        /// The file.
        file: String,
        /// The version field as read.
        found: String,
    },
    /// The file ends inside the header.
    #[error("{file}: header cut short: {needed} bytes needed, the file ends before")]
    ShortHeader {
        /// The file.
        file: String,
        /// Header bytes the signal count calls for.
        needed: usize,
    },
    /// A header field that cannot be used.
    #[error("{file}: header field {field}: {problem} (read {value:?})")]
    Field {
        /// The file.
        file: String,
        /// The field, e.g. `signal 3 samples_per_record`.
        field: String,
        /// The field's text.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// EDF (16-bit samples) or BDF (24-bit samples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// European Data Format: little-endian 16-bit samples.
    Edf,
    /// BioSemi Data Format: little-endian 24-bit samples.
    Bdf,
}

impl Kind {
    fn bytes_per_sample(self) -> usize {
        match self {
            Kind::Edf => 2,
            Kind::Bdf => 3,
        }
    }
}

/// The fixed and per-signal header.
#[derive(Debug, Clone, PartialEq)]
pub struct EdfHeader {
    /// EDF or BDF.
    pub kind: Kind,
    /// The reserved field: `EDF+C`, `EDF+D`, `BDF+C`, `BDF+D`, or anything (plain EDF/BDF).
    pub reserved: String,
    /// Local patient identification.
    pub patient: String,
    /// Local recording identification.
    pub recording: String,
    /// Start date and time from the header (whole seconds); `None` when unreadable.
    pub start: Option<StartTime>,
    /// Bytes before the first data record: `256 * (signals + 1)`.
    pub header_bytes: usize,
    /// Data records the header announces; `None` for `-1` (unknown, still recording).
    pub n_records: Option<u64>,
    /// Seconds per data record.
    pub record_duration_s: f64,
    /// Every signal, annotation signals included, in file order.
    pub signals: Vec<SignalHeader>,
    /// Header problems that did not stop the reading.
    pub warnings: Vec<String>,
}

/// One signal's header.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalHeader {
    /// Label, decoded and trimmed (not yet made unique).
    pub label: String,
    /// Transducer type.
    pub transducer: String,
    /// Physical dimension, decoded and trimmed.
    pub unit: String,
    /// Physical value of `digital_min`.
    pub physical_min: f64,
    /// Physical value of `digital_max`.
    pub physical_max: f64,
    /// Lowest digital value.
    pub digital_min: f64,
    /// Highest digital value.
    pub digital_max: f64,
    /// Prefiltering text.
    pub prefiltering: String,
    /// Samples of this signal in each data record.
    pub samples_per_record: usize,
}

impl SignalHeader {
    /// Whether this is an EDF+/BDF+ annotation signal.
    pub fn is_annotations(&self) -> bool {
        self.label == "EDF Annotations" || self.label == "BDF Annotations"
    }

    /// Multiplier and offset taking a digital value to the unit the returned [`Values`] names.
    fn scaling(&self) -> (f64, f64, Values) {
        if self.digital_max == self.digital_min {
            return (1.0, 0.0, Values::Digital);
        }
        let gain = (self.physical_max - self.physical_min) / (self.digital_max - self.digital_min);
        let offset = self.physical_min - gain * self.digital_min;
        match volts_per_unit(&self.unit) {
            Some(v) => (gain * v, offset * v, Values::Volts),
            None => (gain, offset, Values::Physical),
        }
    }
}

impl EdfHeader {
    /// Parses the header from the start of `reader`; `file` names it in errors.
    pub fn parse(reader: &mut impl Read, file: &str) -> Result<EdfHeader, EdfError> {
        let io = |source| EdfError::Io {
            file: file.to_owned(),
            source,
        };
        let mut fixed = [0u8; 256];
        read_full(reader, &mut fixed)
            .map_err(io)?
            .then_some(())
            .ok_or(EdfError::ShortHeader {
                file: file.to_owned(),
                needed: 256,
            })?;
        // Writers pad the `0` with blanks or NULs.
        let kind = if field_text(&fixed[..8]) == "0" {
            Kind::Edf
        } else if fixed[0] == 0xFF && &fixed[1..8] == b"BIOSEMI" {
            Kind::Bdf
        } else {
            return Err(EdfError::NotEdf {
                file: file.to_owned(),
                found: decode_text(&fixed[..8]),
            });
        };
        let text = |a: usize, n: usize| field_text(&fixed[a..a + n]);
        let field = |name: &str, value: String, problem| EdfError::Field {
            file: file.to_owned(),
            field: name.to_owned(),
            value,
            problem,
        };
        let mut warnings = Vec::new();
        let ns: usize = number(&fixed[252..256])
            .filter(|&n: &i64| n > 0)
            .ok_or_else(|| field("number_of_signals", text(252, 4), "not a positive integer"))?
            as usize;
        let header_bytes = 256 * (ns + 1);
        let stated: Option<i64> = number(&fixed[184..192]);
        if stated != Some(header_bytes as i64) {
            warnings.push(format!(
                "{file}: header field header_bytes reads {:?}, not 256*(signals+1) = {header_bytes}; using {header_bytes}",
                text(184, 8)
            ));
        }
        let n_records = match number::<i64>(&fixed[236..244]) {
            Some(-1) => None,
            Some(n) if n >= 0 => Some(n as u64),
            _ => {
                return Err(field(
                    "number_of_records",
                    text(236, 8),
                    "not an integer >= -1",
                ))
            }
        };
        let record_duration_s: f64 = number(&fixed[244..252])
            .filter(|d: &f64| d.is_finite() && *d >= 0.0)
            .ok_or_else(|| field("record_duration", text(244, 8), "not a number >= 0"))?;

        let mut rest = vec![0u8; header_bytes - 256];
        if !read_full(reader, &mut rest).map_err(io)? {
            return Err(EdfError::ShortHeader {
                file: file.to_owned(),
                needed: header_bytes,
            });
        }
        // Signal fields are stored column by column: all labels, then all transducers...
        let mut offset = 0;
        let mut column = |width: usize| {
            let col: Vec<&[u8]> = rest[offset..offset + width * ns].chunks(width).collect();
            offset += width * ns;
            col
        };
        let (labels, transducers, units) = (column(16), column(80), column(8));
        let (pmins, pmaxs, dmins, dmaxs) = (column(8), column(8), column(8), column(8));
        let (prefilters, sprs) = (column(80), column(8));
        let mut signals = Vec::with_capacity(ns);
        for i in 0..ns {
            let num = |name: &str, raw: &[u8]| {
                number::<f64>(raw).filter(|v| v.is_finite()).ok_or_else(|| {
                    field(
                        &format!("signal {} {name}", i + 1),
                        decode_text(raw),
                        "not a number",
                    )
                })
            };
            let spr = number::<i64>(sprs[i]).filter(|&n| n >= 0).ok_or_else(|| {
                field(
                    &format!("signal {} samples_per_record", i + 1),
                    decode_text(sprs[i]),
                    "not an integer >= 0",
                )
            })?;
            let signal = SignalHeader {
                label: field_text(labels[i]),
                transducer: field_text(transducers[i]),
                unit: field_text(units[i]),
                physical_min: num("physical_min", pmins[i])?,
                physical_max: num("physical_max", pmaxs[i])?,
                digital_min: num("digital_min", dmins[i])?,
                digital_max: num("digital_max", dmaxs[i])?,
                prefiltering: field_text(prefilters[i]),
                samples_per_record: spr as usize,
            };
            if !signal.is_annotations() {
                if signal.digital_min == signal.digital_max {
                    warnings.push(format!(
                        "{file}: signal {} ({}): digital_min == digital_max, samples left as digital values",
                        i + 1, signal.label
                    ));
                } else if volts_per_unit(&signal.unit).is_none() {
                    warnings.push(format!(
                        "{file}: signal {} ({}): physical_dimension {:?} is not a voltage, samples left in it",
                        i + 1, signal.label, signal.unit
                    ));
                }
            }
            signals.push(signal);
        }
        let has_samples = signals
            .iter()
            .any(|s| !s.is_annotations() && s.samples_per_record > 0);
        if has_samples && record_duration_s <= 0.0 {
            return Err(field(
                "record_duration",
                text(244, 8),
                "zero for a file with signal samples",
            ));
        }
        let start = start_time(&fixed[168..176], &fixed[176..184], &text(88, 80));
        if start.is_none() {
            warnings.push(format!(
                "{file}: header fields startdate/starttime {:?} {:?} are not dd.mm.yy hh.mm.ss; no start time",
                text(168, 8),
                text(176, 8)
            ));
        }
        Ok(EdfHeader {
            kind,
            reserved: text(192, 44),
            patient: text(8, 80),
            recording: text(88, 80),
            start,
            header_bytes,
            n_records,
            record_duration_s,
            signals,
            warnings,
        })
    }

    /// Whether the reserved field marks EDF+D/BDF+D (records need not be contiguous).
    pub fn is_discontinuous(&self) -> bool {
        self.reserved.starts_with("EDF+D") || self.reserved.starts_with("BDF+D")
    }

    /// Bytes in one data record.
    pub fn record_bytes(&self) -> usize {
        let samples: usize = self.signals.iter().map(|s| s.samples_per_record).sum();
        samples * self.kind.bytes_per_sample()
    }

    /// A signal's own sampling rate in Hz.
    pub fn rate_hz(&self, signal: usize) -> f64 {
        match self.signals[signal].samples_per_record {
            // Annotation-only files may have a zero record duration.
            0 => 0.0,
            spr => spr as f64 / self.record_duration_s,
        }
    }

    /// The ordinary signals as channels (labels made unique, unit, values, own rate), samples
    /// empty, and one warning per renamed label.
    pub fn channels(&self) -> (Vec<Channel>, Vec<String>) {
        let mut labels: Vec<String> = self.ordinary().map(|(_, s)| s.label.clone()).collect();
        let renamed = unique_labels(&mut labels);
        let channels = self
            .ordinary()
            .zip(labels)
            .map(|((i, s), label)| Channel {
                label,
                unit: s.unit.clone(),
                values: s.scaling().2,
                rate_hz: self.rate_hz(i),
                samples: Vec::new(),
            })
            .collect();
        (channels, renamed)
    }

    /// The start time of the first sample, given the first record's onset `first` (EDF+'s
    /// sub-second start); an onset outside `[0, 1)` leaves the header's, with a warning.
    pub fn start_at(
        &self,
        first: f64,
        file: &str,
        warnings: &mut Vec<String>,
    ) -> Option<StartTime> {
        let mut start = self.start;
        if let Some(start) = start.as_mut() {
            if (0.0..1.0).contains(&first) {
                start.second += first;
            } else {
                warnings.push(format!(
                    "{file}: first record's onset is {first} s, not a sub-second start; start time left as the header's"
                ));
            }
        }
        start
    }

    fn ordinary(&self) -> impl Iterator<Item = (usize, &SignalHeader)> {
        self.signals
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_annotations())
    }
}

/// One data record, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DataRecord {
    /// Onset in seconds from the header's start time: the time-keeping TAL in EDF+, else
    /// record index times duration.
    pub onset_s: f64,
    /// Samples of each ordinary (non-annotation) signal, in file order, in the unit
    /// [`Channel::values`] would name (volts for voltage signals).
    pub signals: Vec<Vec<f64>>,
    /// Annotations in this record, onsets in seconds from the header's start time.
    pub annotations: Vec<Annotation>,
}

/// Streams data records from an EDF/BDF source, holding one record at a time.
pub struct EdfReader<R> {
    header: EdfHeader,
    source: R,
    file: String,
    record_len: usize,
    buffer: Vec<u8>,
    scaling: Vec<(f64, f64)>,
    records_read: u64,
    /// The last record's onset, to place a record that lacks its time-keeping TAL.
    last_onset: Option<f64>,
    /// Records to read: the header's count, capped by the file size where known.
    limit: Option<u64>,
    warnings: Vec<String>,
}

impl EdfReader<BufReader<File>> {
    /// Opens a file and parses its header; checks the record count against the file size.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EdfError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let io = |source| EdfError::Io {
            file: file.clone(),
            source,
        };
        let handle = File::open(path).map_err(io)?;
        let len = handle.metadata().map_err(io)?.len();
        EdfReader::new(BufReader::new(handle), &file, Some(len))
    }
}

impl<R: Read> EdfReader<R> {
    /// Parses the header from `source`. `file` names the source in errors; `len`, the
    /// source's size in bytes where known, lets lying record counts be caught up front.
    pub fn new(mut source: R, file: &str, len: Option<u64>) -> Result<Self, EdfError> {
        let header = EdfHeader::parse(&mut source, file)?;
        let mut warnings = header.warnings.clone();
        let record_bytes = header.record_bytes() as u64;
        if record_bytes == 0 {
            return Err(EdfError::Field {
                file: file.to_owned(),
                field: "samples_per_record".to_owned(),
                value: "0".to_owned(),
                problem: "no signal has samples, so a data record is empty",
            });
        }
        let mut limit = header.n_records;
        if let Some(len) = len {
            let data = len.saturating_sub(header.header_bytes as u64);
            let (full, partial) = (data / record_bytes, data % record_bytes);
            if partial != 0 {
                warnings.push(format!(
                    "{file}: file ends {partial} bytes into a data record of {record_bytes}: \
                     the partial record is dropped, {full} full records read"
                ));
            }
            match header.n_records {
                None => warnings.push(format!(
                    "{file}: number_of_records is -1 (recording not closed); {full} full records in the file"
                )),
                Some(n) if n > full => warnings.push(format!(
                    "{file}: number_of_records says {n} but the file holds {full} full records"
                )),
                Some(n) if n < full => warnings.push(format!(
                    "{file}: number_of_records says {n} but the file holds {full} full records; \
                     the records after {n} are ignored"
                )),
                Some(_) => {}
            }
            limit = Some(limit.map_or(full, |n| n.min(full)));
        }
        let scaling = header
            .ordinary()
            .map(|(_, s)| {
                let (gain, offset, _) = s.scaling();
                (gain, offset)
            })
            .collect();
        // Lying sample counts could ask for terabytes: refuse records over 1 GiB, and allocate
        // the buffer only when a record is read (never when the file holds none).
        let record_len = usize::try_from(record_bytes)
            .ok()
            .filter(|&b| b <= 1 << 30)
            .ok_or_else(|| EdfError::Field {
                file: file.to_owned(),
                field: "samples_per_record".to_owned(),
                value: record_bytes.to_string(),
                problem: "a data record over 1 GiB",
            })?;
        Ok(EdfReader {
            header,
            source,
            file: file.to_owned(),
            record_len,
            buffer: Vec::new(),
            scaling,
            records_read: 0,
            last_onset: None,
            limit,
            warnings,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &EdfHeader {
        &self.header
    }

    /// Warnings so far: the header's, the size checks', and the records'.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Full data records read so far.
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// The next full data record, or `None` at the end (a partial last record is dropped
    /// with a warning).
    pub fn next_record(&mut self) -> Result<Option<DataRecord>, EdfError> {
        if self.limit.is_some_and(|n| self.records_read >= n) {
            return Ok(None);
        }
        self.buffer.resize(self.record_len, 0);
        let got =
            read_up_to(&mut self.source, &mut self.buffer).map_err(|source| EdfError::Io {
                file: self.file.clone(),
                source,
            })?;
        if got < self.buffer.len() {
            if got > 0 || self.header.n_records.is_some_and(|n| n > self.records_read) {
                self.warnings.push(format!(
                    "{}: data ends {got} bytes into record {}; {} full records read",
                    self.file,
                    self.records_read + 1,
                    self.records_read
                ));
            }
            return Ok(None);
        }
        let index = self.records_read;
        self.records_read += 1;
        let bps = self.header.kind.bytes_per_sample();
        let mut signals = Vec::with_capacity(self.scaling.len());
        let mut annotations = Vec::new();
        let mut onset_s = None;
        let mut at = 0;
        for signal in &self.header.signals {
            let bytes = &self.buffer[at..at + signal.samples_per_record * bps];
            at += bytes.len();
            if signal.is_annotations() {
                let keeper = onset_s.is_none();
                let (onset, found) =
                    parse_tals(bytes, keeper, &self.file, index, &mut self.warnings);
                if keeper {
                    onset_s = onset;
                }
                annotations.extend(found);
                continue;
            }
            let (gain, offset) = self.scaling[signals.len()];
            let digital = bytes.chunks_exact(bps).map(|b| match bps {
                2 => f64::from(i16::from_le_bytes([b[0], b[1]])),
                // Sign-extend the 24-bit value by placing it in the top bytes.
                _ => f64::from(i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8),
            });
            signals.push(digital.map(|d| d * gain + offset).collect());
        }
        let has_annotation_signal = self.header.signals.iter().any(SignalHeader::is_annotations);
        let onset_s = onset_s.unwrap_or_else(|| {
            if has_annotation_signal {
                self.warnings.push(format!(
                    "{}: record {} has no time-keeping TAL; assumed contiguous",
                    self.file,
                    index + 1
                ));
            }
            let duration = self.header.record_duration_s;
            self.last_onset
                .map_or(index as f64 * duration, |last| last + duration)
        });
        self.last_onset = Some(onset_s);
        Ok(Some(DataRecord {
            onset_s,
            signals,
            annotations,
        }))
    }
}

/// Reads a whole EDF/BDF file.
pub fn read(path: impl AsRef<Path>) -> Result<Recording, EdfError> {
    let mut reader = EdfReader::open(path)?;
    let header = reader.header().clone();
    let file = reader.file.clone();
    let (mut channels, renamed) = header.channels();
    let mut annotations = Vec::new();
    let mut onsets = Vec::new();
    while let Some(record) = reader.next_record()? {
        onsets.push(record.onset_s);
        annotations.extend(record.annotations);
        for (channel, samples) in channels.iter_mut().zip(record.signals) {
            channel.samples.extend(samples);
        }
    }
    let mut warnings = reader.warnings;
    warnings.extend(renamed.into_iter().map(|w| format!("{file}: {w}")));

    // EDF+: the first record's onset is the sub-second part of the start time; everything
    // is reported relative to the first sample.
    let first = onsets.first().copied().unwrap_or(0.0);
    let start = header.start_at(first, &file, &mut warnings);
    for a in &mut annotations {
        a.onset_s -= first;
    }
    let duration = header.record_duration_s;
    let mut segments: Vec<Segment> = Vec::new();
    let mut gaps = 0;
    for onset in onsets.iter().map(|o| o - first) {
        match segments.last_mut() {
            Some(last) if (last.onset_s + last.duration_s - onset).abs() < 1e-6 => {
                last.duration_s += duration
            }
            Some(_) if !header.is_discontinuous() => {
                gaps += 1;
                segments.last_mut().expect("matched Some").duration_s += duration;
            }
            _ => segments.push(Segment {
                onset_s: onset,
                duration_s: duration,
            }),
        }
    }
    if gaps > 0 {
        warnings.push(format!(
            "{file}: {gaps} records of a continuous file have onsets that leave a gap; read as contiguous"
        ));
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(Recording {
        channels,
        annotations,
        start,
        segments,
        warnings,
    })
}

/// Parses an annotation signal's TALs (`+onset[\x15duration]\x14text\x14...\x14\0`).
/// When `keeper`, the first TAL's onset is the record's time-keeping onset, returned first
/// (`None` when the record has no time-keeping TAL).
fn parse_tals(
    bytes: &[u8],
    keeper: bool,
    file: &str,
    record: u64,
    warnings: &mut Vec<String>,
) -> (Option<f64>, Vec<Annotation>) {
    let mut onset_of_record = None;
    let mut annotations = Vec::new();
    for (n, tal) in bytes
        .split(|&b| b == 0)
        .filter(|t| !t.is_empty())
        .enumerate()
    {
        let mut parts = tal.split(|&b| b == 0x14).peekable();
        let timing = parts.next().unwrap_or_default();
        let mut timing = timing.split(|&b| b == 0x15);
        let onset = timing
            .next()
            .and_then(tal_number)
            .filter(|_| matches!(tal[0], b'+' | b'-'));
        let duration = match timing.next() {
            None => Some(0.0),
            Some(d) => tal_number(d).filter(|d| *d >= 0.0),
        };
        let (Some(onset), Some(duration)) = (onset, duration) else {
            warnings.push(format!(
                "{file}: record {}: annotation TAL {:?} has no valid onset/duration; skipped",
                record + 1,
                decode_text(tal)
            ));
            continue;
        };
        // The time-keeping TAL is the record's first, with an empty first text.
        if keeper && n == 0 && parts.peek().is_some_and(|t| t.is_empty()) {
            onset_of_record = Some(onset);
        }
        for text in parts.filter(|t| !t.is_empty()) {
            annotations.push(Annotation {
                onset_s: onset,
                duration_s: duration,
                text: decode_text(text),
            });
        }
    }
    (onset_of_record, annotations)
}

/// A TAL number: ASCII sign, digits and point.
fn tal_number(raw: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(raw).ok()?;
    s.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'))
        .then(|| s.parse().ok())
        .flatten()
}

/// A header number: ASCII, blank-padded.
fn number<T: std::str::FromStr>(raw: &[u8]) -> Option<T> {
    std::str::from_utf8(raw)
        .ok()?
        .trim_matches(padding)
        .parse()
        .ok()
}

/// A header text field: decoded, trimmed of the blanks and NULs writers pad with.
fn field_text(raw: &[u8]) -> String {
    decode_text(raw).trim_matches(padding).to_owned()
}

fn padding(c: char) -> bool {
    c.is_whitespace() || c == '\0'
}

/// `dd.mm.yy` and `hh.mm.ss`; years 85..99 are 19xx, 00..84 are 20xx (EDF spec). EDF+ also
/// writes `Startdate dd-MMM-yyyy` in the recording field, whose year wins (it is the only one
/// past 2084, when the header's year reads `yy`).
fn start_time(date: &[u8], time: &[u8], recording: &str) -> Option<StartTime> {
    let three = |raw: &[u8]| -> Option<[u8; 3]> {
        let s = std::str::from_utf8(raw).ok()?;
        let mut it = s
            .trim_matches(padding)
            .split(['.', ':'])
            .map(|p| p.parse::<u8>().ok());
        let v = [it.next()??, it.next()??, it.next()??];
        it.next().is_none().then_some(v)
    };
    let (day, month, year) = match (plus_start_date(recording), three(date)) {
        (Some(date), _) => date,
        (None, Some([day, month, yy])) if yy < 100 => (
            day,
            month,
            if yy >= 85 { 1900 } else { 2000 } + u16::from(yy),
        ),
        (None, _) => return None,
    };
    let [hour, minute, second] = three(time)?;
    let valid = (1..=31).contains(&day) && (1..=12).contains(&month);
    let valid = valid && hour < 24 && minute < 60 && second < 61;
    valid.then_some(StartTime {
        year,
        month,
        day,
        hour,
        minute,
        second: f64::from(second),
    })
}

/// The EDF+ recording field's `Startdate dd-MMM-yyyy` as (day, month, year).
fn plus_start_date(recording: &str) -> Option<(u8, u8, u16)> {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let date = recording.strip_prefix("Startdate ")?.split(' ').next()?;
    let mut parts = date.split('-');
    let day = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u8 + 1;
    let year = parts
        .next()?
        .parse()
        .ok()
        .filter(|y| (1985..=9999).contains(y))?;
    Some((day, month, year))
}

/// Fills `buf`; `Ok(false)` when the source ends first.
fn read_full(source: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    Ok(read_up_to(source, buf)? == buf.len())
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_up_to(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match source.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
