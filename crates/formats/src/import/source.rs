//! One streaming view over every recording format the importer reads: the channels, the
//! start time and the annotations known up front, then blocks of samples with their onsets,
//! never the whole recording in memory.
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::ImportError;
use crate::brainvision::{BrainVisionReader, BLOCK_SAMPLES};
use crate::edf::{DataRecord, EdfReader};
use crate::recording::{Annotation, Channel, StartTime};

/// A stretch of samples of every channel.
pub(crate) struct Block {
    /// Seconds from the first sample of the recording to this block's first sample.
    pub onset_s: f64,
    /// Samples of each channel in [`Source::channels`] order; channels at another rate
    /// hold another count.
    pub signals: Vec<Vec<f64>>,
    /// Annotations met in this block, onsets in seconds from the first sample.
    pub annotations: Vec<Annotation>,
}

/// An open recording, read block by block.
pub(crate) enum Source {
    /// EDF, EDF+, BDF, BDF+: one block per data record.
    Edf {
        reader: EdfReader<BufReader<File>>,
        /// The first record's onset (EDF+ sub-second start): onsets are taken from it.
        first: f64,
        /// The first record, read when the file was opened to learn `first`.
        pending: Option<DataRecord>,
        channels: Vec<Channel>,
        start: Option<StartTime>,
        warnings: Vec<String>,
        disagreements: Vec<String>,
        file_bytes: u64,
    },
    /// BrainVision: blocks of [`BLOCK_SAMPLES`].
    BrainVision {
        reader: BrainVisionReader,
        done: u64,
        annotations: Option<Vec<Annotation>>,
    },
}

impl Source {
    /// Opens `path` by its extension: `.edf`/`.bdf` or `.vhdr` (any case).
    pub fn open(path: &Path) -> Result<Source, ImportError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "edf" | "bdf" => Self::open_edf(path),
            "vhdr" => {
                let reader = BrainVisionReader::open(path)?;
                let annotations = Some(reader.annotations().to_vec());
                Ok(Source::BrainVision {
                    reader,
                    done: 0,
                    annotations,
                })
            }
            _ => Err(ImportError::UnknownFormat(path.to_path_buf())),
        }
    }

    fn open_edf(path: &Path) -> Result<Source, ImportError> {
        let file = path.display().to_string();
        let mut reader = EdfReader::open(path)?;
        let file_bytes = std::fs::metadata(path)
            .map_err(|source| ImportError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let header = reader.header().clone();
        let mut disagreements = Vec::new();
        let data = file_bytes.saturating_sub(header.header_bytes as u64);
        let record_bytes = header.record_bytes() as u64;
        if data % record_bytes != 0 {
            disagreements.push(format!(
                "{file}: the file ends {} bytes into a data record of {record_bytes} (cut short)",
                data % record_bytes
            ));
        }
        if let Some(n) = header.n_records.filter(|&n| n != data / record_bytes) {
            disagreements.push(format!(
                "{file}: number_of_records says {n} but the file holds {} full records",
                data / record_bytes
            ));
        }
        let (channels, renamed) = header.channels();
        let pending = reader.next_record()?;
        let first = pending.as_ref().map_or(0.0, |r| r.onset_s);
        let mut warnings: Vec<String> = renamed.iter().map(|w| format!("{file}: {w}")).collect();
        let start = header.start_at(first, &file, &mut warnings);
        Ok(Source::Edf {
            reader,
            first,
            pending,
            channels,
            start,
            warnings,
            disagreements,
            file_bytes,
        })
    }

    /// The channels (labels made unique), samples empty.
    pub fn channels(&self) -> &[Channel] {
        match self {
            Source::Edf { channels, .. } => channels,
            Source::BrainVision { reader, .. } => reader.channels(),
        }
    }

    /// When the first sample was taken, as the file states it.
    pub fn start(&self) -> Option<StartTime> {
        match self {
            Source::Edf { start, .. } => *start,
            Source::BrainVision { reader, .. } => reader.start(),
        }
    }

    /// The format as its header names it (`EDF+C`, `BDF`, `BrainVision 1.0`...).
    pub fn format(&self) -> String {
        match self {
            Source::Edf { reader, .. } => {
                let h = reader.header();
                let plus = ["EDF+C", "EDF+D", "BDF+C", "BDF+D"]
                    .into_iter()
                    .find(|p| h.reserved.starts_with(p));
                match (plus, h.kind) {
                    (Some(p), _) => p.to_owned(),
                    (None, crate::edf::Kind::Edf) => "EDF".to_owned(),
                    (None, crate::edf::Kind::Bdf) => "BDF".to_owned(),
                }
            }
            Source::BrainVision { reader, .. } => {
                format!("BrainVision {}", reader.header().version)
            }
        }
    }

    /// The next block, `None` at the end.
    pub fn next_block(&mut self) -> Result<Option<Block>, ImportError> {
        match self {
            Source::Edf {
                reader,
                first,
                pending,
                ..
            } => {
                let record = match pending.take() {
                    Some(r) => Some(r),
                    None => reader.next_record()?,
                };
                Ok(record.map(|r| Block {
                    onset_s: r.onset_s - *first,
                    signals: r.signals,
                    annotations: r
                        .annotations
                        .into_iter()
                        .map(|a| Annotation {
                            onset_s: a.onset_s - *first,
                            ..a
                        })
                        .collect(),
                }))
            }
            Source::BrainVision {
                reader,
                done,
                annotations,
            } => {
                let onset_s = *done as f64 / reader.header().rate_hz;
                let Some(signals) = reader.next_block(BLOCK_SAMPLES)? else {
                    return Ok(None);
                };
                *done += signals.first().map_or(0, Vec::len) as u64;
                Ok(Some(Block {
                    onset_s,
                    signals,
                    // the markers are known up front: they come with the first block
                    annotations: annotations.take().unwrap_or_default(),
                }))
            }
        }
    }

    /// Fraction of the data read so far, for progress.
    pub fn progress(&self) -> f64 {
        match self {
            Source::Edf {
                reader, file_bytes, ..
            } => {
                let read = reader.records_read() * reader.header().record_bytes() as u64;
                read as f64 / (*file_bytes).max(1) as f64
            }
            Source::BrainVision { reader, done, .. } => {
                *done as f64 / reader.samples().max(1) as f64
            }
        }
    }

    /// Every warning met so far.
    pub fn warnings(&self) -> Vec<String> {
        match self {
            Source::Edf {
                reader, warnings, ..
            } => reader.warnings().iter().chain(warnings).cloned().collect(),
            Source::BrainVision { reader, .. } => reader.warnings().to_vec(),
        }
    }

    /// The warnings that say the file disagrees with its own header (cut short, lying
    /// sizes, markers naming another data file).
    pub fn disagreements(&self) -> &[String] {
        match self {
            Source::Edf { disagreements, .. } => disagreements,
            Source::BrainVision { reader, .. } => reader.disagreements(),
        }
    }
}
