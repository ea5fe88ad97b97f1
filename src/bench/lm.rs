//! `neuralign bench lm`: per-word latency of the language model at several
//! context lengths, incremental (KV cache) against full recompute, `embed`
//! throughput, and the memory-bandwidth bound of one decoding step.
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::report::{Figure, PartReport, Row};
use crate::lm::{Engine, LmConfig, ModelRef};
use crate::metrics::{Percentiles, StageLatency};

/// What to measure.
#[derive(Debug, Clone)]
pub struct LmBenchOptions {
    /// A model by name or path instead of the default model.
    pub model: Option<ModelRef>,
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
            contexts: vec![16, 256, 1024, 2048],
            steps: 50,
            full_steps: 5,
            embed_words: 2000,
        }
    }
}

impl LmBenchOptions {
    /// Options sized for about `duration` per context on a 2-core machine: the
    /// defaults at 10 s, scaled with it; under 5 s (smoke tests) only the 16-
    /// and 128-token contexts, with few steps.
    pub fn for_duration(duration: Duration, model: Option<ModelRef>) -> Self {
        let s = duration.as_secs_f64();
        if s < 5.0 {
            return LmBenchOptions {
                model,
                contexts: vec![16, 128],
                steps: 10,
                full_steps: 2,
                embed_words: 40,
            };
        }
        let scale = s / 10.0;
        let scaled = |n: usize, min: usize| ((n as f64 * scale).round() as usize).max(min);
        let d = LmBenchOptions::default();
        LmBenchOptions {
            model,
            steps: scaled(d.steps, 20),
            full_steps: scaled(d.full_steps, 3),
            embed_words: scaled(d.embed_words, 500),
            ..d
        }
    }
}

/// Running text the benchmark feeds the model.
const TEXT: &str =
    "The patient listened to a story about a lighthouse keeper who lived alone on a \
rocky island. Every night he climbed one hundred and twelve steps, lit the great lamp, and watched \
the ships pass safely through the narrow channel. In winter the storms were fierce, and the waves \
sometimes reached the windows of his small kitchen, but he never missed a night.";

/// The first `n` words of the running text, repeated as needed.
pub(super) fn words(n: usize) -> Vec<&'static str> {
    TEXT.split(' ').cycle().take(n).collect()
}

/// Fills a fresh context of `engine` to just past `ctx` tokens: batches of 16 words (at most
/// a few dozen tokens) while far from it, then single words. Returns the position to roll
/// back to after each timed word.
pub(super) fn fill_context(engine: &mut Engine, ctx: usize) -> anyhow::Result<usize> {
    engine.reset();
    let filler = words(ctx);
    let mut fed = 0;
    while engine.n_tokens() < ctx {
        let batch = if ctx - engine.n_tokens() > 64 { 16 } else { 1 };
        engine.embed_words(&filler[fed..fed + batch], usize::MAX)?;
        fed += batch;
    }
    Ok(engine.next_position())
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

/// Runs the benchmark: per context, an incremental step (KV cache) against a
/// full recompute of the context plus the word; then `embed` throughput and
/// the bandwidth bound of one step.
pub fn run(opts: &LmBenchOptions) -> anyhow::Result<PartReport> {
    let max_ctx = opts.contexts.iter().copied().max().unwrap_or(16) * 2 + 64;
    let cfg = LmConfig {
        model: opts.model.clone(),
        max_context_tokens: max_ctx.max(2048),
        ..LmConfig::default()
    };
    let mut engine = Engine::load(&cfg).context("loading the language model for the benchmark")?;
    let probe = words(64);

    let (mut rows, mut figures, mut per_word) = (Vec::new(), Vec::new(), Vec::new());
    for &ctx in &opts.contexts {
        let kept = fill_context(&mut engine, ctx)?;
        let mut incremental = StageLatency::new();
        let mut tokens = 0;
        for i in 0..opts.steps {
            let started = Instant::now();
            let emb = engine.push_word(probe[i % probe.len()])?;
            incremental.record(started.elapsed());
            tokens += emb.tokens.len();
            engine.rollback(kept);
        }
        let context_words: Vec<String> = engine.words().map(str::to_string).collect();
        let mut full = StageLatency::new();
        for i in 0..opts.full_steps {
            let mut all: Vec<&str> = context_words.iter().map(String::as_str).collect();
            all.push(probe[i % probe.len()]);
            let started = Instant::now();
            engine.reset();
            engine.embed_words(&all, usize::MAX)?;
            full.record(started.elapsed());
        }
        let (inc, full) = (incremental.percentiles(), full.percentiles());
        let words_per_s = |p: &Percentiles| Some(Figure::new("words", 1e3 / p.mean_ms, "words/s"));
        rows.push(Row {
            label: format!("lm_step incremental @ {ctx}"),
            latency: inc,
            throughput: words_per_s(&inc),
        });
        rows.push(Row {
            label: format!("lm_step full recompute @ {ctx}"),
            latency: full,
            throughput: words_per_s(&full),
        });
        let speedup = full.p50_ms / inc.p50_ms;
        figures.push(Figure::new(
            format!("KV cache speed-up (full / incremental p50) @ {ctx} tokens"),
            speedup,
            "×",
        ));
        per_word.push(json!({
            "context_tokens": ctx,
            "incremental": inc,
            "full_recompute": full,
            "speedup": speedup,
            "tokens_per_word": tokens as f64 / opts.steps.max(1) as f64,
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
    let shortest = rows.first().map_or(f64::NAN, |r| r.latency.p50_ms);
    figures.push(Figure::new(
        "embed throughput",
        embed_tokens as f64 / secs,
        "tokens/s",
    ));
    figures.push(Figure::new(
        format!(
            "bandwidth bound ({:.1} MB weights/step at {:.1} GB/s)",
            step_bytes as f64 / 1e6,
            bandwidth / 1e9
        ),
        bound_ms,
        "ms",
    ));
    figures.push(Figure::new(
        "shortest-context incremental p50 over the bound",
        shortest / bound_ms,
        "×",
    ));

    let avx = candle_core::utils::with_avx();
    Ok(PartReport {
        title: format!(
            "{} ({} layers × {}), per word, KV cache against full recompute (avx={avx} f16c={})",
            engine.model_name(),
            engine.n_layers(),
            engine.dim(),
            candle_core::utils::with_f16c()
        ),
        rows,
        figures,
        details: json!({
            "model": engine.model_name(),
            "model_sha256": engine.model_sha256(),
            "threads": num_cpus::get(),
            "avx": avx,
            "per_word": per_word,
            "embed": {"words": opts.embed_words, "tokens": embed_tokens, "seconds": secs, "tokens_per_s": embed_tokens as f64 / secs},
            "bandwidth": {"step_weight_bytes": step_bytes, "read_bytes_per_s": bandwidth, "bound_ms": bound_ms, "measured_over_bound": shortest / bound_ms},
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_scale_with_the_duration() {
        let quick = LmBenchOptions::for_duration(Duration::from_secs(2), None);
        assert_eq!(quick.contexts, [16, 128]);
        let d = LmBenchOptions::default();
        let ten = LmBenchOptions::for_duration(Duration::from_secs(10), None);
        assert_eq!(
            (ten.contexts, ten.steps, ten.full_steps, ten.embed_words),
            (d.contexts, d.steps, d.full_steps, d.embed_words)
        );
        let twenty = LmBenchOptions::for_duration(
            Duration::from_secs(20),
            Some(ModelRef::File("m.gguf".into())),
        );
        assert_eq!(
            (twenty.steps, twenty.full_steps),
            (2 * d.steps, 2 * d.full_steps)
        );
        assert_eq!(twenty.model, Some(ModelRef::File("m.gguf".into())));
    }
}
