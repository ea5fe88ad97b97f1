//! Plumbing shared by both inlets: the LSL config, connecting to a selected stream (resolve,
//! open, full info) while watching for a stop request, link states, and latency statistics.
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{IngestError, LslConfig, StreamSelector};

/// Percentiles of arrival latency.
pub use crate::metrics::Percentiles as LatencySummary;
/// Arrival latency (local clock − sample time stamp), one histogram per inlet.
pub(crate) use crate::metrics::StageLatency as Latency;

/// Where an inlet stands with its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Looking for the stream (never seen yet).
    Searching,
    /// Connected and receiving.
    Streaming,
    /// Was streaming, disappeared; re-resolving.
    Lost,
    /// The inlet was stopped.
    Stopped,
}

/// Points liblsl at the LSL config named in `[lsl]` (relative to `base_dir`, the server
/// config's folder) by exporting `LSLAPICFG`, unless the environment already sets it. Must run
/// before the first liblsl call (liblsl reads its config once). Returns the config in effect.
pub fn apply_lsl_config(
    config: &LslConfig,
    base_dir: &Path,
) -> Result<Option<String>, IngestError> {
    if let Ok(existing) = std::env::var("LSLAPICFG") {
        return Ok(Some(existing));
    }
    let Some(file) = &config.api_config else {
        tracing::warn!("LSLAPICFG is not set and [lsl] names no api_config: liblsl multicasts on every interface");
        return Ok(None);
    };
    let path = base_dir.join(file);
    // liblsl silently ignores a config it cannot read, so check first.
    std::fs::read_to_string(&path).map_err(|source| IngestError::LslConfig {
        path: path.clone(),
        source,
    })?;
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    // Called at start-up before any thread exists, as `set_var` requires.
    std::env::set_var("LSLAPICFG", &path);
    Ok(Some(path.display().to_string()))
}

/// Resolves `selector` and opens an inlet on it, retrying until it succeeds or `stop` is set;
/// `idle` runs after every round that found nothing (at most a second apart), so that the
/// caller's clocks go on while its stream is away. Returns the inlet and the stream's full
/// info (with its description).
pub(crate) fn connect(
    selector: &StreamSelector,
    timeout_s: f64,
    buffer_s: i32,
    stop: &AtomicBool,
    idle: &mut dyn FnMut(),
) -> Option<(lsl::StreamInlet, lsl::StreamInfo)> {
    // Short resolve rounds so that a stop request is seen quickly.
    let round_s = timeout_s.clamp(0.1, 1.0);
    while !stop.load(Ordering::Relaxed) {
        let info = match selector.resolve(round_s) {
            Ok(Some(info)) => info,
            Ok(None) => {
                idle();
                continue;
            }
            Err(e) => {
                tracing::warn!(%selector, "resolve failed: {e}");
                std::thread::sleep(Duration::from_secs_f64(round_s));
                idle();
                continue;
            }
        };
        // recover = false: a lost stream surfaces as `StreamLost`, so that it is reported and
        // re-resolved here (by name, type or source_id) rather than silently waited for.
        let opened = lsl::StreamInlet::new(&info, buffer_s, 0, false).and_then(|inlet| {
            inlet.open_stream(timeout_s)?;
            let full = inlet.info(timeout_s)?;
            // The first clock-offset estimate takes several probes; get it before the first
            // pull so that it does not stall the first samples. Failure is not fatal: liblsl
            // keeps estimating in the background.
            if let Err(e) = inlet.time_correction(timeout_s) {
                tracing::warn!(%selector, "no clock correction yet: {e:?}");
            }
            Ok((inlet, full))
        });
        match opened {
            Ok(pair) => return Some(pair),
            Err(e) => tracing::warn!(%selector, "cannot open the stream: {e:?}; retrying"),
        }
    }
    None
}
