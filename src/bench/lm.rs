//! `neuralign bench lm`: per-word latency of the language model at several
//! context lengths, incremental (KV cache) against full recompute, `embed`
//! throughput, and the memory-bandwidth bound of one decoding step.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::lm::{Engine, LmConfig};

/// What to measure.
#[derive(Debug, Clone)]
pub struct LmBenchOptions {
    /// A local GGUF instead of the default model.
    pub model: Option<PathBuf>,
    /// Context lengths in tokens.
    pub contexts: Vec<usize>,
    /// Incremental words timed per context.
    pub steps: usize,
    /// Full recomputes timed per context (they are slow).
    pub full_steps: usize,
    /// Words embedded for the throughput figure.
    pub embed_words: usize,
}

impl Default for LmBenchOptions {
    fn default() -> Self {
        LmBenchOptions {
            model: None,
            contexts: vec![16, 256, 1024],
            steps: 50,
            full_steps: 5,
            embed_words: 2000,
        }
    }
}

impl LmBenchOptions {
    /// A smoke run for CI (well under 20 s on two cores): the same figures
    /// from fewer samples and a shorter longest context.
    pub fn quick() -> Self {
        LmBenchOptions {
            contexts: vec![16, 256],
            steps: 8,
            full_steps: 2,
            embed_words: 200,
            ..Self::default()
        }
    }
}

/// Running text the benchmark feeds the model.
const TEXT: &str =
    "The patient listened to a story about a lighthouse keeper who lived alone on a \
rocky island. Every night he climbed one hundred and twelve steps, lit the great lamp, and watched \
the ships pass safely through the narrow channel. In winter the storms were fierce, and the waves \
sometimes reached the windows of his small kitchen, but he never missed a night.";

fn words(n: usize) -> Vec<&'static str> {
    TEXT.split(' ').cycle().take(n).collect()
}

/// Median and 99th percentile in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.99))
}

/// Sustained memory read bandwidth in bytes/s: every core sums its share of
/// a 512 MiB buffer, best of three passes.
pub fn read_bandwidth() -> f64 {
    let words: usize = 64 << 20;
    let buf: Vec<u64> = (0..words as u64).collect();
    let threads = num_cpus::get().max(1);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(words.div_ceil(threads))
                .map(|c| s.spawn(move || c.iter().fold(0u64, |a, &x| a.wrapping_add(x))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("summing thread"))
                .fold(0, u64::wrapping_add)
        });
        std::hint::black_box(total);
        best = best.min(started.elapsed().as_secs_f64());
    }
    (words * 8) as f64 / best
}

/// Runs the benchmark, prints a table and returns the figures as JSON.
pub fn run(opts: &LmBenchOptions) -> anyhow::Result<serde_json::Value> {
    let max_ctx = opts.contexts.iter().copied().max().unwrap_or(16) * 2 + 64;
    let cfg = LmConfig {
        model: opts.model.clone(),
        max_context_tokens: max_ctx.max(2048),
        ..LmConfig::default()
    };
    let mut engine = Engine::load(&cfg).context("loading the language model for the benchmark")?;
    let probe = words(64);

    let mut rows = Vec::new();
    for &ctx in &opts.contexts {
        engine.reset();
        // Batches of 16 words (at most a few dozen tokens) while far from
        // `ctx`, then single words so the context ends just past it.
        let filler = words(ctx);
        let mut fed = 0;
        while engine.n_tokens() < ctx {
            let batch = if ctx - engine.n_tokens() > 64 { 16 } else { 1 };
            engine.embed_words(&filler[fed..fed + batch], usize::MAX)?;
            fed += batch;
        }
        let kept = engine.n_words();
        let mut incremental = Vec::with_capacity(opts.steps);
        let mut tokens = 0;
        for i in 0..opts.steps {
            let started = Instant::now();
            let emb = engine.push_word(probe[i % probe.len()])?;
            incremental.push(started.elapsed());
            tokens += emb.tokens.len();
            engine.rollback(kept);
        }
        let context_words: Vec<String> = engine.words().map(str::to_string).collect();
        let mut full = Vec::with_capacity(opts.full_steps);
        for i in 0..opts.full_steps {
            let mut all: Vec<&str> = context_words.iter().map(String::as_str).collect();
            all.push(probe[i % probe.len()]);
            let started = Instant::now();
            engine.reset();
            engine.embed_words(&all, usize::MAX)?;
            full.push(started.elapsed());
        }
        let (inc_med, inc_p99) = percentiles(&mut incremental);
        let (full_med, full_p99) = percentiles(&mut full);
        rows.push(json!({
            "context_tokens": ctx,
            "incremental_ms": {"median": inc_med, "p99": inc_p99},
            "full_recompute_ms": {"median": full_med, "p99": full_p99},
            "speedup": full_med / inc_med,
            "tokens_per_word": tokens as f64 / opts.steps as f64,
        }));
    }

    engine.reset();
    let corpus = words(opts.embed_words);
    let started = Instant::now();
    let embedded = engine.embed_words(&corpus, 512)?;
    let secs = started.elapsed().as_secs_f64();
    let embed_tokens: usize = embedded.iter().map(|e| e.tokens.len()).sum();

    let step_bytes = engine.step_weight_bytes();
    let bandwidth = read_bandwidth();
    let bound_ms = step_bytes as f64 / bandwidth * 1e3;
    let shortest = rows.first().map_or(f64::NAN, |r| {
        r["incremental_ms"]["median"].as_f64().unwrap_or(f64::NAN)
    });

    println!(
        "language model: {} ({} layers x {})",
        engine.model_name(),
        engine.n_layers(),
        engine.dim()
    );
    println!(
        "{:>8} | {:>22} | {:>22} | {:>8}",
        "context", "incremental ms med/p99", "full recompute med/p99", "speedup"
    );
    for r in &rows {
        println!(
            "{:>8} | {:>10.2} / {:>9.2} | {:>10.1} / {:>9.1} | {:>7.1}x",
            r["context_tokens"],
            r["incremental_ms"]["median"].as_f64().unwrap_or_default(),
            r["incremental_ms"]["p99"].as_f64().unwrap_or_default(),
            r["full_recompute_ms"]["median"]
                .as_f64()
                .unwrap_or_default(),
            r["full_recompute_ms"]["p99"].as_f64().unwrap_or_default(),
            r["speedup"].as_f64().unwrap_or_default(),
        );
    }
    println!(
        "embed: {embed_tokens} tokens in {secs:.2} s = {:.0} tokens/s",
        embed_tokens as f64 / secs
    );
    println!(
        "bandwidth bound: {:.1} MB weights/step / {:.1} GB/s = {bound_ms:.2} ms; measured {shortest:.2} ms at the shortest context = {:.1}x the bound",
        step_bytes as f64 / 1e6,
        bandwidth / 1e9,
        shortest / bound_ms
    );
    println!(
        "fast kernels: avx={} f16c={}",
        candle_core::utils::with_avx(),
        candle_core::utils::with_f16c()
    );
    Ok(json!({
        "model": engine.model_name(),
        "model_sha256": engine.model_sha256(),
        "threads": num_cpus::get(),
        "avx": candle_core::utils::with_avx(),
        "per_word": rows,
        "embed": {"words": opts.embed_words, "tokens": embed_tokens, "seconds": secs, "tokens_per_s": embed_tokens as f64 / secs},
        "bandwidth": {"step_weight_bytes": step_bytes, "read_bytes_per_s": bandwidth, "bound_ms": bound_ms, "measured_over_bound": shortest / bound_ms},
    }))
}
