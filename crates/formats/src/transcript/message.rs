//! The transcript message: the typed [`TranscriptEvent`] (serde, the one definition every
//! writer and the parser share) and [`parse_message`], which turns one LSL string sample into
//! an event or a counted [`Rejection`].
//!
//! A message not starting with `{` or `[` is a bare word with onset = end = the sample's time
//! stamp (plain marker streams, which must be finite); it gets an id from the top half of the
//! id space. Fields the contract does not name are ignored, so that a recogniser may send more.
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One word of the transcript. On the wire: `{"kind":"word","id":…,"text":…,"start":…,
/// "end":…,"final":…,"confidence":…}`; `end` defaults to `start`, `final` to true, and
/// `confidence` may be absent or null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// Recogniser's id; revisions and retractions refer to it.
    pub id: u64,
    /// The word as heard.
    pub text: String,
    /// Onset, seconds (sender clock when parsed, server clock once mapped).
    pub start: f64,
    /// Offset, seconds.
    #[serde(default = "end_not_sent")]
    pub end: f64,
    /// Whether the recogniser has committed to it.
    #[serde(rename = "final", default = "committed")]
    pub is_final: bool,
    /// Recogniser confidence in [0, 1], when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// JSON cannot carry NaN, so NaN marks an `end` that was not sent (it becomes `start`).
fn end_not_sent() -> f64 {
    f64::NAN
}

fn committed() -> bool {
    true
}

/// One transcript message: the `kind` field names the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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
    /// A new segment (a new pass of a looped replay, a new stimulus) starts at `time`:
    /// alignment statistics restart there instead of mixing segments. Words and the
    /// watermark go on as before.
    Segment {
        /// The sender's number for the segment.
        id: u64,
        /// Seconds (sender clock when parsed, server clock once mapped).
        time: f64,
    },
}

impl TranscriptEvent {
    /// The message as the contract writes it: one JSON object, `kind` first.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a transcript event always serialises")
    }

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
            Self::Segment { id, time } => Self::Segment {
                id,
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
    /// `kind` missing or not one of `word`, `retract`, `watermark`, `segment`.
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
    pub(crate) fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Ids given to bare-string words start here, clear of any recogniser's ids.
pub const BARE_WORD_ID_BASE: u64 = 1 << 63;

/// Parses one transcript message received with LSL time stamp `sample_time` (sender clock).
/// A bare string gets the id `BARE_WORD_ID_BASE`; [`TranscriptState`](super::TranscriptState) renumbers bare words
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
    let Value::Object(obj) = &value else {
        return Err(Rejection::new(
            RejectReason::NotAnObject,
            "expected a JSON object",
        ));
    };
    match obj.get("kind").and_then(Value::as_str) {
        Some("word" | "retract" | "watermark" | "segment") => {}
        other => {
            return Err(Rejection::new(
                RejectReason::UnknownKind,
                format!("kind {other:?}"),
            ))
        }
    }
    let event = TranscriptEvent::deserialize(value).map_err(|e| {
        // serde reports a missing field in these words; any other failure is a bad value
        let detail = e.to_string();
        let reason = if detail.starts_with("missing field") {
            RejectReason::MissingField
        } else {
            RejectReason::BadField
        };
        Rejection::new(reason, detail)
    })?;
    validate(event)
}

/// The checks the types cannot express: ids below [`BARE_WORD_ID_BASE`], a non-empty word
/// (trimmed), `start <= end`, confidence in [0, 1].
fn validate(event: TranscriptEvent) -> Result<TranscriptEvent, Rejection> {
    let bad = |detail: String| Rejection::new(RejectReason::BadField, detail);
    let check_id = |id: u64| {
        if id < BARE_WORD_ID_BASE {
            Ok(())
        } else {
            Err(bad(format!("id {id} must be below 2^63")))
        }
    };
    match event {
        TranscriptEvent::Word(mut w) => {
            check_id(w.id)?;
            w.text = w.text.trim().to_string();
            if w.text.is_empty() {
                return Err(bad("text must be a non-empty string".into()));
            }
            if w.end.is_nan() {
                w.end = w.start;
            }
            if w.end < w.start {
                return Err(bad(format!("end {} before start {}", w.end, w.start)));
            }
            if w.confidence.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
                return Err(bad("confidence must be a number in [0, 1]".into()));
            }
            Ok(TranscriptEvent::Word(w))
        }
        TranscriptEvent::Retract { id } | TranscriptEvent::Segment { id, .. } => {
            check_id(id).map(|()| event)
        }
        TranscriptEvent::Watermark { .. } => Ok(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        assert_eq!(
            parse_message(r#"{"kind":"segment","id":2,"time":1240.5}"#, 0.0).unwrap(),
            TranscriptEvent::Segment {
                id: 2,
                time: 1240.5
            }
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
            (r#"{"kind":"segment","id":1}"#, RejectReason::MissingField),
            (
                r#"{"kind":"segment","id":-1,"time":1}"#,
                RejectReason::BadField,
            ),
            (
                r#"{"kind":"segment","id":9223372036854775808,"time":1}"#,
                RejectReason::BadField,
            ),
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
    fn written_messages_name_their_kind_first_and_leave_out_an_absent_confidence() {
        let event = TranscriptEvent::Word(Word {
            id: 3,
            text: "Paris".into(),
            start: 1.5,
            end: 2.0,
            is_final: false,
            confidence: None,
        });
        assert_eq!(
            event.to_json(),
            r#"{"kind":"word","id":3,"text":"Paris","start":1.5,"end":2.0,"final":false}"#
        );
        assert_eq!(
            TranscriptEvent::Watermark { time: 4.0 }.to_json(),
            r#"{"kind":"watermark","time":4.0}"#
        );
    }

    fn any_event() -> impl Strategy<Value = TranscriptEvent> {
        let time = -1e9..1e9f64;
        let word = (
            0..BARE_WORD_ID_BASE,
            "[A-Za-z0-9'.,é\\\"-]{1,12}",
            time.clone(),
            0.0..10.0f64,
            any::<bool>(),
            proptest::option::of(0.0..=1.0f32),
        )
            .prop_map(|(id, text, start, length, is_final, confidence)| {
                TranscriptEvent::Word(Word {
                    id,
                    text,
                    start,
                    end: start + length,
                    is_final,
                    confidence,
                })
            });
        prop_oneof![
            word,
            (0..BARE_WORD_ID_BASE).prop_map(|id| TranscriptEvent::Retract { id }),
            time.clone()
                .prop_map(|time| TranscriptEvent::Watermark { time }),
            (0..BARE_WORD_ID_BASE, time)
                .prop_map(|(id, time)| TranscriptEvent::Segment { id, time }),
        ]
    }

    proptest! {
        /// What a writer (simulate, replay, the recorder, `transcribe`) serialises parses back
        /// to the same typed value, at any sample time.
        #[test]
        fn every_written_message_parses_back_to_itself(event in any_event(), stamp in any::<f64>()) {
            prop_assert_eq!(parse_message(&event.to_json(), stamp), Ok(event));
        }
    }
}
