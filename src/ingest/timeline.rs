//! Time continuity for regular streams: every sample gets an index on the stream's sample
//! grid, gaps (missing samples) are detected from the time stamps and counted, and the
//! [`Timeline`] ring buffer keeps the recent samples with missing ones filled by NaN so that
//! index `i` always means "the i-th sample period since the stream started".
use serde::Serialize;

/// A stretch of samples that never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gap {
    /// Time stamp of the last sample before the gap (server clock, seconds).
    pub after: f64,
    /// Time stamp of the first sample after the gap.
    pub before: f64,
    /// Number of sample periods missing.
    pub missing_samples: u64,
}

/// Where one incoming sample lands on the sample grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Index on the grid (0 = the stream's first sample).
    pub index: u64,
    /// The gap that ended with this sample, if any.
    pub gap: Option<Gap>,
}

/// Assigns grid indices to the time stamps of a regular stream and detects gaps.
///
/// Consecutive samples take consecutive indices (jitter never bends the grid). A step longer
/// than `tolerance_periods` sample periods is a gap of `round(step · rate) − 1` samples, and the
/// index skips that many. A step backwards (clock reset, sender bug) is counted and the sample
/// still takes the next index. Irregular streams (rate 0) have no gaps.
#[derive(Debug, Clone)]
pub struct GapTracker {
    rate: f64,
    tolerance_s: f64,
    next_index: u64,
    last_time: Option<f64>,
    backward_steps: u64,
}

impl GapTracker {
    /// A tracker for a stream with nominal `rate` Hz.
    pub fn new(rate: f64, tolerance_periods: f64) -> Self {
        let tolerance_s = if rate > 0.0 {
            tolerance_periods / rate
        } else {
            f64::INFINITY
        };
        Self {
            rate,
            tolerance_s,
            next_index: 0,
            last_time: None,
            backward_steps: 0,
        }
    }

    /// The same tracker with its first sample at grid index `index` (a new grid that must
    /// not reuse indices already handed out).
    pub fn starting_at(mut self, index: u64) -> Self {
        self.next_index = index;
        self
    }

    /// Places the next sample, stamped `time`.
    pub fn place(&mut self, time: f64) -> Placement {
        let mut placement = Placement {
            index: self.next_index,
            gap: None,
        };
        if let Some(last) = self.last_time {
            let step = time - last;
            if step <= 0.0 {
                self.backward_steps += 1;
            } else if step > self.tolerance_s {
                let missing = ((step * self.rate).round() as u64).saturating_sub(1).max(1);
                placement.index += missing;
                placement.gap = Some(Gap {
                    after: last,
                    before: time,
                    missing_samples: missing,
                });
            }
        }
        self.next_index = placement.index + 1;
        self.last_time = Some(time);
        placement
    }

    /// Time stamps that did not move forward, so far.
    pub fn backward_steps(&self) -> u64 {
        self.backward_steps
    }

    /// The index the next sample will take if it arrives on time.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }
}

/// A block of consecutive samples of the neural stream, as handed from the inlet thread to
/// the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuralChunk {
    /// Grid index of the first sample; the next chunk starts at `first_index + len()` unless a
    /// gap (or a dropped chunk) lies between them.
    pub first_index: u64,
    /// Time stamp of each sample on the server's clock, seconds.
    pub timestamps: Vec<f64>,
    /// Samples, row-major `[samples, channels]`.
    pub data: Vec<f32>,
    /// Which connection of the inlet delivered it (0 for the first stream found, +1 per
    /// reconnection): a new connection may carry a stream of another layout, see
    /// [`crate::ingest::NeuralInlet::stream_of`].
    pub connection: u64,
    /// Server clock when the chunk was pulled from liblsl.
    pub received: f64,
}

impl NeuralChunk {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the chunk holds no samples.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }
}

/// Ring buffer of the most recent samples of one regular stream, indexed on its sample grid.
///
/// Samples that never arrived (gaps, or chunks the pipeline dropped) are NaN, with time
/// stamps interpolated between their neighbours. The watermark is the time stamp of the
/// newest sample: everything up to it is known.
#[derive(Debug, Clone)]
pub struct Timeline {
    channels: usize,
    capacity: usize,
    data: Vec<f32>,
    times: Vec<f64>,
    end_index: u64,
    filled: u64,
    overlapping: u64,
}

impl Timeline {
    /// An empty timeline keeping `capacity` samples of `channels` channels.
    pub fn new(channels: usize, capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "a timeline needs room for at least one sample"
        );
        Self {
            channels,
            capacity,
            data: vec![f32::NAN; channels * capacity],
            times: vec![f64::NAN; capacity],
            end_index: 0,
            filled: 0,
            overlapping: 0,
        }
    }

    /// Appends a chunk, filling any indices skipped since the previous one with NaN.
    /// Samples at indices already written (a sender that rewinds) are skipped and counted.
    pub fn push(&mut self, chunk: &NeuralChunk) {
        assert_eq!(chunk.data.len(), chunk.len() * self.channels, "chunk shape");
        if chunk.is_empty() {
            return;
        }
        if chunk.first_index > self.end_index {
            self.fill_missing(chunk.first_index, chunk.timestamps[0]);
        }
        let skip = self
            .end_index
            .saturating_sub(chunk.first_index)
            .min(chunk.len() as u64) as usize;
        self.overlapping += skip as u64;
        for k in skip..chunk.len() {
            let row = &chunk.data[k * self.channels..(k + 1) * self.channels];
            self.write(chunk.timestamps[k], row);
        }
    }

    fn fill_missing(&mut self, until_index: u64, next_time: f64) {
        let missing = until_index - self.end_index;
        self.filled += missing;
        let last_time = self.last_time();
        let step = last_time.map(|t| (next_time - t) / (missing + 1) as f64);
        // Only the newest `capacity` samples survive, so write at most that many.
        let first = missing.saturating_sub(self.capacity as u64);
        self.end_index += first;
        let nan_row = vec![f32::NAN; self.channels];
        for k in first..missing {
            let time = match (last_time, step) {
                (Some(t), Some(dt)) => t + dt * (k + 1) as f64,
                _ => f64::NAN,
            };
            self.write(time, &nan_row);
        }
    }

    fn write(&mut self, time: f64, row: &[f32]) {
        let slot = (self.end_index % self.capacity as u64) as usize;
        self.times[slot] = time;
        self.data[slot * self.channels..(slot + 1) * self.channels].copy_from_slice(row);
        self.end_index += 1;
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Index one past the newest sample.
    pub fn end_index(&self) -> u64 {
        self.end_index
    }

    /// Index of the oldest sample still held.
    pub fn start_index(&self) -> u64 {
        self.end_index.saturating_sub(self.capacity as u64)
    }

    /// Samples filled with NaN because they never arrived.
    pub fn filled_samples(&self) -> u64 {
        self.filled
    }

    /// Samples skipped because their index had already been written.
    pub fn overlapping_samples(&self) -> u64 {
        self.overlapping
    }

    /// The sample at grid `index` and its time stamp, if still held.
    pub fn sample(&self, index: u64) -> Option<(f64, &[f32])> {
        if index < self.start_index() || index >= self.end_index {
            return None;
        }
        let slot = (index % self.capacity as u64) as usize;
        Some((
            self.times[slot],
            &self.data[slot * self.channels..(slot + 1) * self.channels],
        ))
    }

    fn last_time(&self) -> Option<f64> {
        self.end_index
            .checked_sub(1)
            .and_then(|i| self.sample(i))
            .map(|(t, _)| t)
    }

    /// Time of the newest sample: all data up to here has arrived (or is known missing).
    pub fn watermark(&self) -> Option<f64> {
        self.last_time()
    }

    /// The held sample whose time stamp is nearest to `time` (word onsets rarely fall on a
    /// sample). Assumes time stamps increase along the grid.
    pub fn nearest_index(&self, time: f64) -> Option<u64> {
        let (start, end) = (self.start_index(), self.end_index);
        if start == end {
            return None;
        }
        let time_at = |i: u64| self.sample(i).map_or(f64::NAN, |(t, _)| t);
        // First index whose time is >= `time`, by bisection over the grid.
        let (mut lo, mut hi) = (start, end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if time_at(mid) < time {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == end {
            return Some(end - 1);
        }
        if lo > start && (time - time_at(lo - 1)) <= (time_at(lo) - time) {
            return Some(lo - 1);
        }
        Some(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_samples_take_consecutive_indices_despite_jitter() {
        let mut tracker = GapTracker::new(100.0, 1.5);
        let times = [10.0, 10.0104, 10.0196, 10.0301, 10.04];
        let indices: Vec<_> = times.iter().map(|&t| tracker.place(t)).collect();
        assert!(indices.iter().all(|p| p.gap.is_none()));
        assert_eq!(
            indices.iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn a_gap_skips_the_missing_samples() {
        let mut tracker = GapTracker::new(100.0, 1.5);
        tracker.place(1.00);
        tracker.place(1.01);
        let after = tracker.place(1.05); // 1.02, 1.03, 1.04 missing
        assert_eq!(after.index, 5);
        assert_eq!(
            after.gap,
            Some(Gap {
                after: 1.01,
                before: 1.05,
                missing_samples: 3
            })
        );
        assert_eq!(tracker.place(1.06).index, 6);
    }

    #[test]
    fn backward_steps_are_counted_and_keep_the_grid() {
        let mut tracker = GapTracker::new(100.0, 1.5);
        tracker.place(5.0);
        let back = tracker.place(4.0);
        assert_eq!((back.index, back.gap), (1, None));
        assert_eq!(tracker.backward_steps(), 1);
    }

    #[test]
    fn irregular_streams_have_no_gaps() {
        let mut tracker = GapTracker::new(0.0, 1.5);
        tracker.place(0.0);
        assert_eq!(
            tracker.place(100.0),
            Placement {
                index: 1,
                gap: None
            }
        );
    }

    fn chunk(first_index: u64, times: &[f64], channels: usize) -> NeuralChunk {
        let data = times
            .iter()
            .enumerate()
            .flat_map(|(k, _)| {
                (0..channels).map(move |c| (first_index as usize + k) as f32 * 10.0 + c as f32)
            })
            .collect();
        NeuralChunk {
            first_index,
            timestamps: times.to_vec(),
            data,
            connection: 0,
            received: times.last().copied().unwrap_or(0.0),
        }
    }

    #[test]
    fn timeline_fills_missing_indices_with_nan_and_interpolated_times() {
        let mut timeline = Timeline::new(2, 16);
        timeline.push(&chunk(0, &[0.0, 0.1], 2));
        timeline.push(&chunk(4, &[0.4, 0.5], 2));
        assert_eq!(timeline.end_index(), 6);
        assert_eq!(timeline.filled_samples(), 2);
        let (t2, row2) = timeline.sample(2).unwrap();
        assert!((t2 - 0.2).abs() < 1e-12 && row2.iter().all(|v| v.is_nan()));
        assert_eq!(timeline.sample(4).unwrap(), (0.4, &[40.0, 41.0][..]));
        assert_eq!(timeline.watermark(), Some(0.5));
    }

    #[test]
    fn timeline_keeps_only_the_newest_samples() {
        let mut timeline = Timeline::new(1, 4);
        let times: Vec<f64> = (0..10).map(|k| k as f64).collect();
        timeline.push(&chunk(0, &times, 1));
        assert_eq!((timeline.start_index(), timeline.end_index()), (6, 10));
        assert!(timeline.sample(5).is_none());
        assert_eq!(timeline.sample(9).unwrap(), (9.0, &[90.0][..]));
        // A long gap only writes what fits.
        timeline.push(&chunk(1000, &[1000.0], 1));
        assert_eq!((timeline.start_index(), timeline.end_index()), (997, 1001));
        assert_eq!(timeline.filled_samples(), 990);
    }

    #[test]
    fn rewound_samples_are_skipped_and_counted() {
        let mut timeline = Timeline::new(1, 8);
        timeline.push(&chunk(0, &[0.0, 1.0, 2.0], 1));
        timeline.push(&chunk(2, &[2.0, 3.0], 1));
        assert_eq!(timeline.end_index(), 4);
        assert_eq!(timeline.overlapping_samples(), 1);
    }

    #[test]
    fn nearest_index_rounds_to_the_closest_sample() {
        let mut timeline = Timeline::new(1, 8);
        timeline.push(&chunk(0, &[0.0, 0.01, 0.02, 0.03], 1));
        assert_eq!(timeline.nearest_index(0.014), Some(1));
        assert_eq!(timeline.nearest_index(0.016), Some(2));
        assert_eq!(timeline.nearest_index(-5.0), Some(0));
        assert_eq!(timeline.nearest_index(5.0), Some(3));
    }
}
