//! Following a sender clock that a stream's description announces (`desc` element
//! [`CLOCK_DESC_KEY`]): a companion stream publishes the correction to add to the sender's time
//! stamps (what liblsl's `time_correction` reports for a remote machine), and the inlet adds
//! the correction in force at each stamp on top of liblsl's own. On one machine liblsl's
//! correction is zero whatever the sender stamps, so `replay --drift-ppm` publishes its
//! simulated clock this way; a real remote clock needs nothing of this (liblsl follows it).
use lsl::Pullable;
use std::collections::VecDeque;

use crate::sender_clock::CLOCK_DESC_KEY;

use super::StreamSelector;

/// How often an inlet asks liblsl for its current clock correction (for the status), seconds.
pub(crate) const CLOCK_REFRESH_S: f64 = 5.0;

/// Corrections kept to place stamps that arrive after a newer correction.
const KEPT: usize = 64;

/// The companion stream of one sender clock and the corrections received from it.
pub(crate) struct ClockFollower {
    inlet: Option<lsl::StreamInlet>,
    /// `(sender stamp, correction)`, oldest first.
    corrections: VecDeque<(f64, f64)>,
}

impl ClockFollower {
    /// The follower of the clock `info` announces, when it announces one and its companion
    /// stream answers within `timeout_s`; `None` (the usual case) otherwise.
    pub fn announced(info: &mut lsl::StreamInfo, timeout_s: f64) -> Option<Self> {
        let source_id = info.desc().child_value_named(CLOCK_DESC_KEY);
        let source_id = source_id.trim();
        if source_id.is_empty() {
            return None;
        }
        let opened = StreamSelector::SourceId(source_id.into())
            .resolve(timeout_s)
            .ok()
            .flatten()
            .and_then(|info| {
                let inlet = lsl::StreamInlet::new(&info, 360, 0, false).ok()?;
                inlet.open_stream(timeout_s).ok()?;
                Some(inlet)
            });
        match &opened {
            Some(_) => tracing::info!(source_id, "following the stream's announced sender clock"),
            None => tracing::warn!(source_id, "the stream announces a sender clock that does not answer; its stamps are used as liblsl corrects them"),
        }
        opened.map(|inlet| Self {
            inlet: Some(inlet),
            corrections: VecDeque::with_capacity(KEPT),
        })
    }

    /// The correction in force at sender time `stamp`: that of the latest correction published
    /// at or before it (the earliest kept when all are later; 0 before the first).
    pub fn correction(&mut self, stamp: f64) -> f64 {
        self.drain();
        correction_at(&self.corrections, stamp)
    }

    /// The newest correction published, if any.
    pub fn latest(&mut self) -> Option<f64> {
        self.drain();
        self.corrections.back().map(|&(_, c)| c)
    }

    /// Takes every correction published so far; a lost companion keeps the last ones.
    fn drain(&mut self) {
        let Some(inlet) = &self.inlet else { return };
        let mut value = vec![0.0f64];
        loop {
            match inlet.pull_sample_buf(&mut value, 0.0) {
                Ok(0.0) => return,
                Ok(stamp) => {
                    if self.corrections.len() == KEPT {
                        self.corrections.pop_front();
                    }
                    self.corrections.push_back((stamp, value[0]));
                }
                Err(e) => {
                    tracing::warn!(
                        "the sender clock's stream is lost ({e:?}); keeping its last correction"
                    );
                    self.inlet = None;
                    return;
                }
            }
        }
    }
}

/// Largest drift a sender clock is followed at between corrections, seconds per second: a
/// quartz clock drifts by tens of ppm; a larger change between two corrections is a step.
const MAX_DRIFT: f64 = 500e-6;

/// The correction at sender time `stamp`. Between two corrections, and past the newest (its
/// companion stream can lag the data under load), it moves at the drift rate of the two
/// corrections around or before it, so a drifting clock is followed between probes; a change
/// faster than [`MAX_DRIFT`] (a jump) is a step, held from its own correction on. Before the
/// first correction, the first; none kept, 0.
fn correction_at(corrections: &VecDeque<(f64, f64)>, stamp: f64) -> f64 {
    let Some(i) = corrections.iter().rposition(|&(at, _)| at <= stamp) else {
        return corrections.front().map_or(0.0, |&(_, c)| c);
    };
    let (at, c) = corrections[i];
    let pair = match (i.checked_sub(1), corrections.get(i + 1)) {
        (_, Some(&next)) => Some(((at, c), next)),
        (Some(before), None) => Some((corrections[before], (at, c))),
        (None, None) => None,
    };
    match pair {
        Some(((a_at, a), (b_at, b))) if b_at > a_at => {
            let rate = (b - a) / (b_at - a_at);
            if rate.abs() <= MAX_DRIFT {
                c + rate * (stamp - at)
            } else {
                c
            }
        }
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_takes_the_latest_correction_published_at_or_before_it() {
        let corrections: VecDeque<_> = [(10.0, -0.1), (11.0, -0.2), (12.0, 0.3)].into();
        assert_eq!(correction_at(&corrections, 10.5), -0.1);
        assert_eq!(correction_at(&corrections, 11.0), -0.2);
        assert_eq!(correction_at(&corrections, 99.0), 0.3);
        assert_eq!(correction_at(&corrections, 5.0), -0.1);
        assert_eq!(correction_at(&VecDeque::new(), 5.0), 0.0);
    }

    #[test]
    fn a_drifting_clock_is_followed_between_and_past_its_corrections() {
        // 50 ppm: corrections every second of session, the newest at 12 s
        let drift = |s: f64| -0.1 - 50e-6 * s;
        let mut corrections: VecDeque<_> = [10.0, 11.0, 12.0].map(|s| (s, drift(s))).into();
        for stamp in [10.25, 11.5, 12.0, 13.7, 20.0] {
            let c = correction_at(&corrections, stamp);
            assert!((c - drift(stamp)).abs() < 1e-12, "{stamp}: {c}");
        }
        // a quarter-second jump at 12.5 s: held from its correction on, not smeared
        corrections.push_back((12.5, drift(12.5) + 0.25));
        assert!((correction_at(&corrections, 12.4) - drift(12.0)).abs() < 1e-12);
        assert_eq!(correction_at(&corrections, 13.0), drift(12.5) + 0.25);
    }
}
