//! [`TranscriptState`]: the transcript as the server knows it, built by applying events in
//! arrival order, and what the language model must do after each ([`LmAction`]).
//!
//! Deterministic rules, applied in arrival order:
//! - Words are kept in onset order (`start`, then `id`). A new word arriving after later words
//!   (out of order) is inserted at its place: the LM rolls back to before it and recomputes.
//! - A word whose id is known is a revision; an identical copy is a `duplicate` (rejected,
//!   nothing changes). A revision rolls back to before the earlier of its old and new place.
//! - A new word starting before the transcript watermark is `late` and rejected: the horizon
//!   has already moved past it. Revisions and retractions are always applied. Within
//!   [`CLOCK_JITTER_S`] of the watermark a word is not late (the sender's times reach the
//!   server clock through an offset that moves by tens of microseconds between messages): it
//!   starts at the watermark.
//! - A retraction of an unknown id is rejected (`unknown_id`).
//! - Watermarks only move forward; one that does not is rejected (`watermark_regression`),
//!   unless it is behind by no more than [`CLOCK_JITTER_S`] (then it changes nothing).
//!   Without explicit watermarks, [`TranscriptState::tick`] advances the watermark to
//!   `now − silence_timeout` once the stream has been silent that long.
//! - Bare words (id [`BARE_WORD_ID_BASE`]) are renumbered so that each is distinct.
//! - With [`TranscriptState::forgetting_after`], words that start more than that long before
//!   the watermark are forgotten ([`TranscriptState::forget`]): the transcript held over hours
//!   is bounded. Positions stay those of the whole session (the first word held is at
//!   [`TranscriptState::first_position`]); a revision of a forgotten word is a new, late word,
//!   a retraction of one an unknown id.
use std::collections::BTreeMap;

use serde::Serialize;

#[cfg(test)]
use super::message::parse_message;
use super::message::{RejectReason, Rejection, TranscriptEvent, Word, BARE_WORD_ID_BASE};

/// What the language model must do after an event, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum LmAction {
    /// Forget every word at position `>= position` (roll the KV cache back to before it).
    Rollback {
        /// First position to forget.
        position: usize,
    },
    /// Embed `word` as the word at `position` (always one past the last embedded word).
    Append {
        /// Position in the transcript (0-based, onset order).
        position: usize,
        /// The word.
        word: Word,
    },
    /// Words at positions `< before` will never be rolled back to: their records can go.
    Forget {
        /// First position still held.
        before: usize,
    },
    /// Nothing for the model: a segment starts at `time` (server clock), passed on in order
    /// after the words before it so that alignment statistics restart there.
    Segment {
        /// The sender's number for the segment.
        id: u64,
        /// Where the segment starts.
        time: f64,
    },
}

/// Counts of what the transcript stream delivered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TranscriptCounts {
    /// New words accepted.
    pub words: u64,
    /// Revisions applied.
    pub revisions: u64,
    /// Retractions applied.
    pub retractions: u64,
    /// Watermarks that moved the watermark forward.
    pub watermarks: u64,
    /// Segment boundaries applied.
    pub segments: u64,
    /// Words forgotten once the watermark was far enough past them.
    pub forgotten: u64,
    /// Rejected messages by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
}

impl TranscriptCounts {
    /// Total rejected messages.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Counts one rejection.
    pub fn reject(&mut self, reason: RejectReason) {
        *self.rejected.entry(reason).or_default() += 1;
    }
}

/// How far behind the watermark a sender's time may land on the server clock and still count
/// as on time, seconds. Each message is mapped with liblsl's latest clock-offset estimate, which
/// moves by tens of microseconds: a word that starts exactly where the sender's watermark
/// promised can land a few microseconds before it. A tenth of a 100 Hz sample.
pub const CLOCK_JITTER_S: f64 = 1e-3;

/// The transcript as the server knows it: words in onset order, the watermark, and counts.
#[derive(Debug, Clone)]
pub struct TranscriptState {
    words: Vec<Word>,
    /// Words forgotten from the front: `words[0]` is at this position.
    forgotten: usize,
    /// Words starting this long before the watermark are forgotten (∞: never).
    forget_after_s: f64,
    watermark: f64,
    silence_timeout_s: f64,
    last_message_at: Option<f64>,
    next_bare_id: u64,
    counts: TranscriptCounts,
}

impl TranscriptState {
    /// An empty transcript; silence longer than `silence_timeout_s` advances the watermark.
    pub fn new(silence_timeout_s: f64) -> Self {
        Self {
            words: Vec::new(),
            forgotten: 0,
            forget_after_s: f64::INFINITY,
            watermark: f64::NEG_INFINITY,
            silence_timeout_s,
            last_message_at: None,
            next_bare_id: BARE_WORD_ID_BASE,
            counts: TranscriptCounts::default(),
        }
    }

    /// Forgets, at each [`TranscriptState::forget`], the words that start more than
    /// `seconds` before the watermark (by default none are forgotten).
    pub fn forgetting_after(mut self, seconds: f64) -> Self {
        self.forget_after_s = seconds;
        self
    }

    /// The words held, in onset order (the forgotten ones are not).
    pub fn words(&self) -> &[Word] {
        &self.words
    }

    /// Position of the first word held: the number of words forgotten.
    pub fn first_position(&self) -> usize {
        self.forgotten
    }

    /// Position the next word appended at the end would take.
    pub fn next_position(&self) -> usize {
        self.forgotten + self.words.len()
    }

    /// Forgets the words that start more than the forgetting delay before the watermark
    /// (none unless [`TranscriptState::forgetting_after`] set one); returns the
    /// [`LmAction::Forget`] to pass on when some were.
    pub fn forget(&mut self) -> Option<LmAction> {
        let cutoff = self.watermark - self.forget_after_s;
        let n = self.words.partition_point(|w| w.start < cutoff);
        if n == 0 {
            return None;
        }
        self.words.drain(..n);
        self.forgotten += n;
        self.counts.forgotten += n as u64;
        Some(LmAction::Forget {
            before: self.forgotten,
        })
    }

    /// No new word will start before this time (server clock); −∞ before the first.
    pub fn watermark(&self) -> f64 {
        self.watermark
    }

    /// Bytes the words held take (their records and texts).
    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * std::mem::size_of::<Word>()
            + self.words.iter().map(|w| w.text.capacity()).sum::<usize>()
    }

    /// What has been accepted and rejected so far.
    pub fn counts(&self) -> &TranscriptCounts {
        &self.counts
    }

    /// Counts a message that failed to parse (so that all rejections are counted in one place).
    pub fn reject(&mut self, rejection: &Rejection, received_at: f64) {
        self.last_message_at = Some(received_at);
        self.counts.reject(rejection.reason);
    }

    /// Applies one parsed event (times on the server clock) received at local time
    /// `received_at`, returning what the LM must do.
    pub fn apply(
        &mut self,
        event: TranscriptEvent,
        received_at: f64,
    ) -> Result<Vec<LmAction>, Rejection> {
        self.last_message_at = Some(received_at);
        let result = match event {
            TranscriptEvent::Word(word) => self.apply_word(word),
            TranscriptEvent::Retract { id } => self.apply_retract(id),
            TranscriptEvent::Watermark { time } => self.apply_watermark(time),
            TranscriptEvent::Segment { id, time } => self.apply_segment(id, time),
        };
        if let Err(rejection) = &result {
            self.counts.reject(rejection.reason);
        }
        result
    }

    /// Starts the silence clock at `now` unless a message came already (the inlet calls it as
    /// it starts listening), so that the watermark advances through a silent start too.
    pub fn start_silence_clock(&mut self, now: f64) {
        self.last_message_at.get_or_insert(now);
    }

    /// Advances the watermark after `silence_timeout_s` without any message; `now` is the
    /// server's LSL clock. Returns the new watermark when it moved.
    pub fn tick(&mut self, now: f64) -> Option<f64> {
        let silent_since = self.last_message_at?;
        let candidate = now - self.silence_timeout_s;
        if now - silent_since >= self.silence_timeout_s && candidate > self.watermark {
            self.watermark = candidate;
            return Some(candidate);
        }
        None
    }

    fn apply_word(&mut self, mut word: Word) -> Result<Vec<LmAction>, Rejection> {
        if word.id == BARE_WORD_ID_BASE {
            word.id = self.next_bare_id;
            self.next_bare_id += 1;
        }
        let Some(old) = self.words.iter().position(|w| w.id == word.id) else {
            if word.start < self.watermark && word.start >= self.watermark - CLOCK_JITTER_S {
                word.start = self.watermark;
                word.end = word.end.max(word.start);
            }
            if word.start < self.watermark {
                return Err(Rejection::new(
                    RejectReason::Late,
                    format!(
                        "word {} starts at {} before the watermark {}",
                        word.id, word.start, self.watermark
                    ),
                ));
            }
            self.counts.words += 1;
            let position = self.insert(word);
            return Ok(self.recompute_from(position));
        };
        if self.words[old] == word {
            return Err(Rejection::new(
                RejectReason::Duplicate,
                format!("word {} repeated", word.id),
            ));
        }
        self.counts.revisions += 1;
        self.words.remove(old);
        let position = self.insert(word).min(self.forgotten + old);
        Ok(self.recompute_from(position))
    }

    fn apply_retract(&mut self, id: u64) -> Result<Vec<LmAction>, Rejection> {
        let position = self.words.iter().position(|w| w.id == id).ok_or_else(|| {
            Rejection::new(
                RejectReason::UnknownId,
                format!("retraction of unknown word {id}"),
            )
        })?;
        self.counts.retractions += 1;
        self.words.remove(position);
        Ok(self.recompute_from(self.forgotten + position))
    }

    fn apply_watermark(&mut self, time: f64) -> Result<Vec<LmAction>, Rejection> {
        if time < self.watermark - CLOCK_JITTER_S {
            return Err(Rejection::new(
                RejectReason::WatermarkRegression,
                format!("watermark {time} behind {}", self.watermark),
            ));
        }
        if time > self.watermark {
            self.counts.watermarks += 1;
            self.watermark = time;
        }
        Ok(Vec::new())
    }

    /// A segment boundary where the horizon may already have passed is `late`: statistics can
    /// no longer restart there.
    fn apply_segment(&mut self, id: u64, time: f64) -> Result<Vec<LmAction>, Rejection> {
        if time < self.watermark - CLOCK_JITTER_S {
            return Err(Rejection::new(
                RejectReason::Late,
                format!(
                    "segment {id} starts at {time} before the watermark {}",
                    self.watermark
                ),
            ));
        }
        self.counts.segments += 1;
        Ok(vec![LmAction::Segment { id, time }])
    }

    /// Inserts in onset order (ties by id) and returns the position.
    fn insert(&mut self, word: Word) -> usize {
        let index = self
            .words
            .partition_point(|w| (w.start, w.id) < (word.start, word.id));
        self.words.insert(index, word);
        self.forgotten + index
    }

    /// Actions that bring an LM whose words before `position` are current up to date: roll
    /// back to `position`, then append every word from there. (An append at the end is a
    /// rollback to the LM's current length, which is a no-op for it.) A position among the
    /// forgotten words starts from the first word held.
    pub fn recompute_from(&self, position: usize) -> Vec<LmAction> {
        let position = position.clamp(self.forgotten, self.next_position());
        let index = position - self.forgotten;
        let mut actions = Vec::with_capacity(self.words.len() - index + 1);
        actions.push(LmAction::Rollback { position });
        actions.extend(
            self.words[index..]
                .iter()
                .enumerate()
                .map(|(k, word)| LmAction::Append {
                    position: position + k,
                    word: word.clone(),
                }),
        );
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(id: u64, text: &str, start: f64) -> TranscriptEvent {
        TranscriptEvent::Word(Word {
            id,
            text: text.into(),
            start,
            end: start + 0.3,
            is_final: true,
            confidence: None,
        })
    }

    fn texts(state: &TranscriptState) -> Vec<&str> {
        state.words().iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn in_order_words_are_appended_without_rollback_of_earlier_words() {
        let mut state = TranscriptState::new(3.0);
        let a = state.apply(word(1, "the", 1.0), 0.0).unwrap();
        let b = state.apply(word(2, "cat", 2.0), 0.0).unwrap();
        assert_eq!(a[0], LmAction::Rollback { position: 0 });
        assert_eq!(b.len(), 2);
        assert_eq!(b[0], LmAction::Rollback { position: 1 });
        assert!(matches!(&b[1], LmAction::Append { position: 1, word } if word.text == "cat"));
    }

    #[test]
    fn out_of_order_words_are_inserted_in_onset_order() {
        let mut state = TranscriptState::new(3.0);
        state.apply(word(1, "the", 1.0), 0.0).unwrap();
        state.apply(word(3, "sat", 3.0), 0.0).unwrap();
        let actions = state.apply(word(2, "cat", 2.0), 0.0).unwrap();
        assert_eq!(texts(&state), ["the", "cat", "sat"]);
        assert_eq!(actions[0], LmAction::Rollback { position: 1 });
        assert_eq!(actions.len(), 3);
    }

    #[test]
    fn revision_rolls_back_to_the_revised_word_and_duplicates_are_rejected() {
        let mut state = TranscriptState::new(3.0);
        for (id, text, start) in [(1, "the", 1.0), (2, "cat", 2.0), (3, "sat", 3.0)] {
            state.apply(word(id, text, start), 0.0).unwrap();
        }
        let actions = state.apply(word(2, "hat", 2.0), 0.0).unwrap();
        assert_eq!(texts(&state), ["the", "hat", "sat"]);
        assert_eq!(actions[0], LmAction::Rollback { position: 1 });
        let again = state.apply(word(2, "hat", 2.0), 0.0).unwrap_err();
        assert_eq!(again.reason, RejectReason::Duplicate);
        // A revision that moves the word later rolls back to its old place.
        let moved = state.apply(word(1, "the", 2.5), 0.0).unwrap();
        assert_eq!(texts(&state), ["hat", "the", "sat"]);
        assert_eq!(moved[0], LmAction::Rollback { position: 0 });
        assert_eq!((state.counts().words, state.counts().revisions), (3, 2));
    }

    #[test]
    fn retraction_removes_the_word_and_unknown_ids_are_rejected() {
        let mut state = TranscriptState::new(3.0);
        state.apply(word(1, "the", 1.0), 0.0).unwrap();
        state.apply(word(2, "cat", 2.0), 0.0).unwrap();
        let actions = state
            .apply(TranscriptEvent::Retract { id: 1 }, 0.0)
            .unwrap();
        assert_eq!(texts(&state), ["cat"]);
        assert_eq!(actions.len(), 2);
        let err = state
            .apply(TranscriptEvent::Retract { id: 1 }, 0.0)
            .unwrap_err();
        assert_eq!(err.reason, RejectReason::UnknownId);
    }

    #[test]
    fn clock_offset_jitter_makes_no_word_or_watermark_late() {
        let mut state = TranscriptState::new(3.0);
        state
            .apply(TranscriptEvent::Watermark { time: 10.0 }, 0.0)
            .unwrap();
        // The next word starts where the watermark promised, mapped with an offset 18 us
        // smaller: accepted, at the watermark.
        let actions = state.apply(word(1, "on", 10.0 - 18e-6), 0.0).unwrap();
        assert_eq!(state.words()[0].start, 10.0);
        assert_eq!(actions.len(), 2);
        assert!(state
            .apply(TranscriptEvent::Watermark { time: 10.0 - 18e-6 }, 0.0)
            .unwrap()
            .is_empty());
        assert_eq!(state.watermark(), 10.0);
        // Beyond the jitter, late as ever.
        let late = word(2, "late", 10.0 - 2.0 * CLOCK_JITTER_S);
        assert_eq!(
            state.apply(late, 0.0).unwrap_err().reason,
            RejectReason::Late
        );
        assert_eq!(state.counts().rejected_total(), 1);
    }

    #[test]
    fn watermarks_move_forward_and_late_words_are_rejected() {
        let mut state = TranscriptState::new(3.0);
        state
            .apply(TranscriptEvent::Watermark { time: 10.0 }, 0.0)
            .unwrap();
        let err = state
            .apply(TranscriptEvent::Watermark { time: 9.0 }, 0.0)
            .unwrap_err();
        assert_eq!(err.reason, RejectReason::WatermarkRegression);
        assert_eq!(
            state.apply(word(1, "late", 9.5), 0.0).unwrap_err().reason,
            RejectReason::Late
        );
        assert!(state.apply(word(2, "ok", 10.0), 0.0).is_ok());
        assert_eq!(state.watermark(), 10.0);
        let counts = state.counts();
        assert_eq!(
            (counts.words, counts.watermarks, counts.rejected_total()),
            (1, 1, 2)
        );
    }

    #[test]
    fn a_segment_passes_on_in_order_unless_the_watermark_passed_it() {
        let mut state = TranscriptState::new(3.0);
        state.apply(word(1, "a", 5.0), 0.0).unwrap();
        state
            .apply(TranscriptEvent::Watermark { time: 10.0 }, 0.0)
            .unwrap();
        let actions = state
            .apply(TranscriptEvent::Segment { id: 2, time: 11.0 }, 0.0)
            .unwrap();
        assert_eq!(actions, [LmAction::Segment { id: 2, time: 11.0 }]);
        // neither the words nor the watermark change
        assert_eq!((texts(&state), state.watermark()), (vec!["a"], 10.0));
        let late = state
            .apply(TranscriptEvent::Segment { id: 3, time: 9.0 }, 0.0)
            .unwrap_err();
        assert_eq!(late.reason, RejectReason::Late);
        assert_eq!(state.counts().segments, 1);
    }

    #[test]
    fn silence_advances_the_watermark() {
        let mut state = TranscriptState::new(3.0);
        assert_eq!(state.tick(100.0), None, "nothing received yet");
        state.apply(word(1, "a", 50.0), 100.0).unwrap();
        assert_eq!(state.tick(102.0), None);
        assert_eq!(state.tick(104.0), Some(101.0));
        assert_eq!(state.tick(104.0), None);
    }

    #[test]
    fn silence_counts_from_the_start_of_listening() {
        // a transcript stream that never speaks (or is away) must not hold the horizon forever
        let mut state = TranscriptState::new(3.0);
        state.start_silence_clock(100.0);
        assert_eq!(state.tick(102.0), None);
        assert_eq!(state.tick(104.0), Some(101.0));
        state.apply(word(1, "a", 105.0), 105.0).unwrap();
        state.start_silence_clock(200.0); // a message came already: no effect
        assert_eq!(state.tick(108.0), Some(105.0));
    }

    #[test]
    fn words_far_behind_the_watermark_are_forgotten_and_positions_go_on() {
        let mut state = TranscriptState::new(3.0).forgetting_after(60.0);
        for k in 0..10u64 {
            state.apply(word(k + 1, "w", 10.0 * k as f64), 0.0).unwrap();
        }
        assert_eq!(state.forget(), None, "no watermark yet");
        state
            .apply(TranscriptEvent::Watermark { time: 95.0 }, 0.0)
            .unwrap();
        // words starting before 35 s go: 0, 10, 20, 30
        assert_eq!(state.forget(), Some(LmAction::Forget { before: 4 }));
        assert_eq!(state.forget(), None);
        assert_eq!((state.first_position(), state.next_position()), (4, 10));
        assert_eq!(state.words()[0].id, 5);
        assert_eq!(state.counts().forgotten, 4);
        // positions are the session's: a revision of the word at 60 s rolls back to 6
        let actions = state.apply(word(7, "v", 60.0), 0.0).unwrap();
        assert_eq!(actions[0], LmAction::Rollback { position: 6 });
        assert!(matches!(&actions[1], LmAction::Append { position: 6, word } if word.text == "v"));
        let actions = state
            .apply(TranscriptEvent::Retract { id: 10 }, 0.0)
            .unwrap();
        assert_eq!(actions, [LmAction::Rollback { position: 9 }]);
        let actions = state.apply(word(11, "new", 96.0), 0.0).unwrap();
        assert_eq!(actions[0], LmAction::Rollback { position: 9 });
        // a forgotten word is unknown now: its revision is a late new word
        assert_eq!(
            state.apply(word(2, "x", 10.0), 0.0).unwrap_err().reason,
            RejectReason::Late
        );
        assert_eq!(
            state
                .apply(TranscriptEvent::Retract { id: 1 }, 0.0)
                .unwrap_err()
                .reason,
            RejectReason::UnknownId
        );
        // a recomputation from a forgotten position starts at the first word held
        assert_eq!(
            state.recompute_from(0)[0],
            LmAction::Rollback { position: 4 }
        );
    }

    #[test]
    fn bare_words_get_distinct_ids() {
        let mut state = TranscriptState::new(3.0);
        for (k, text) in ["hello", "hello"].iter().enumerate() {
            let event = parse_message(text, k as f64).unwrap();
            state.apply(event, 0.0).unwrap();
        }
        assert_eq!(state.words().len(), 2);
        assert_ne!(state.words()[0].id, state.words()[1].id);
    }
}
