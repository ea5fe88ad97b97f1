//! One module per subcommand: each holds its clap arguments and a `run`
//! function that calls into the library and prints the result.

pub mod bench;
pub mod compare;
pub mod demo;
pub mod embed;
pub mod fit;
pub mod import;
pub mod inspect;
pub mod listen;
pub mod model;
pub mod play;
pub mod replay;
pub mod report;
pub mod serve;
pub mod simulate;
pub mod streams;
pub mod transcribe;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Reads a WAV file for `play` or `transcribe`, saying what it had to repair: a `data` chunk
/// longer than the file (read to its last whole frame), float samples that were not audio.
fn read_audio(path: &std::path::Path) -> anyhow::Result<crate::wav::Wav> {
    use anyhow::Context;
    let wav = crate::wav::read_wav(path).with_context(|| format!("reading {}", path.display()))?;
    if wav.truncated {
        tracing::warn!(
            "{}: the data chunk is longer than the file; using the {:.3} s present",
            path.display(),
            wav.seconds()
        );
    }
    if wav.repaired > 0 {
        tracing::warn!(
            "{}: {} float samples were not finite (now 0) or outside [-1, 1] (now clipped)",
            path.display(),
            wav.repaired
        );
    }
    Ok(wav)
}
