//! `neuralign bench import`: how fast `neuralign import` converts a large EDF file to XDF,
//! and how much memory it holds while doing so.
//!
//! Writes a synthetic EDF of the Podcast-ECoG size (200 channels at 512 Hz, 16-bit, one
//! second per record; 30 minutes by default) into a temporary folder, reads it once so that
//! it is in the page cache, then imports it [`RUNS`] times. Reports the input MB/s of each
//! run (median and spread) and the peak resident memory above what the process held before
//! (the kernel's high-water mark, reset before each run through `/proc/self/clear_refs`).
use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::report::{Figure, PartReport};
use crate::import::{import, ImportOptions};

/// Channels of the synthetic recording.
const CHANNELS: usize = 200;
/// Its rate, Hz.
const RATE: usize = 512;
/// Imports measured.
const RUNS: usize = 3;

/// Imports a `minutes`-long synthetic EDF [`RUNS`] times.
pub fn run(minutes: f64) -> anyhow::Result<PartReport> {
    anyhow::ensure!(
        minutes > 0.0,
        "the import benchmark needs a recording of > 0 minutes"
    );
    let dir = tempfile::tempdir().context("a temporary folder for the benchmark recording")?;
    let edf = dir.path().join("bench.edf");
    let records = (minutes * 60.0).round().max(1.0) as usize;
    write_edf(&edf, records)?;
    let bytes = std::fs::metadata(&edf)?.len();
    std::io::copy(&mut std::fs::File::open(&edf)?, &mut std::io::sink())?; // warm the cache

    let mut rates = Vec::with_capacity(RUNS);
    let mut peaks = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let out = dir.path().join(format!("bench-{run}.xdf"));
        let before = resident_kb("VmRSS")?;
        reset_peak();
        let started = Instant::now();
        import(&edf, &out, &ImportOptions::default(), &mut |_| {})?;
        let seconds = started.elapsed().as_secs_f64();
        let peak = resident_kb("VmHWM")?;
        rates.push(bytes as f64 / 1e6 / seconds);
        peaks.push(peak.saturating_sub(before) as f64 / 1024.0);
        std::fs::remove_file(&out)?;
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (rate, peak) = (median(&rates), median(&peaks));
    Ok(PartReport {
        title: format!(
            "import of a {minutes}-minute EDF, {CHANNELS} ch × {RATE} Hz ({:.0} MB), warm cache, {RUNS} runs",
            bytes as f64 / 1e6
        ),
        rows: Vec::new(),
        figures: vec![
            Figure::new("import throughput (median)", rate, "MB/s"),
            Figure::new("peak memory above the start (median)", peak, "MB"),
        ],
        details: json!({
            "input_bytes": bytes,
            "channels": CHANNELS,
            "rate_hz": RATE,
            "minutes": minutes,
            "mb_per_s": rates,
            "peak_mb_above_start": peaks,
            "targets": {"mb_per_s": 100.0, "peak_mb": 64.0},
        }),
    })
}

/// A plain EDF: `records` one-second records of [`CHANNELS`] sines with a little noise.
fn write_edf(path: &std::path::Path, records: usize) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut header = format!(
        "{:<8}{:<80}{:<80}{:<8}{:<8}{:<8}{:<44}{:<8}{:<8}{:<4}",
        "0",
        "X X X X",
        "Startdate 30-NOV-2026 X X X",
        "30.11.26",
        "12.00.00",
        256 * (CHANNELS + 1),
        "",
        records,
        1,
        CHANNELS
    );
    let column = |h: &mut String, width: usize, value: &dyn Fn(usize) -> String| {
        for c in 0..CHANNELS {
            h.push_str(&format!("{:<width$}", value(c)));
        }
    };
    column(&mut header, 16, &|c| format!("G{}", c + 1));
    column(&mut header, 80, &|_| String::new());
    column(&mut header, 8, &|_| "uV".into());
    column(&mut header, 8, &|_| "-3276.8".into());
    column(&mut header, 8, &|_| "3276.7".into());
    column(&mut header, 8, &|_| "-32768".into());
    column(&mut header, 8, &|_| "32767".into());
    column(&mut header, 80, &|_| String::new());
    column(&mut header, 8, &|_| RATE.to_string());
    column(&mut header, 32, &|_| String::new());
    out.write_all(header.as_bytes())?;
    let mut record = Vec::with_capacity(CHANNELS * RATE * 2);
    let mut noise = 1u32;
    for r in 0..records {
        record.clear();
        for c in 0..CHANNELS {
            for i in 0..RATE {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let t = (r * RATE + i) as f64 / RATE as f64;
                let v = 500.0 * (std::f64::consts::TAU * (5.0 + c as f64 * 0.1) * t).sin()
                    + f64::from(noise % 200);
                record.extend((v as i16).to_le_bytes());
            }
        }
        out.write_all(&record)?;
    }
    out.flush()?;
    Ok(())
}

/// A `/proc/self/status` memory line (`VmRSS`, `VmHWM`), kB.
fn resident_kb(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

/// Resets the peak resident size (`VmHWM`) to the current one (Linux ≥ 4.0).
fn reset_peak() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        tracing::warn!("cannot reset the peak memory mark ({e}); the peak includes earlier work");
    }
}
