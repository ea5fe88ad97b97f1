//! LSL arrival latency: a loopback outlet streams 256 channels at 100 Hz, stamped with the
//! local clock at push, into neuralign's own neural inlet; latency = local clock at pull −
//! sample time stamp, as percentiles (hdrhistogram).
use lsl::ExPushable;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ingest::{NeuralConfig, NeuralInlet, StreamSelector};

const CHANNELS: usize = 256;
const RATE: f64 = 100.0;
/// Transport target on loopback, milliseconds.
const TARGET_P99_MS: f64 = 1.5;

/// Streams for `duration` and returns the figures (also printed as a table).
pub fn run(duration: Duration) -> anyhow::Result<serde_json::Value> {
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
    let started = Instant::now();
    while started.elapsed() < duration {
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
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "stage", "samples", "p50 ms", "p99 ms", "max ms", "target p99"
    );
    println!(
        "{:<14} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>10}",
        "lsl arrival",
        latency.count,
        latency.p50_ms,
        latency.p99_ms,
        latency.max_ms,
        format!("<= {TARGET_P99_MS}")
    );
    Ok(json!({
        "stage": "lsl_arrival",
        "channels": CHANNELS,
        "rate": RATE,
        "liblsl_version": lsl::library_version(),
        "samples": latency.count,
        "p50_ms": latency.p50_ms,
        "p99_ms": latency.p99_ms,
        "max_ms": latency.max_ms,
        "target_p99_ms": TARGET_P99_MS,
        "gaps": status.gap_count,
        "dropped_chunks": status.dropped_chunks,
    }))
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
        outlet.wait_for_consumers(10.0),
        "the inlet never connected over loopback: is LSLAPICFG set?"
    );
    // Let the inlet finish connecting (clock-offset probes) so that start-up is not measured.
    std::thread::sleep(Duration::from_secs(1));
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
