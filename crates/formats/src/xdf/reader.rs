//! Reads XDF files chunk by chunk. Damage is survivable: a file cut off
//! mid-chunk loads up to its last complete chunk, a corrupt chunk is skipped
//! (scanning to the next Boundary chunk when the chunk framing itself is
//! lost), and every such event is logged and listed in
//! [`XdfFile::warnings`].
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::Path;

use super::chunk::{self, Bytes, StampState, Tag, BOUNDARY_UUID, MAGIC};
use super::{sync, ClockOffset, Samples, Stream, StreamInfo, XdfError, XdfFile};

/// What to do to time stamps after loading (pyxdf's `load_xdf` options).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadOptions {
    /// Map each stream's time stamps onto the recorder's clock with a robust
    /// linear fit of its ClockOffset chunks (pyxdf `synchronize_clocks`).
    pub sync_clocks: bool,
    /// Fit clock offsets piecewise between detected clock resets
    /// (pyxdf `handle_clock_resets`).
    pub handle_clock_resets: bool,
    /// Replace the time stamps of regular streams by a per-segment linear fit
    /// (pyxdf `dejitter_timestamps`).
    pub dejitter: bool,
}

impl Default for ReadOptions {
    /// Time stamps exactly as stored.
    fn default() -> Self {
        ReadOptions {
            sync_clocks: false,
            handle_clock_resets: true,
            dejitter: false,
        }
    }
}

impl ReadOptions {
    /// pyxdf's defaults: synchronised clocks with reset handling, dejittered.
    pub fn pyxdf() -> Self {
        ReadOptions {
            sync_clocks: true,
            handle_clock_resets: true,
            dejitter: true,
        }
    }
}

/// Reads a file with its time stamps exactly as stored.
pub fn read(path: impl AsRef<Path>) -> Result<XdfFile, XdfError> {
    read_with(path, ReadOptions::default())
}

/// Reads a file and post-processes time stamps as `options` say.
pub fn read_with(path: impl AsRef<Path>, options: ReadOptions) -> Result<XdfFile, XdfError> {
    let path = path.as_ref();
    let io = |source| XdfError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    read_from(BufReader::with_capacity(1 << 20, file), size, path, options)
}

/// Reads a whole XDF file held in memory (e.g. received over a socket, or a
/// fuzzer's input); errors name the path `<memory>`.
pub fn read_bytes(bytes: &[u8], options: ReadOptions) -> Result<XdfFile, XdfError> {
    read_from(bytes, bytes.len() as u64, Path::new("<memory>"), options)
}

/// Reads `size` bytes of XDF from `input`; `path` names it in errors.
fn read_from(
    mut input: impl BufRead,
    size: u64,
    path: &Path,
    options: ReadOptions,
) -> Result<XdfFile, XdfError> {
    let io = |source| XdfError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut magic = [0u8; 4];
    if input.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(XdfError::NotXdf(path.to_path_buf()));
    }
    let mut state = ReadState {
        remaining: size - 4,
        ..Default::default()
    };
    loop {
        match next_chunk(&mut input, &mut state) {
            Ok(Some((tag, payload))) => state.handle(tag, &payload),
            Ok(None) => break,
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                state.warn(format!(
                    "file ends inside a chunk (cut off while recording?); loaded the {} complete chunks before it",
                    state.chunks
                ));
                break;
            }
            Err(e) => return Err(io(e)),
        }
    }
    let ReadState {
        header_xml,
        mut streams,
        mut warnings,
        ..
    } = state;
    for s in &mut streams {
        warnings.extend(sync::process(s, &options));
    }
    Ok(XdfFile {
        header_xml,
        streams,
        warnings,
    })
}

#[derive(Default)]
struct ReadState {
    header_xml: String,
    streams: Vec<Stream>,
    index: HashMap<u32, usize>,
    stamps: Vec<StampState>,
    warnings: Vec<String>,
    chunks: usize,
    remaining: u64,
}

/// Reads the next chunk's tag and payload; `None` at a clean end of file.
fn next_chunk(
    input: &mut impl BufRead,
    st: &mut ReadState,
) -> std::io::Result<Option<(u16, Vec<u8>)>> {
    loop {
        let mut width = [0u8; 1];
        if input.read(&mut width)? == 0 {
            return Ok(None);
        }
        st.remaining = st.remaining.saturating_sub(1);
        let len = match width[0] {
            1 | 4 | 8 => {
                let mut b = [0u8; 8];
                input.read_exact(&mut b[..width[0] as usize])?;
                st.remaining = st.remaining.saturating_sub(width[0] as u64);
                u64::from_le_bytes(b)
            }
            w => {
                st.warn(format!(
                    "invalid chunk length width {w}; scanning to the next boundary chunk"
                ));
                if !scan_to_boundary(input, st)? {
                    return Ok(None);
                }
                continue;
            }
        };
        if len < 2 {
            st.warn(format!(
                "chunk of length {len}; scanning to the next boundary chunk"
            ));
            if !scan_to_boundary(input, st)? {
                return Ok(None);
            }
            continue;
        }
        if len > st.remaining {
            // Do not allocate what the file cannot hold: it was cut off.
            return Err(ErrorKind::UnexpectedEof.into());
        }
        let mut tag = [0u8; 2];
        input.read_exact(&mut tag)?;
        let mut payload = vec![0u8; (len - 2) as usize];
        input.read_exact(&mut payload)?;
        st.remaining -= len;
        return Ok(Some((u16::from_le_bytes(tag), payload)));
    }
}

/// Skips past the next Boundary chunk's UUID; false if the file ends first.
fn scan_to_boundary(input: &mut impl BufRead, st: &mut ReadState) -> std::io::Result<bool> {
    let mut window = [0u8; 16];
    let mut filled = 0usize;
    let mut byte = [0u8; 1];
    while input.read(&mut byte)? == 1 {
        st.remaining = st.remaining.saturating_sub(1);
        window.rotate_left(1);
        window[15] = byte[0];
        filled += 1;
        if filled >= 16 && window == BOUNDARY_UUID {
            return Ok(true);
        }
    }
    Ok(false)
}

impl ReadState {
    fn warn(&mut self, msg: String) {
        tracing::warn!("{msg}");
        self.warnings.push(msg);
    }

    fn handle(&mut self, raw_tag: u16, payload: &[u8]) {
        self.chunks += 1;
        let Some(tag) = Tag::from_u16(raw_tag) else {
            tracing::debug!("skipping chunk with unknown tag {raw_tag}");
            return;
        };
        let mut body = Bytes::new(payload);
        if tag == Tag::FileHeader {
            self.header_xml = String::from_utf8_lossy(payload).into_owned();
            return;
        }
        if tag == Tag::Boundary {
            return;
        }
        let Ok(id) = body.u32() else {
            self.warn(format!(
                "{tag:?} chunk too short to hold a stream id; skipped"
            ));
            return;
        };
        if tag == Tag::StreamHeader {
            self.add_stream(id, body.rest());
            return;
        }
        let Some(&k) = self.index.get(&id) else {
            self.warn(format!(
                "{tag:?} chunk for stream {id}, which has no valid header; skipped"
            ));
            return;
        };
        let stream = &mut self.streams[k];
        let result = match tag {
            Tag::Samples => chunk::decode_samples(
                &mut body,
                stream.info.channel_count,
                &mut self.stamps[k],
                &mut stream.time_stamps,
                &mut stream.data,
            )
            .map(|_| ()),
            Tag::ClockOffset => body
                .f64()
                .and_then(|time| {
                    Ok(ClockOffset {
                        time,
                        value: body.f64()?,
                    })
                })
                .map(|c| stream.clock_offsets.push(c)),
            Tag::StreamFooter => {
                stream.footer_xml = Some(String::from_utf8_lossy(body.rest()).into_owned());
                Ok(())
            }
            Tag::FileHeader | Tag::StreamHeader | Tag::Boundary => unreachable!("handled above"),
        };
        if result.is_err() {
            self.warn(format!("corrupt {tag:?} chunk for stream {id}; skipped"));
        }
    }

    fn add_stream(&mut self, id: u32, xml: &[u8]) {
        let xml = String::from_utf8_lossy(xml).into_owned();
        let info = match StreamInfo::parse(&xml) {
            Ok(info) => info,
            Err(e) => {
                self.warn(format!("stream {id}: {e}; its chunks will be skipped"));
                return;
            }
        };
        let srate = info.nominal_srate;
        let stream = Stream {
            id,
            data: Samples::empty(info.channel_format),
            info,
            time_stamps: Vec::new(),
            clock_offsets: Vec::new(),
            footer_xml: None,
            effective_srate: 0.0,
            segments: Vec::new(),
            clock_segments: Vec::new(),
        };
        let stamps = StampState {
            last: 0.0,
            tdiff: if srate > 0.0 { 1.0 / srate } else { 0.0 },
        };
        if let Some(&k) = self.index.get(&id) {
            self.warn(format!(
                "stream {id} has a second header; the first is replaced"
            ));
            self.streams[k] = stream;
            self.stamps[k] = stamps;
        } else {
            self.index.insert(id, self.streams.len());
            self.streams.push(stream);
            self.stamps.push(stamps);
        }
    }
}
