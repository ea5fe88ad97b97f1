//! Clinical and research recordings (EDF/EDF+/BDF/BDF+, BrainVision, BIDS iEEG) converted
//! to an XDF session that `inspect`, `replay`, `fit` and pyxdf read (`docs/import.md`).
//!
//! Streamed: the source is read block by block (an EDF data record, 4096 BrainVision samples)
//! and each block is written as one chunk per stream; only the annotations and the word
//! table are held until the end. The output is written to a temporary file beside it and
//! renamed when complete, so a failed import leaves nothing behind.
//!
//! The session holds one numeric stream per sampling rate (the rate of most channels is the
//! main stream, type `iEEG`; signals at other rates are streams of their own, never
//! resampled), time stamps in seconds from the first sample (EDF+D gaps stay gaps), the
//! channel and recording metadata in each header's `desc` ([`desc`]), a `Markers` stream
//! (`text`, `duration_s`) with the annotations, and, from a word table, a `Transcript` stream
//! in the contract of `docs/transcript.md`.
pub mod bids;
pub mod desc;
mod source;
mod transcript;

use std::path::{Path, PathBuf};

use desc::{render_desc, ChannelMeta, RecordingMeta};
use source::Source;

use crate::recording::{Annotation, StartTime, Values};
use crate::word_table::WordTableError;
use crate::xdf::{ChannelFormat, Samples, StreamInfo, XdfError, XdfWriter};

/// Why an import failed. Nothing is left at the output path.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The EDF/BDF reader stopped.
    #[error(transparent)]
    Edf(#[from] crate::edf::EdfError),
    /// The BrainVision reader stopped.
    #[error(transparent)]
    BrainVision(#[from] crate::brainvision::BrainVisionError),
    /// Writing the XDF file failed.
    #[error(transparent)]
    Xdf(#[from] XdfError),
    /// The word table could not be read.
    #[error(transparent)]
    WordTable(#[from] WordTableError),
    /// A file system error outside the readers.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a format the importer reads.
    #[error("{0}: not a recording neuralign imports (expected .edf, .bdf, .vhdr, or a BIDS iEEG folder or *_ieeg file)")]
    UnknownFormat(PathBuf),
    /// The BIDS dataset could not be used.
    #[error("BIDS: {0}")]
    Bids(String),
    /// The file disagrees with its own header: cut short, lying sizes, markers of another
    /// data file. `--accept-damaged` imports what can be read.
    #[error("{} (import what can be read with --accept-damaged)", .0.join("; "))]
    Damaged(Vec<String>),
    /// The word table cannot be placed on the recording.
    #[error("word table {path}: {problem}")]
    Words {
        /// The table.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The output exists already.
    #[error("{0} already exists; choose another file name or delete it first")]
    Exists(PathBuf),
}

/// How word times map onto the recording's clock.
#[derive(Debug, Clone, PartialEq)]
pub enum WordsOffset {
    /// Recording time (seconds from the first sample) of word time 0.
    Seconds(f64),
    /// The onset of the first annotation whose text is this (or ends with `/` and this, for
    /// BrainVision's `type/description`).
    Marker(String),
}

/// Options of [`import`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// A `word,start,end` table (CSV or TSV) to write as the transcript stream.
    pub words: Option<PathBuf>,
    /// Where word time 0 lies on the recording.
    pub words_offset: WordsOffset,
    /// Value type of the numeric streams: `Float32` (what the server computes in) or
    /// `Double64` (every BDF step on large DC offsets).
    pub format: ChannelFormat,
    /// Import files that disagree with their headers (cut short, lying sizes) instead of
    /// refusing them.
    pub accept_damaged: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            words: None,
            words_offset: WordsOffset::Seconds(0.0),
            format: ChannelFormat::Float32,
            accept_damaged: false,
        }
    }
}

/// What an import wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    /// The recording read (the data file for BIDS).
    pub input: String,
    /// The XDF session written.
    pub output: String,
    /// The recording's metadata as written to the streams' `desc`.
    pub recording: RecordingMeta,
    /// The numeric streams, the main one first.
    pub streams: Vec<StreamReport>,
    /// Annotations written to the `Markers` stream.
    pub markers: usize,
    /// Words written to the transcript stream.
    pub words: usize,
    /// Word-table rows skipped: `line: why`.
    pub words_skipped: Vec<String>,
    /// The offset in seconds applied to word times.
    pub words_offset_s: Option<f64>,
    /// Channels marked bad (BIDS `status`).
    pub bad_channels: Vec<String>,
    /// Every warning met (renamed labels, units, skipped annotations...).
    pub warnings: Vec<String>,
    /// Bytes of the output.
    pub bytes_written: u64,
}

/// One numeric stream of an import.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamReport {
    /// Stream name.
    pub name: String,
    /// Nominal rate, Hz.
    pub rate_hz: f64,
    /// Channel labels.
    pub channels: Vec<String>,
    /// Samples per channel written.
    pub samples: u64,
}

/// A numeric stream being written: the channels it takes from each block.
struct Group {
    id: u32,
    rate: f64,
    members: Vec<usize>,
    report: StreamReport,
}

/// Imports `input` (a recording, or a BIDS folder or file) into a new XDF file `out`.
/// `progress` is called with the fraction read after every block.
pub fn import(
    input: &Path,
    out: &Path,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<ImportReport, ImportError> {
    if out.exists() {
        return Err(ImportError::Exists(out.to_path_buf()));
    }
    let bids = bids::locate(input)?;
    let data_file = bids.as_ref().map_or(input, |b| b.data_file.as_path());
    let mut source = Source::open(data_file)?;
    if !opts.accept_damaged && !source.disagreements().is_empty() {
        return Err(ImportError::Damaged(source.disagreements().to_vec()));
    }
    let words = opts
        .words
        .as_deref()
        .map(crate::word_table::read_word_table)
        .transpose()?;

    let mut warnings = Vec::new();
    let mut channels: Vec<ChannelMeta> = source
        .channels()
        .iter()
        .map(|c| ChannelMeta {
            label: c.label.clone(),
            kind: default_kind(&c.label, c.values),
            unit: match c.values {
                Values::Volts => "volts".to_owned(),
                Values::Physical => c.unit.clone(),
                Values::Digital => "digital".to_owned(),
            },
            ..Default::default()
        })
        .collect();
    let mut recording = RecordingMeta {
        source_file: data_file.display().to_string(),
        format: source.format(),
        start: source.start().map(iso),
        ..Default::default()
    };
    let mut extra_markers = Vec::new();
    if let Some(b) = &bids {
        let sidecars = b.apply(&mut channels, &mut recording)?;
        warnings.extend(sidecars.warnings);
        extra_markers = sidecars.events;
    }

    // one stream per rate, the rate of most channels first
    let mut rates: Vec<(f64, Vec<usize>)> = Vec::new();
    for (i, c) in source.channels().iter().enumerate() {
        match rates.iter_mut().find(|(r, _)| *r == c.rate_hz) {
            Some((_, members)) => members.push(i),
            None => rates.push((c.rate_hz, vec![i])),
        }
    }
    rates.sort_by_key(|(_, members)| std::cmp::Reverse(members.len()));
    let stem = data_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recording".to_owned());

    let partial = Partial::new(out);
    let mut writer = XdfWriter::create(&partial.path)?;
    let mut groups = Vec::with_capacity(rates.len());
    for (n, (rate, members)) in rates.into_iter().enumerate() {
        let name = if n == 0 {
            stem.clone()
        } else {
            format!("{stem}-{}Hz", rate)
        };
        let metas: Vec<ChannelMeta> = members.iter().map(|&i| channels[i].clone()).collect();
        let labels: Vec<String> = metas.iter().map(|c| c.label.clone()).collect();
        let info = StreamInfo::with_labels(
            &name,
            if n == 0 { "iEEG" } else { "iEEG-other-rate" },
            rate,
            opts.format,
            &name,
            labels.clone(),
        )
        .with_desc(&render_desc(&metas, &recording));
        let id = writer.add_stream(&info)?;
        groups.push(Group {
            id,
            rate,
            members,
            report: StreamReport {
                name,
                rate_hz: rate,
                channels: labels,
                samples: 0,
            },
        });
    }
    let markers_id = writer.add_stream(
        &StreamInfo::with_labels(
            &format!("{stem}-markers"),
            "Markers",
            0.0,
            ChannelFormat::String,
            &format!("{stem}-markers"),
            vec!["text".into(), "duration_s".into()],
        )
        .with_desc(&render_desc(&[], &recording)),
    )?;
    let transcript_id = match &words {
        Some(_) => Some(writer.add_stream(&StreamInfo::new(
            &format!("{stem}-transcript"),
            "Transcript",
            1,
            0.0,
            ChannelFormat::String,
            &format!("{stem}-transcript"),
        ))?),
        None => None,
    };

    let mut annotations: Vec<Annotation> = Vec::new();
    let mut end_s: f64 = 0.0;
    let (mut stamps, mut f32s, mut f64s) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(block) = source.next_block()? {
        annotations.extend(block.annotations);
        for g in &mut groups {
            let n = block.signals[g.members[0]].len();
            stamps.clear();
            stamps.extend((0..n).map(|k| block.onset_s + k as f64 / g.rate));
            end_s = end_s.max(block.onset_s + n as f64 / g.rate);
            let data = match opts.format {
                ChannelFormat::Double64 => {
                    f64s.clear();
                    for k in 0..n {
                        f64s.extend(g.members.iter().map(|&c| block.signals[c][k]));
                    }
                    Samples::Double64(std::mem::take(&mut f64s))
                }
                _ => {
                    f32s.clear();
                    for k in 0..n {
                        f32s.extend(g.members.iter().map(|&c| block.signals[c][k] as f32));
                    }
                    Samples::Float32(std::mem::take(&mut f32s))
                }
            };
            writer.write_samples(g.id, &stamps, &data)?;
            match data {
                Samples::Double64(v) => f64s = v,
                Samples::Float32(v) => f32s = v,
                _ => unreachable!("numeric streams"),
            }
            g.report.samples += n as u64;
        }
        progress(source.progress());
    }
    warnings.extend(source.warnings());
    annotations.extend(extra_markers);
    annotations.sort_by(|a, b| a.onset_s.total_cmp(&b.onset_s));
    if !annotations.is_empty() {
        let stamps: Vec<f64> = annotations.iter().map(|a| a.onset_s).collect();
        let values = annotations
            .iter()
            .flat_map(|a| [a.text.clone(), a.duration_s.to_string()])
            .collect();
        writer.write_samples(markers_id, &stamps, &Samples::String(values))?;
    }

    let (mut n_words, mut words_skipped, mut words_offset_s) = (0, Vec::new(), None);
    if let (Some(table), Some(id)) = (words, transcript_id) {
        let path = opts.words.clone().expect("a table was read");
        let offset = match &opts.words_offset {
            WordsOffset::Seconds(s) => *s,
            WordsOffset::Marker(name) => {
                marker_onset(&annotations, name).ok_or_else(|| ImportError::Words {
                    path: path.clone(),
                    problem: format!(
                        "no annotation {name:?} in the recording to take the offset from"
                    ),
                })?
            }
        };
        words_skipped = table
            .skipped
            .iter()
            .map(|(line, why)| format!("line {line}: {why}"))
            .collect();
        let messages = transcript::messages(&table.words, offset, end_s).map_err(|problem| {
            ImportError::Words {
                path: path.clone(),
                problem,
            }
        })?;
        n_words = messages.words;
        let (stamps, values): (Vec<f64>, Vec<String>) = messages.messages.into_iter().unzip();
        writer.write_samples(id, &stamps, &Samples::String(values))?;
        words_offset_s = Some(offset);
    }
    writer.finish()?;
    let bytes_written = partial.commit(out)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(ImportReport {
        input: data_file.display().to_string(),
        output: out.display().to_string(),
        bad_channels: channels
            .iter()
            .filter(|c| c.bad)
            .map(|c| c.label.clone())
            .collect(),
        recording,
        streams: groups.into_iter().map(|g| g.report).collect(),
        markers: annotations.len(),
        words: n_words,
        words_skipped,
        words_offset_s,
        warnings,
        bytes_written,
    })
}

/// The channel type when no sidecar says: `TRIG` for BioSemi's `Status`, `MISC` for signals
/// that are not voltages, else `iEEG`.
fn default_kind(label: &str, values: Values) -> String {
    match values {
        _ if label == "Status" => "TRIG",
        Values::Volts => "iEEG",
        Values::Physical | Values::Digital => "MISC",
    }
    .to_owned()
}

/// The onset of the first annotation named `name` (`type/name` matches too).
fn marker_onset(annotations: &[Annotation], name: &str) -> Option<f64> {
    annotations
        .iter()
        .find(|a| a.text == name || a.text.rsplit_once('/').is_some_and(|(_, d)| d == name))
        .map(|a| a.onset_s)
}

/// `YYYY-MM-DDThh:mm:ss[.ffffff]`.
fn iso(t: StartTime) -> String {
    let whole = t.second.trunc();
    let micros = ((t.second - whole) * 1e6).round() as u32;
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, whole as u32
    );
    if micros > 0 {
        s.push_str(&format!(".{micros:06}"));
    }
    s
}

/// The temporary file an import writes, removed unless committed.
struct Partial {
    path: PathBuf,
    committed: bool,
}

impl Partial {
    fn new(out: &Path) -> Self {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Partial {
            path: out.with_file_name(format!(".{name}.partial-{}", std::process::id())),
            committed: false,
        }
    }

    /// Moves the finished file to `out`; returns its size.
    fn commit(mut self, out: &Path) -> Result<u64, ImportError> {
        let io = |source| ImportError::Io {
            path: out.to_path_buf(),
            source,
        };
        // a link, unlike a rename, refuses to replace a file created meanwhile
        std::fs::hard_link(&self.path, out).map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => ImportError::Exists(out.to_path_buf()),
            _ => io(source),
        })?;
        self.committed = true;
        std::fs::remove_file(&self.path).map_err(io)?;
        Ok(std::fs::metadata(out).map_err(io)?.len())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
