//! Reading a transcript for offline embedding: a csv/tsv file with a
//! `word,start,end` header (times in seconds, optional) or plain text split
//! on whitespace. Bad rows are skipped, counted and reported, never fatal.
use std::path::Path;

use super::LmError;

/// One word of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptWord {
    /// The word as spoken.
    pub text: String,
    /// Onset in seconds, when the file gives one.
    pub start: Option<f64>,
    /// Offset in seconds, when the file gives one.
    pub end: Option<f64>,
}

/// A parsed transcript and the rows that were skipped (line number, reason).
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// The words in order.
    pub words: Vec<TranscriptWord>,
    /// Skipped rows: `(1-based line, why)`.
    pub skipped: Vec<(usize, String)>,
}

/// Reads a csv/tsv transcript (detected by a header naming a `word` column)
/// or plain text.
pub fn read_transcript(path: &Path) -> Result<Transcript, LmError> {
    let text = std::fs::read_to_string(path).map_err(LmError::io(format!(
        "reading transcript {}",
        path.display()
    )))?;
    Ok(parse_transcript(&text))
}

/// Parses transcript text; see [`read_transcript`].
pub fn parse_transcript(text: &str) -> Transcript {
    let header = text.lines().next().unwrap_or_default();
    let sep = if header.contains('\t') { '\t' } else { ',' };
    let columns: Vec<String> = split_row(header, sep)
        .iter()
        .map(|c| c.trim().to_lowercase())
        .collect();
    let Some(word_col) = columns.iter().position(|c| c == "word" || c == "text") else {
        let words = text
            .split_whitespace()
            .map(|w| TranscriptWord {
                text: w.to_string(),
                start: None,
                end: None,
            })
            .collect();
        return Transcript {
            words,
            skipped: Vec::new(),
        };
    };
    let start_col = columns.iter().position(|c| c == "start" || c == "onset");
    let end_col = columns.iter().position(|c| c == "end" || c == "offset");
    let mut out = Transcript::default();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_row(line, sep);
        let time = |col: Option<usize>| -> Result<Option<f64>, String> {
            match col.and_then(|c| fields.get(c)).map(|f| f.trim()) {
                None | Some("") => Ok(None),
                Some(f) => f
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| format!("time {f:?} is not a number")),
            }
        };
        let word = fields.get(word_col).map(|w| w.trim()).unwrap_or_default();
        match (word.is_empty(), time(start_col), time(end_col)) {
            (true, _, _) => out.skipped.push((i + 1, "empty word".into())),
            (_, Err(e), _) | (_, _, Err(e)) => out.skipped.push((i + 1, e)),
            (false, Ok(start), Ok(end)) => out.words.push(TranscriptWord {
                text: word.to_string(),
                start,
                end,
            }),
        }
    }
    out
}

/// Splits one csv/tsv row, honouring double-quoted fields (`""` is a quote).
fn split_row(line: &str, sep: char) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            c if c == sep && !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_times_and_bad_rows() {
        let t = parse_transcript(
            "word,start,end\nHello,0.5,0.9\n\"Paris, France\",1.0,1.4\n,2,3\nbad,x,1\n",
        );
        assert_eq!(t.words.len(), 2);
        assert_eq!(t.words[1].text, "Paris, France");
        assert_eq!((t.words[0].start, t.words[0].end), (Some(0.5), Some(0.9)));
        assert_eq!(
            t.skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![4, 5]
        );
    }

    #[test]
    fn tsv_and_plain_text() {
        let t = parse_transcript("start\tword\n0.1\tthe\n0.2\tcat\n");
        assert_eq!(t.words[1].text, "cat");
        assert_eq!(t.words[1].end, None);
        let p = parse_transcript("The cat\nsat.  ");
        assert_eq!(
            p.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(),
            vec!["The", "cat", "sat."]
        );
    }
}
