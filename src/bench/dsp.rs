//! `neuralign bench dsp`: the cost and delay of raw → high-gamma extraction.
//!
//! Streams synthetic raw iEEG through [`HighGamma`] in LSL-sized chunks for a
//! fixed wall-clock time per configuration and reports the CPU share of one
//! core (processing time over the duration of the data processed), the
//! per-chunk processing time, the delay the filters add, and the arithmetic
//! throughput against the work per sample.

use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::dsp::{HighGamma, HighGammaConfig};

/// Input samples per chunk handed to the extractor (≈16 ms at 2048 Hz, a
/// typical LSL pull).
const CHUNK: usize = 32;

/// (channels, input rate) configurations measured; the first is the target
/// case (≤ 20 % of one core).
const CASES: [(usize, f64); 3] = [(256, 2048.0), (256, 1000.0), (64, 2048.0)];

/// Floating-point operations per channel and input sample of an extractor:
/// 9 per notch (transposed direct form II), 3 per one-pole stage and part
/// (real, imaginary), 2 for the demodulation and 5 for the magnitude and the
/// band sum per band.
pub fn flops_per_sample(hg: &HighGamma) -> usize {
    let stages: usize = hg.bands().iter().map(|b| b.stages).sum();
    9 * hg.notches().len() + 6 * stages + 7 * hg.bands().len()
}

/// Runs every configuration for `duration / 3`, prints a table and returns the
/// figures as JSON.
pub fn run(duration: Duration) -> anyhow::Result<serde_json::Value> {
    let per_case = duration / CASES.len() as u32;
    let results = CASES
        .iter()
        .map(|&(channels, rate)| measure(channels, rate, per_case))
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "{:>8} {:>8} {:>11} {:>13} {:>13} {:>10} {:>12} {:>8}",
        "channels",
        "rate_hz",
        "cpu_share_%",
        "chunk_p50_us",
        "chunk_p99_us",
        "delay_ms",
        "flops/sample",
        "GFLOP/s"
    );
    for r in &results {
        println!(
            "{:>8} {:>8} {:>11.2} {:>13.1} {:>13.1} {:>10.1} {:>12} {:>8.2}",
            r["channels"],
            r["input_rate_hz"],
            r["cpu_share_of_one_core"].as_f64().unwrap_or(f64::NAN) * 100.0,
            r["chunk_us_p50"].as_f64().unwrap_or(f64::NAN),
            r["chunk_us_p99"].as_f64().unwrap_or(f64::NAN),
            r["added_delay_ms"].as_f64().unwrap_or(f64::NAN),
            r["flops_per_channel_sample"],
            r["gflops"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(json!({ "dsp": results, "chunk_samples": CHUNK }))
}

/// Measures one configuration for `duration` of wall-clock time.
fn measure(channels: usize, rate: f64, duration: Duration) -> anyhow::Result<serde_json::Value> {
    let mut hg = HighGamma::new(channels, rate, &HighGammaConfig::default())
        .with_context(|| format!("building the extractor for {channels} channels at {rate} Hz"))?;
    // One second of noise, replayed: the filters do the same work on any data.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let second: Vec<f32> = (0..rate as usize * channels)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let mut out = Vec::new();
    let mut chunk_us = hdrhistogram::Histogram::<u64>::new(3)?;
    let (mut busy, mut samples) = (Duration::ZERO, 0u64);
    let started = Instant::now();
    while started.elapsed() < duration || samples == 0 {
        for chunk in second.chunks_exact(CHUNK * channels) {
            out.clear();
            let t = Instant::now();
            hg.process(chunk, &mut out);
            let spent = t.elapsed();
            busy += spent;
            chunk_us.record(spent.as_micros() as u64)?;
            samples += CHUNK as u64;
        }
    }
    let data_s = samples as f64 / rate;
    let flops = flops_per_sample(&hg);
    // Added delay: the filters' group delay plus waiting for the input sample
    // after each frame's grid time (at most one sample), plus processing.
    let p99_s = chunk_us.value_at_quantile(0.99) as f64 * 1e-6;
    let added = hg.group_delay_s() + 1.0 / rate + p99_s;
    Ok(json!({
        "channels": channels,
        "input_rate_hz": rate,
        "output_rate_hz": hg.output_rate(),
        "bands": hg.bands().len(),
        "lowpass_stages": hg.bands().iter().map(|b| b.stages).sum::<usize>(),
        "notches": hg.notches().len(),
        "data_seconds": data_s,
        "cpu_share_of_one_core": busy.as_secs_f64() / data_s,
        "chunk_samples": CHUNK,
        "chunk_us_p50": chunk_us.value_at_quantile(0.5),
        "chunk_us_p99": chunk_us.value_at_quantile(0.99),
        "group_delay_ms": hg.group_delay_s() * 1e3,
        "added_delay_ms": added * 1e3,
        "flops_per_channel_sample": flops,
        "gflops": flops as f64 * channels as f64 * samples as f64 / busy.as_secs_f64() / 1e9,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_case_with_its_figures() {
        let report = run(Duration::from_millis(30)).unwrap();
        let cases = report["dsp"].as_array().unwrap();
        assert_eq!(cases.len(), CASES.len());
        for case in cases {
            assert!(case["cpu_share_of_one_core"].as_f64().unwrap() > 0.0);
            let delay = case["group_delay_ms"].as_f64().unwrap();
            assert!(delay > 30.0 && delay < 100.0, "{delay}");
            assert!(case["added_delay_ms"].as_f64().unwrap() > delay);
        }
    }
}
