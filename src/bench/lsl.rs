//! LSL arrival latency: a loopback outlet streams 256 channels at 100 Hz, stamped with the
//! local clock at push, into neuralign's own neural inlet; latency = local clock at pull −
//! sample time stamp, as percentiles ([`crate::metrics::StageLatency`]).
use lsl::ExPushable;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::report::{Figure, PartReport, Row};
use crate::ingest::{NeuralConfig, NeuralInlet, StreamSelector};

const CHANNELS: usize = 256;
const RATE: f64 = crate::dsp::HIGH_GAMMA_RATE_HZ;
/// Longest wait for the inlet to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between the inlet connecting and the first sample.
const SETTLE: Duration = Duration::from_secs(1);
/// Transport target on loopback, milliseconds.
const TARGET_P99_MS: f64 = 1.5;

/// Streams for `duration` and reports the arrival latency of every sample.
pub fn run(duration: Duration) -> anyhow::Result<PartReport> {
    let source_id = format!("neuralign-bench-lsl-{}", std::process::id());
    let stop = Arc::new(AtomicBool::new(false));
    let outlet = {
        let (source_id, stop) = (source_id.clone(), stop.clone());
        std::thread::Builder::new()
            .name("bench-outlet".into())
            .spawn(move || stream(&source_id, &stop))?
    };
    let config = NeuralConfig {
        stream: StreamSelector::SourceId(source_id),
        lost_after_s: duration.as_secs_f64() + 10.0,
        ..NeuralConfig::default()
    };
    let (inlet, chunks) = NeuralInlet::spawn(config, 5.0)?;
    // Measure for `duration` from the first sample, not from the connection.
    let first = chunks.recv_timeout(CONNECT_TIMEOUT);
    let started = Instant::now();
    while first.is_ok() && started.elapsed() < duration {
        // Drain as the pipeline would, so that the channel never fills.
        let _ = chunks.recv_timeout(Duration::from_millis(50));
    }
    let status = inlet.stop();
    stop.store(true, Ordering::Relaxed);
    outlet
        .join()
        .map_err(|_| anyhow::anyhow!("the bench outlet thread panicked"))??;
    let latency = status.latency;
    anyhow::ensure!(
        latency.count > 0,
        "no samples arrived over loopback: is LSLAPICFG set to configs/lsl_api.cfg?"
    );
    Ok(PartReport {
        title: format!(
            "LSL arrival over loopback, {CHANNELS} channels at {RATE} Hz (liblsl {})",
            lsl::library_version()
        ),
        rows: vec![Row {
            label: "neural_arrival".into(),
            latency,
            throughput: Some(Figure::new("samples", status.measured_rate(), "samples/s")),
        }],
        figures: vec![
            Figure::new(
                "p99 against its target",
                latency.p99_ms / TARGET_P99_MS,
                "× target",
            ),
            Figure::new("gaps", status.gap_count as f64, ""),
            Figure::new("dropped chunks", status.dropped_chunks as f64, ""),
        ],
        details: json!({
            "channels": CHANNELS,
            "rate": RATE,
            "liblsl_version": lsl::library_version(),
            "target_p99_ms": TARGET_P99_MS,
            "gaps": status.gap_count,
            "dropped_chunks": status.dropped_chunks,
        }),
    })
}

/// Pushes samples on a 100 Hz schedule, each stamped with the local clock, until `stop`.
fn stream(source_id: &str, stop: &AtomicBool) -> anyhow::Result<()> {
    let info = lsl::StreamInfo::new(
        "neuralign-bench",
        "iEEG",
        CHANNELS as u32,
        RATE,
        lsl::ChannelFormat::Float32,
        source_id,
    )
    .map_err(|e| anyhow::anyhow!("cannot describe the bench stream: {e:?}"))?;
    let outlet = lsl::StreamOutlet::new(&info, 1, 10)
        .map_err(|e| anyhow::anyhow!("cannot open the bench outlet: {e:?}"))?;
    anyhow::ensure!(
        outlet.wait_for_consumers(CONNECT_TIMEOUT.as_secs_f64()),
        "the inlet never connected over loopback: is LSLAPICFG set?"
    );
    // Let the inlet finish connecting (full info, clock-offset probes):
    // samples pushed meanwhile would wait in its buffer and measure the
    // connection, not the transport.
    std::thread::sleep(SETTLE);
    let mut sample = vec![0.0f32; CHANNELS];
    let period = Duration::from_secs_f64(1.0 / RATE);
    let started = Instant::now();
    let mut k = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if let Some(wait) = (started + period * k).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sample[0] = k as f32;
        outlet
            .push_sample_ex(&sample, lsl::local_clock(), true)
            .map_err(|e| anyhow::anyhow!("push failed: {e:?}"))?;
        k += 1;
    }
    Ok(())
}
