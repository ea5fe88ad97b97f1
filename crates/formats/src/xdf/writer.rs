//! Incremental XDF writer: the server's recording goes through it chunk by
//! chunk. Call [`XdfWriter::flush_if_due`] from the recording loop (it
//! flushes at most once a second and drops a Boundary chunk every 10 s, so a
//! crash loses at most about a second and readers can resynchronise), and
//! [`XdfWriter::finish`] at the end to write the StreamFooters.
//! [`XdfWriter::append_to_copy`] adds streams to a copy of a recorded session.
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::chunk::{encode_chunk, encode_samples, StampState, Tag, BOUNDARY_UUID, MAGIC};
use super::{ClockOffset, Samples, StreamInfo, XdfError};

const FLUSH_EVERY: Duration = Duration::from_secs(1);
const BOUNDARY_EVERY: Duration = Duration::from_secs(10);

/// Writes an XDF file incrementally.
pub struct XdfWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// The id of `streams[0]`.
    first_id: u32,
    streams: Vec<Written>,
    last_flush: Instant,
    last_boundary: Instant,
}

/// Creates `path` for writing; an existing file is an error, never replaced.
fn create_new(path: &Path) -> Result<File, XdfError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                XdfError::Exists(path.to_path_buf())
            } else {
                XdfError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })
}

/// What the writer remembers of a stream for validation and its footer.
struct Written {
    id: u32,
    format: super::ChannelFormat,
    channels: usize,
    stamps: StampState,
    first: Option<f64>,
    last: f64,
    count: u64,
    offsets: Vec<ClockOffset>,
}

impl XdfWriter {
    /// Creates `path` and writes the magic and FileHeader. Refuses to
    /// replace an existing file.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, XdfError> {
        let path = path.as_ref().to_path_buf();
        let file = create_new(&path)?;
        let mut w = XdfWriter::over(path, file, 1);
        w.raw(MAGIC)?;
        let header = "<?xml version=\"1.0\"?>\n<info>\n\t<version>1.0</version>\n\
                      \t<writer>neuralign</writer>\n</info>\n";
        w.chunk(Tag::FileHeader, header.as_bytes())?;
        Ok(w)
    }

    /// Copies the recorded session `source` to `dest` byte for byte (refusing to replace an
    /// existing file) and appends to the copy, after a Boundary chunk: streams added get ids
    /// after `last_id`, the highest id in `source`. `source` must end with a whole chunk (a
    /// file cut off mid-chunk would swallow what follows).
    pub fn append_to_copy(
        source: impl AsRef<Path>,
        dest: impl AsRef<Path>,
        last_id: u32,
    ) -> Result<Self, XdfError> {
        let (source, path) = (source.as_ref(), dest.as_ref().to_path_buf());
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| XdfError::Io { path, source }
        };
        let mut file = create_new(&path)?;
        std::io::copy(&mut File::open(source).map_err(io(source))?, &mut file)
            .map_err(io(&path))?;
        let mut w = XdfWriter::over(path, file, last_id + 1);
        w.boundary()?;
        Ok(w)
    }

    fn over(path: PathBuf, file: File, first_id: u32) -> Self {
        XdfWriter {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            first_id,
            streams: Vec::new(),
            last_flush: Instant::now(),
            last_boundary: Instant::now(),
        }
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Declares a stream (its StreamHeader is `info.xml` verbatim) and
    /// returns its id for the other calls.
    pub fn add_stream(&mut self, info: &StreamInfo) -> Result<u32, XdfError> {
        let id = self.first_id + self.streams.len() as u32;
        let mut payload = id.to_le_bytes().to_vec();
        payload.extend_from_slice(info.xml.as_bytes());
        self.chunk(Tag::StreamHeader, &payload)?;
        let srate = info.nominal_srate;
        self.streams.push(Written {
            id,
            format: info.channel_format,
            channels: info.channel_count,
            stamps: StampState {
                last: 0.0,
                tdiff: if srate > 0.0 { 1.0 / srate } else { 0.0 },
            },
            first: None,
            last: 0.0,
            count: 0,
            offsets: Vec::new(),
        });
        Ok(id)
    }

    /// Appends samples: one time stamp per sample, values `[n, channels]`
    /// row-major in the stream's format.
    pub fn write_samples(
        &mut self,
        id: u32,
        time_stamps: &[f64],
        data: &Samples,
    ) -> Result<(), XdfError> {
        let s = self.stream(id)?;
        let bad = |reason: String| Err(XdfError::BadSamples { id, reason });
        if data.format() != s.format {
            return bad(format!(
                "{} values for a {} stream",
                data.format(),
                s.format
            ));
        }
        if data.value_count() != time_stamps.len() * s.channels {
            return bad(format!(
                "{} values for {} samples of {} channels",
                data.value_count(),
                time_stamps.len(),
                s.channels
            ));
        }
        if time_stamps.is_empty() {
            return Ok(());
        }
        let payload = encode_samples(id, time_stamps, data, s.channels, &mut s.stamps);
        s.first.get_or_insert(time_stamps[0]);
        s.last = time_stamps[time_stamps.len() - 1];
        s.count += time_stamps.len() as u64;
        self.chunk(Tag::Samples, &payload)
    }

    /// Records a clock offset of stream `id`: at `time` (its clock) the
    /// recorder's clock was ahead by `value` seconds.
    pub fn clock_offset(&mut self, id: u32, time: f64, value: f64) -> Result<(), XdfError> {
        self.stream(id)?.offsets.push(ClockOffset { time, value });
        let mut payload = id.to_le_bytes().to_vec();
        payload.extend_from_slice(&time.to_le_bytes());
        payload.extend_from_slice(&value.to_le_bytes());
        self.chunk(Tag::ClockOffset, &payload)
    }

    /// Writes a Boundary chunk (a resynchronisation point for readers).
    pub fn boundary(&mut self) -> Result<(), XdfError> {
        self.last_boundary = Instant::now();
        self.chunk(Tag::Boundary, &BOUNDARY_UUID)
    }

    /// Pushes buffered chunks to the operating system.
    pub fn flush(&mut self) -> Result<(), XdfError> {
        self.last_flush = Instant::now();
        let path = self.path.clone();
        self.out
            .flush()
            .map_err(|source| XdfError::Io { path, source })
    }

    /// Flushes if a second has passed since the last flush and writes a
    /// Boundary chunk every 10 s; cheap enough to call after every write.
    pub fn flush_if_due(&mut self) -> Result<(), XdfError> {
        if self.last_boundary.elapsed() >= BOUNDARY_EVERY {
            self.boundary()?;
        }
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every stream's footer (first/last time stamp, sample count,
    /// clock offsets, as LabRecorder does) and flushes.
    pub fn finish(mut self) -> Result<PathBuf, XdfError> {
        self.boundary()?;
        let footers: Vec<(u32, String)> =
            self.streams.iter().map(|s| (s.id, footer_xml(s))).collect();
        for (id, xml) in footers {
            let mut payload = id.to_le_bytes().to_vec();
            payload.extend_from_slice(xml.as_bytes());
            self.chunk(Tag::StreamFooter, &payload)?;
        }
        self.flush()?;
        Ok(self.path)
    }

    fn stream(&mut self, id: u32) -> Result<&mut Written, XdfError> {
        self.streams
            .get_mut(id.wrapping_sub(self.first_id) as usize)
            .ok_or(XdfError::UnknownStream(id))
    }

    fn chunk(&mut self, tag: Tag, payload: &[u8]) -> Result<(), XdfError> {
        self.raw(&encode_chunk(tag, payload))
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), XdfError> {
        let path = &self.path;
        self.out.write_all(bytes).map_err(|source| XdfError::Io {
            path: path.clone(),
            source,
        })
    }
}

fn footer_xml(s: &Written) -> String {
    let mut x = format!(
        "<?xml version=\"1.0\"?>\n<info>\n\t<first_timestamp>{}</first_timestamp>\n\
         \t<last_timestamp>{}</last_timestamp>\n\t<sample_count>{}</sample_count>\n\t<clock_offsets>",
        s.first.unwrap_or(0.0),
        s.last,
        s.count
    );
    for o in &s.offsets {
        x.push_str(&format!(
            "<offset><time>{}</time><value>{}</value></offset>",
            o.time, o.value
        ));
    }
    x.push_str("</clock_offsets>\n</info>\n");
    x
}
