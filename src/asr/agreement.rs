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
//! - Optionally ([`AgreementOptions::tentative`]) the words of the last hypothesis not yet
//!   agreed on are published early as tentative (`final: false`). The next hypothesis revises
//!   them by position (the same id with the new text or times), commits them (the same id,
//!   final) or retracts the ones it no longer has, so a consumer's language model rolls back
//!   only what changed.
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
    /// Publish the words not yet agreed on as tentative, revised and retracted as the
    /// hypotheses change.
    pub tentative: bool,
}

impl Default for AgreementOptions {
    fn default() -> Self {
        AgreementOptions {
            keep_s: 1.0,
            overlap_s: 0.05,
            tentative: false,
        }
    }
}

/// One event for the transcript stream (`docs/transcript.md`); times are on the audio clock.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    /// A word: committed, or tentative (a later event with its id revises or retracts it).
    Word {
        /// The word's id (ids increase with the words' onsets).
        id: u64,
        /// The word as recognised.
        text: String,
        /// Onset, seconds.
        start: f64,
        /// Offset, seconds.
        end: f64,
        /// Mean probability of its tokens.
        confidence: f32,
        /// Agreed on (final); `false` for a tentative word.
        committed: bool,
    },
    /// The tentative word with this id is gone from the hypothesis.
    Retract(u64),
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
    /// Disputes settled: words two hypotheses heard differently between words they agree
    /// on (the later hearing committed, counted in `agreed`).
    pub settled: u64,
    /// Words committed whole at a gap or at the end (not confirmed by a second hypothesis).
    pub flushed: u64,
    /// Hypothesis words dropped as repeats of committed words.
    pub repeats: u64,
    /// Decodes that found no speech.
    pub silent: u64,
    /// Tentative words published (a revision counts again).
    pub tentative: u64,
    /// Tentative words retracted.
    pub retracted: u64,
}

/// The policy's state between decodes.
#[derive(Debug)]
pub struct LocalAgreement {
    options: AgreementOptions,
    /// No committed word starts before this; the start of the audio still to decode.
    watermark: f64,
    /// The previous hypothesis, words after the watermark.
    previous: Vec<RecognisedWord>,
    /// The tentative words published for `previous` (the same positions) and their ids.
    shown: std::collections::VecDeque<(u64, RecognisedWord)>,
    /// The last committed words, normalised, newest last (for repeats at the buffer's head).
    recent: Vec<String>,
    next_id: u64,
    counts: AgreementCounts,
}

/// Words two hypotheses must agree on after a dispute to settle it.
const ANCHOR: usize = 2;
/// The most words of either hypothesis in a dispute that can be settled.
const DISPUTED: usize = 2;
/// How far apart two hearings of a word may start and still be the same place, seconds.
const ANCHOR_S: f64 = 0.2;

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
            shown: std::collections::VecDeque::new(),
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
            let mut out = self.show(&[]);
            let quiet_until = decoded_to - self.options.keep_s;
            out.extend(self.advance(quiet_until));
            return out;
        }
        let (agreed, settled) = self.agreement(&current);
        self.counts.settled += settled;
        let mut out = Vec::new();
        for word in &current[..agreed] {
            self.counts.agreed += 1;
            out.push(self.commit(word));
        }
        out.extend(self.watermark_event(agreed > 0));
        self.previous = current[agreed..].to_vec();
        if self.options.tentative {
            let pending = self.previous.clone();
            out.extend(self.show(&pending));
        }
        out
    }

    /// How many words of `current` are agreed on with the previous hypothesis, and how many
    /// disputes were settled on the way: where the two heard up to [`DISPUTED`] words
    /// differently (other words, or more or fewer) and then agree again on [`ANCHOR`] words
    /// at the same times, the later hearing of the disputed words, which had more audio
    /// after it, is taken. Without that, every word after a disputed one waits a step more
    /// for each decode that hears it differently.
    fn agreement(&self, current: &[RecognisedWord]) -> (usize, u64) {
        let previous = &self.previous;
        let same =
            |a: &RecognisedWord, b: &RecognisedWord| normalise(&a.text) == normalise(&b.text);
        let anchored = |i: usize, j: usize| {
            i + ANCHOR <= current.len()
                && j + ANCHOR <= previous.len()
                && (0..ANCHOR).all(|k| {
                    let (a, b) = (&current[i + k], &previous[j + k]);
                    same(a, b) && (a.start - b.start).abs() <= ANCHOR_S
                })
        };
        let (mut i, mut j, mut settled) = (0, 0, 0);
        loop {
            while i < current.len() && j < previous.len() && same(&current[i], &previous[j]) {
                i += 1;
                j += 1;
            }
            // the shortest dispute first
            let dispute = (1..=2 * DISPUTED)
                .flat_map(|n| {
                    (n.saturating_sub(DISPUTED)..=n.min(DISPUTED)).map(move |di| (di, n - di))
                })
                .find(|&(di, dj)| anchored(i + di, j + dj));
            let Some((di, dj)) = dispute else {
                return (i, settled);
            };
            i += di;
            j += dj;
            settled += 1;
        }
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
        debug_assert!(
            self.shown.is_empty(),
            "a gap flushes the tentative words first"
        );
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
        // an agreed word is the first tentative one (the same position in the same
        // hypothesis): it keeps its id
        let id = match self.shown.pop_front() {
            Some((id, _)) => id,
            None => self.new_id(),
        };
        Emit::Word {
            id,
            text: word.text.clone(),
            start,
            end,
            confidence: word.confidence,
            committed: true,
        }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Publishes `pending` as the tentative words, position by position over those shown:
    /// a word that changed is revised, a new one gets an id, one no longer there is retracted.
    fn show(&mut self, pending: &[RecognisedWord]) -> Vec<Emit> {
        let old = std::mem::take(&mut self.shown);
        let mut out = Vec::new();
        for (k, word) in pending.iter().enumerate() {
            let start = word.start.max(self.watermark);
            let word = RecognisedWord {
                start,
                end: word.end.max(start),
                ..word.clone()
            };
            let id = match old.get(k) {
                Some((id, shown)) if !revised(shown, &word) => {
                    self.shown.push_back((*id, shown.clone()));
                    continue;
                }
                Some((id, _)) => *id,
                None => self.new_id(),
            };
            self.counts.tentative += 1;
            out.push(Emit::Word {
                id,
                text: word.text.clone(),
                start: word.start,
                end: word.end,
                confidence: word.confidence,
                committed: false,
            });
            self.shown.push_back((id, word));
        }
        for (id, _) in old.iter().skip(pending.len()) {
            self.counts.retracted += 1;
            out.push(Emit::Retract(*id));
        }
        out
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

/// Whether a tentative word heard again differs enough from the one shown to revise it: its
/// text, or its times by more than [`REVISE_S`] (DTW times jitter by a frame or two between
/// decodes, and every revision costs the consumer a rollback).
fn revised(shown: &RecognisedWord, heard: &RecognisedWord) -> bool {
    shown.text != heard.text
        || (shown.start - heard.start).abs() > REVISE_S
        || (shown.end - heard.end).abs() > REVISE_S
}

/// Time a tentative word may move before it is revised, seconds.
const REVISE_S: f64 = 0.1;

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
                    id,
                    text,
                    start,
                    committed: true,
                    ..
                } => Some((*id, text.clone(), *start)),
                _ => None,
            })
            .collect()
    }

    /// Tentative words as `(id, text)` and retractions as `(id, "-")`, in order.
    fn tentative(events: &[Emit]) -> Vec<(u64, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                Emit::Word {
                    id,
                    text,
                    committed: false,
                    ..
                } => Some((*id, text.clone())),
                Emit::Retract(id) => Some((*id, "-".into())),
                _ => None,
            })
            .collect()
    }

    fn pairs(spec: &[(u64, &str)]) -> Vec<(u64, String)> {
        spec.iter().map(|&(id, t)| (id, t.to_string())).collect()
    }

    #[test]
    fn tentative_words_are_revised_committed_or_retracted_by_position() {
        let options = AgreementOptions {
            tentative: true,
            ..Default::default()
        };
        let mut policy = LocalAgreement::new(0.0, 0, options);
        let out = policy.hypothesis(&words(&[("the", 0.1), ("cad", 0.5)]), 1.0);
        assert!(committed(&out).is_empty());
        assert_eq!(tentative(&out), pairs(&[(0, "the"), (1, "cad")]));
        // "the" agreed: committed under its tentative id; "cat" revises id 1, "sat" is new
        let out = policy.hypothesis(&words(&[("the", 0.1), ("cat", 0.5), ("sat", 0.9)]), 2.0);
        assert_eq!(committed(&out), [(0, "the".into(), 0.1)]);
        assert_eq!(tentative(&out), pairs(&[(1, "cat"), (2, "sat")]));
        // "cad" became "cat" (no agreement with what was heard before): still tentative
        let out = policy.hypothesis(&words(&[("cat", 0.5), ("sad", 0.9), ("on", 1.3)]), 3.0);
        assert_eq!(committed(&out), [(1, "cat".into(), 0.5)]);
        assert_eq!(tentative(&out), pairs(&[(2, "sad"), (3, "on")]));
        let out = policy.hypothesis(&words(&[("sad", 0.9), ("on", 1.3)]), 4.0);
        assert_eq!(
            committed(&out),
            [(2, "sad".into(), 0.9), (3, "on".into(), 1.3)]
        );
        assert!(tentative(&out).is_empty());
        let out = policy.hypothesis(&words(&[("a", 2.0), ("mat", 2.4)]), 5.0);
        assert_eq!(tentative(&out), pairs(&[(4, "a"), (5, "mat")]));
        // "mat" heard 20 ms later is not worth a revision; "a" became "the"
        let out = policy.hypothesis(&words(&[("the", 2.0), ("mat", 2.42)]), 6.0);
        assert_eq!(tentative(&out), pairs(&[(4, "the")]));
        // nothing heard any more: both retracted, and the next word gets a new id
        let out = policy.hypothesis(&[], 9.0);
        assert_eq!(tentative(&out), pairs(&[(4, "-"), (5, "-")]));
        assert_eq!(out.last(), Some(&Emit::Watermark(8.0)));
        let out = policy.hypothesis(&words(&[("fin", 8.5)]), 10.0);
        assert_eq!(tentative(&out), pairs(&[(6, "fin")]));
        // the end of the audio commits it under the same id
        assert_eq!(
            committed(&policy.flush(10.0, true)),
            [(6, "fin".into(), 8.5)]
        );
        let counts = policy.counts();
        assert_eq!((counts.tentative, counts.retracted), (10, 2));
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
    fn words_heard_differently_between_agreed_words_take_the_later_hearing() {
        let first = [
            ("the", 0.1),
            ("cat", 0.5),
            ("sad", 0.9),
            ("on", 1.3),
            ("a", 1.6),
        ];
        let agree_after = |second: &[(&str, f64)]| {
            let mut policy = LocalAgreement::new(0.0, 0, AgreementOptions::default());
            policy.hypothesis(&words(&first), 2.0);
            let out = policy.hypothesis(&words(second), 2.5);
            let texts: Vec<String> = committed(&out).into_iter().map(|w| w.1).collect();
            (texts, policy.counts().settled)
        };
        // another word between agreed ones: the later hearing
        let (texts, settled) = agree_after(&[
            ("the", 0.1),
            ("cat", 0.5),
            ("sat", 0.92),
            ("on", 1.3),
            ("a", 1.6),
            ("mat", 2.0),
        ]);
        assert_eq!((texts, settled), (words_of("the cat sat on a"), 1));
        // a word more (and one moved by less than 0.2 s): the later hearing
        let (texts, settled) = agree_after(&[
            ("the", 0.1),
            ("cat", 0.5),
            ("is", 0.7),
            ("sad", 1.0),
            ("on", 1.4),
            ("a", 1.7),
        ]);
        assert_eq!((texts, settled), (words_of("the cat is sad on a"), 1));
        // the words after a dispute heard elsewhere settle nothing
        let (texts, settled) = agree_after(&[
            ("the", 0.1),
            ("cat", 0.5),
            ("is", 0.7),
            ("sad", 1.2),
            ("on", 1.6),
            ("a", 1.9),
        ]);
        assert_eq!((texts, settled), (words_of("the cat"), 0));
    }

    fn words_of(text: &str) -> Vec<String> {
        text.split(' ').map(String::from).collect()
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
