//! Sample values of one stream, stored per channel format, `[samples,
//! channels]` row-major, plus their little-endian XDF encoding.
use super::info::ChannelFormat;

/// Values of a stream in its own channel format, `[samples, channels]`
/// row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    /// `float32` channels.
    Float32(Vec<f32>),
    /// `double64` channels.
    Double64(Vec<f64>),
    /// `int8` channels.
    Int8(Vec<i8>),
    /// `int16` channels.
    Int16(Vec<i16>),
    /// `int32` channels.
    Int32(Vec<i32>),
    /// `int64` channels.
    Int64(Vec<i64>),
    /// `string` channels.
    String(Vec<String>),
}

/// Applies `$body` to the inner vector whatever the variant.
macro_rules! each {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            Samples::Float32($v) => $body,
            Samples::Double64($v) => $body,
            Samples::Int8($v) => $body,
            Samples::Int16($v) => $body,
            Samples::Int32($v) => $body,
            Samples::Int64($v) => $body,
            Samples::String($v) => $body,
        }
    };
}

/// Same-variant binary operation; `$other` arm when variants differ.
macro_rules! pair {
    ($a:expr, $b:expr, $x:ident, $y:ident => $body:expr, $other:expr) => {
        match ($a, $b) {
            (Samples::Float32($x), Samples::Float32($y)) => $body,
            (Samples::Double64($x), Samples::Double64($y)) => $body,
            (Samples::Int8($x), Samples::Int8($y)) => $body,
            (Samples::Int16($x), Samples::Int16($y)) => $body,
            (Samples::Int32($x), Samples::Int32($y)) => $body,
            (Samples::Int64($x), Samples::Int64($y)) => $body,
            (Samples::String($x), Samples::String($y)) => $body,
            _ => $other,
        }
    };
}

impl Samples {
    /// An empty buffer of the given format.
    pub fn empty(format: ChannelFormat) -> Self {
        match format {
            ChannelFormat::Float32 => Samples::Float32(Vec::new()),
            ChannelFormat::Double64 => Samples::Double64(Vec::new()),
            ChannelFormat::Int8 => Samples::Int8(Vec::new()),
            ChannelFormat::Int16 => Samples::Int16(Vec::new()),
            ChannelFormat::Int32 => Samples::Int32(Vec::new()),
            ChannelFormat::Int64 => Samples::Int64(Vec::new()),
            ChannelFormat::String => Samples::String(Vec::new()),
        }
    }

    /// The channel format these values belong to.
    pub fn format(&self) -> ChannelFormat {
        match self {
            Samples::Float32(_) => ChannelFormat::Float32,
            Samples::Double64(_) => ChannelFormat::Double64,
            Samples::Int8(_) => ChannelFormat::Int8,
            Samples::Int16(_) => ChannelFormat::Int16,
            Samples::Int32(_) => ChannelFormat::Int32,
            Samples::Int64(_) => ChannelFormat::Int64,
            Samples::String(_) => ChannelFormat::String,
        }
    }

    /// Total number of values (samples × channels).
    pub fn value_count(&self) -> usize {
        each!(self, v => v.len())
    }

    /// Appends `other` (same format); returns false if the formats differ.
    pub fn extend_from(&mut self, other: &Samples) -> bool {
        pair!(self, other, a, b => { a.extend_from_slice(b); true }, false)
    }

    /// Keeps only the first `values` values.
    pub fn truncate(&mut self, values: usize) {
        each!(self, v => v.truncate(values))
    }

    /// Values `[start, end)` (in values, not samples) as a new buffer.
    pub fn slice(&self, start: usize, end: usize) -> Samples {
        match self {
            Samples::Float32(v) => Samples::Float32(v[start..end].to_vec()),
            Samples::Double64(v) => Samples::Double64(v[start..end].to_vec()),
            Samples::Int8(v) => Samples::Int8(v[start..end].to_vec()),
            Samples::Int16(v) => Samples::Int16(v[start..end].to_vec()),
            Samples::Int32(v) => Samples::Int32(v[start..end].to_vec()),
            Samples::Int64(v) => Samples::Int64(v[start..end].to_vec()),
            Samples::String(v) => Samples::String(v[start..end].to_vec()),
        }
    }

    /// Appends value `index` in XDF's encoding (little-endian numbers;
    /// strings as a variable-length byte count then UTF-8 bytes).
    pub(crate) fn encode_value(&self, index: usize, out: &mut Vec<u8>) {
        match self {
            Samples::Float32(v) => out.extend_from_slice(&v[index].to_le_bytes()),
            Samples::Double64(v) => out.extend_from_slice(&v[index].to_le_bytes()),
            Samples::Int8(v) => out.extend_from_slice(&v[index].to_le_bytes()),
            Samples::Int16(v) => out.extend_from_slice(&v[index].to_le_bytes()),
            Samples::Int32(v) => out.extend_from_slice(&v[index].to_le_bytes()),
            Samples::Int64(v) => out.extend_from_slice(&v[index].to_le_bytes()),
            Samples::String(v) => {
                super::chunk::put_varlen(out, v[index].len() as u64);
                out.extend_from_slice(v[index].as_bytes());
            }
        }
    }
}
