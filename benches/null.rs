//! The circular-shift null at the target scale, timed once (one run takes
//! tens of seconds, too long for criterion's repetitions): 256 electrodes ×
//! 31 layers × a 30-minute held-out series at 100 Hz (180 000 samples) × 1000
//! shifts, layers in parallel on every core as `fit` runs them; then the
//! block bootstrap of the peak layer (1000 replicates, 5-s blocks). Sizes can
//! be lowered with `NEURALIGN_BENCH_NULL_ELECTRODES` / `_MINUTES`. Prints
//! seconds per stage; the figure is in docs/benchmarks.md.
use neuralign::stats::bootstrap::{block_moments, peak_layer_interval};
use neuralign::stats::null::{draw_shifts, max_over_layers, CircularNull};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::time::Instant;

fn env(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let electrodes = env("NEURALIGN_BENCH_NULL_ELECTRODES", 256.0) as usize;
    let minutes = env("NEURALIGN_BENCH_NULL_MINUTES", 30.0);
    let (layers, rate, shifts) = (31, 100.0, 1000);
    let n = (minutes * 60.0 * rate) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let actual: Vec<f64> = (0..n * electrodes)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let start = Instant::now();
    let null = CircularNull::new(
        &actual,
        electrodes,
        draw_shifts(n, 1000, shifts, 0).unwrap(),
    );
    let prepare = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let per_layer: Vec<_> = (0..layers)
        .into_par_iter()
        .map(|l| {
            // a prediction per layer: the actual plus layer-specific noise
            let mut rng = ChaCha8Rng::seed_from_u64(100 + l as u64);
            let pred: Vec<f64> = actual
                .iter()
                .map(|a| 0.05 * a + rng.gen_range(-1.0..1.0))
                .collect();
            (
                null.layer(&pred),
                block_moments(&pred, &actual, electrodes, 500),
            )
        })
        .collect();
    let (nulls, moments): (Vec<_>, Vec<_>) = per_layer.into_iter().unzip();
    let p: Vec<f64> = (0..electrodes)
        .map(|k| max_over_layers(&nulls, k, shifts).p)
        .collect();
    let shifted = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let ci = peak_layer_interval(&moments, electrodes, 1000, 0.95, 0);
    let boot = start.elapsed().as_secs_f64();
    println!(
        "null {electrodes} electrodes × {layers} layers × {minutes} min × {shifts} shifts on {} threads: \
         actual spectra {prepare:.2} s, predictions + all shifts + p {shifted:.2} s (total {:.2} s); \
         bootstrap 1000 × 5-s blocks {boot:.2} s; median p {:.3}, first interval {:?}",
        rayon::current_num_threads(),
        prepare + shifted,
        neuralign::stats::quantile(&p, 0.5),
        ci[0]
    );
}
