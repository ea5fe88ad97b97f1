//! `neuralign inspect FILE.xdf [--json]`: what a recording holds, stream by
//! stream (formats, rates, sample counts, time spans, clock offsets).
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use crate::xdf::{self, ReadOptions, Samples, Stream};

/// Arguments of `neuralign inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The XDF file to inspect.
    pub file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Map time stamps onto the recorder's clock with the clock offsets
    /// (pyxdf's synchronize_clocks, with clock-reset handling).
    #[arg(long)]
    pub sync: bool,
    /// Remove jitter from regular streams' time stamps (pyxdf's
    /// dejitter_timestamps).
    #[arg(long)]
    pub dejitter: bool,
    /// Include every time stamp and value in the JSON (for comparisons with
    /// other readers).
    #[arg(long, hide = true, requires = "json")]
    pub samples: bool,
}

/// One stream as `inspect --json` reports it.
#[derive(Serialize)]
struct StreamReport {
    id: u32,
    name: String,
    #[serde(rename = "type")]
    stream_type: String,
    source_id: String,
    channel_format: xdf::ChannelFormat,
    channel_count: usize,
    channel_labels: Vec<String>,
    nominal_srate: f64,
    effective_srate: f64,
    sample_count: usize,
    first_timestamp: Option<f64>,
    last_timestamp: Option<f64>,
    duration: f64,
    clock_offsets: usize,
    clock_offset_first: Option<xdf::ClockOffset>,
    clock_offset_last: Option<xdf::ClockOffset>,
    segments: Vec<(usize, usize)>,
    clock_segments: Vec<(usize, usize)>,
    has_footer: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_stamps: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_series: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_times: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_values: Option<Vec<f64>>,
}

#[derive(Serialize)]
struct FileReport {
    file: PathBuf,
    streams: Vec<StreamReport>,
    warnings: Vec<String>,
}

/// Runs `neuralign inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let options = ReadOptions {
        sync_clocks: args.sync,
        dejitter: args.dejitter,
        ..Default::default()
    };
    let file = xdf::read_with(&args.file, options).with_context(|| {
        format!(
            "cannot read {}; is it an XDF recording?",
            args.file.display()
        )
    })?;
    let report = FileReport {
        file: args.file.clone(),
        streams: file
            .streams
            .iter()
            .map(|s| report(s, args.samples))
            .collect(),
        warnings: file.warnings,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn report(s: &Stream, samples: bool) -> StreamReport {
    let first = s.time_stamps.first().copied();
    let last = s.time_stamps.last().copied();
    StreamReport {
        id: s.id,
        name: s.info.name.clone(),
        stream_type: s.info.stream_type.clone(),
        source_id: s.info.source_id.clone(),
        channel_format: s.info.channel_format,
        channel_count: s.info.channel_count,
        channel_labels: s.info.channel_labels.clone(),
        nominal_srate: s.info.nominal_srate,
        effective_srate: s.effective_srate,
        sample_count: s.len(),
        first_timestamp: first,
        last_timestamp: last,
        duration: last.zip(first).map_or(0.0, |(l, f)| l - f),
        clock_offsets: s.clock_offsets.len(),
        clock_offset_first: s.clock_offsets.first().copied(),
        clock_offset_last: s.clock_offsets.last().copied(),
        segments: s.segments.clone(),
        clock_segments: s.clock_segments.clone(),
        has_footer: s.footer_xml.is_some(),
        time_stamps: samples.then(|| s.time_stamps.clone()),
        time_series: samples.then(|| values_json(&s.data)),
        clock_times: samples.then(|| s.clock_offsets.iter().map(|c| c.time).collect()),
        clock_values: samples.then(|| s.clock_offsets.iter().map(|c| c.value).collect()),
    }
}

fn values_json(data: &Samples) -> serde_json::Value {
    let v = match data {
        Samples::Float32(v) => serde_json::to_value(v),
        Samples::Double64(v) => serde_json::to_value(v),
        Samples::Int8(v) => serde_json::to_value(v),
        Samples::Int16(v) => serde_json::to_value(v),
        Samples::Int32(v) => serde_json::to_value(v),
        Samples::Int64(v) => serde_json::to_value(v),
        Samples::String(v) => serde_json::to_value(v),
    };
    v.expect("numbers and strings always serialise")
}

fn print_table(r: &FileReport) {
    println!("{}", r.file.display());
    println!(
        "{:>10}  {:<28} {:<12} {:<8} {:>4} {:>9} {:>10} {:>9} {:>12} {:>12} {:>7}",
        "id",
        "name",
        "type",
        "format",
        "ch",
        "rate",
        "eff. rate",
        "samples",
        "first",
        "duration",
        "offsets"
    );
    for s in &r.streams {
        println!(
            "{:>10}  {:<28} {:<12} {:<8} {:>4} {:>9.3} {:>10.3} {:>9} {:>12.3} {:>12.3} {:>7}",
            s.id,
            s.name,
            s.stream_type,
            s.channel_format.name(),
            s.channel_count,
            s.nominal_srate,
            s.effective_srate,
            s.sample_count,
            s.first_timestamp.unwrap_or(f64::NAN),
            s.duration,
            s.clock_offsets,
        );
        if let (Some(a), Some(b)) = (s.clock_offset_first, s.clock_offset_last) {
            println!(
                "{:>10}  clock offset {:+.6} s at {:.3} .. {:+.6} s at {:.3}{}",
                "",
                a.value,
                a.time,
                b.value,
                b.time,
                if s.clock_segments.len() > 1 {
                    format!(" ({} clock resets)", s.clock_segments.len() - 1)
                } else {
                    String::new()
                }
            );
        }
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
}
