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

use super::report::{Figure, PartReport, Row};
use crate::dsp::{HighGamma, HighGammaConfig};
use crate::metrics::StageLatency;

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

/// Runs every configuration for `duration / 3` and reports the per-chunk
/// processing time, throughput, CPU share and added delay of each.
pub fn run(duration: Duration) -> anyhow::Result<PartReport> {
    let per_case = duration / CASES.len() as u32;
    let cases = CASES
        .iter()
        .map(|&(channels, rate)| measure(channels, rate, per_case))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut figures = Vec::new();
    for case in &cases {
        let name = case.name();
        figures.push(Figure::new(
            format!("CPU share of one core, {name}"),
            case.cpu_share * 100.0,
            "%",
        ));
        figures.push(Figure::new(
            format!("added delay (filters + 1 sample + chunk p99), {name}"),
            case.details["added_delay_ms"].as_f64().unwrap_or(f64::NAN),
            "ms",
        ));
        figures.push(Figure::new(
            format!("arithmetic, {name}"),
            case.gflops,
            "GFLOP/s",
        ));
    }
    Ok(PartReport {
        title: format!("raw → high-gamma per {CHUNK}-sample chunk (synthetic iEEG)"),
        rows: cases.iter().map(Case::row).collect(),
        figures,
        details: json!({
            "cases": cases.iter().map(|c| &c.details).collect::<Vec<_>>(),
            "chunk_samples": CHUNK,
        }),
    })
}

/// What one configuration measured.
struct Case {
    channels: usize,
    rate: f64,
    chunk: StageLatency,
    /// Input samples (all channels) processed per second of processing time.
    samples_per_s: f64,
    cpu_share: f64,
    gflops: f64,
    details: serde_json::Value,
}

impl Case {
    fn name(&self) -> String {
        format!("{} ch @ {} Hz", self.channels, self.rate)
    }

    fn row(&self) -> Row {
        Row {
            label: format!("high_gamma {}", self.name()),
            latency: self.chunk.percentiles(),
            throughput: Some(Figure::new(
                "channel samples",
                self.samples_per_s * self.channels as f64 / 1e6,
                "M ch·samples/s",
            )),
        }
    }
}

/// Measures one configuration for `duration` of wall-clock time.
fn measure(channels: usize, rate: f64, duration: Duration) -> anyhow::Result<Case> {
    let mut hg = HighGamma::new(channels, rate, &HighGammaConfig::default())
        .with_context(|| format!("building the extractor for {channels} channels at {rate} Hz"))?;
    // One second of noise, replayed: the filters do the same work on any data.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let second: Vec<f32> = (0..rate as usize * channels)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let mut out = Vec::new();
    let mut chunk = StageLatency::new();
    let (mut busy, mut samples) = (Duration::ZERO, 0u64);
    let started = Instant::now();
    while started.elapsed() < duration || samples == 0 {
        for input in second.chunks_exact(CHUNK * channels) {
            out.clear();
            let t = Instant::now();
            hg.process(input, &mut out);
            let spent = t.elapsed();
            busy += spent;
            chunk.record(spent);
            samples += CHUNK as u64;
        }
    }
    let data_s = samples as f64 / rate;
    let busy_s = busy.as_secs_f64().max(f64::MIN_POSITIVE);
    let flops = flops_per_sample(&hg);
    let latency = chunk.percentiles();
    // Added delay: the filters' group delay plus waiting for the input sample
    // after each frame's grid time (at most one sample), plus processing.
    let added = hg.group_delay_s() + 1.0 / rate + latency.p99_ms * 1e-3;
    let cpu_share = busy_s / data_s;
    let gflops = flops as f64 * channels as f64 * samples as f64 / busy_s / 1e9;
    let details = json!({
        "channels": channels,
        "input_rate_hz": rate,
        "output_rate_hz": hg.output_rate(),
        "bands": hg.bands().len(),
        "lowpass_stages": hg.bands().iter().map(|b| b.stages).sum::<usize>(),
        "notches": hg.notches().len(),
        "data_seconds": data_s,
        "cpu_share_of_one_core": cpu_share,
        "chunk_samples": CHUNK,
        "chunk_latency": latency,
        "group_delay_ms": hg.group_delay_s() * 1e3,
        "added_delay_ms": added * 1e3,
        "flops_per_channel_sample": flops,
        "gflops": gflops,
    });
    Ok(Case {
        channels,
        rate,
        chunk,
        samples_per_s: samples as f64 / busy_s,
        cpu_share,
        gflops,
        details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_case_with_its_figures() {
        let report = run(Duration::from_millis(30)).unwrap();
        assert_eq!(report.rows.len(), CASES.len());
        assert!(report.rows.iter().all(|r| r.latency.count > 0));
        let cases = report.details["cases"].as_array().unwrap();
        assert_eq!(cases.len(), CASES.len());
        for case in cases {
            assert!(case["cpu_share_of_one_core"].as_f64().unwrap() > 0.0);
            let delay = case["group_delay_ms"].as_f64().unwrap();
            assert!(delay > 30.0 && delay < 100.0, "{delay}");
            assert!(case["added_delay_ms"].as_f64().unwrap() > delay);
        }
    }
}
