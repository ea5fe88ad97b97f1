//! The transcript contract (DESIGN.md): one JSON object (or a bare string) per LSL sample,
//! parsed into [`TranscriptEvent`]s, and [`TranscriptState`], which applies them in arrival
//! order and tells the language model what to do.
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
//! - A message not starting with `{` or `[` is a bare word with onset = end = the sample's
//!   time stamp (plain marker streams, which must be finite); it gets an id from the top half
//!   of the id space.
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// One word of the transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Word {
    /// Recogniser's id; revisions and retractions refer to it.
    pub id: u64,
    /// The word as heard.
    pub text: String,
    /// Onset, seconds (sender clock when parsed, server clock once mapped).
    pub start: f64,
    /// Offset, seconds.
    pub end: f64,
    /// Whether the recogniser has committed to it.
    pub is_final: bool,
    /// Recogniser confidence in [0, 1], when sent.
    pub confidence: Option<f32>,
}

/// One transcript message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TranscriptEvent {
    /// A new word, or a revision of a word with the same id.
    Word(Word),
    /// Word `id` was wrong.
    Retract {
        /// The retracted word's id.
        id: u64,
    },
    /// No new word will start before `time`.
    Watermark {
        /// Seconds (sender clock when parsed, server clock once mapped).
        time: f64,
    },
}

impl TranscriptEvent {
    /// The same event with every time shifted by `offset` (sender clock → server clock, from
    /// liblsl's time correction).
    pub fn shifted(self, offset: f64) -> Self {
        match self {
            Self::Word(w) => Self::Word(Word {
                start: w.start + offset,
                end: w.end + offset,
                ..w
            }),
            Self::Watermark { time } => Self::Watermark {
                time: time + offset,
            },
            retract => retract,
        }
    }
}

/// Why a transcript message was rejected. Counted per reason; none stops the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Empty or whitespace-only message.
    Empty,
    /// Starts like JSON but does not parse.
    MalformedJson,
    /// Valid JSON but not an object (e.g. an array).
    NotAnObject,
    /// `kind` missing or not one of `word`, `retract`, `watermark`.
    UnknownKind,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong type or an impossible value (negative id, NaN time, end < start).
    BadField,
    /// Same id and content as a word already received.
    Duplicate,
    /// A new word starting before the transcript watermark.
    Late,
    /// A retraction of an id never received (or already retracted).
    UnknownId,
    /// A watermark behind the current one.
    WatermarkRegression,
}

impl RejectReason {
    /// The snake_case name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::MalformedJson => "malformed_json",
            Self::NotAnObject => "not_an_object",
            Self::UnknownKind => "unknown_kind",
            Self::MissingField => "missing_field",
            Self::BadField => "bad_field",
            Self::Duplicate => "duplicate",
            Self::Late => "late",
            Self::UnknownId => "unknown_id",
            Self::WatermarkRegression => "watermark_regression",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rejected message: the reason (counted) and a detail for the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("transcript message rejected ({reason}): {detail}")]
pub struct Rejection {
    /// Counted reason.
    pub reason: RejectReason,
    /// Human-readable detail (field name, parser message).
    pub detail: String,
}

impl Rejection {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Ids given to bare-string words start here, clear of any recogniser's ids.
pub const BARE_WORD_ID_BASE: u64 = 1 << 63;

/// Parses one transcript message received with LSL time stamp `sample_time` (sender clock).
/// A bare string gets the id `BARE_WORD_ID_BASE`; [`TranscriptState`] renumbers bare words
/// so that each is distinct.
pub fn parse_message(msg: &str, sample_time: f64) -> Result<TranscriptEvent, Rejection> {
    let text = msg.trim();
    if text.is_empty() {
        return Err(Rejection::new(RejectReason::Empty, "empty message"));
    }
    if !text.starts_with('{') && !text.starts_with('[') {
        // A sender can stamp a sample with any f64; a NaN onset would break onset order.
        if !sample_time.is_finite() {
            return Err(Rejection::new(
                RejectReason::BadField,
                format!("bare word with time stamp {sample_time}"),
            ));
        }
        return Ok(TranscriptEvent::Word(Word {
            id: BARE_WORD_ID_BASE,
            text: text.to_string(),
            start: sample_time,
            end: sample_time,
            is_final: true,
            confidence: None,
        }));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Rejection::new(RejectReason::MalformedJson, e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(Rejection::new(
            RejectReason::NotAnObject,
            "expected a JSON object",
        ));
    };
    match obj.get("kind").and_then(Value::as_str) {
        Some("word") => parse_word(&obj).map(TranscriptEvent::Word),
        Some("retract") => Ok(TranscriptEvent::Retract {
            id: field_id(&obj)?,
        }),
        Some("watermark") => Ok(TranscriptEvent::Watermark {
            time: field_time(&obj, "time")?,
        }),
        other => Err(Rejection::new(
            RejectReason::UnknownKind,
            format!("kind {other:?}"),
        )),
    }
}

fn parse_word(obj: &Map<String, Value>) -> Result<Word, Rejection> {
    let id = field_id(obj)?;
    let text = match obj.get("text") {
        None => return Err(Rejection::new(RejectReason::MissingField, "text")),
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(_) => {
            return Err(Rejection::new(
                RejectReason::BadField,
                "text must be a non-empty string",
            ))
        }
    };
    let start = field_time(obj, "start")?;
    let end = match obj.get("end") {
        None => start,
        Some(_) => field_time(obj, "end")?,
    };
    if end < start {
        return Err(Rejection::new(
            RejectReason::BadField,
            format!("end {end} before start {start}"),
        ));
    }
    let is_final = match obj.get("final") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Rejection::new(
                RejectReason::BadField,
                "final must be a boolean",
            ))
        }
    };
    let confidence = match obj.get("confidence") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(c) if (0.0..=1.0).contains(&c) => Some(c as f32),
            _ => {
                return Err(Rejection::new(
                    RejectReason::BadField,
                    "confidence must be a number in [0, 1]",
                ))
            }
        },
    };
    Ok(Word {
        id,
        text,
        start,
        end,
        is_final,
        confidence,
    })
}

fn field_id(obj: &Map<String, Value>) -> Result<u64, Rejection> {
    match obj.get("id") {
        None => Err(Rejection::new(RejectReason::MissingField, "id")),
        Some(v) => v
            .as_u64()
            .filter(|&id| id < BARE_WORD_ID_BASE)
            .ok_or_else(|| {
                Rejection::new(
                    RejectReason::BadField,
                    "id must be a non-negative integer below 2^63",
                )
            }),
    }
}

fn field_time(obj: &Map<String, Value>, name: &'static str) -> Result<f64, Rejection> {
    match obj.get(name) {
        None => Err(Rejection::new(RejectReason::MissingField, name)),
        Some(v) => v.as_f64().filter(|t| t.is_finite()).ok_or_else(|| {
            Rejection::new(
                RejectReason::BadField,
                format!("{name} must be a finite number"),
            )
        }),
    }
}

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
            watermark: f64::NEG_INFINITY,
            silence_timeout_s,
            last_message_at: None,
            next_bare_id: BARE_WORD_ID_BASE,
            counts: TranscriptCounts::default(),
        }
    }

    /// Words in onset order.
    pub fn words(&self) -> &[Word] {
        &self.words
    }

    /// No new word will start before this time (server clock); −∞ before the first.
    pub fn watermark(&self) -> f64 {
        self.watermark
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
        let position = self.insert(word).min(old);
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
        Ok(self.recompute_from(position))
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

    /// Inserts in onset order (ties by id) and returns the position.
    fn insert(&mut self, word: Word) -> usize {
        let position = self
            .words
            .partition_point(|w| (w.start, w.id) < (word.start, word.id));
        self.words.insert(position, word);
        position
    }

    /// Actions that bring an LM whose words before `position` are current up to date: roll
    /// back to `position`, then append every word from there. (An append at the end is a
    /// rollback to the LM's current length, which is a no-op for it.)
    pub fn recompute_from(&self, position: usize) -> Vec<LmAction> {
        let position = position.min(self.words.len());
        let mut actions = Vec::with_capacity(self.words.len() - position + 1);
        actions.push(LmAction::Rollback { position });
        actions.extend(self.words[position..].iter().enumerate().map(|(k, word)| {
            LmAction::Append {
                position: position + k,
                word: word.clone(),
            }
        }));
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
    fn parses_the_design_examples() {
        let w = parse_message(
            r#"{"kind":"word","id":42,"text":"Paris","start":1234.56,"end":1234.98,"final":true,"confidence":0.93}"#,
            0.0,
        )
        .unwrap();
        assert_eq!(
            w,
            TranscriptEvent::Word(Word {
                id: 42,
                text: "Paris".into(),
                start: 1234.56,
                end: 1234.98,
                is_final: true,
                confidence: Some(0.93)
            })
        );
        assert_eq!(
            parse_message(r#"{"kind":"retract","id":42}"#, 0.0).unwrap(),
            TranscriptEvent::Retract { id: 42 }
        );
        assert_eq!(
            parse_message(r#"{"kind":"watermark","time":1236.0}"#, 0.0).unwrap(),
            TranscriptEvent::Watermark { time: 1236.0 }
        );
    }

    #[test]
    fn a_bare_string_is_a_word_at_the_sample_time() {
        let TranscriptEvent::Word(w) = parse_message("  hello ", 12.5).unwrap() else {
            panic!("not a word")
        };
        assert_eq!(
            (w.text.as_str(), w.start, w.end, w.id),
            ("hello", 12.5, 12.5, BARE_WORD_ID_BASE)
        );
    }

    #[test]
    fn a_bare_word_with_a_time_stamp_that_is_not_finite_is_rejected() {
        // Found while writing the transcript_message fuzz target: a NaN onset was accepted.
        for stamp in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = parse_message("hello", stamp).unwrap_err();
            assert_eq!(err.reason, RejectReason::BadField, "{stamp}");
        }
    }

    #[test]
    fn malformed_messages_are_rejected_with_their_reason() {
        let cases = [
            ("", RejectReason::Empty),
            ("{not json", RejectReason::MalformedJson),
            ("[1,2]", RejectReason::NotAnObject),
            (r#"{"id":1}"#, RejectReason::UnknownKind),
            (r#"{"kind":"poem","id":1}"#, RejectReason::UnknownKind),
            (
                r#"{"kind":"word","text":"a","start":1}"#,
                RejectReason::MissingField,
            ),
            (
                r#"{"kind":"word","id":1,"start":1}"#,
                RejectReason::MissingField,
            ),
            (
                r#"{"kind":"word","id":1,"text":"a"}"#,
                RejectReason::MissingField,
            ),
            (
                r#"{"kind":"word","id":-1,"text":"a","start":1}"#,
                RejectReason::BadField,
            ),
            (
                r#"{"kind":"word","id":1,"text":"a","start":"x"}"#,
                RejectReason::BadField,
            ),
            (
                r#"{"kind":"word","id":1,"text":"a","start":2,"end":1}"#,
                RejectReason::BadField,
            ),
            (
                r#"{"kind":"word","id":1,"text":"  ","start":2}"#,
                RejectReason::BadField,
            ),
            (
                r#"{"kind":"word","id":1,"text":"a","start":2,"confidence":7}"#,
                RejectReason::BadField,
            ),
            (
                r#"{"kind":"word","id":1,"text":"a","start":2,"final":"yes"}"#,
                RejectReason::BadField,
            ),
            (r#"{"kind":"retract"}"#, RejectReason::MissingField),
            (
                r#"{"kind":"watermark","time":null}"#,
                RejectReason::BadField,
            ),
        ];
        for (msg, reason) in cases {
            assert_eq!(parse_message(msg, 0.0).unwrap_err().reason, reason, "{msg}");
        }
    }

    #[test]
    fn shifted_maps_every_time() {
        let shifted = parse_message(
            r#"{"kind":"word","id":1,"text":"a","start":1,"end":2}"#,
            0.0,
        )
        .unwrap()
        .shifted(10.0);
        let TranscriptEvent::Word(w) = shifted else {
            panic!("not a word")
        };
        assert_eq!((w.start, w.end), (11.0, 12.0));
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
