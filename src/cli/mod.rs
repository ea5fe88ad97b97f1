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
