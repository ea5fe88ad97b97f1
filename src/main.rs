//! The `neuralign` command line: parses arguments and hands each subcommand to
//! its module in `neuralign::cli`. Nothing else lives here.
use clap::{Parser, Subcommand};
use neuralign::cli;

/// Real-time alignment of language-model embeddings with iEEG high-gamma.
#[derive(Parser)]
#[command(name = "neuralign", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on built-in defaults: simulate, fit, replay over LSL, serve.
    Demo(cli::demo::DemoArgs),
    /// Fetch and verify the default model.
    #[command(subcommand)]
    Model(cli::model::ModelCommand),
    /// Show the streams of an XDF recording.
    Inspect(cli::inspect::InspectArgs),
    /// Play an XDF recording as LSL outlets.
    Replay(cli::replay::ReplayArgs),
    /// Play a stimulus WAV with its word table: audio, transcript and onset markers on LSL.
    Play(cli::play::PlayArgs),
    /// Speech recognition with word times: a WAV file into a word table.
    Transcribe(cli::transcribe::TranscribeArgs),
    /// Write a synthetic session with known ground truth.
    Simulate(cli::simulate::SimulateArgs),
    /// List the LSL streams visible now.
    Streams(cli::streams::StreamsArgs),
    /// Connect to the neural and transcript streams for a while and report what arrived.
    Listen(cli::listen::ListenArgs),
    /// Serve the dashboard and the WebSocket API.
    Serve(cli::serve::ServeArgs),
    /// Per-word, per-layer embeddings of a transcript into a safetensors file.
    Embed(cli::embed::EmbedArgs),
    /// Latency and throughput benchmarks.
    Bench(cli::bench::BenchArgs),
    /// Fit per-electrode encoders on a recorded session.
    Fit(cli::fit::FitArgs),
    /// The statistics of a session under encoders: TSV, SVG figures and an HTML page.
    Report(cli::report::ReportArgs),
    /// Several models fit on the same session and compared: brain scores, layer profiles.
    Compare(cli::compare::CompareArgs),
    /// Convert an EDF/BDF, BrainVision or BIDS iEEG recording to an XDF session.
    Import(cli::import::ImportArgs),
}

fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    match Cli::parse().command {
        Command::Demo(args) => cli::demo::run(args),
        Command::Model(cmd) => cli::model::run(cmd),
        Command::Inspect(args) => cli::inspect::run(args),
        Command::Replay(args) => cli::replay::run(args),
        Command::Play(args) => cli::play::run(args),
        Command::Transcribe(args) => cli::transcribe::run(args),
        Command::Simulate(args) => cli::simulate::run(args),
        Command::Streams(args) => cli::streams::run(args),
        Command::Listen(args) => cli::listen::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Embed(args) => cli::embed::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Fit(args) => cli::fit::run(args),
        Command::Report(args) => cli::report::run(args),
        Command::Compare(args) => cli::compare::run(args),
        Command::Import(args) => cli::import::run(args),
    }
}
