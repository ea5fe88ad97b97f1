//! Criterion benchmarks of the language-model engine on the default model:
//! one incremental word at 16/256/1024 tokens of context, the same word with
//! a full recompute of its context, and batch embedding.
use criterion::{criterion_group, criterion_main, Criterion};
use neuralign::lm::{Engine, LmConfig};

const TEXT: &str =
    "The patient listened to a story about a lighthouse keeper who lived alone on a \
rocky island and every night he climbed the steps to light the lamp for the ships";

fn filled(engine: &mut Engine, tokens: usize) -> Vec<String> {
    engine.reset();
    for w in TEXT.split(' ').cycle() {
        if engine.n_tokens() >= tokens {
            break;
        }
        engine.push_word(w).expect("push");
    }
    engine.words().map(str::to_string).collect()
}

fn bench(c: &mut Criterion) {
    let mut engine =
        Engine::load(&LmConfig::default()).expect("load the default model (neuralign model fetch)");
    let mut group = c.benchmark_group("lm");
    group.sample_size(10);
    for ctx in [16, 256, 1024] {
        let words = filled(&mut engine, ctx);
        let kept = engine.next_position();
        group.bench_function(format!("incremental_word/{ctx}"), |b| {
            b.iter(|| {
                engine.push_word("lighthouse").expect("push");
                engine.rollback(kept);
            })
        });
        let mut all: Vec<&str> = words.iter().map(String::as_str).collect();
        all.push("lighthouse");
        group.bench_function(format!("full_recompute/{ctx}"), |b| {
            b.iter(|| {
                engine.reset();
                engine.embed_words(&all, usize::MAX).expect("embed")
            })
        });
        filled(&mut engine, ctx);
    }
    let corpus: Vec<&str> = TEXT.split(' ').cycle().take(256).collect();
    group.bench_function("embed_256_words", |b| {
        b.iter(|| {
            engine.reset();
            engine.embed_words(&corpus, 512).expect("embed")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
