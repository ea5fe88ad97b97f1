//! The recorder thread: everything the pipeline receives goes to one XDF file per session
//! (neural samples as they arrived, transcript events in the JSON contract, stamped with
//! their arrival time). Flushed at least once a second; finished with stream footers on
//! shutdown. A full queue drops items (counted) rather than holding up ingest.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::xdf::{ChannelFormat, Samples, StreamInfo, XdfError, XdfWriter};

/// One item to record.
pub(super) enum Record {
    /// The neural stream's metadata, before its first samples.
    NeuralStream(StreamInfo),
    /// Neural samples: time stamps (server clock) and `[samples, channels]` values.
    Neural(Vec<f64>, Vec<f32>),
    /// A transcript event (JSON) at its arrival time (server clock).
    Transcript(f64, String),
}

/// A cloneable handle that sends to the recorder without ever waiting.
#[derive(Clone)]
pub(super) struct RecordTx {
    tx: Sender<Record>,
    dropped: Arc<AtomicU64>,
}

impl RecordTx {
    /// Queues `record`, or drops and counts it when the recorder is behind.
    pub fn send(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Items dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Handle on the recorder thread.
pub(super) struct Recorder {
    tx: RecordTx,
    thread: JoinHandle<Result<PathBuf, XdfError>>,
}

impl Recorder {
    /// Creates `directory` and a new, timestamped file in it, and starts the thread.
    pub fn spawn(directory: &Path, capacity: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(directory).with_context(|| {
            format!("cannot create the recording folder {}", directory.display())
        })?;
        let writer = create_unique(directory)?;
        tracing::info!(path = %writer.path().display(), "recording");
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || record(writer, rx))?;
        Ok(Self {
            tx: RecordTx {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            thread,
        })
    }

    /// A sender for the other threads.
    pub fn sender(&self) -> RecordTx {
        self.tx.clone()
    }

    /// Writes what is queued, the footers, and returns the file. Every sender must be gone.
    pub fn finish(self) -> anyhow::Result<Option<PathBuf>> {
        drop(self.tx);
        let path = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the recorder thread panicked"))??;
        Ok(Some(path))
    }
}

/// `neuralign-YYYYmmdd-HHMMSS.xdf` (UTC), with `-2`, `-3`… when that exists already.
fn create_unique(directory: &Path) -> anyhow::Result<XdfWriter> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let stem = format!("neuralign-{}", utc_stamp(secs));
    for n in 1.. {
        let name = if n == 1 {
            format!("{stem}.xdf")
        } else {
            format!("{stem}-{n}.xdf")
        };
        match XdfWriter::create(directory.join(name)) {
            Err(XdfError::Exists(_)) => continue,
            other => return other.context("cannot create the recording"),
        }
    }
    unreachable!("some file name is free")
}

/// `YYYYmmdd-HHMMSS` of a Unix time (UTC).
fn utc_stamp(secs: u64) -> String {
    let u = crate::utc::from_unix(secs);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        u.year, u.month, u.day, u.hour, u.minute, u.second
    )
}

fn record(mut writer: XdfWriter, rx: Receiver<Record>) -> Result<PathBuf, XdfError> {
    let transcript = writer.add_stream(&StreamInfo::new(
        "neuralign-transcript",
        "Transcript",
        1,
        0.0,
        ChannelFormat::String,
        "neuralign-transcript",
    ))?;
    let mut neural = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Record::NeuralStream(info)) if neural.is_none() => {
                neural = Some(writer.add_stream(&info)?)
            }
            Ok(Record::NeuralStream(_)) => {} // a re-resolved stream continues the same record
            Ok(Record::Neural(stamps, data)) => {
                if let Some(id) = neural {
                    writer.write_samples(id, &stamps, &Samples::Float32(data))?;
                }
            }
            Ok(Record::Transcript(time, message)) => {
                writer.write_samples(transcript, &[time], &Samples::String(vec![message]))?
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        writer.flush_if_due()?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_stamps_match_known_dates() {
        assert_eq!(super::utc_stamp(0), "19700101-000000");
        assert_eq!(super::utc_stamp(951_782_400 + 3_723), "20000229-010203");
        assert_eq!(super::utc_stamp(1_798_761_599), "20261231-235959");
    }
}
