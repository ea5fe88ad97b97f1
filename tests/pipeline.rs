//! End to end with real parts: a session written as XDF, replayed over LSL (loopback),
//! through the live pipeline (real model, encoders fit on the session) to a real WebSocket
//! client, whose `trace` predictions and final rolling r must equal the offline computation.
use std::path::Path;
use std::time::Duration;

use faer::Mat;
use futures_util::StreamExt;
use neuralign::align::{offline, AlignConfig};
use neuralign::app::{App, Feed};
use neuralign::encode::{
    self, Encoder, FitConfig, HighGammaMeta, ModelMeta, Provenance, Session, SessionWord,
};
use neuralign::ingest::{NeuralMode, StreamSelector};
use neuralign::lm::{Engine, LmConfig};
use neuralign::pipeline::Config;
use neuralign::replay;
use neuralign::serve::ServerConfig;
use neuralign::xdf::{self, ChannelFormat, Samples, StreamInfo, XdfWriter};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const RATE: f64 = 100.0;
const SAMPLES: usize = 2400;
const ELECTRODES: usize = 3;
const T0: f64 = 5000.0;

/// Word onsets (a third of a sample past a grid point, so clock offsets of microseconds
/// cannot change their rounding) and texts.
fn words() -> Vec<(f64, String)> {
    let text = "the quick brown fox jumps over the lazy dog while a patient listens to a story about paris";
    text.split(' ')
        .cycle()
        .enumerate()
        .map(|(i, w)| {
            (
                T0 + 0.5 + (i * 37) as f64 / RATE + 0.3 / RATE,
                w.to_string(),
            )
        })
        .take_while(|(onset, _)| *onset < T0 + SAMPLES as f64 / RATE - 0.6)
        .collect()
}

/// High-gamma with a response to every word (larger for longer words) plus noise.
fn high_gamma(words: &[(f64, String)]) -> Vec<f32> {
    let mut state = 12345u64;
    let mut noise = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
    };
    let mut hg: Vec<f32> = (0..SAMPLES * ELECTRODES).map(|_| 2.0 + noise()).collect();
    for (onset, text) in words {
        let s = ((onset - T0) * RATE).round() as usize;
        for lag in 0..25 {
            let bump =
                (std::f64::consts::PI * lag as f64 / 25.0).sin() as f32 * text.len() as f32 * 0.2;
            for e in 0..ELECTRODES {
                if let Some(v) = hg.get_mut((s + lag + e * 3) * ELECTRODES + e) {
                    *v += bump * (e + 1) as f32;
                }
            }
        }
    }
    hg
}

fn write_session(path: &Path, neural: &str, transcript: &str, hg: &[f32], words: &[(f64, String)]) {
    let mut w = XdfWriter::create(path).unwrap();
    let labels: Vec<String> = (0..ELECTRODES).map(|e| format!("E{e}")).collect();
    let n = w
        .add_stream(&StreamInfo::with_labels(
            neural,
            "iEEG",
            RATE,
            ChannelFormat::Float32,
            neural,
            labels,
        ))
        .unwrap();
    let t = w
        .add_stream(&StreamInfo::new(
            transcript,
            "Transcript",
            1,
            0.0,
            ChannelFormat::String,
            transcript,
        ))
        .unwrap();
    let stamps: Vec<f64> = (0..SAMPLES).map(|i| T0 + i as f64 / RATE).collect();
    w.write_samples(n, &stamps, &Samples::Float32(hg.to_vec()))
        .unwrap();
    let mut messages = Vec::new();
    let mut times = Vec::new();
    for (id, (onset, text)) in words.iter().enumerate() {
        let word = serde_json::json!({"kind": "word", "id": id, "text": text, "start": onset, "end": onset + 0.2, "final": true});
        messages.push(word.to_string());
        times.push(onset + 0.25);
        messages.push(serde_json::json!({"kind": "watermark", "time": onset + 0.01}).to_string());
        times.push(onset + 0.26);
    }
    let end = T0 + SAMPLES as f64 / RATE;
    messages.push(serde_json::json!({"kind": "watermark", "time": end + 1.0}).to_string());
    times.push(end);
    w.write_samples(t, &times, &Samples::String(messages))
        .unwrap();
    w.finish().unwrap();
}

/// Embeds the words in order with a fresh engine, as the pipeline's LM thread does.
fn embed(words: &[(f64, String)]) -> (Vec<Vec<f32>>, Engine) {
    let mut engine =
        Engine::load(&LmConfig::default()).expect("the default model (neuralign model fetch)");
    let embeddings = words
        .iter()
        .map(|(_, w)| engine.push_word(w).unwrap().data)
        .collect();
    (embeddings, engine)
}

fn fit_encoder(
    hg: &[f32],
    words: &[(f64, String)],
    embeddings: &[Vec<f32>],
    engine: &Engine,
) -> Encoder {
    let session = Session {
        hg: hg.to_vec(),
        rate: RATE,
        t0: T0,
        labels: (0..ELECTRODES).map(|e| format!("E{e}")).collect(),
        layers: engine.n_layers(),
        dim: engine.dim(),
        words: words
            .iter()
            .zip(embeddings)
            .map(|((onset, _), emb)| SessionWord {
                onset: *onset,
                embedding: emb.clone(),
            })
            .collect(),
    };
    let cfg = FitConfig {
        tmin: 0.0,
        tmax: 0.3,
        pcs: 4,
        folds: 3,
        holdout: 0.2,
        alphas: vec![1.0, 10.0, 100.0],
        layers: Some(vec![0, 6, 30]),
        stats: Default::default(),
    };
    let provenance = Provenance {
        model: ModelMeta {
            name: engine.model_name().into(),
            sha256: engine.model_sha256().into(),
        },
        high_gamma: HighGammaMeta {
            source: "test".into(),
            band_hz: neuralign::dsp::HIGH_GAMMA_BAND_HZ,
            extracted_by: "stream".into(),
        },
        description: "tests/pipeline.rs".into(),
    };
    encode::fit(
        &session,
        &cfg,
        &provenance,
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn replayed_session_through_serve_equals_the_offline_computation() {
    let dir = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let (neural_name, transcript_name) =
        (format!("pipeline-hg-{id}"), format!("pipeline-words-{id}"));
    let words = words();
    let hg = high_gamma(&words);
    let session_file = dir.path().join("session.xdf");
    write_session(&session_file, &neural_name, &transcript_name, &hg, &words);
    let (embeddings, engine) = embed(&words);
    let encoder = fit_encoder(&hg, &words, &embeddings, &engine);
    drop(engine);
    encoder
        .save(&dir.path().join("encoders.safetensors"))
        .unwrap();

    let mut config = Config::default();
    config.neural.stream = StreamSelector::Name(neural_name);
    config.neural.mode = NeuralMode::HighGamma;
    config.transcript.stream = StreamSelector::Name(transcript_name);
    config.encoders.path = Some("encoders.safetensors".into());
    config.recording.directory = Some("recordings".into());
    config.pipeline.alignment_hz = 20.0;
    let align = AlignConfig {
        window_s: 5.0,
        ..Default::default()
    };
    config.align = align.clone();

    // a queue deep enough that this client, reading as fast as it can, never loses a frame
    let server_config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        queue_frames: 4096,
        ..Default::default()
    };
    let app = App::start(
        server_config,
        Feed::Live {
            config: Box::new(config),
            base_dir: dir.path().to_path_buf(),
        },
    )
    .unwrap();
    let shutdown = app.shutdown();
    let mut client = app
        .runtime()
        .block_on(tokio_tungstenite::connect_async(format!(
            "ws://{}/ws",
            app.local_addr()
        )))
        .unwrap()
        .0;
    let replay = std::thread::spawn({
        let stop = shutdown.flag();
        move || {
            replay::run(
                &session_file,
                &replay::ReplayOptions {
                    speed: replay::Speed::Max,
                    ..Default::default()
                },
                stop,
            )
        }
    });

    // collect frames until every sample has been scored and the alignment after it arrived
    let (mut hello, mut word_frames) = (None, 0);
    let mut trace_t0 = None;
    let mut trace: Vec<Vec<Vec<f64>>> = Vec::new(); // [electrode][layer][sample]
    let mut actual: Vec<Vec<f64>> = Vec::new();
    let mut last_alignment = None;
    app.runtime().block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        while last_alignment.is_none() {
            let msg = tokio::time::timeout_at(deadline, client.next())
                .await
                .expect("frames within 3 minutes")
                .unwrap()
                .unwrap();
            let Message::Text(text) = msg else { continue };
            let frame: Value = serde_json::from_str(&text).unwrap();
            match frame["type"].as_str().unwrap() {
                "hello" => hello = Some(frame),
                "word" => word_frames += 1,
                "trace" => {
                    let t0 = frame["t0"].as_f64().unwrap();
                    let first = *trace_t0.get_or_insert(t0);
                    assert_eq!(
                        ((t0 - first) * RATE).round() as usize,
                        actual.first().map_or(0, Vec::len),
                        "trace frames are contiguous"
                    );
                    let pred = frame["predicted"].as_array().unwrap();
                    trace.resize(pred.len(), Vec::new());
                    actual.resize(pred.len(), Vec::new());
                    for (e, layers) in pred.iter().enumerate() {
                        let layers = layers.as_array().unwrap();
                        trace[e].resize(layers.len(), Vec::new());
                        for (l, xs) in layers.iter().enumerate() {
                            trace[e][l].extend(floats(xs));
                        }
                        actual[e].extend(floats(&frame["actual"][e]));
                    }
                }
                "alignment" if actual.first().map_or(0, Vec::len) == SAMPLES => {
                    last_alignment = Some(frame)
                }
                _ => {}
            }
        }
    });
    let report = app.stop().unwrap().expect("a live feed reports");
    replay.join().unwrap().unwrap();

    let hello = hello.expect("hello frame");
    assert_eq!(
        hello["session"]["electrodes"],
        serde_json::json!(["E0", "E1", "E2"])
    );
    assert_eq!(hello["session"]["layers"], serde_json::json!([0, 6, 30]));
    assert_eq!(word_frames, words.len(), "one word frame per word");

    // offline reference on the original data
    let word_refs: Vec<(f64, &[f32])> = words
        .iter()
        .zip(&embeddings)
        .map(|((o, _), e)| (*o, e.as_slice()))
        .collect();
    let predicted = encode::predict_offline(&encoder, &word_refs, T0, SAMPLES);
    let act = Mat::<f64>::from_fn(SAMPLES, ELECTRODES, |t, e| {
        ((hg[t * ELECTRODES + e] - encoder.neural_mean[e]) / encoder.neural_std[e]) as f64
    });
    for e in 0..ELECTRODES {
        for l in 0..3 {
            assert_eq!(trace[e][l].len(), SAMPLES);
            for t in 0..SAMPLES {
                let (live, off) = (trace[e][l][t], predicted[l][(t, e)]);
                assert!(
                    (live - off).abs() <= 1e-4 * (1.0 + off.abs()),
                    "prediction e{e} l{l} t{t}: live {live}, offline {off}"
                );
            }
        }
        for t in 0..SAMPLES {
            assert!(
                (actual[e][t] - act[(t, e)]).abs() < 1e-4,
                "actual e{e} t{t}"
            );
        }
    }
    let alignment = last_alignment.unwrap();
    let window = (align.window_s * RATE).round() as usize;
    let r_off = offline::rolling_r(&predicted, &act, SAMPLES - 1, window);
    let rows = alignment["r"].as_array().unwrap();
    for e in 0..ELECTRODES {
        let r_live = floats(&rows[e]);
        for l in 0..3 {
            let off = r_off[l * ELECTRODES + e];
            assert!(
                (r_live[l] - off).abs() < 1e-4,
                "rolling r e{e} l{l}: live {}, offline {off}",
                r_live[l]
            );
        }
    }
    // over the whole session the encoders clearly pick up the word responses
    let r_session = offline::rolling_r(&predicted, &act, SAMPLES - 1, SAMPLES);
    assert!(
        r_session.iter().all(|r| *r > 0.2),
        "the encoders pick up the word responses: {r_session:?}"
    );

    // the recording holds what was received, and is a complete XDF file
    let recording = report.recording.expect("a recording");
    let file = xdf::read(&recording).unwrap();
    let neural = file
        .streams
        .iter()
        .find(|s| s.info.channel_count == ELECTRODES)
        .expect("neural stream recorded");
    assert_eq!(neural.time_stamps.len(), SAMPLES);
    assert!(neural.footer_xml.is_some(), "footers written on shutdown");
    assert_eq!(
        report.drops.values().filter(|&&d| d > 0).count(),
        0,
        "nothing dropped: {:?}",
        report.drops
    );
}
