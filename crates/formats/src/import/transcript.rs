//! A word table as transcript messages (`docs/transcript.md`): what a recogniser would have
//! sent while the recording ran, so that `replay` feeds the server the same messages it reads
//! live and `fit` reads the words back through the same parser.
use crate::transcript::{TranscriptEvent, Word};
use crate::word_table::TableWord;

/// Transcript messages `(time stamp, JSON)` in time-stamp order.
#[derive(Debug)]
pub(crate) struct Messages {
    /// The messages.
    pub messages: Vec<(f64, String)>,
    /// Words among them.
    pub words: usize,
}

/// Each word (times + `offset`, in start order) sent at its end, followed by a watermark at
/// the next word's start (never past the time it is sent, never backwards); a last watermark
/// past `end_s`, the recording's end, lets the whole recording be scored.
pub(crate) fn messages(words: &[TableWord], offset: f64, end_s: f64) -> Result<Messages, String> {
    let mut timed = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let Some(start) = w.start else {
            return Err(format!(
                "word {} ({:?}) has no start time: a table for import needs `word,start,end` columns",
                i + 1,
                w.text
            ));
        };
        let start = start + offset;
        let end = w.end.map_or(start, |e| e + offset);
        timed.push((start, end, w.text.as_str()));
    }
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut messages = Vec::with_capacity(2 * timed.len() + 1);
    let (mut sent, mut watermark) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (id, &(start, end, text)) in timed.iter().enumerate() {
        sent = sent.max(end);
        let word = TranscriptEvent::Word(Word {
            id: id as u64,
            text: text.to_owned(),
            start,
            end,
            is_final: true,
            confidence: None,
        });
        messages.push((sent, word.to_json()));
        let next = timed.get(id + 1).map_or(sent, |w| w.0).min(sent);
        if next > watermark {
            watermark = next;
            messages.push((sent, TranscriptEvent::Watermark { time: next }.to_json()));
        }
    }
    let last = end_s.max(sent);
    messages.push((
        last,
        TranscriptEvent::Watermark { time: last + 1.0 }.to_json(),
    ));
    Ok(Messages {
        messages,
        words: timed.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::{parse_message, TranscriptState};

    fn word(text: &str, start: f64, end: f64) -> TableWord {
        TableWord {
            text: text.into(),
            start: Some(start),
            end: Some(end),
        }
    }

    #[test]
    fn the_server_parser_reads_every_word_back_and_rejects_nothing() {
        // out of order and overlapping, as word tables can be
        let table = [
            word("world", 1.0, 1.4),
            word("hello", 0.5, 1.1),
            word("again", 1.3, 2.0),
        ];
        let m = messages(&table, 10.0, 30.0).unwrap();
        assert!(
            m.messages.windows(2).all(|p| p[0].0 <= p[1].0),
            "stamps in order"
        );
        let mut state = TranscriptState::new(f64::INFINITY);
        for (t, msg) in &m.messages {
            let event = parse_message(msg, *t).unwrap();
            state.apply(event, *t).unwrap();
        }
        assert_eq!(state.counts().rejected_total(), 0);
        let words: Vec<(&str, f64)> = state
            .words()
            .iter()
            .map(|w| (w.text.as_str(), w.start))
            .collect();
        assert_eq!(words, [("hello", 10.5), ("world", 11.0), ("again", 11.3)]);
        assert_eq!(state.watermark(), 31.0);
    }

    #[test]
    fn a_table_without_times_is_refused() {
        let table = [TableWord {
            text: "plain".into(),
            start: None,
            end: None,
        }];
        assert!(messages(&table, 0.0, 1.0)
            .unwrap_err()
            .contains("no start time"));
    }
}
