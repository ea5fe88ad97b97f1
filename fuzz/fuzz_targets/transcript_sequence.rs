//! Sequences of transcript messages applied to a `TranscriptState`, the way the transcript
//! inlet does (parse, shift to the server clock, apply, tick on silence). Ids and times come
//! from small ranges so that revisions, duplicates, retractions, out-of-order and late words
//! and watermark regressions are frequent. After every step the state must hold its
//! invariants, and a mirror LM that only follows the emitted actions must hold exactly the
//! state's words. Words 2 s behind the watermark are forgotten, as the inlet forgets them
//! (after minutes), so that the mirror's positions are checked across forgetting too.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use neuralign_formats::transcript::{parse_message, LmAction, TranscriptState, Word};
use serde_json::json;

/// Times on a 10 ms grid around zero, so that onsets tie and cross the watermark often.
fn time(t: i16) -> f64 {
    f64::from(t) * 0.01
}

#[derive(Arbitrary, Debug)]
enum Message {
    Word {
        id: u8,
        text: String,
        start: i16,
        duration: i16,
        is_final: bool,
        confidence: Option<u8>,
    },
    Retract {
        id: u8,
    },
    Watermark {
        time: i16,
    },
    /// Anything else: bare words, malformed JSON, unknown kinds, wrong field types.
    Raw(String),
}

impl Message {
    fn render(&self) -> String {
        match self {
            Message::Word {
                id,
                text,
                start,
                duration,
                is_final,
                confidence,
            } => json!({
                "kind": "word", "id": id, "text": text, "start": time(*start),
                "end": time(*start) + time(*duration), "final": is_final,
                "confidence": confidence.map(|c| f64::from(c) / 200.0),
            })
            .to_string(),
            Message::Retract { id } => json!({"kind": "retract", "id": id}).to_string(),
            Message::Watermark { time: t } => json!({"kind": "watermark", "time": time(*t)}).to_string(),
            Message::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// A message received with LSL time stamp `stamp` (raw bits: any f64), shifted by the
    /// clock offset `offset` (10 ms units), at server time `received_at`.
    Receive {
        message: Message,
        stamp: u64,
        offset: i16,
        received_at: i16,
    },
    /// The inlet's silence check at server time `now`.
    Tick { now: i16 },
}

fuzz_target!(|steps: Vec<Step>| {
    // Words 2 s behind the watermark are forgotten, so that forgetting happens often.
    let mut state = TranscriptState::new(3.0).forgetting_after(2.0);
    let mut lm = Mirror::default();
    let mut failed = 0u64;
    for step in steps {
        let watermark = state.watermark();
        match step {
            Step::Receive {
                message,
                stamp,
                offset,
                received_at,
            } => {
                let before = state.words().to_vec();
                let received_at = time(received_at);
                let applied = match parse_message(&message.render(), f64::from_bits(stamp)) {
                    Ok(event) => state.apply(event.shifted(time(offset)), received_at),
                    Err(rejection) => {
                        state.reject(&rejection, received_at);
                        Err(rejection)
                    }
                };
                match applied {
                    Ok(mut actions) => {
                        actions.extend(state.forget());
                        lm.follow(actions);
                    }
                    Err(_) => {
                        failed += 1;
                        assert_eq!(state.words(), &before[..], "a rejection changed the words");
                    }
                }
            }
            Step::Tick { now } => {
                if let Some(w) = state.tick(time(now)) {
                    assert!(w > watermark && w == state.watermark());
                    lm.follow(state.forget().into_iter().collect());
                }
            }
        }
        assert!(state.watermark() >= watermark, "the watermark moved back");
        assert_eq!(lm.base, state.first_position(), "the LM forgot other words");
        assert_eq!(lm.words, state.words(), "the LM's words differ from the transcript's");
        check_invariants(&state, failed);
    }
});

/// The words an LM that only follows the actions holds: those from position `base` on.
#[derive(Default)]
struct Mirror {
    base: usize,
    words: Vec<Word>,
}

impl Mirror {
    /// Applies the actions as the LM thread does: a rollback never reaches past the end or
    /// into the forgotten words, an append always lands one past the last word, and a
    /// forget only moves forward.
    fn follow(&mut self, actions: Vec<LmAction>) {
        for action in actions {
            match action {
                LmAction::Rollback { position } => {
                    assert!(position >= self.base, "rollback into forgotten words");
                    assert!(position <= self.base + self.words.len(), "rollback past the end");
                    self.words.truncate(position - self.base);
                }
                LmAction::Append { position, word } => {
                    assert_eq!(position, self.base + self.words.len(), "append not at the end");
                    self.words.push(word);
                }
                LmAction::Forget { before } => {
                    assert!(before > self.base, "a forget that does not move forward");
                    assert!(before <= self.base + self.words.len(), "forgetting unseen words");
                    self.words.drain(..before - self.base);
                    self.base = before;
                }
                LmAction::Segment { .. } => {}
            }
        }
    }
}

fn check_invariants(state: &TranscriptState, failed: u64) {
    let words = state.words();
    for pair in words.windows(2) {
        assert!(
            (pair[0].start, pair[0].id) < (pair[1].start, pair[1].id),
            "words out of onset order or ids repeated: {pair:?}"
        );
    }
    let mut ids: Vec<u64> = words.iter().map(|w| w.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), words.len(), "an id appears twice");
    assert!(words.iter().all(|w| w.start.is_finite() && w.start <= w.end));
    let counts = state.counts();
    assert_eq!(counts.rejected_total(), failed, "a rejection was not counted");
    assert_eq!(
        counts.words - counts.retractions,
        counts.forgotten + words.len() as u64,
        "accepted words minus retractions differ from the words held and forgotten"
    );
}
