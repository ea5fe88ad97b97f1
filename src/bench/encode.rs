//! Encoder costs at the paper's scale, 256 electrodes × 31 layers (SmolLM2: embedding + 30
//! blocks, width 576), 16 components, lags 0–0.5 s at 100 Hz: per-word encode (PCA projection
//! and TRF kernels, on the encode thread; adding them to the predicted timeline, on the core
//! loop), per-sample scoring with words arriving (rolling, exponentially weighted and chance
//! r, and each word's word-level r), per alignment update the rolling r and the live
//! significance on top of it, and one fit on a synthetic session. Weights and data are random:
//! the cost does not depend on their values. `benches/encode.rs` runs the same kernels
//! under criterion.
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::report::{Figure, PartReport, Row};
use crate::align::{AlignConfig, Live};
use crate::encode::{
    self, ChannelMap, Encoder, FitConfig, HighGammaMeta, KernelEncoder, LagGrid, ModelMeta,
    Provenance, Session, SessionWord,
};
use crate::metrics::StageLatency;

/// Electrodes at the paper's scale.
pub const ELECTRODES: usize = 256;
/// SmolLM2's layers: the token embedding and 30 blocks.
pub const LAYERS: usize = 31;
/// SmolLM2's width.
pub const DIM: usize = 576;
/// Principal components per layer (the fit's default).
pub const PCS: usize = 16;
/// High-gamma rate, Hz.
pub const RATE: f64 = crate::dsp::HIGH_GAMMA_RATE_HZ;
/// Speech rate the per-word figures assume, words per second.
const WORDS_PER_S: f64 = 2.5;
/// Target: per-word encode plus scoring, milliseconds (issue 4).
const TARGET_WORD_MS: f64 = 2.0;
/// Target: the fit on a 30-minute session, seconds (issue 4).
const TARGET_FIT_S: f64 = 120.0;
/// Target: what live significance adds per sample at p99, milliseconds (issue 15).
const TARGET_SIGNIFICANCE_MS: f64 = 0.5;
/// A live threshold for the benchmark's encoders (its value does not change the cost).
const BENCH_THRESHOLD: f64 = 0.1;

/// Encoders with random weights for `electrodes` × `layers` (lags 0–0.5 s at [`RATE`]).
pub fn random_encoder(seed: u64, electrodes: usize, layers: usize) -> Encoder {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let grid = LagGrid {
        tmin: 0.0,
        tmax: 0.5,
        rate: RATE,
    };
    let mut enc = Encoder::zeros(layers, electrodes, grid.n_lags(), PCS, DIM);
    let mut fill = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = rng.gen_range(-1.0..1.0));
    fill(&mut enc.weights);
    fill(&mut enc.pca_components);
    fill(&mut enc.cv_r);
    enc.feature_std.iter_mut().for_each(|x| *x = 1.0);
    enc.meta.grid = grid;
    enc.meta.layers = (0..layers).collect();
    enc.meta.labels = (0..electrodes).map(|e| format!("e{e:03}")).collect();
    enc
}

/// Gives `enc` a live calibration for a `window`-sample rolling window, every electrode's
/// threshold [`BENCH_THRESHOLD`], so that [`Live::significant`] does its whole work.
fn calibrate_live(enc: &mut Encoder, window: usize) {
    let layers = enc.meta.layers.clone();
    let electrodes = (enc.meta.labels.iter())
        .map(|label| crate::stats::ElectrodeResult {
            label: label.clone(),
            peak_layer: 0,
            peak_layer_ci: [0, 0],
            r: 0.0,
            p: 1.0,
            q: 1.0,
            significant: false,
            profile: vec![0.0; layers.len()],
            null_band: vec![[0.0; 2]; layers.len()],
            null_max_quantile: 0.0,
            live_threshold: Some(BENCH_THRESHOLD),
        })
        .collect();
    let config = crate::stats::StatsConfig::default();
    enc.meta.statistics = Some(crate::stats::FitStatistics {
        live: Some(crate::stats::LiveCalibration {
            window,
            stride: 1,
            shifts: config.live_shifts,
            null_values: 0,
            alpha: config.live_alpha,
        }),
        config,
        layers,
        test_samples: 0,
        gap_samples: 0,
        electrodes,
    });
}

/// A random session of `minutes` at [`RATE`] with words every 0.15–0.65 s.
pub fn random_session(seed: u64, minutes: f64, electrodes: usize, layers: usize) -> Session {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let samples = (minutes * 60.0 * RATE) as usize;
    let mut words = vec![];
    let mut t = 0.3;
    while t < samples as f64 / RATE - 0.5 {
        let embedding = (0..layers * DIM)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        words.push(SessionWord {
            onset: t,
            embedding,
        });
        t += rng.gen_range(0.15..0.65);
    }
    Session {
        hg: (0..samples * electrodes)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect(),
        rate: RATE,
        t0: 0.0,
        labels: (0..electrodes).map(|e| format!("e{e:03}")).collect(),
        layers,
        dim: DIM,
        words,
    }
}

/// Fits every layer and electrode of `session` with the default settings; returns seconds.
pub fn time_fit(session: &Session) -> anyhow::Result<f64> {
    let provenance = Provenance {
        model: ModelMeta {
            name: "bench".into(),
            sha256: "00".into(),
        },
        high_gamma: HighGammaMeta {
            source: "bench".into(),
            band_hz: crate::dsp::HIGH_GAMMA_BAND_HZ,
            extracted_by: "stream".into(),
        },
        description: "neuralign bench encode".into(),
    };
    let started = Instant::now();
    encode::fit(
        session,
        &FitConfig::default(),
        &provenance,
        &ProgressBar::hidden(),
    )?;
    Ok(started.elapsed().as_secs_f64())
}

/// Times per-word encode and per-sample scoring for about `duration` in all, then one fit on
/// a `fit_minutes` session (0 skips it).
pub fn run(duration: Duration, fit_minutes: f64) -> anyhow::Result<PartReport> {
    let align = AlignConfig::default();
    let window = (align.window_s * RATE).round() as usize;
    let mut enc = random_encoder(1, ELECTRODES, LAYERS);
    calibrate_live(&mut enc, window);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let embedding: Vec<f32> = (0..LAYERS * DIM)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let row: Vec<f32> = (0..ELECTRODES).map(|_| rng.gen_range(-1.0..1.0)).collect();

    // one projection and kernel per word (the encode thread's work)
    let kernels = Arc::new(KernelEncoder::new(enc.clone()));
    let mut kernel = StageLatency::new();
    let until = Instant::now() + duration / 2;
    loop {
        let started = Instant::now();
        black_box(kernels.kernel(&embedding));
        kernel.record(started.elapsed());
        if started >= until {
            break;
        }
    }

    // the core loop's work with words present: a word every 40 samples whose window opens
    // just ahead of the horizon, its kernels added to the timeline, and each sample's
    // rolling, EW and chance r computed as live (no word-level r: the server computes
    // none); the kernels
    // are computed outside the timing (on the encode thread in the pipeline)
    let map = ChannelMap {
        stream_index: (0..ELECTRODES).collect(),
    };
    let mut live = Live::new(enc, map, 0.0, align);
    live.transcript_watermark(f64::INFINITY);
    let samples_per_word = (RATE / WORDS_PER_S).round() as u64;
    let (mut add, mut sample) = (StageLatency::new(), StageLatency::new());
    // each alignment update once the window is full: the rolling r of every electrode and
    // layer (the frame's `r`), then the live significance on top of it (as the core loop)
    let alignment_hz = crate::pipeline::PipelineSettings::default().alignment_hz;
    let samples_per_update = (RATE / alignment_hz).round().max(1.0) as u64;
    let (mut rolling, mut significance) = (StageLatency::new(), StageLatency::new());
    let until = Instant::now() + duration / 2;
    for (id, t) in (0u64..).map(|t| (t / samples_per_word, t)) {
        if t % samples_per_word == 0 {
            let k = live.kernels().kernel(&embedding);
            let started = Instant::now();
            live.word(id, (t as f64 + 5.0) / RATE, k);
            add.record(started.elapsed());
        }
        let started = Instant::now();
        live.push_neural(&row);
        live.advance_one();
        sample.record(started.elapsed());
        if t % samples_per_update == 0 && live.window_full() {
            let at = Instant::now();
            let r = live.rolling_r();
            rolling.record(at.elapsed());
            let at = Instant::now();
            let called = live.significant(&r);
            significance.record(at.elapsed());
            anyhow::ensure!(called.len() == ELECTRODES, "live significance is off");
        }
        if started >= until {
            break;
        }
    }
    anyhow::ensure!(
        significance.percentiles().count > 0,
        "no alignment update with a full window: give the bench more --duration"
    );

    let (k, a, s) = (
        kernel.percentiles(),
        add.percentiles(),
        sample.percentiles(),
    );
    let (u, sig) = (rolling.percentiles(), significance.percentiles());
    let samples_per_word = samples_per_word as f64;
    let core_per_word_ms = a.p50_ms + samples_per_word * s.p50_ms;
    let mut figures = vec![
        Figure::new(
            format!("core loop per word: adding its kernels + scoring its {samples_per_word:.0} samples, p50 (target ≤ {TARGET_WORD_MS} ms)"),
            core_per_word_ms,
            "ms",
        ),
        Figure::new(
            "encode thread per word: its kernels, p50",
            k.p50_ms,
            "ms",
        ),
        Figure::new(
            format!("CPU share at {RATE} Hz and {WORDS_PER_S} words/s (both threads)"),
            ((k.p50_ms + a.p50_ms) * WORDS_PER_S + s.p50_ms * RATE) / 10.0,
            "% of a core",
        ),
    ];
    figures.push(Figure::new(
        format!("live significance per sample, p99 (at most one alignment update per sample; target ≤ {TARGET_SIGNIFICANCE_MS} ms)"),
        sig.p99_ms,
        "ms",
    ));
    figures.push(Figure::new(
        format!("live significance per sample, p50 spread over the {samples_per_update} samples of an update at {alignment_hz} Hz"),
        sig.p50_ms / samples_per_update as f64,
        "ms",
    ));
    let mut fit = serde_json::Value::Null;
    if fit_minutes > 0.0 {
        let session = random_session(2, fit_minutes, ELECTRODES, LAYERS);
        let seconds = time_fit(&session)?;
        figures.push(Figure::new(
            format!(
                "fit, {ELECTRODES} electrodes × {LAYERS} layers × {fit_minutes} min ({} words; target ≤ {TARGET_FIT_S} s for 30 min)",
                session.words.len()
            ),
            seconds,
            "s",
        ));
        fit = json!({"minutes": fit_minutes, "words": session.words.len(), "seconds": seconds});
    }
    Ok(PartReport {
        title: format!(
            "encoders at {ELECTRODES} electrodes × {LAYERS} layers, {PCS} components, lags 0–0.5 s at {RATE} Hz"
        ),
        rows: vec![
            Row {
                label: "encode one word: its kernels (encode thread)".into(),
                latency: k,
                throughput: None,
            },
            Row {
                label: "encode one word: add its kernels (core loop)".into(),
                latency: a,
                throughput: None,
            },
            Row {
                label: "score one sample, words present".into(),
                latency: s,
                throughput: None,
            },
            Row {
                label: "alignment update: rolling r of every electrode and layer".into(),
                latency: u,
                throughput: None,
            },
            Row {
                label: "alignment update: live significance on top of the rolling r".into(),
                latency: sig,
                throughput: None,
            },
        ],
        figures,
        details: json!({
            "electrodes": ELECTRODES, "layers": LAYERS, "pcs": PCS, "dim": DIM, "rate_hz": RATE,
            "words_per_s": WORDS_PER_S, "fit": fit,
            "alignment_hz": alignment_hz, "live_window": window,
        }),
    })
}
