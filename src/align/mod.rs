//! Alignment: predicted against actual high-gamma, per electrode and layer,
//! moment to moment. [`Live`] scores a stream up to its horizon; [`offline`]
//! computes the same scores from whole arrays (the reference that live must
//! equal). Scores: rolling-window and exponentially weighted Pearson r,
//! word-level r over each word's lag window, the peak layer per electrode, a
//! chance level from time-shifted predictions, and a summary over the
//! electrodes whose cross-validated r passes a threshold.

mod live;
pub mod offline;
mod rolling;

pub use live::{Live, LiveCounts};
pub use rolling::{EwPearson, RollingPearson};
use serde::{Deserialize, Serialize};

/// How alignment is scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlignConfig {
    /// Rolling correlation window, seconds.
    pub window_s: f64,
    /// Time constant of the exponentially weighted correlation, seconds.
    pub ew_tau_s: f64,
    /// Shift of the prediction for the chance level, seconds.
    pub chance_shift_s: f64,
    /// Electrodes enter the summary when their best cross-validated r passes this.
    pub cv_threshold: f64,
    /// The longest a neural sample waits for the transcript after it arrived, seconds of
    /// the server's clock (not of the session: a replay at `--speed max` runs far ahead of
    /// the language model by design): older samples are scored with the words known by then
    /// (counted), so that a transcript or a language model that falls behind cannot hold
    /// samples without end. `inf` waits for ever.
    pub max_wait_s: f64,
}

impl Default for AlignConfig {
    fn default() -> Self {
        Self {
            window_s: 10.0,
            ew_tau_s: 10.0,
            chance_shift_s: 5.0,
            cv_threshold: 0.1,
            max_wait_s: 30.0,
        }
    }
}

/// Word-level r: predicted against actual over one word's lag window.
#[derive(Debug, Clone, PartialEq)]
pub struct WordScore {
    /// Word id from the transcript.
    pub id: u64,
    /// Onset, seconds.
    pub onset: f64,
    /// r per `[layer, electrode]` (NaN where a series is constant).
    pub r: Vec<f32>,
}

/// Alignment summarised over the selected electrodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Number of electrodes selected by cross-validated r.
    pub electrodes: usize,
    /// Mean rolling r per layer over them.
    pub mean_r: Vec<f64>,
    /// Mean chance-level r over them and all layers.
    pub chance: f64,
    /// How many of them peak at each layer.
    pub peak_layer_counts: Vec<usize>,
}

impl Summary {
    /// Summarises `r` and `chance` (`[layers, electrodes]`) over `selected`.
    pub fn new(r: &[f64], chance: &[f64], selected: &[bool], layers: usize) -> Self {
        let e = selected.len();
        let chosen: Vec<usize> = (0..e).filter(|&k| selected[k]).collect();
        let mean = |vals: &mut dyn Iterator<Item = f64>| {
            let v: Vec<f64> = vals.filter(|x| x.is_finite()).collect();
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let mean_r = (0..layers)
            .map(|l| mean(&mut chosen.iter().map(|&k| r[l * e + k])))
            .collect();
        let chance =
            mean(&mut (0..layers).flat_map(|l| chosen.iter().map(move |&k| chance[l * e + k])));
        let peaks = peak_layers(r, layers, e);
        let mut peak_layer_counts = vec![0; layers];
        chosen
            .iter()
            .for_each(|&k| peak_layer_counts[peaks[k]] += 1);
        Self {
            electrodes: chosen.len(),
            mean_r,
            chance,
            peak_layer_counts,
        }
    }
}

/// The layer with the highest r per electrode (`r` is `[layers, electrodes]`;
/// NaN never wins).
pub fn peak_layers(r: &[f64], layers: usize, electrodes: usize) -> Vec<usize> {
    (0..electrodes)
        .map(|e| {
            (0..layers).fold(0, |b, l| {
                let (x, y) = (r[l * electrodes + e], r[b * electrodes + e]);
                if x > y || (y.is_nan() && !x.is_nan()) {
                    l
                } else {
                    b
                }
            })
        })
        .collect()
}
