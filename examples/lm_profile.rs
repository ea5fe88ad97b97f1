//! A steady loop of one-word steps at a chosen context, for a profiler: the figures in
//! `docs/lm.md` (*Where a step's time goes*) come from
//! `perf record -e cpu-clock --call-graph dwarf target/release/examples/lm_profile 16`.
//! Prints the p10 / p50 / p90 of 300 steps of one single-token word after `CONTEXT` tokens
//! (default 16), each rolled back so that the context stays the same.
use std::time::Instant;

use neuralign::lm::{Engine, LmConfig};

fn main() -> anyhow::Result<()> {
    let context: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 16,
    };
    let mut engine = Engine::load(&LmConfig {
        max_context_tokens: (2 * context + 64).max(2048),
        ..LmConfig::default()
    })?;
    let text = "The patient listened to a story about a lighthouse keeper who lived alone on a \
                rocky island and every night he climbed the steps";
    for word in text.split(' ').cycle() {
        if engine.n_tokens() >= context {
            break;
        }
        engine.push_word(word)?;
    }
    let kept = engine.next_position();
    let mut ms = Vec::with_capacity(300);
    for _ in 0..300 {
        let started = Instant::now();
        engine.push_word("house")?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
        engine.rollback(kept);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{} tokens of context: p10 {:.3} ms, p50 {:.3} ms, p90 {:.3} ms per word",
        engine.n_tokens(),
        ms[30],
        ms[150],
        ms[270]
    );
    Ok(())
}
