//! WAV audio (RIFF/WAVE) read into interleaved `f32` samples in [-1, 1]: the stimulus that
//! `neuralign play` publishes and the audio that `neuralign transcribe` decodes.
//!
//! Accepted: integer PCM of 8, 16, 24 or 32 bits and IEEE float of 32 or 64 bits, plain or
//! in a `WAVE_FORMAT_EXTENSIBLE` header, any channel count and a rate of 1 Hz to 384 kHz.
//! Anything else (a compressed format, a truncated header, no `data` chunk) is a
//! [`WavError`] naming what was found. A `data` chunk longer than the file (a recorder that
//! died before it wrote the sizes) is read up to the last whole frame and reported in
//! [`Wav::truncated`]. Integer samples are scaled by 2^(bits−1), so 16-bit samples survive
//! the round trip to `f32` and back exactly. A float sample that is not finite becomes 0 and
//! one outside [-1, 1] is clipped to it, both counted in [`Wav::repaired`]: what follows
//! (resampling, the mel spectrogram) must not see NaN.
use std::path::Path;

/// How the file stored its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WavSampleFormat {
    /// Integer PCM of this many bits.
    Int(u16),
    /// IEEE float of this many bits.
    Float(u16),
}

/// A WAV file's audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Wav {
    /// Frames per second.
    pub rate: u32,
    /// Channels per frame.
    pub channels: u16,
    /// How the file stored its samples.
    pub format: WavSampleFormat,
    /// Interleaved samples in [-1, 1] (`frames × channels`).
    pub samples: Vec<f32>,
    /// Whether the `data` chunk claimed more bytes than the file holds.
    pub truncated: bool,
    /// Float samples that were not finite (now 0) or outside [-1, 1] (now clipped).
    pub repaired: usize,
}

impl Wav {
    /// Whole frames.
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.rate)
    }

    /// One channel per frame: the channels averaged.
    pub fn mono(&self) -> Vec<f32> {
        let ch = usize::from(self.channels.max(1));
        self.samples
            .chunks_exact(ch)
            .map(|f| f.iter().sum::<f32>() / ch as f32)
            .collect()
    }
}

/// Why a WAV file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a RIFF/WAVE file.
    #[error("not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    /// A chunk header or the `fmt ` chunk is cut short.
    #[error("the WAV header is truncated ({0})")]
    Truncated(&'static str),
    /// No `fmt ` chunk before the `data` chunk.
    #[error("the WAV file has no \"fmt \" chunk before its data")]
    NoFormat,
    /// No `data` chunk.
    #[error("the WAV file has no \"data\" chunk")]
    NoData,
    /// A compressed or otherwise unsupported sample encoding.
    #[error(
        "the WAV file is not PCM: format tag {tag:#06x} ({name}); convert it to 16-bit PCM \
         (e.g. `ffmpeg -i IN -c:a pcm_s16le OUT.wav`)"
    )]
    NotPcm {
        /// The format tag (after resolving `WAVE_FORMAT_EXTENSIBLE`).
        tag: u16,
        /// The tag's common name.
        name: &'static str,
    },
    /// PCM or float with a sample width this reader does not take.
    #[error("unsupported sample width: {bits}-bit {kind} (supported: 8/16/24/32-bit PCM, 32/64-bit float)")]
    Width {
        /// `PCM` or `float`.
        kind: &'static str,
        /// Bits per sample.
        bits: u16,
    },
    /// Zero channels, a zero or absurd rate, or a block size that disagrees with the width.
    #[error("impossible WAV format: {0}")]
    Impossible(String),
}

const PCM: u16 = 1;
const FLOAT: u16 = 3;
const EXTENSIBLE: u16 = 0xfffe;

fn tag_name(tag: u16) -> &'static str {
    match tag {
        0x0002 => "Microsoft ADPCM",
        0x0006 => "A-law",
        0x0007 => "mu-law",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG",
        0x0055 => "MP3",
        0x00ff | 0x1610 => "AAC",
        _ => "unknown",
    }
}

/// Reads a WAV file.
pub fn read_wav(path: &Path) -> Result<Wav, WavError> {
    let bytes = std::fs::read(path).map_err(|source| WavError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_wav(&bytes)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the bytes of a WAV file; see [`read_wav`].
pub fn parse_wav(bytes: &[u8]) -> Result<Wav, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let mut at = 12;
    let mut format: Option<(u16, u16, u32, u16, u16)> = None;
    while at < bytes.len() {
        if bytes.len() - at < 8 {
            return Err(WavError::Truncated("chunk header"));
        }
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4) as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                if size < 16 || bytes.len() - body < 16 {
                    return Err(WavError::Truncated("fmt chunk"));
                }
                let mut tag = u16_at(bytes, body);
                let channels = u16_at(bytes, body + 2);
                let rate = u32_at(bytes, body + 4);
                let block = u16_at(bytes, body + 12);
                let bits = u16_at(bytes, body + 14);
                if tag == EXTENSIBLE {
                    // cbSize, valid bits, channel mask, then the sub-format GUID's first 2 bytes.
                    if size < 40 || bytes.len() - body < 26 {
                        return Err(WavError::Truncated("extensible fmt chunk"));
                    }
                    tag = u16_at(bytes, body + 24);
                }
                format = Some((tag, channels, rate, block, bits));
            }
            b"data" => {
                let (tag, channels, rate, block, bits) = format.ok_or(WavError::NoFormat)?;
                let sample_format = check_format(tag, channels, rate, block, bits)?;
                let available = bytes.len() - body;
                let truncated = size > available;
                let data = &bytes[body..body + size.min(available)];
                let whole = data.len() - data.len() % usize::from(block);
                let mut samples = decode(&data[..whole], sample_format);
                let mut repaired = 0;
                for x in samples.iter_mut().filter(|x| !(-1.0..=1.0).contains(*x)) {
                    *x = if x.is_finite() {
                        x.clamp(-1.0, 1.0)
                    } else {
                        0.0
                    };
                    repaired += 1;
                }
                return Ok(Wav {
                    rate,
                    channels,
                    format: sample_format,
                    samples,
                    truncated,
                    repaired,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(WavError::NoData)
}

fn check_format(
    tag: u16,
    channels: u16,
    rate: u32,
    block: u16,
    bits: u16,
) -> Result<WavSampleFormat, WavError> {
    let format = match (tag, bits) {
        (PCM, 8 | 16 | 24 | 32) => WavSampleFormat::Int(bits),
        (FLOAT, 32 | 64) => WavSampleFormat::Float(bits),
        (PCM, _) => return Err(WavError::Width { kind: "PCM", bits }),
        (FLOAT, _) => {
            return Err(WavError::Width {
                kind: "float",
                bits,
            })
        }
        _ => {
            return Err(WavError::NotPcm {
                tag,
                name: tag_name(tag),
            })
        }
    };
    if channels == 0 {
        return Err(WavError::Impossible("0 channels".into()));
    }
    if rate == 0 || rate > 384_000 {
        return Err(WavError::Impossible(format!("{rate} frames per second")));
    }
    if u32::from(block) != u32::from(channels) * u32::from(bits / 8) {
        return Err(WavError::Impossible(format!(
            "{block}-byte frames for {channels} channels of {bits} bits"
        )));
    }
    Ok(format)
}

fn decode(data: &[u8], format: WavSampleFormat) -> Vec<f32> {
    match format {
        // 8-bit WAV is unsigned, centred on 128.
        WavSampleFormat::Int(8) => data
            .iter()
            .map(|&b| (f32::from(b) - 128.0) / 128.0)
            .collect(),
        WavSampleFormat::Int(16) => data
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
            .collect(),
        WavSampleFormat::Int(24) => data
            .chunks_exact(3)
            .map(|c| (i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8) as f32 / 8_388_608.0)
            .collect(),
        WavSampleFormat::Int(_) => data
            .chunks_exact(4)
            .map(|c| {
                (f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])) / 2_147_483_648.0) as f32
            })
            .collect(),
        WavSampleFormat::Float(32) => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        WavSampleFormat::Float(_) => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
    }
}

/// 16-bit PCM WAV bytes of interleaved `samples` in [-1, 1] (clamped): what `transcribe`'s
/// tests and tools write.
pub fn wav_bytes_i16(rate: u32, channels: u16, samples: &[f32]) -> Vec<u8> {
    let data_len = samples.len() * 2;
    let mut out = Vec::with_capacity(44 + data_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&((36 + data_len) as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&PCM.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data_len as u32).to_le_bytes());
    for &s in samples {
        out.extend_from_slice(&to_i16(s).to_le_bytes());
    }
    out
}

/// A sample in [-1, 1] as 16-bit PCM (clamped, rounded): exact for samples read from 16-bit PCM.
pub fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut b = wav_bytes_i16(rate, channels, &[]);
        b[20..22].copy_from_slice(&tag.to_le_bytes());
        b[32..34].copy_from_slice(&(channels * bits / 8).to_le_bytes());
        b[34..36].copy_from_slice(&bits.to_le_bytes());
        b[40..44].copy_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn sixteen_bit_round_trips_exactly() {
        let samples: Vec<f32> = [-32768i16, -1, 0, 1, 12345, 32767]
            .iter()
            .map(|&s| f32::from(s) / 32768.0)
            .collect();
        let wav = parse_wav(&wav_bytes_i16(16_000, 2, &samples)).unwrap();
        assert_eq!((wav.rate, wav.channels), (16_000, 2));
        assert_eq!(wav.format, WavSampleFormat::Int(16));
        assert_eq!(wav.frames(), 3);
        let back: Vec<i16> = wav.samples.iter().map(|&s| to_i16(s)).collect();
        assert_eq!(back, vec![-32768, -1, 0, 1, 12345, 32767]);
        assert_eq!(wav.mono()[2], (12345.0 + 32767.0) / 32768.0 / 2.0);
    }

    #[test]
    fn other_widths_and_float() {
        let w = parse_wav(&header(PCM, 1, 8000, 24, &[0, 0, 0x40, 0xff, 0xff, 0xff])).unwrap();
        assert_eq!(w.samples, vec![0.5, -1.0 / 8_388_608.0]);
        let w = parse_wav(&header(PCM, 1, 8000, 8, &[128, 0])).unwrap();
        assert_eq!(w.samples, vec![0.0, -1.0]);
        let w = parse_wav(&header(FLOAT, 1, 8000, 32, &0.25f32.to_le_bytes())).unwrap();
        assert_eq!((w.samples, w.repaired), (vec![0.25], 0));
    }

    #[test]
    fn float_samples_that_are_not_audio_are_repaired_and_counted() {
        let values = [0.5f32, f32::NAN, 3.0, -f32::INFINITY, -1.0, -1.5];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let w = parse_wav(&header(FLOAT, 2, 8000, 32, &bytes)).unwrap();
        assert_eq!(w.samples, vec![0.5, 0.0, 1.0, 0.0, -1.0, -1.0]);
        assert_eq!(w.repaired, 4);
        let big = f64::MAX.to_le_bytes();
        let w = parse_wav(&header(FLOAT, 1, 8000, 64, &big)).unwrap();
        assert_eq!(
            (w.samples, w.repaired),
            (vec![0.0], 1),
            "f64::MAX is inf as f32"
        );
    }

    #[test]
    fn compressed_odd_and_broken_files_are_clear_errors() {
        let e = parse_wav(&header(0x55, 1, 8000, 16, &[0; 4])).unwrap_err();
        assert!(
            e.to_string().contains("not PCM") && e.to_string().contains("MP3"),
            "{e}"
        );
        let e = parse_wav(&header(PCM, 1, 8000, 12, &[0; 4])).unwrap_err();
        assert!(matches!(e, WavError::Width { bits: 12, .. }), "{e}");
        assert!(matches!(
            parse_wav(b"RIFF\0\0\0\0AVI "),
            Err(WavError::NotWav)
        ));
        assert!(matches!(
            parse_wav(&header(PCM, 0, 8000, 16, &[])),
            Err(WavError::Impossible(_))
        ));
        let full = wav_bytes_i16(8000, 1, &[0.0; 4]);
        assert!(matches!(
            parse_wav(&full[..30]),
            Err(WavError::Truncated(_))
        ));
        let mut no_data = full[..36].to_vec();
        no_data.extend_from_slice(b"LIST\x02\0\0\0ab");
        assert!(matches!(parse_wav(&no_data), Err(WavError::NoData)));
    }

    #[test]
    fn a_data_chunk_longer_than_the_file_is_read_to_its_last_whole_frame() {
        let full = wav_bytes_i16(8000, 2, &[0.5; 8]);
        let wav = parse_wav(&full[..full.len() - 3]).unwrap();
        assert!(wav.truncated);
        assert_eq!(wav.frames(), 3);
    }
}
