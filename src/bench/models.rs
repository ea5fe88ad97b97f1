//! `neuralign bench models`: two or more language models live on the same words, as `serve`
//! runs them: each model on its own thread with its own KV cache, every word handed to all
//! of them at once. Per word, the time until every model has embedded it, at a context of
//! 1024 tokens, beside each model alone in the same run (issue 18: both LM steps per word
//! must keep up with speech, ≤ 60 ms together).
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::lm::{fill_context, words};
use super::report::{Figure, PartReport, Row};
use crate::lm::{Engine, LmConfig, ModelRef};
use crate::metrics::{Percentiles, StageLatency};

/// The per-word target of two models together at 1024 tokens of context, ms.
const TARGET_MS: f64 = 60.0;

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelsBenchOptions {
    /// The models, each on its own thread.
    pub models: Vec<ModelRef>,
    /// Tokens of context before every timed word.
    pub context: usize,
    /// Words timed, alone and together.
    pub steps: usize,
}

impl ModelsBenchOptions {
    /// SmolLM2 and its untrained control: two models the CI has.
    pub fn default_models() -> Vec<ModelRef> {
        ["smollm2-135m", "smollm2-135m-untrained"]
            .map(|m| m.parse().expect("registry names"))
            .to_vec()
    }

    /// Options for about `duration`: 1024 tokens of context and 50 words per 10 s; under
    /// 5 s (smoke tests) 128 tokens and 10 words.
    pub fn for_duration(duration: Duration, models: Vec<ModelRef>) -> Self {
        let s = duration.as_secs_f64();
        if s < 5.0 {
            return Self {
                models,
                context: 128,
                steps: 10,
            };
        }
        Self {
            models,
            context: 1024,
            steps: ((50.0 * s / 10.0).round() as usize).max(20),
        }
    }
}

/// Runs the benchmark: each model alone, then all of them together, on the same words.
pub fn run(opts: &ModelsBenchOptions) -> anyhow::Result<PartReport> {
    anyhow::ensure!(
        opts.models.len() >= 2,
        "bench models needs two or more models (--models A,B)"
    );
    let mut engines = opts
        .models
        .iter()
        .map(|model| {
            let cfg = LmConfig {
                model: Some(model.clone()),
                max_context_tokens: (opts.context * 2 + 64).max(2048),
                ..LmConfig::default()
            };
            Engine::load(&cfg).with_context(|| format!("loading {model} for the benchmark"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut kept = Vec::with_capacity(engines.len());
    for engine in &mut engines {
        kept.push(fill_context(engine, opts.context)?);
    }
    let probe = words(64);
    let word = |i: usize| probe[i % probe.len()];

    let mut alone = Vec::with_capacity(engines.len());
    for (engine, &kept) in engines.iter_mut().zip(&kept) {
        let mut latency = StageLatency::new();
        for i in 0..opts.steps {
            let started = Instant::now();
            engine.push_word(word(i))?;
            latency.record(started.elapsed());
            engine.rollback(kept);
        }
        alone.push(latency.percentiles());
    }

    // every model's thread waits at `start` for the word, and at `done` once it is embedded
    let (start, done) = (
        Barrier::new(engines.len() + 1),
        Barrier::new(engines.len() + 1),
    );
    let mut together = StageLatency::new();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let threads: Vec<_> = engines
            .iter_mut()
            .zip(&kept)
            .map(|(engine, &kept)| {
                let (start, done) = (&start, &done);
                s.spawn(move || -> anyhow::Result<()> {
                    let mut failed = Ok(());
                    for i in 0..opts.steps {
                        start.wait();
                        let step = engine.push_word(word(i));
                        done.wait();
                        engine.rollback(kept);
                        if let Err(e) = step {
                            failed = Err(e);
                        }
                    }
                    Ok(failed?)
                })
            })
            .collect();
        for _ in 0..opts.steps {
            start.wait();
            let started = Instant::now();
            done.wait();
            together.record(started.elapsed());
        }
        for thread in threads {
            thread.join().expect("a model's benchmark thread")?;
        }
        Ok(())
    })?;
    let together = together.percentiles();

    let names: Vec<&str> = engines.iter().map(Engine::model_name).collect();
    let ctx = opts.context;
    let mut rows: Vec<Row> = names
        .iter()
        .zip(&alone)
        .map(|(name, latency)| Row {
            label: format!("{name} alone @ {ctx}"),
            latency: *latency,
            throughput: None,
        })
        .collect();
    rows.push(Row {
        label: format!("{} models together @ {ctx}", names.len()),
        latency: together,
        throughput: None,
    });
    let alone_sum: f64 = alone.iter().map(|p| p.p50_ms).sum();
    let figures = vec![
        Figure::new(
            "together p50 over the sum of the models' p50 alone",
            together.p50_ms / alone_sum,
            "×",
        ),
        Figure::new(
            format!("together p99 over the target ({TARGET_MS} ms at 1024 tokens)"),
            together.p99_ms / TARGET_MS,
            "×",
        ),
    ];
    let per_model: Vec<_> = engines
        .iter()
        .zip(&alone)
        .map(|(e, p): (&Engine, &Percentiles)| {
            json!({"model": e.model_name(), "model_sha256": e.model_sha256(), "alone": p})
        })
        .collect();
    Ok(PartReport {
        title: format!(
            "{} live together, each on its own thread, per word at {ctx} tokens of context",
            names.join(" + ")
        ),
        rows,
        figures,
        details: json!({
            "context_tokens": ctx,
            "steps": opts.steps,
            "threads": num_cpus::get(),
            "models": per_model,
            "together": together,
            "target_ms": TARGET_MS,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_scale_with_the_duration_at_1024_tokens() {
        let models = ModelsBenchOptions::default_models();
        assert_eq!(models[1].to_string(), "smollm2-135m-untrained:0");
        let quick = ModelsBenchOptions::for_duration(Duration::from_secs(2), models.clone());
        assert_eq!((quick.context, quick.steps), (128, 10));
        let ten = ModelsBenchOptions::for_duration(Duration::from_secs(10), models.clone());
        assert_eq!((ten.context, ten.steps), (1024, 50));
        let twenty = ModelsBenchOptions::for_duration(Duration::from_secs(20), models);
        assert_eq!(twenty.steps, 100);
    }
}
