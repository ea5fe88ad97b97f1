//! One transcript message, as a transcript inlet receives it: the first 8 bytes are the LSL
//! time stamp (any bit pattern, NaN and infinities included), the rest the string sample.
//! `parse_message` must never panic, and what it accepts must satisfy the contract.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neuralign_formats::transcript::{parse_message, TranscriptEvent, BARE_WORD_ID_BASE};

fuzz_target!(|data: &[u8]| {
    let Some((stamp, text)) = data.split_first_chunk::<8>() else {
        return;
    };
    let sample_time = f64::from_le_bytes(*stamp);
    let message = String::from_utf8_lossy(text);
    match parse_message(&message, sample_time) {
        Ok(TranscriptEvent::Word(w)) => {
            assert!(!w.text.is_empty() && w.text == w.text.trim(), "{w:?}");
            assert!(w.start.is_finite() && w.end.is_finite(), "{w:?}");
            assert!(w.start <= w.end, "{w:?}");
            assert!(w.confidence.is_none_or(|c| (0.0..=1.0).contains(&c)), "{w:?}");
            if w.id != BARE_WORD_ID_BASE {
                // What the contract's own writer makes of it parses back to the same value.
                let event = TranscriptEvent::Word(w);
                let again = event.to_json();
                assert_eq!(parse_message(&again, sample_time), Ok(event), "{again}");
            }
        }
        Ok(TranscriptEvent::Retract { id }) => assert!(id < BARE_WORD_ID_BASE),
        Ok(TranscriptEvent::Watermark { time }) => assert!(time.is_finite()),
        Ok(TranscriptEvent::Segment { id, time }) => {
            assert!(id < BARE_WORD_ID_BASE && time.is_finite())
        }
        Err(_) => {}
    }
});
