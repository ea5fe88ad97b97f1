//! The streaming policy of live recognition, LocalAgreement-2 (as whisper_streaming): the audio
//! since the last commitment is decoded again every step, and a word is committed once two
//! successive hypotheses agree on it and on every word before it. This file is the policy
//! only (hypotheses in, transcript events out); `asr::live` feeds it decodes of real audio.
//!
//! - Committed words never move the watermark backwards: a word's onset is clamped to at
//!   least the watermark, which is the end of the last committed word (the recogniser ends a
//!   word where the next begins, so no later word can start before it).
//! - Audio the recogniser finds no speech in advances the watermark to its end (less the
//!   last [`AgreementOptions::keep_s`], where a word may be starting).
//! - At a gap in the audio or the end of the stream the last hypothesis is committed whole
//!   ([`LocalAgreement::flush`]): no later hypothesis can confirm it. Those words are counted
//!   (`flushed`): they are the stated edge effect where live may differ from batch.
use crate::asr::RecognisedWord;

/// How the policy trims and bounds its buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct AgreementOptions {
    /// Audio kept before the end when a decode finds no speech, seconds (a word may be
    /// starting there).
    pub keep_s: f64,
    /// Words of a hypothesis that end this close after the watermark are the tail of a word
    /// already committed, seconds.
    pub overlap_s: f64,
}

impl Default for AgreementOptions {
    fn default() -> Self {
        AgreementOptions {
            keep_s: 1.0,
            overlap_s: 0.05,
        }
    }
}

/// One event for the transcript stream (`docs/transcript.md`); times are on the audio clock.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    /// A committed word.
    Word {
        /// The word's id (ids increase by one from the first).
        id: u64,
        /// The word as recognised.
        text: String,
        /// Onset, seconds.
        start: f64,
        /// Offset, seconds.
        end: f64,
        /// Mean probability of its tokens.
        confidence: f32,
    },
    /// No word will start before this time.
    Watermark(f64),
}

/// What the policy did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct AgreementCounts {
    /// Hypotheses received.
    pub hypotheses: u64,
    /// Words committed because two hypotheses agreed.
    pub agreed: u64,
    /// Words committed whole at a gap or at the end (not confirmed by a second hypothesis).
    pub flushed: u64,
    /// Hypothesis words dropped as repeats of committed words.
    pub repeats: u64,
    /// Decodes that found no speech.
    pub silent: u64,
}

/// The policy's state between decodes.
#[derive(Debug)]
pub struct LocalAgreement {
    options: AgreementOptions,
    /// No committed word starts before this; the start of the audio still to decode.
    watermark: f64,
    /// The previous hypothesis, words after the watermark.
    previous: Vec<RecognisedWord>,
    /// The last committed words, normalised, newest last (for repeats at the buffer's head).
    recent: Vec<String>,
    next_id: u64,
    counts: AgreementCounts,
}

/// Committed words remembered to recognise a repeat at the head of the next hypothesis.
const RECENT: usize = 3;

impl LocalAgreement {
    /// A policy whose audio starts at `start` (seconds, audio clock) and whose first word
    /// gets id `first_id`.
    pub fn new(start: f64, first_id: u64, options: AgreementOptions) -> Self {
        LocalAgreement {
            options,
            watermark: start,
            previous: Vec::new(),
            recent: Vec::new(),
            next_id: first_id,
            counts: AgreementCounts::default(),
        }
    }

    /// Where the audio still to decode starts: everything before is committed or silence.
    pub fn watermark(&self) -> f64 {
        self.watermark
    }

    /// What the policy has done so far.
    pub fn counts(&self) -> AgreementCounts {
        self.counts
    }

    /// The words of a decode of the audio from [`Self::watermark`] to `decoded_to` (times on
    /// the audio clock); returns the events to publish.
    pub fn hypothesis(&mut self, words: &[RecognisedWord], decoded_to: f64) -> Vec<Emit> {
        self.counts.hypotheses += 1;
        let current = self.fresh(words);
        if current.is_empty() {
            self.counts.silent += 1;
            self.previous.clear();
            let quiet_until = decoded_to - self.options.keep_s;
            return self.advance(quiet_until);
        }
        let agreed = current
            .iter()
            .zip(&self.previous)
            .take_while(|(a, b)| normalise(&a.text) == normalise(&b.text))
            .count();
        let mut out = Vec::new();
        for word in &current[..agreed] {
            self.counts.agreed += 1;
            out.push(self.commit(word));
        }
        out.extend(self.watermark_event(agreed > 0));
        self.previous = current[agreed..].to_vec();
        out
    }

    /// Commits the last hypothesis whole (the audio ends or breaks off at `until`); the
    /// watermark moves to `until` when `end_of_audio`, else to the end of the last word (a
    /// gap holds it).
    pub fn flush(&mut self, until: f64, end_of_audio: bool) -> Vec<Emit> {
        let pending = std::mem::take(&mut self.previous);
        let mut out = Vec::new();
        for word in &pending {
            self.counts.flushed += 1;
            out.push(self.commit(word));
        }
        if end_of_audio {
            out.extend(self.advance(until));
        } else {
            out.extend(self.watermark_event(!pending.is_empty()));
        }
        out
    }

    /// The audio resumes at `start` after a gap: nothing before it will be decoded.
    pub fn resume(&mut self, start: f64) {
        self.previous.clear();
        self.recent.clear();
        self.watermark = self.watermark.max(start);
    }

    /// The words of a hypothesis that are not the tail or a repeat of committed words.
    fn fresh(&mut self, words: &[RecognisedWord]) -> Vec<RecognisedWord> {
        let mut words: Vec<RecognisedWord> = words
            .iter()
            .filter(|w| w.end > self.watermark + self.options.overlap_s)
            .cloned()
            .collect();
        // a committed word heard again at the head of the buffer (its onset clamped to the
        // watermark): drop the longest run of recent words it repeats
        let head: Vec<String> = words
            .iter()
            .take(RECENT)
            .map(|w| normalise(&w.text))
            .collect();
        let repeat = (1..=head.len().min(self.recent.len()))
            .rev()
            .find(|&k| head[..k] == self.recent[self.recent.len() - k..])
            .unwrap_or(0);
        if repeat > 0 && words[repeat - 1].start < self.watermark + 0.5 {
            self.counts.repeats += repeat as u64;
            words.drain(..repeat);
        }
        words
    }

    fn commit(&mut self, word: &RecognisedWord) -> Emit {
        let start = word.start.max(self.watermark);
        let end = word.end.max(start);
        self.watermark = end;
        self.recent.push(normalise(&word.text));
        if self.recent.len() > RECENT {
            self.recent.remove(0);
        }
        let id = self.next_id;
        self.next_id += 1;
        Emit::Word {
            id,
            text: word.text.clone(),
            start,
            end,
            confidence: word.confidence,
        }
    }

    /// A watermark event at the current watermark when `moved`.
    fn watermark_event(&self, moved: bool) -> Option<Emit> {
        moved.then_some(Emit::Watermark(self.watermark))
    }

    /// Moves the watermark forward to `time` (silence before it); an event when it moved.
    fn advance(&mut self, time: f64) -> Vec<Emit> {
        if time > self.watermark {
            self.watermark = time;
            vec![Emit::Watermark(time)]
        } else {
            Vec::new()
        }
    }
}

/// A word as compared between hypotheses: lower case, letters, digits and apostrophes.
pub fn normalise(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric() || *c == '\'')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(spec: &[(&str, f64)]) -> Vec<RecognisedWord> {
        spec.iter()
            .enumerate()
            .map(|(i, &(text, start))| RecognisedWord {
                text: text.into(),
                start,
                end: spec.get(i + 1).map_or(start + 0.4, |w| w.1),
                confidence: 0.9,
            })
            .collect()
    }

    fn committed(events: &[Emit]) -> Vec<(u64, String, f64)> {
        events
            .iter()
            .filter_map(|e| match e {
                Emit::Word {
                    id, text, start, ..
                } => Some((*id, text.clone(), *start)),
                Emit::Watermark(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_word_is_committed_when_two_hypotheses_agree_on_it_and_its_predecessors() {
        let mut policy = LocalAgreement::new(10.0, 7, AgreementOptions::default());
        assert!(
            committed(&policy.hypothesis(&words(&[("The", 10.2), ("cat", 10.5)]), 11.0)).is_empty()
        );
        // "the cat" agreed (punctuation and case do not matter); "sad" is new, "sat" differs
        let out = policy.hypothesis(
            &words(&[("the", 10.21), ("cat,", 10.52), ("sad", 10.9)]),
            12.0,
        );
        assert_eq!(
            committed(&out),
            [(7, "the".into(), 10.21), (8, "cat,".into(), 10.52)]
        );
        assert_eq!(out.last(), Some(&Emit::Watermark(10.9)));
        // the buffer now starts at 10.9: "sat" replaces "sad", and is committed next time
        assert!(
            committed(&policy.hypothesis(&words(&[("sat", 10.95), ("on", 11.4)]), 13.0)).is_empty()
        );
        let out = policy.hypothesis(&words(&[("sat", 10.93), ("on", 11.4), ("the", 11.6)]), 14.0);
        assert_eq!(
            committed(&out),
            [(9, "sat".into(), 10.93), (10, "on".into(), 11.4)]
        );
        assert_eq!(policy.counts().agreed, 4);
    }

    #[test]
    fn onsets_never_go_before_the_watermark_and_repeats_of_committed_words_are_dropped() {
        let mut policy = LocalAgreement::new(0.0, 0, AgreementOptions::default());
        policy.hypothesis(&words(&[("one", 0.1), ("two", 0.5)]), 1.0);
        policy.hypothesis(&words(&[("one", 0.1), ("two", 0.5), ("three", 0.9)]), 2.0);
        assert_eq!(policy.watermark(), 0.9);
        // the next decode starts at 0.9 and hears "two" again at its head: a repeat
        let out = policy.hypothesis(&words(&[("two", 0.9), ("three", 1.1), ("four", 1.3)]), 3.0);
        assert_eq!(committed(&out), [(2, "three".into(), 1.1)]);
        assert_eq!(policy.counts().repeats, 1);
        // "four" heard a little before the watermark (1.3) starts at it
        let out = policy.hypothesis(&words(&[("four", 1.25), ("five", 1.6)]), 3.5);
        assert_eq!(committed(&out), [(3, "four".into(), 1.3)]);
    }

    #[test]
    fn silence_advances_the_watermark_and_a_gap_holds_it() {
        let mut policy = LocalAgreement::new(0.0, 0, AgreementOptions::default());
        assert_eq!(policy.hypothesis(&[], 5.0), [Emit::Watermark(4.0)]);
        assert_eq!(policy.counts().silent, 1);
        policy.hypothesis(&words(&[("hello", 4.5)]), 6.0);
        // the audio breaks off at 6.5: "hello" is committed unconfirmed, the watermark
        // stays at its end
        let out = policy.flush(6.5, false);
        assert_eq!(committed(&out), [(0, "hello".into(), 4.5)]);
        assert_eq!(out.last(), Some(&Emit::Watermark(4.9)));
        assert_eq!(policy.counts().flushed, 1);
        policy.resume(20.0);
        assert_eq!(policy.watermark(), 20.0);
        // the end of the audio moves the watermark to its end
        assert_eq!(policy.flush(21.0, true), [Emit::Watermark(21.0)]);
    }
}
