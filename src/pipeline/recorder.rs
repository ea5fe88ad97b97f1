//! The recorder thread: everything the pipeline receives goes to one XDF file per session:
//! neural samples as they arrived (a stream of another layout after a reconnection gets a
//! stream of its own), every transcript message verbatim as received, rejected ones included
//! (`neuralign-transcript-received`, its time stamps on the server clock: replaying it
//! reproduces the input), and the transcript as the language model followed it
//! (`neuralign-transcript`, stamped when embedded), and the session's audio when
//! `[recording] audio` names its stream (as its sender describes it, in its own sample format,
//! with the sender's stamps and ClockOffset chunks as LabRecorder records a stream; a
//! returning stream of another layout gets a stream of its own). Flushed at
//! least once a second; finished
//! with stream footers on shutdown. A full queue drops items (counted) rather than holding up
//! ingest.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::xdf::{ChannelFormat, Samples, StreamInfo, XdfError, XdfWriter};

/// One item to record (results also go to the LSL outlets, [`super::outlets`]).
#[derive(Clone)]
pub(super) enum Record {
    /// The neural stream's metadata, before its first samples.
    NeuralStream(StreamInfo),
    /// Neural samples: time stamps (server clock) and `[samples, channels]` values.
    Neural(Vec<f64>, Vec<f32>),
    /// A transcript event (JSON) as the LM followed it, at that time (server clock).
    Transcript(f64, String),
    /// A transcript message verbatim, at its time stamp (server clock).
    TranscriptReceived(f64, String),
    /// The audio stream's header, before its first samples ([`crate::ingest::AudioInlet`]).
    AudioStream(StreamInfo),
    /// Audio samples: time stamps (sender clock) and `[samples, channels]` values.
    Audio(Vec<f64>, Samples),
    /// The audio stream's clock offset: at `.0` (sender clock) the server clock was `.1` ahead.
    AudioClockOffset(f64, f64),
    /// A results stream's metadata, before its first sample (`super::results`).
    ResultStream(StreamInfo),
    /// One sample of the results stream of that name, at that time (server clock).
    Result(Arc<str>, f64, Samples),
}

/// A cloneable handle that sends to the recorder without ever waiting.
#[derive(Clone)]
pub(super) struct RecordTx {
    tx: Sender<Record>,
    dropped: Arc<AtomicU64>,
    /// The file being written.
    path: Arc<Path>,
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

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Handle on the recorder thread.
pub(super) struct Recorder {
    tx: RecordTx,
    thread: JoinHandle<Result<PathBuf, XdfError>>,
}

impl Recorder {
    /// Creates the session's folder under `directory` and the next free run's file in it (see
    /// [`RecordingName`]), and starts the thread.
    pub fn spawn(directory: &Path, name: &RecordingName, capacity: usize) -> anyhow::Result<Self> {
        let folder = directory.join(name.folder());
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create the recording folder {}", folder.display()))?;
        let writer = create_next_run(&folder, name)?;
        tracing::info!(path = %writer.path().display(), "recording");
        let path = Arc::from(writer.path());
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || record(writer, rx))?;
        Ok(Self {
            tx: RecordTx {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
                path,
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

/// The entities a recording is named by, as BIDS names files:
/// `sub-<subject>/ses-<session>/sub-<subject>_ses-<session>_task-<task>_run-<NN>_ieeg.xdf`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingName {
    /// Subject label.
    pub subject: String,
    /// Session label.
    pub session: String,
    /// Task label.
    pub task: String,
}

impl RecordingName {
    /// `sub-<subject>/ses-<session>`.
    fn folder(&self) -> PathBuf {
        Path::new(&format!("sub-{}", self.subject)).join(format!("ses-{}", self.session))
    }

    /// The file name of run `run`.
    fn file(&self, run: u32) -> String {
        format!(
            "sub-{}_ses-{}_task-{}_run-{run:02}_ieeg.xdf",
            self.subject, self.session, self.task
        )
    }
}

/// `YYYYmmdd` of a Unix time (UTC): the default session label.
pub(super) fn utc_date(secs: u64) -> String {
    let u = crate::utc::from_unix(secs);
    format!("{:04}{:02}{:02}", u.year, u.month, u.day)
}

/// Today's date (UTC) as a session label.
pub(super) fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    utc_date(secs)
}

/// The first run whose file does not exist yet; a recording is never overwritten.
fn create_next_run(folder: &Path, name: &RecordingName) -> anyhow::Result<XdfWriter> {
    for run in 1.. {
        match XdfWriter::create(folder.join(name.file(run))) {
            Err(XdfError::Exists(_)) => continue,
            other => return other.context("cannot create the recording"),
        }
    }
    unreachable!("some run number is free")
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
    let received = writer.add_stream(&StreamInfo::new(
        "neuralign-transcript-received",
        "TranscriptReceived",
        1,
        0.0,
        ChannelFormat::String,
        "neuralign-transcript-received",
    ))?;
    let mut neural: Option<(u32, StreamInfo)> = None;
    let mut audio: Option<u32> = None;
    let mut results: std::collections::HashMap<String, (u32, StreamInfo)> = Default::default();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Record::NeuralStream(info)) => {
                // the same stream re-resolved continues its record; another one gets its own
                if neural.as_ref().is_none_or(|(_, current)| *current != info) {
                    neural = Some((writer.add_stream(&info)?, info));
                }
            }
            Ok(Record::Neural(stamps, data)) => {
                if let Some((id, _)) = &neural {
                    writer.write_samples(*id, &stamps, &Samples::Float32(data))?;
                }
            }
            // the inlet announces a header only for a stream of another layout
            Ok(Record::AudioStream(info)) => audio = Some(writer.add_stream(&info)?),
            Ok(Record::Audio(stamps, samples)) => {
                if let Some(id) = audio {
                    writer.write_samples(id, &stamps, &samples)?;
                }
            }
            Ok(Record::AudioClockOffset(time, value)) => {
                if let Some(id) = audio {
                    writer.clock_offset(id, time, value)?;
                }
            }
            Ok(Record::Transcript(time, message)) => {
                writer.write_samples(transcript, &[time], &Samples::String(vec![message]))?
            }
            Ok(Record::TranscriptReceived(time, message)) => {
                writer.write_samples(received, &[time], &Samples::String(vec![message]))?
            }
            Ok(Record::ResultStream(info)) => {
                // the same layout continues its stream; another (a rebinding) gets its own
                if results
                    .get(&info.name)
                    .is_none_or(|(_, current)| *current != info)
                {
                    let id = writer.add_stream(&info)?;
                    results.insert(info.name.clone(), (id, info));
                }
            }
            Ok(Record::Result(name, time, samples)) => {
                if let Some((id, _)) = results.get(&*name) {
                    writer.write_samples(*id, &[time], &samples)?;
                }
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
    use super::*;

    #[test]
    fn a_stream_of_another_layout_gets_a_stream_of_its_own() {
        // a neural stream replaced by one with fewer channels used to kill the recorder
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::spawn(dir.path(), &name(), 16).unwrap();
        let tx = recorder.sender();
        let info = |channels: usize, rate: f64| {
            let labels = (1..=channels).map(|c| format!("e{c}")).collect();
            StreamInfo::with_labels("amp", "iEEG", rate, ChannelFormat::Float32, "amp", labels)
        };
        tx.send(Record::NeuralStream(info(4, 100.0)));
        tx.send(Record::Neural(vec![1.0], vec![1.0, 2.0, 3.0, 4.0]));
        tx.send(Record::NeuralStream(info(4, 100.0))); // re-resolved: same record
        tx.send(Record::Neural(vec![2.0], vec![5.0, 6.0, 7.0, 8.0]));
        tx.send(Record::NeuralStream(info(3, 250.0)));
        tx.send(Record::Neural(vec![3.0, 3.004], vec![0.0; 6]));
        tx.send(Record::TranscriptReceived(2.5, "{not json".into()));
        drop(tx);
        let path = recorder.finish().unwrap().unwrap();
        let file = crate::xdf::read(&path).unwrap();
        let amp: Vec<_> = file
            .streams
            .iter()
            .filter(|s| s.info.name == "amp")
            .collect();
        assert_eq!(amp.len(), 2);
        assert_eq!(amp[0].time_stamps, [1.0, 2.0]);
        assert_eq!(amp[1].info.channel_count, 3);
        assert_eq!(amp[1].time_stamps.len(), 2);
        let received = file
            .streams
            .iter()
            .find(|s| s.info.name == "neuralign-transcript-received")
            .unwrap();
        assert_eq!(received.data, Samples::String(vec!["{not json".into()]));
    }

    #[test]
    fn the_audio_is_recorded_in_its_own_format_and_a_new_layout_gets_a_stream_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::spawn(dir.path(), &name(), 16).unwrap();
        let tx = recorder.sender();
        let mic = |channels: usize| {
            let labels = (1..=channels).map(|c| format!("mic{c}")).collect();
            StreamInfo::with_labels("mic", "Audio", 8000.0, ChannelFormat::Int16, "mic", labels)
        };
        tx.send(Record::Audio(vec![0.5], Samples::Int16(vec![9]))); // before a header: no stream
        tx.send(Record::AudioStream(mic(1)));
        tx.send(Record::AudioClockOffset(0.9, -0.25));
        tx.send(Record::Audio(
            vec![1.0, 1.000125],
            Samples::Int16(vec![-3, 32767]),
        ));
        tx.send(Record::Audio(vec![3.0], Samples::Int16(vec![5])));
        tx.send(Record::AudioStream(mic(2)));
        tx.send(Record::Audio(vec![4.0], Samples::Int16(vec![1, 2])));
        drop(tx);
        let file = crate::xdf::read(recorder.finish().unwrap().unwrap()).unwrap();
        let mics: Vec<_> = (file.streams.iter())
            .filter(|s| s.info.name == "mic")
            .collect();
        assert_eq!(mics.len(), 2);
        assert_eq!(mics[0].info.channel_labels, ["mic1"]);
        assert_eq!(mics[0].time_stamps, [1.0, 1.000125, 3.0]);
        assert_eq!(mics[0].data, Samples::Int16(vec![-3, 32767, 5]));
        assert_eq!(
            (mics[0].clock_offsets.len(), mics[0].clock_offsets[0].value),
            (1, -0.25)
        );
        assert_eq!(mics[1].data, Samples::Int16(vec![1, 2]));
    }

    fn name() -> RecordingName {
        RecordingName {
            subject: "p07".into(),
            session: "20261130".into(),
            task: "listening".into(),
        }
    }

    #[test]
    fn recordings_are_named_as_bids_names_files_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..2)
            .map(|_| {
                Recorder::spawn(dir.path(), &name(), 4)
                    .unwrap()
                    .finish()
                    .unwrap()
                    .unwrap()
            })
            .collect();
        let folder = dir.path().join("sub-p07").join("ses-20261130");
        assert_eq!(
            paths,
            [
                folder.join("sub-p07_ses-20261130_task-listening_run-01_ieeg.xdf"),
                folder.join("sub-p07_ses-20261130_task-listening_run-02_ieeg.xdf"),
            ]
        );
    }

    #[test]
    fn utc_dates_match_known_days() {
        assert_eq!(utc_date(0), "19700101");
        assert_eq!(utc_date(951_782_400 + 3_723), "20000229");
        assert_eq!(utc_date(1_798_761_599), "20261231");
    }
}
