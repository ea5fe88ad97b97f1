//! Cost of handing one frame to the hub (`Hub::publish`): encoding to JSON once per
//! distinct view and queueing it for every client, for a 256-electrode × 31-layer
//! session with 1 and 64 clients. Queues are drained outside the timed region.
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use neuralign::serve::frames::{ModelTag, SessionModel};
use neuralign::serve::{AlignmentUpdate, Frame, Hub, HubConfig, Rates, Session, TraceChunk};

const ELECTRODES: usize = 256;
const LAYERS: usize = 31;

fn hub() -> Hub {
    let hub = Hub::new(HubConfig {
        queue_frames: 4,
        max_clients: 128,
        max_message_bytes: 16 * 1024,
    });
    hub.set_session(Session {
        electrodes: (0..ELECTRODES).map(|i| format!("E{i}")).collect(),
        layers: (0..LAYERS).collect(),
        model: "bench".into(),
        models: vec![SessionModel {
            tag: ModelTag {
                name: "bench".into(),
                sha256: "0".repeat(64),
            },
            layers: (0..LAYERS).collect(),
            null_threshold: Vec::new(),
        }],
        rates: Rates {
            neural_hz: 1000.0,
            high_gamma_hz: 100.0,
            alignment_hz: 10.0,
        },
        horizon: None,
        window_s: 10.0,
        electrode_info: Vec::new(),
        bad_channels: Vec::new(),
        recording: None,
        null_threshold: Vec::new(),
    });
    hub
}

fn frames() -> [(&'static str, Frame); 2] {
    let r = (0..ELECTRODES * LAYERS)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.3)
        .collect();
    let n = 10;
    let trace = TraceChunk {
        model: 0,
        t0: 0.0,
        samples: n,
        actual: (0..ELECTRODES * n).map(|i| i as f32 * 1e-3).collect(),
        predicted: (0..ELECTRODES * LAYERS * n)
            .map(|i| i as f32 * 1e-4)
            .collect(),
    };
    [
        (
            "alignment",
            Frame::Alignment(Arc::new(AlignmentUpdate {
                model: 0,
                time: 1.0,
                horizon: 1.0,
                r,
                chance: 0.05,
                significant: Vec::new(),
            })),
        ),
        ("trace", Frame::Trace(Arc::new(trace))),
    ]
}

fn publish(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("hub_publish_256x31");
    for clients in [1usize, 64] {
        let hub = hub();
        let mut handles: Vec<_> = (0..clients).map(|_| hub.connect().expect("room")).collect();
        let mut queues: Vec<_> = handles
            .iter_mut()
            .map(|h| h.take_queue().expect("queue"))
            .collect();
        // drop the hello frames
        runtime.block_on(async {
            for q in &mut queues {
                q.next().await;
            }
        });
        for (kind, frame) in frames() {
            group.bench_function(BenchmarkId::new(kind, clients), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let queued = hub.publish(frame.clone()).expect("frame fits the session");
                        total += start.elapsed();
                        assert_eq!(queued, clients);
                        runtime.block_on(async {
                            for q in &mut queues {
                                q.next().await;
                            }
                        });
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
