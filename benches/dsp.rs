//! Criterion benchmark of raw → high-gamma extraction: 256 channels at
//! 2048 Hz, processed in 32-sample chunks (throughput in channel-samples/s;
//! 524 288 channel-samples/s is real time).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use neuralign::dsp::{HighGamma, HighGammaConfig};

fn high_gamma(c: &mut Criterion) {
    let (channels, rate, chunk) = (256usize, 2048.0, 32usize);
    let mut hg = HighGamma::new(channels, rate, &HighGammaConfig::default()).unwrap();
    let samples: Vec<f32> = (0..chunk * channels)
        .map(|i| ((i as f32) * 0.618_034).fract() - 0.5)
        .collect();
    let mut out = Vec::new();
    let mut group = c.benchmark_group("high_gamma");
    group.throughput(Throughput::Elements((chunk * channels) as u64));
    group.bench_function("256ch_2048hz_chunk32", |b| {
        b.iter(|| {
            out.clear();
            hg.process(&samples, &mut out)
        })
    });
    group.finish();
}

criterion_group!(benches, high_gamma);
criterion_main!(benches);
