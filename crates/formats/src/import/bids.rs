//! BIDS iEEG (<https://bids-specification.readthedocs.io>, iEEG modality): a dataset folder or
//! a `sub-*/[ses-*/]ieeg/*_ieeg.{edf,bdf,vhdr}` file, and the sidecars that describe it:
//! `*_channels.tsv` (type, status), `*_electrodes.tsv` (x, y, z, size, group) with
//! `*_coordsystem.json`, `*_ieeg.json` (`PowerLineFrequency`) and `*_events.tsv` (markers).
//! Tables are tab-separated, may start with a byte-order mark, and write `n/a` for nothing.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::desc::{ChannelMeta, RecordingMeta};
use super::ImportError;
use crate::recording::Annotation;

/// Data file extensions BIDS iEEG allows that neuralign reads.
const DATA_EXTENSIONS: [&str; 3] = ["edf", "bdf", "vhdr"];

/// A BIDS iEEG recording: its data file and where its sidecars are.
#[derive(Debug, Clone, PartialEq)]
pub struct BidsRecording {
    /// The `*_ieeg.{edf,bdf,vhdr}` file.
    pub data_file: PathBuf,
    /// Its folder (`…/ieeg`).
    folder: PathBuf,
    /// The file name before `_ieeg.`: the prefix of its sidecars.
    prefix: String,
}

/// What the sidecars add beside the channel metadata.
#[derive(Debug, Default)]
pub struct Sidecars {
    /// `events.tsv` rows as annotations.
    pub events: Vec<Annotation>,
    /// Problems that did not stop the import.
    pub warnings: Vec<String>,
}

/// The BIDS recording `input` names: a folder holding exactly one `*_ieeg` recording
/// (searched below it), or a `*_ieeg` file inside an `ieeg` folder. `None` when `input` is a
/// plain recording.
pub fn locate(input: &Path) -> Result<Option<BidsRecording>, ImportError> {
    if input.is_dir() {
        let mut found = Vec::new();
        find_recordings(input, &mut found)?;
        found.sort();
        return match found.len() {
            1 => Ok(BidsRecording::of(&found[0])),
            0 => Err(ImportError::Bids(format!(
                "{}: no sub-*/[ses-*/]ieeg/*_ieeg.{{edf,bdf,vhdr}} recording below this folder",
                input.display()
            ))),
            _ => Err(ImportError::Bids(format!(
                "{}: {} recordings below this folder; name one: {}",
                input.display(),
                found.len(),
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
    }
    Ok(BidsRecording::of(input))
}

fn find_recordings(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ImportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            find_recordings(&path, found)?;
        } else if BidsRecording::of(&path).is_some() {
            found.push(path);
        }
    }
    Ok(())
}

impl BidsRecording {
    /// `Some` when `file` is `…/ieeg/sub-*_ieeg.{edf,bdf,vhdr}`.
    fn of(file: &Path) -> Option<BidsRecording> {
        let name = file.file_name()?.to_str()?;
        let (stem, ext) = name.rsplit_once('.')?;
        let prefix = stem.strip_suffix("_ieeg")?;
        let folder = file.parent()?;
        let in_ieeg = folder.file_name().is_some_and(|f| f == "ieeg");
        (in_ieeg && prefix.starts_with("sub-") && DATA_EXTENSIONS.contains(&ext)).then(|| {
            BidsRecording {
                data_file: file.to_path_buf(),
                folder: folder.to_path_buf(),
                prefix: prefix.to_owned(),
            }
        })
    }

    /// Applies the sidecars to the channels (matched by label) and the recording.
    pub fn apply(
        &self,
        channels: &mut [ChannelMeta],
        recording: &mut RecordingMeta,
    ) -> Result<Sidecars, ImportError> {
        let mut out = Sidecars::default();
        let by_label: HashMap<String, usize> = channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.label.clone(), i))
            .collect();
        let unmatched = |table: &Path, name: &str, warnings: &mut Vec<String>| {
            warnings.push(format!(
                "{}: channel {name:?} is not in the recording",
                table.display()
            ));
        };

        let channels_tsv = self.folder.join(format!("{}_channels.tsv", self.prefix));
        if let Some(rows) = read_tsv(&channels_tsv)? {
            for row in rows {
                let name = row.get("name").cloned().unwrap_or_default();
                let Some(&i) = by_label.get(&name) else {
                    unmatched(&channels_tsv, &name, &mut out.warnings);
                    continue;
                };
                if let Some(kind) = row.get("type") {
                    channels[i].kind = kind.to_uppercase();
                }
                channels[i].bad = row.get("status").is_some_and(|s| s == "bad");
                channels[i].status_description = row.get("status_description").cloned();
            }
        }

        if let Some(electrodes_tsv) = self.electrodes_file(&mut out.warnings)? {
            for row in read_tsv(&electrodes_tsv)?.unwrap_or_default() {
                let name = row.get("name").cloned().unwrap_or_default();
                let Some(&i) = by_label.get(&name) else {
                    unmatched(&electrodes_tsv, &name, &mut out.warnings);
                    continue;
                };
                let axis = |a: &str| row.get(a).and_then(|v| v.parse::<f64>().ok());
                channels[i].location = match (axis("x"), axis("y"), axis("z")) {
                    (Some(x), Some(y), Some(z)) => Some([x, y, z]),
                    _ => None,
                };
                channels[i].size = row.get("size").cloned();
                channels[i].group = row.get("group").cloned();
            }
            let name = electrodes_tsv
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            let coordsystem =
                electrodes_tsv.with_file_name(name.replace("_electrodes.tsv", "_coordsystem.json"));
            if let Some(json) = read_json(&coordsystem)? {
                let text = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                recording.coordinate_system = text("iEEGCoordinateSystem");
                recording.coordinate_units = text("iEEGCoordinateUnits");
            }
        }

        let sidecar = self.folder.join(format!("{}_ieeg.json", self.prefix));
        if let Some(json) = read_json(&sidecar)? {
            match json.get("PowerLineFrequency") {
                Some(serde_json::Value::Number(n)) => recording.power_line_frequency = n.as_f64(),
                Some(other) => out.warnings.push(format!(
                    "{}: PowerLineFrequency {other} is not a number; the notch comes from the config",
                    sidecar.display()
                )),
                None => {}
            }
        }

        let events_tsv = self.folder.join(format!("{}_events.tsv", self.prefix));
        for (line, row) in read_tsv(&events_tsv)?
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let number = |k: &str| row.get(k).and_then(|v| v.parse::<f64>().ok());
            let Some(onset_s) = number("onset").filter(|o| o.is_finite()) else {
                out.warnings.push(format!(
                    "{}: row {}: onset {:?} is not a number; skipped",
                    events_tsv.display(),
                    line + 2,
                    row.get("onset")
                ));
                continue;
            };
            let text = ["trial_type", "value", "stim_file"]
                .iter()
                .find_map(|k| row.get(*k).cloned())
                .unwrap_or_else(|| "event".to_owned());
            out.events.push(Annotation {
                onset_s,
                duration_s: number("duration").filter(|d| *d >= 0.0).unwrap_or(0.0),
                text,
            });
        }
        Ok(out)
    }

    /// The `*_electrodes.tsv` of this recording's subject (and session): the first in name
    /// order when several spaces are given, with a warning.
    fn electrodes_file(&self, warnings: &mut Vec<String>) -> Result<Option<PathBuf>, ImportError> {
        // sidecars inherit by entity: sub-X[_ses-Y]_…_electrodes.tsv
        let entities: Vec<&str> = self
            .prefix
            .split('_')
            .filter(|e| e.starts_with("sub-") || e.starts_with("ses-"))
            .collect();
        let entries = std::fs::read_dir(&self.folder).map_err(|source| ImportError::Io {
            path: self.folder.clone(),
            source,
        })?;
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                let parts: Vec<&str> = name.split('_').collect();
                name.ends_with("_electrodes.tsv") && entities.iter().all(|e| parts.contains(e))
            })
            .collect();
        found.sort();
        if found.len() > 1 {
            warnings.push(format!(
                "{} electrode tables for {}; using {}",
                found.len(),
                self.prefix,
                found[0].display()
            ));
        }
        Ok(found.into_iter().next())
    }
}

/// A BIDS TSV as rows of column → value (`n/a` and empty cells left out); `None` when the
/// file does not exist.
fn read_tsv(path: &Path) -> Result<Option<Vec<HashMap<String, String>>>, ImportError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .flexible(true)
        .quoting(false)
        .from_reader(text.as_bytes());
    let bad = |e: csv::Error| ImportError::Bids(format!("{}: {e}", path.display()));
    let columns: Vec<String> = reader
        .headers()
        .map_err(bad)?
        .iter()
        .map(|c| c.trim().to_owned())
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(bad)?;
        rows.push(
            columns
                .iter()
                .zip(record.iter())
                .map(|(c, v)| (c.clone(), v.trim().to_owned()))
                .filter(|(_, v)| !v.is_empty() && v != "n/a")
                .collect(),
        );
    }
    Ok(Some(rows))
}

/// A JSON sidecar; `None` when the file does not exist.
fn read_json(path: &Path) -> Result<Option<serde_json::Value>, ImportError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ImportError::Bids(format!("{}: {e}", path.display())))
}

/// A UTF-8 text file without its byte-order mark; `None` when it does not exist.
fn read_text(path: &Path) -> Result<Option<String>, ImportError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| ImportError::Bids(format!("{}: not UTF-8 text", path.display())))?;
            Ok(Some(
                text.strip_prefix('\u{feff}').unwrap_or(&text).to_owned(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ImportError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
