//! XDF's byte-level layout: the magic, chunk tags, variable-length integers
//! and the Samples chunk body, shared by the reader and the writer.
use super::info::ChannelFormat;
use super::samples::Samples;

/// Every XDF file starts with these four bytes.
pub const MAGIC: &[u8; 4] = b"XDF:";
/// The 16 bytes of every Boundary chunk (also what readers scan for to
/// resynchronise after corruption).
pub const BOUNDARY_UUID: [u8; 16] = [
    0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4,
];

/// Chunk tags of XDF 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Tag {
    FileHeader = 1,
    StreamHeader = 2,
    Samples = 3,
    ClockOffset = 4,
    Boundary = 5,
    StreamFooter = 6,
}

impl Tag {
    /// The tag for a raw value, `None` for tags XDF 1.0 does not define.
    pub fn from_u16(v: u16) -> Option<Tag> {
        Some(match v {
            1 => Tag::FileHeader,
            2 => Tag::StreamHeader,
            3 => Tag::Samples,
            4 => Tag::ClockOffset,
            5 => Tag::Boundary,
            6 => Tag::StreamFooter,
            _ => return None,
        })
    }
}

/// Appends a variable-length integer: one byte giving the width (1, 4 or 8)
/// then the value little-endian, using the smallest width that fits.
pub fn put_varlen(out: &mut Vec<u8>, v: u64) {
    if v <= u8::MAX as u64 {
        out.push(1);
        out.push(v as u8);
    } else if v <= u32::MAX as u64 {
        out.push(4);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        out.push(8);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A whole chunk: `[varlen length][u16 tag][payload]`, length counting tag
/// and payload.
pub fn encode_chunk(tag: Tag, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 11);
    put_varlen(&mut out, payload.len() as u64 + 2);
    out.extend_from_slice(&(tag as u16).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Cursor over a chunk's payload; every read fails cleanly at the end.
pub struct Bytes<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A payload ended before its contents did, or held an invalid width byte.
#[derive(Debug)]
pub struct BadPayload;

impl<'a> Bytes<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Bytes { buf, pos: 0 }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], BadPayload> {
        let end = self.pos.checked_add(n).ok_or(BadPayload)?;
        let s = self.buf.get(self.pos..end).ok_or(BadPayload)?;
        self.pos = end;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], BadPayload> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    pub fn u8(&mut self) -> Result<u8, BadPayload> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, BadPayload> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> Result<f64, BadPayload> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A variable-length integer (width byte 1, 4 or 8).
    pub fn varlen(&mut self) -> Result<u64, BadPayload> {
        match self.u8()? {
            1 => Ok(self.u8()? as u64),
            4 => Ok(self.u32()? as u64),
            8 => Ok(u64::from_le_bytes(self.array()?)),
            _ => Err(BadPayload),
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
}

/// State carried across Samples chunks of one stream, for time stamps that
/// the file leaves out (deduced as previous + 1/srate, as pyxdf does).
#[derive(Debug, Clone, Copy)]
pub struct StampState {
    pub last: f64,
    pub tdiff: f64,
}

/// Decodes a Samples chunk body (after the stream id) and appends to
/// `stamps`/`data`. On error nothing is appended.
pub fn decode_samples(
    body: &mut Bytes<'_>,
    channels: usize,
    state: &mut StampState,
    stamps: &mut Vec<f64>,
    data: &mut Samples,
) -> Result<usize, BadPayload> {
    let n = body.varlen()? as usize;
    let mut st = *state;
    // Decode into fresh buffers first so a cut-off chunk adds nothing. Every sample takes at
    // least one byte, so a lying count cannot reserve more than the chunk holds.
    let mut new_stamps = Vec::with_capacity(n.min(body.remaining()));
    let mut values = Samples::empty(data.format());
    for _ in 0..n {
        let ts = match body.u8()? {
            0 => st.last + st.tdiff,
            8 => body.f64()?,
            _ => return Err(BadPayload),
        };
        st.last = ts;
        new_stamps.push(ts);
        decode_values(body, channels, &mut values)?;
    }
    *state = st;
    stamps.extend_from_slice(&new_stamps);
    data.extend_from(&values);
    Ok(n)
}

fn decode_values(
    body: &mut Bytes<'_>,
    channels: usize,
    out: &mut Samples,
) -> Result<(), BadPayload> {
    macro_rules! numbers {
        ($v:expr, $t:ty) => {{
            const W: usize = std::mem::size_of::<$t>();
            // A header's channel_count can be anything up to usize::MAX.
            let raw = body.take(W.checked_mul(channels).ok_or(BadPayload)?)?;
            $v.extend(
                raw.chunks_exact(W)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap())),
            );
        }};
    }
    match out {
        Samples::Float32(v) => numbers!(v, f32),
        Samples::Double64(v) => numbers!(v, f64),
        Samples::Int8(v) => numbers!(v, i8),
        Samples::Int16(v) => numbers!(v, i16),
        Samples::Int32(v) => numbers!(v, i32),
        Samples::Int64(v) => numbers!(v, i64),
        Samples::String(v) => {
            for _ in 0..channels {
                let len = body.varlen()? as usize;
                // Invalid UTF-8 is replaced, as pyxdf does.
                v.push(String::from_utf8_lossy(body.take(len)?).into_owned());
            }
        }
    }
    Ok(())
}

/// Encodes a Samples chunk payload: stream id, count, then each sample with
/// its 8-byte time stamp, or none when `deduce` says it equals previous +
/// 1/srate exactly (XDF's time-stamp compression).
pub fn encode_samples(
    id: u32,
    stamps: &[f64],
    data: &Samples,
    channels: usize,
    state: &mut StampState,
) -> Vec<u8> {
    let elem = match data.format() {
        ChannelFormat::String => 8,
        f => f.value_bytes(),
    };
    let mut out = Vec::with_capacity(16 + stamps.len() * (9 + channels * elem));
    out.extend_from_slice(&id.to_le_bytes());
    put_varlen(&mut out, stamps.len() as u64);
    for (k, &ts) in stamps.iter().enumerate() {
        if state.tdiff > 0.0 && ts == state.last + state.tdiff {
            out.push(0);
        } else {
            out.push(8);
            out.extend_from_slice(&ts.to_le_bytes());
        }
        state.last = ts;
        for c in 0..channels {
            data.encode_value(k * channels + c, &mut out);
        }
    }
    out
}
