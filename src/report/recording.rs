//! Path `recording` of a report: the results `serve` kept in its recording (`docs/xdf.md`,
//! "Results"), read back and summarised per electrode (the live layer profile, the share of
//! moments called significant, the live peak layer), and checked against path `replay`: the
//! recording's own neural and transcript streams pushed through [`Live`] sample by sample as
//! `serve` pushes them, whose rolling r and significance at the saved moments must be the
//! saved ones (`docs/statistics.md`, §6).
use super::{ReportError, Source};
use crate::align::{AlignConfig, Live};
use crate::encode::{Encoder, Session};
use crate::pipeline::results::{ALIGNMENT, ALIGNMENT_LAYERS, SIGNIFICANCE};
use crate::serve::AlignmentSummary;
use crate::xdf::{self, ReadOptions, Samples, Stream};
use serde::Serialize;
use std::path::Path;

/// One results stream read back: its time stamps and `[samples, channels]` values.
#[derive(Debug, Clone, Default)]
pub struct Series<T> {
    /// Time stamps (server clock), ascending.
    pub stamps: Vec<f64>,
    /// Values, row-major.
    pub values: Vec<T>,
    /// Channels per sample.
    pub channels: usize,
}

impl<T> Series<T> {
    /// Sample `i`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.values[i * self.channels..(i + 1) * self.channels]
    }
}

/// The results streams of a `serve` recording (the first of each name: a rebinding with
/// another layout starts new streams of the same names).
#[derive(Debug, Clone)]
pub struct Saved {
    /// Electrode labels (the encoders' electrodes the server bound).
    pub labels: Vec<String>,
    /// Model layers of the per-layer r.
    pub layers: Vec<usize>,
    /// `neuralign-alignment`: r at each electrode's peak layer, every update.
    pub peak_r: Series<f32>,
    /// `neuralign-alignment-layers`: r per electrode and layer (electrode-major), 1 Hz.
    pub layer_r: Series<f32>,
    /// `neuralign-significance`: 1 or 0 per electrode, every update (none when the
    /// encoders carried no live calibration for the server's window).
    pub significance: Option<Series<i8>>,
    /// First time stamp of the recording's neural stream as stored (the server's sample
    /// 0; the dejittered stamps `fit` reads may differ from it by a fraction of a sample).
    pub neural_t0: Option<f64>,
    /// The window of the server's rolling r, seconds (`desc/alignment/window_s`; absent from
    /// recordings made before it was kept).
    pub window_s: Option<f64>,
}

/// Per electrode, what the saved streams say.
#[derive(Debug, Clone, Serialize)]
pub struct LiveElectrode {
    /// Channel label.
    pub label: String,
    /// Mean over the session of the saved rolling r, per layer (finite values only).
    pub profile: Vec<f64>,
    /// The model layer where that mean peaks (none when every value is NaN).
    pub peak_layer: Option<usize>,
    /// Share of the saved alignment updates that called the electrode significant.
    pub share_significant: Option<f64>,
    /// Live threshold of the rolling r at the peak (from the encoder file).
    pub threshold: Option<f64>,
}

/// The check of the saved streams against the replay of the same live statistic.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayCheck {
    /// Path `replay`.
    pub source: Source,
    /// Largest |saved − replayed| rolling r over every electrode and layer at the saved
    /// per-layer moments (`neuralign-alignment-layers`) with a full window.
    pub max_abs_diff_r: f64,
    /// Saved per-layer moments compared (full window).
    pub layer_moments: usize,
    /// Largest |saved − replayed| r at the peak (`neuralign-alignment`) at the saved
    /// updates with a full window.
    pub max_abs_diff_peak_r: f64,
    /// Saved updates compared (full window).
    pub update_moments: usize,
    /// Values NaN in one and not the other.
    pub nan_mismatches: usize,
    /// Saved updates skipped: the window was not full (the start, after a segment
    /// boundary), or the update fell between two scored samples.
    pub partial_window_moments: usize,
    /// Share of (update, electrode) significance calls that agree, at the saved updates
    /// with a full window; none without a saved significance stream.
    pub significance_agreement: Option<f64>,
    /// Significance calls compared.
    pub significance_calls: usize,
}

/// Path `recording` of a report: the saved streams summarised, and their replay check.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// Path `recording`.
    pub source: Source,
    /// Model layers of the profiles.
    pub layers: Vec<usize>,
    /// Per electrode, in the saved streams' order.
    pub electrodes: Vec<LiveElectrode>,
    /// The replay check; none when the encoders are not the server's (see `replay_skipped`).
    pub replay: Option<ReplayCheck>,
    /// Why there is no replay check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_skipped: Option<String>,
    /// The saved r at the peak, for the figure.
    #[serde(skip)]
    pub peak_r: Series<f32>,
}

fn floats(stream: &Stream) -> Result<Vec<f32>, ReportError> {
    match &stream.data {
        Samples::Float32(v) => Ok(v.clone()),
        _ => Err(ReportError::Recording(format!(
            "stream {} is not float32",
            stream.info.name
        ))),
    }
}

/// The results stream `base` of the model with sha256 `model_sha256` among `streams`: of
/// those named `base` or `base@<model>`, the one whose `desc/model/sha256` is the model's; in
/// a recording whose results streams name no model (from before two models live), the
/// first named `base`, whichever the model.
fn results_stream<'a>(streams: &'a [Stream], base: &str, model_sha256: &str) -> Option<&'a Stream> {
    let model_of = |s: &Stream| {
        let desc = s.info.desc()?;
        desc.text_at("model/sha256").map(str::to_string)
    };
    let tagged = format!("{base}@");
    let family =
        (streams.iter()).filter(|s| s.info.name == base || s.info.name.starts_with(&tagged));
    let (tagged, untagged): (Vec<&Stream>, Vec<&Stream>) =
        family.partition(|s| model_of(s).is_some());
    match tagged.is_empty() {
        true => untagged.first().copied(),
        false => (tagged.into_iter()).find(|s| model_of(s).as_deref() == Some(model_sha256)),
    }
}

fn series<T>(stream: &Stream, values: Vec<T>) -> Series<T> {
    Series {
        stamps: stream.time_stamps.clone(),
        values,
        channels: stream.info.channel_count,
    }
}

impl Saved {
    /// The results streams of the model with sha256 `model_sha256` in the recording at
    /// `path` (with two or more models live, each has its own, `desc/model` naming it; a
    /// recording from before that has only untagged ones); none when it has no
    /// `neuralign-alignment-layers` of that model (not a recording of `serve` with encoders
    /// bound). `session` is what `fit` reads of it (its neural stream: the one of the same
    /// rate and labels).
    pub fn read(
        path: &Path,
        session: &Session,
        model_sha256: &str,
    ) -> Result<Option<Self>, ReportError> {
        let file = xdf::read_with(path, ReadOptions::default())?;
        let named = |base: &str| results_stream(&file.streams, base, model_sha256);
        let (Some(layers), Some(peak)) = (named(ALIGNMENT_LAYERS), named(ALIGNMENT)) else {
            return Ok(None);
        };
        let labels = peak.info.channel_labels.clone();
        let e = labels.len().max(1);
        let per_layer = &layers.info.channel_labels;
        let model_layers: Option<Vec<usize>> = per_layer
            .iter()
            .take(per_layer.len() / e)
            .map(|l| l.rsplit_once("/L").and_then(|(_, n)| n.parse().ok()))
            .collect();
        let model_layers = model_layers
            .filter(|m| !m.is_empty() && m.len() * e == per_layer.len())
            .ok_or_else(|| {
                ReportError::Recording(format!(
                    "{ALIGNMENT_LAYERS}: channel labels are not <electrode>/L<layer> for the {e} electrodes of {ALIGNMENT}"
                ))
            })?;
        let significance = named(SIGNIFICANCE)
            .map(|s| match &s.data {
                Samples::Int8(v) => Ok(series(s, v.clone())),
                _ => Err(ReportError::Recording(format!(
                    "{SIGNIFICANCE} is not int8"
                ))),
            })
            .transpose()?;
        Ok(Some(Self {
            labels,
            layers: model_layers,
            peak_r: series(peak, floats(peak)?),
            layer_r: series(layers, floats(layers)?),
            significance,
            neural_t0: file
                .streams
                .iter()
                .find(|s| {
                    s.info.nominal_srate == session.rate && s.info.channel_labels == session.labels
                })
                .and_then(|s| s.time_stamps.first().copied()),
            window_s: (peak.info.desc())
                .and_then(|d| d.text_at("alignment/window_s").and_then(|w| w.parse().ok())),
        }))
    }

    /// Per electrode: the mean saved profile, its peak, the share significant; `thresholds`
    /// by label from the encoder file.
    pub fn summarise(&self, enc: &Encoder) -> Vec<LiveElectrode> {
        let (e, l) = (self.labels.len(), self.layers.len());
        let threshold = |label: &str| {
            let stats = enc.meta.statistics.as_ref()?;
            let el = stats.electrodes.iter().find(|x| x.label == label)?;
            el.live_threshold
        };
        (0..e)
            .map(|k| {
                let profile: Vec<f64> = (0..l)
                    .map(|j| {
                        crate::stats::mean(
                            (0..self.layer_r.stamps.len())
                                .map(|i| self.layer_r.row(i)[k * l + j] as f64)
                                .filter(|v| v.is_finite()),
                        )
                    })
                    .collect();
                let peak = crate::align::peak_layers(&profile, l, 1)[0];
                let share_significant = self.significance.as_ref().map(|s| {
                    let n = s.stamps.len().max(1);
                    (0..s.stamps.len()).filter(|&i| s.row(i)[k] == 1).count() as f64 / n as f64
                });
                LiveElectrode {
                    label: self.labels[k].clone(),
                    peak_layer: profile[peak].is_finite().then(|| self.layers[peak]),
                    profile,
                    share_significant,
                    threshold: threshold(&self.labels[k]),
                }
            })
            .collect()
    }
}

/// The saved results of `saved` summarised under `enc`, and checked against their replay from
/// `session` (the recording's neural and transcript streams, embedded by the model with
/// sha256 `model_sha256`; `segments` where the transcript restarted the statistics).
pub fn recorded(
    saved: Saved,
    enc: &Encoder,
    session: &Session,
    segments: &[f64],
    model_sha256: &str,
) -> Result<Recorded, ReportError> {
    let electrodes = saved.summarise(enc);
    let (replay, replay_skipped) = if saved.labels != enc.meta.labels
        || saved.layers != enc.meta.layers
    {
        (
                None,
                Some(format!(
                    "the saved streams are of electrodes {:?} and layers {:?}, the encoders of {:?} and {:?}: not the encoders the server ran",
                    saved.labels, saved.layers, enc.meta.labels, enc.meta.layers
                )),
            )
    } else {
        (
            Some(replay(&saved, enc, session, segments, model_sha256)?),
            None,
        )
    };
    Ok(Recorded {
        source: Source::Recording {
            updates: saved.peak_r.stamps.len(),
            layer_updates: saved.layer_r.stamps.len(),
            significance: saved.significance.is_some(),
        },
        layers: saved.layers.clone(),
        electrodes,
        replay,
        replay_skipped,
        peak_r: saved.peak_r,
    })
}

/// The sample count `scored` at each stamp: the server stamps an update at its horizon
/// `t0 + scored / rate`.
fn scored_at(stamps: &[f64], t0: f64, rate: f64) -> Vec<i64> {
    stamps
        .iter()
        .map(|&t| ((t - t0) * rate).round() as i64)
        .collect()
}

/// Adds the comparison of `saved` with `replayed` (same layout) to `check`: the largest
/// difference into `max`, values NaN in one only into `nan_mismatches`.
fn compare(max: &mut f64, nan_mismatches: &mut usize, saved: &[f32], replayed: &[f32]) {
    for (&a, &b) in saved.iter().zip(replayed) {
        match (a.is_nan(), b.is_nan()) {
            (false, false) => *max = max.max((f64::from(a) - f64::from(b)).abs()),
            (true, true) => {}
            _ => *nan_mismatches += 1,
        }
    }
}

/// Pushes the session through [`Live`] as `serve` does (every word known, the segments where
/// the transcript put them) and compares the rolling r, the r at the peak and the
/// significance at the saved moments whose window is full.
fn replay(
    saved: &Saved,
    enc: &Encoder,
    session: &Session,
    segments: &[f64],
    model_sha256: &str,
) -> Result<ReplayCheck, ReportError> {
    let (bound, map) = enc.bind(model_sha256, session.rate, &session.labels, false)?;
    let rate = session.rate;
    // the server's window as recorded; in an older recording, the one the encoders were
    // calibrated for (which the server must have used to call significance), else the default
    let mut cfg = AlignConfig::default();
    let calibrated = (enc.meta.statistics.as_ref().and_then(|s| s.live.as_ref()))
        .map(|live| live.window as f64 / rate);
    if let Some(window_s) = saved.window_s.or(calibrated) {
        cfg.window_s = window_s;
    }
    let t0 = saved.neural_t0.unwrap_or(session.t0);
    let mut live = Live::new(bound, map, t0, cfg);
    for (id, w) in session.words.iter().enumerate() {
        let kernel = live.kernels().kernel(&w.embedding);
        live.word(id as u64, w.onset, kernel);
    }
    for &time in segments {
        live.segment(time);
    }
    live.transcript_watermark(f64::INFINITY);
    let (e, l) = (saved.labels.len(), saved.layers.len());
    let update_at = scored_at(&saved.peak_r.stamps, t0, rate);
    let layer_at = scored_at(&saved.layer_r.stamps, t0, rate);
    let (mut ui, mut li) = (0, 0);
    let mut check = ReplayCheck {
        source: Source::Replay {
            window: (live.config().window_s * rate).round() as usize,
            segments: segments.len(),
        },
        max_abs_diff_r: 0.0,
        layer_moments: 0,
        max_abs_diff_peak_r: 0.0,
        update_moments: 0,
        nan_mismatches: 0,
        partial_window_moments: 0,
        significance_agreement: None,
        significance_calls: 0,
    };
    let mut agree = 0usize;
    for row in session.hg.chunks_exact(session.electrodes()) {
        live.push_neural(row);
        while live.advance_one().is_some() {
            let scored = live.scored();
            let due = |at: &[i64], i: usize| at.get(i).is_some_and(|&s| s <= scored);
            if !due(&update_at, ui) && !due(&layer_at, li) {
                continue;
            }
            let full = live.window_full();
            let rolling = live.rolling_r();
            // the frames' layout: electrode-major f32
            let r: Vec<f32> = (0..e)
                .flat_map(|k| (0..l).map(move |j| (k, j)))
                .map(|(k, j)| rolling[j * e + k] as f32)
                .collect();
            let at_scored = |at: &[i64], i: usize| full && at[i] == scored;
            while due(&layer_at, li) {
                if at_scored(&layer_at, li) {
                    check.layer_moments += 1;
                    let (max, nan) = (&mut check.max_abs_diff_r, &mut check.nan_mismatches);
                    compare(max, nan, saved.layer_r.row(li), &r);
                }
                li += 1;
            }
            while due(&update_at, ui) {
                if !at_scored(&update_at, ui) {
                    check.partial_window_moments += 1;
                    ui += 1;
                    continue;
                }
                check.update_moments += 1;
                let summary = AlignmentSummary::compute(&r, &saved.layers, 0.0, &[]);
                let (max, nan) = (&mut check.max_abs_diff_peak_r, &mut check.nan_mismatches);
                compare(max, nan, saved.peak_r.row(ui), &summary.peak_r);
                let called = live.significant(&rolling);
                if let Some(sig) = saved.significance.as_ref().filter(|_| called.len() == e) {
                    let row = sig.row(ui);
                    agree += (0..e).filter(|&k| (row[k] == 1) == called[k]).count();
                    check.significance_calls += e;
                }
                ui += 1;
            }
        }
    }
    check.significance_agreement =
        (check.significance_calls > 0).then(|| agree as f64 / check.significance_calls as f64);
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdf::{ChannelFormat, StreamInfo};

    fn stream(name: &str, model: Option<(&str, &str)>) -> Stream {
        let info = StreamInfo::new(name, "Alignment", 2, 0.0, ChannelFormat::Float32, name);
        let info = match model {
            Some((model, sha256)) => {
                info.with_desc_entry("model", &[("name", model), ("sha256", sha256)])
            }
            None => info,
        };
        Stream {
            id: 0,
            info,
            time_stamps: Vec::new(),
            data: Samples::Float32(Vec::new()),
            clock_offsets: Vec::new(),
            footer_xml: None,
            effective_srate: 0.0,
            segments: Vec::new(),
            clock_segments: Vec::new(),
        }
    }

    /// Two models live: each model's report reads its own streams (by the sha256 in their
    /// `desc`), the first model's under the plain name and the second's under `@<model>`;
    /// a model that was not live has none, and another base name is never taken.
    #[test]
    fn each_model_reads_its_own_results_streams() {
        let streams = vec![
            stream("neuralign-alignment", Some(("smollm2.gguf", "aaa"))),
            stream("neuralign-peak-layer", Some(("smollm2.gguf", "aaa"))),
            stream(
                "neuralign-alignment@untrained.gguf",
                Some(("untrained.gguf", "bbb")),
            ),
            stream(
                "neuralign-peak-layer@untrained.gguf",
                Some(("untrained.gguf", "bbb")),
            ),
        ];
        let name = |base: &str, sha: &str| {
            results_stream(&streams, base, sha).map(|s| s.info.name.clone())
        };
        assert_eq!(
            name("neuralign-alignment", "aaa").as_deref(),
            Some("neuralign-alignment")
        );
        assert_eq!(
            name("neuralign-alignment", "bbb").as_deref(),
            Some("neuralign-alignment@untrained.gguf")
        );
        assert_eq!(
            name("neuralign-peak-layer", "bbb").as_deref(),
            Some("neuralign-peak-layer@untrained.gguf")
        );
        assert_eq!(name("neuralign-alignment", "ccc"), None);
        assert_eq!(name("neuralign-alignment-layers", "aaa"), None);
    }

    /// A recording from before two models live names no model: it had one, whose streams
    /// are read.
    #[test]
    fn untagged_results_streams_are_read_whatever_the_model() {
        let streams = vec![stream("neuralign-alignment", None)];
        let found = results_stream(&streams, "neuralign-alignment", "any");
        assert_eq!(found.map(|s| s.id), Some(0));
    }
}
