//! Encoder benchmarks at the paper's scale: 256 electrodes × 31 layers
//! (SmolLM2: embedding + 30 blocks, width 576), 16 components, lags 0–0.5 s
//! at 100 Hz. Per-word kernels and per-sample scoring run under criterion;
//! the fit on a 30-minute session (`NEURALIGN_BENCH_FIT_MINUTES`, 0 to skip)
//! is timed once, since one run takes tens of seconds. The encoders and the
//! session come from `neuralign::bench::encode`, which `neuralign bench encode`
//! measures the same way.
use criterion::{black_box, Criterion};
use neuralign::align::{AlignConfig, Live};
use neuralign::bench::encode::{random_encoder, random_session, time_fit, DIM, ELECTRODES, LAYERS};
use neuralign::encode::{ChannelMap, KernelEncoder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

fn live_benches(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let enc = random_encoder(1, ELECTRODES, LAYERS);
    let embedding: Vec<f32> = (0..LAYERS * DIM)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let row: Vec<f32> = (0..ELECTRODES).map(|_| rng.gen_range(-1.0..1.0)).collect();

    // One projection and kernel per word (the encode thread's work; adding it to the
    // timeline is the core loop's, timed by `neuralign bench encode`).
    let kernels = Arc::new(KernelEncoder::new(enc.clone()));
    c.bench_function("encode/word_kernel_256e_31l", |b| {
        b.iter(|| black_box(kernels.kernel(black_box(&embedding))))
    });

    let map = ChannelMap {
        stream_index: (0..ELECTRODES).collect(),
    };
    let mut live = Live::new(enc, map, 0.0, AlignConfig::default());
    live.transcript_watermark(f64::INFINITY);
    c.bench_function("align/sample_256e_31l", |b| {
        b.iter(|| {
            live.push_neural(black_box(&row));
            black_box(live.advance_one());
        })
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    live_benches(&mut c);
    c.final_summary();
    let minutes = std::env::var("NEURALIGN_BENCH_FIT_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30.0);
    if minutes > 0.0 {
        let session = random_session(2, minutes, ELECTRODES, LAYERS);
        let seconds = time_fit(&session).expect("fit");
        println!(
            "encode/fit: {ELECTRODES} electrodes × {LAYERS} layers × {minutes} min ({} words): {seconds:.1} s",
            session.words.len()
        );
    }
}
