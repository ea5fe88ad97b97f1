//! Encoder benchmarks at the paper's scale: 256 electrodes × 31 layers
//! (SmolLM2: embedding + 30 blocks, width 576), 16 components, lags 0–0.5 s
//! at 100 Hz. Per-word encode and per-sample scoring run under criterion;
//! the fit on a 30-minute session (`NEURALIGN_BENCH_FIT_MINUTES`, 0 to skip)
//! is timed once, since one run takes tens of seconds.
use criterion::{black_box, Criterion};
use indicatif::ProgressBar;
use neuralign::align::{AlignConfig, Live};
use neuralign::encode::{
    self, ChannelMap, Encoder, FitConfig, HighGammaMeta, LagGrid, ModelMeta, Predictor, Provenance,
    Session, SessionWord,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ELECTRODES: usize = 256;
const LAYERS: usize = 31;
const DIM: usize = 576;
const PCS: usize = 16;
const RATE: f64 = 100.0;

fn random_encoder(rng: &mut ChaCha8Rng) -> Encoder {
    let grid = LagGrid {
        tmin: 0.0,
        tmax: 0.5,
        rate: RATE,
    };
    let mut enc = Encoder::zeros(LAYERS, ELECTRODES, grid.n_lags(), PCS, DIM);
    let mut fill = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = rng.gen_range(-1.0..1.0));
    fill(&mut enc.weights);
    fill(&mut enc.pca_components);
    fill(&mut enc.cv_r);
    enc.feature_std.iter_mut().for_each(|x| *x = 1.0);
    enc.meta.grid = grid;
    enc.meta.layers = (0..LAYERS).collect();
    enc.meta.labels = (0..ELECTRODES).map(|e| format!("e{e:03}")).collect();
    enc
}

fn live_benches(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let enc = random_encoder(&mut rng);
    let embedding: Vec<f32> = (0..LAYERS * DIM)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let row: Vec<f32> = (0..ELECTRODES).map(|_| rng.gen_range(-1.0..1.0)).collect();

    // New words cycling over a 20 s stretch: one projection and kernel each.
    let mut predictor = Predictor::new(enc.clone(), 0.0);
    let mut id = 0u64;
    c.bench_function("encode/word_256e_31l", |b| {
        b.iter(|| {
            id += 1;
            predictor.add_word(id, (id % 50) as f64 * 0.4, black_box(&embedding));
        })
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

fn time_fit(minutes: f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let samples = (minutes * 60.0 * RATE) as usize;
    let mut words = vec![];
    let mut t = 0.3;
    while t < samples as f64 / RATE - 0.5 {
        let embedding = (0..LAYERS * DIM)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        words.push(SessionWord {
            onset: t,
            embedding,
        });
        t += rng.gen_range(0.15..0.65);
    }
    let hg = (0..samples * ELECTRODES)
        .map(|_| rng.gen_range(-1.0f32..1.0))
        .collect();
    let labels = (0..ELECTRODES).map(|e| format!("e{e:03}")).collect();
    let session = Session {
        hg,
        rate: RATE,
        t0: 0.0,
        labels,
        layers: LAYERS,
        dim: DIM,
        words,
    };
    let provenance = Provenance {
        model: ModelMeta {
            name: "bench".into(),
            sha256: "00".into(),
        },
        high_gamma: HighGammaMeta {
            source: "bench".into(),
            band_hz: [70.0, 150.0],
            extracted_by: "stream".into(),
        },
        description: "benches/encode.rs".into(),
    };
    let started = std::time::Instant::now();
    encode::fit(
        &session,
        &FitConfig::default(),
        &provenance,
        &ProgressBar::new(0),
    )
    .expect("fit");
    println!(
        "encode/fit: {ELECTRODES} electrodes × {LAYERS} layers × {minutes} min ({} words): {:.1} s",
        session.words.len(),
        started.elapsed().as_secs_f64()
    );
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
        time_fit(minutes);
    }
}
