//! A steady loop of one-word steps at chosen contexts, for a profiler and for side-by-side
//! timings of two models: the figures in `docs/lm.md` (*Where a step's time goes*) come from
//! `perf record -e cpu-clock --call-graph dwarf target/release/examples/lm_profile 16`.
//!
//! `lm_profile [CONTEXTS] [MODEL] [STEPS]`: for each of the comma-separated `CONTEXTS`
//! (default 16) prints the p10 / p50 / p90 of `STEPS` (default 300) steps of one word after
//! that many tokens, each rolled back so that the context stays the same; `MODEL` is a
//! registry name or a GGUF path (default: the default model).
use std::time::Instant;

use neuralign::lm::{Engine, LmConfig, ModelRef};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let contexts: Vec<usize> = match args.next() {
        Some(arg) => arg.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![16],
    };
    let model = args.next().map(|m| m.parse::<ModelRef>()).transpose()?;
    let steps: usize = args.next().map_or(Ok(300), |s| s.parse())?;
    let longest = contexts.iter().copied().max().unwrap_or(16);
    let mut engine = Engine::load(&LmConfig {
        model,
        max_context_tokens: (2 * longest + 64).max(2048),
        ..LmConfig::default()
    })?;
    let text = "The patient listened to a story about a lighthouse keeper who lived alone on a \
                rocky island and every night he climbed the steps";
    let words: Vec<&str> = text.split(' ').collect();
    for context in contexts {
        engine.reset();
        // batches of words while far from the context, then single words up to it
        let mut fed = 0;
        while engine.n_tokens() < context {
            let batch = if context - engine.n_tokens() > 64 {
                16
            } else {
                1
            };
            let next: Vec<&str> = (fed..fed + batch).map(|i| words[i % words.len()]).collect();
            engine.embed_words(&next, usize::MAX)?;
            fed += batch;
        }
        let kept = engine.next_position();
        let mut ms = Vec::with_capacity(steps);
        for _ in 0..steps {
            let started = Instant::now();
            engine.push_word("house")?;
            ms.push(started.elapsed().as_secs_f64() * 1e3);
            engine.rollback(kept);
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "{} tokens of context: p10 {:.3} ms, p50 {:.3} ms, p90 {:.3} ms per word",
            engine.n_tokens(),
            ms[steps / 10],
            ms[steps / 2],
            ms[steps * 9 / 10]
        );
    }
    Ok(())
}
