//! Time-stamp post-processing with pyxdf's semantics (`load_xdf` in pyxdf
//! 1.17): truncation of the pylsl#67 trailing sample, clock synchronisation
//! by a robust (Huber) linear fit of ClockOffset chunks, piecewise between
//! detected clock resets, and jitter removal by a per-segment linear fit.
//! The thresholds are pyxdf's defaults.
use super::reader::ReadOptions;
use super::xml::Element;
use super::Stream;

const RESET_THRESHOLD_STDS: f64 = 5.0;
const RESET_THRESHOLD_SECONDS: f64 = 5.0;
const RESET_THRESHOLD_OFFSET_STDS: f64 = 10.0;
const RESET_THRESHOLD_OFFSET_SECONDS: f64 = 1.0;
const WINSOR_THRESHOLD: f64 = 0.0001;
const JITTER_BREAK_SECONDS: f64 = 1.0;
const JITTER_BREAK_SAMPLES: f64 = 500.0;

/// Applies `options` to one freshly read stream; returns warnings.
pub fn process(stream: &mut Stream, options: &ReadOptions) -> Vec<String> {
    let mut warnings = Vec::new();
    if options.sync_clocks {
        truncate_corrupted_offsets(stream, &mut warnings);
        clock_sync(stream, options.handle_clock_resets, &mut warnings);
    }
    if options.dejitter {
        dejitter(stream);
    } else {
        let n = stream.len();
        if n > 0 {
            stream.segments = vec![(0, n - 1)];
        }
        if stream.info.nominal_srate != 0.0 && n > 1 {
            stream.effective_srate =
                (n - 1) as f64 / (stream.time_stamps[n - 1] - stream.time_stamps[0]);
        }
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    warnings
}

/// numpy's median (mean of the two middle values for even lengths).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn diff(v: &[f64]) -> Vec<f64> {
    v.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Drops a trailing sample and clock offset recorded after the outlet died
/// (pylsl#67, liblsl#246): only when the footer counts fewer samples AND the
/// last offset is an outlier.
fn truncate_corrupted_offsets(stream: &mut Stream, warnings: &mut Vec<String>) {
    let Some(count) = stream
        .footer_xml
        .as_deref()
        .and_then(|x| Element::parse(x).ok())
        .and_then(|f| {
            f.text_at("sample_count")
                .and_then(|c| c.parse::<usize>().ok())
        })
    else {
        return;
    };
    if stream.len() <= count || stream.clock_offsets.len() < 3 {
        return;
    }
    let times: Vec<f64> = stream.clock_offsets.iter().map(|c| c.time).collect();
    let values: Vec<f64> = stream.clock_offsets.iter().map(|c| c.value).collect();
    if !last_offset_anomalous(&times, &values) {
        return;
    }
    warnings.push(format!(
        "stream {}: {} samples but the footer says {count} and the last clock offset is an outlier; \
         dropping both (pylsl#67)",
        stream.id,
        stream.len()
    ));
    stream.clock_offsets.pop();
    let channels = stream.info.channel_count;
    stream.time_stamps.truncate(count);
    stream.data.truncate(count * channels);
}

fn last_offset_anomalous(times: &[f64], values: &[f64]) -> bool {
    let intervals = diff(times);
    let median_interval = median(&intervals[..intervals.len() - 1]);
    let last_interval = intervals[intervals.len() - 1].abs();
    let time_ratio = if median_interval > 0.0 {
        last_interval / median_interval
    } else if last_interval > 0.0 {
        f64::INFINITY
    } else {
        1.0
    };
    let head = &values[..values.len() - 1];
    let median_val = median(head);
    let mad = median(
        &head
            .iter()
            .map(|v| (v - median_val).abs())
            .collect::<Vec<_>>(),
    );
    let z = if mad > f64::EPSILON {
        (values[values.len() - 1] - median_val).abs() / (1.4826 * mad)
    } else {
        0.0
    };
    time_ratio > 10.0 || z > 10.0
}

/// Marks differences that are outliers both in MAD units and in seconds.
fn glitches(d: &[f64], thresh_stds: f64, thresh_secs: f64) -> Vec<bool> {
    let m = median(d);
    let mad = median(&d.iter().map(|x| (x - m).abs()).collect::<Vec<_>>()) + f64::EPSILON;
    d.iter()
        .map(|x| ((x - m) / mad).abs() > thresh_stds && (x - m).abs() > thresh_secs)
        .collect()
}

/// Inclusive index ranges between breaks (`breaks[i]` splits i and i+1).
fn segments(breaks: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in breaks.iter().enumerate() {
        if b {
            out.push((start, i));
            start = i + 1;
        }
    }
    out.push((start, breaks.len()));
    out
}

/// Clock-offset index ranges between resets: at backward collection times,
/// or where both the collection-time step and the offset step jump.
fn clock_reset_ranges(times: &[f64], values: &[f64]) -> Vec<(usize, usize)> {
    let td = diff(times);
    let vd = diff(values);
    let tg = glitches(&td, RESET_THRESHOLD_STDS, RESET_THRESHOLD_SECONDS);
    let vg = glitches(
        &vd,
        RESET_THRESHOLD_OFFSET_STDS,
        RESET_THRESHOLD_OFFSET_SECONDS,
    );
    let resets: Vec<bool> = (0..td.len())
        .map(|i| td[i] < 0.0 || (tg[i] && vg[i]))
        .collect();
    segments(&resets)
}

fn clock_sync(stream: &mut Stream, handle_resets: bool, warnings: &mut Vec<String>) {
    if stream.is_empty() || stream.clock_offsets.is_empty() {
        return;
    }
    let times: Vec<f64> = stream.clock_offsets.iter().map(|c| c.time).collect();
    let values: Vec<f64> = stream.clock_offsets.iter().map(|c| c.value).collect();
    let ranges = if handle_resets && times.len() > 1 {
        clock_reset_ranges(&times, &values)
    } else {
        vec![(0, times.len() - 1)]
    };
    let coefs: Vec<(f64, f64)> = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                return (values[a], 0.0);
            }
            let t: Vec<f64> = times[a..=b].iter().map(|t| t / WINSOR_THRESHOLD).collect();
            let y: Vec<f64> = values[a..=b].iter().map(|v| v / WINSOR_THRESHOLD).collect();
            match robust_fit(&t, &y) {
                Some((c0, c1)) => (c0 * WINSOR_THRESHOLD, c1),
                None => {
                    warnings.push(format!(
                        "stream {}: clock offsets {a}..={b} cannot be used for synchronisation",
                        stream.id
                    ));
                    (0.0, 0.0)
                }
            }
        })
        .collect();
    let ts = &mut stream.time_stamps;
    if ranges.len() == 1 {
        let (c0, c1) = coefs[0];
        ts.iter_mut().for_each(|t| *t += c0 + c1 * *t);
        stream.clock_segments.push((0, ts.len() - 1));
        return;
    }
    // Time stamps are assumed to increase: each clock range owns the samples
    // up to the first one nearer the next range's first offset.
    let mut start = 0;
    for (&(c0, c1), &(_, end)) in coefs.iter().zip(&ranges) {
        let stop = if end + 1 < times.len() {
            let (cur_end, next_start) = (times[end], times[end + 1]);
            ts[start..]
                .iter()
                .position(|t| (t - cur_end).abs() >= (t - next_start).abs())
                .map_or(ts.len(), |p| start + p)
        } else {
            ts.len()
        };
        if stop == start {
            warnings.push(format!(
                "stream {}: no samples in clock offsets ending at {end}, skipping",
                stream.id
            ));
            continue;
        }
        stream.clock_segments.push((start, stop - 1));
        ts[start..stop].iter_mut().for_each(|t| *t += c0 + c1 * *t);
        start = stop;
    }
}

/// Huber-loss linear regression `y ≈ x0 + x1 t` by ADMM (pyxdf's
/// `_robust_fit`: rho 1, 1000 iterations). `None` if the normal equations
/// are singular.
fn robust_fit(t: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    const RHO: f64 = 1.0;
    let offset = t.iter().copied().fold(f64::INFINITY, f64::min);
    let a1: Vec<f64> = t.iter().map(|v| v - offset).collect();
    let n = t.len() as f64;
    // Cholesky of the 2×2 normal matrix [[n, s1], [s1, s2]].
    let s1: f64 = a1.iter().sum();
    let s2: f64 = a1.iter().map(|v| v * v).sum();
    let l11 = n.sqrt();
    let l21 = s1 / l11;
    let l22sq = s2 - l21 * l21;
    if l22sq <= 0.0 || !l22sq.is_finite() {
        return None;
    }
    let l22 = l22sq.sqrt();
    let solve = |b0: f64, b1: f64| {
        let z0 = b0 / l11;
        let z1 = (b1 - l21 * z0) / l22;
        let x1 = z1 / l22;
        let x0 = (z0 - l21 * x1) / l11;
        (x0, x1)
    };
    let m = t.len();
    let (mut z, mut u) = (vec![0.0; m], vec![0.0; m]);
    let mut x = (0.0, 0.0);
    for _ in 0..1000 {
        // Aᵀ(y + z − u)
        let (mut b0, mut b1) = (0.0, 0.0);
        for i in 0..m {
            let r = y[i] + z[i] - u[i];
            b0 += r;
            b1 += a1[i] * r;
        }
        x = solve(b0, b1);
        for i in 0..m {
            let d = x.0 + x.1 * a1[i] - y[i] + u[i];
            let d_inv = if d != 0.0 { 1.0 / d } else { 0.0 };
            let tmp = (1.0 - (1.0 + 1.0 / RHO) * d_inv.abs()).max(0.0);
            z[i] = RHO / (1.0 + RHO) * d + 1.0 / (1.0 + RHO) * tmp * d;
            u[i] = d - z[i];
        }
    }
    Some((x.0 - x.1 * offset, x.1))
}

/// True when the header says the device may drop samples (pyxdf skips
/// dejittering those streams).
fn can_drop_samples(stream: &Stream) -> bool {
    stream
        .info
        .desc()
        .and_then(|d| {
            d.text_at("synchronization/can_drop_samples")
                .map(str::to_lowercase)
        })
        .is_some_and(|v| v == "true")
}

fn dejitter(stream: &mut Stream) {
    stream.effective_srate = 0.0;
    let n = stream.len();
    if n == 0 {
        return;
    }
    let srate = stream.info.nominal_srate;
    if srate == 0.0 {
        stream.segments = vec![(0, n - 1)];
        return;
    }
    let drops = can_drop_samples(stream);
    let ts = &mut stream.time_stamps;
    if drops {
        stream.segments = vec![(0, n - 1)];
        let duration = ts[n - 1] - ts[0];
        if n > 1 && duration > 0.0 {
            stream.effective_srate = (n - 1) as f64 / duration;
        }
        return;
    }
    let threshold = JITTER_BREAK_SECONDS.max(JITTER_BREAK_SAMPLES / srate);
    let breaks: Vec<bool> = diff(ts).iter().map(|d| d.abs() > threshold).collect();
    let segs = segments(&breaks);
    for &(a, b) in &segs {
        if a == b {
            continue; // a one-sample fit reproduces the sample
        }
        let k = (b - a + 1) as f64;
        let mean_i = (a + b) as f64 / 2.0;
        let t0 = ts[a];
        let mean_t = ts[a..=b].iter().map(|t| t - t0).sum::<f64>() / k;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (i, t) in (a..=b).zip(&ts[a..=b]) {
            let di = i as f64 - mean_i;
            sxy += di * (t - t0 - mean_t);
            sxx += di * di;
        }
        let slope = sxy / sxx;
        for (i, t) in (a..=b).zip(ts[a..=b].iter_mut()) {
            *t = t0 + mean_t + slope * (i as f64 - mean_i);
        }
    }
    let (mut samples, mut duration) = (0usize, 0.0);
    for &(a, b) in &segs {
        samples += b - a;
        duration += ts[b] - ts[a];
    }
    if segs.iter().any(|&(a, b)| b > a) {
        stream.effective_srate = samples as f64 / duration;
    }
    stream.segments = segs;
}
