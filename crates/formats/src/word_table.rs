//! Word tables: the offline transcript of a stimulus, one word per row with its times, as
//! `neuralign embed` reads it (and as `transcribe` writes it, [`word_table_csv`]). Not the live transcript stream
//! ([`crate::transcript`]), which is JSON messages on LSL.
//!
//! The layout is the Podcast-ECoG `podcast_transcript.csv`: a header naming a `word` (or
//! `text`) column, optional `start`/`onset` and `end`/`offset` columns in seconds, comma- or
//! tab-separated (the header decides), read with the `csv` crate:
//! - a UTF-8 byte-order mark before the header is accepted;
//! - quoted words (`"Paris, France"`, `""` for a quote) are one word;
//! - a row with an empty word, a time that is not a number, a NaN or infinite time, or an end
//!   before its start is skipped and counted with its line and reason, never fatal;
//! - a file without a `word` column is plain text, split on white space (no times).
use std::path::Path;

/// One word of a word table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableWord {
    /// The word as spoken.
    pub text: String,
    /// Onset in seconds, when the table gives one.
    pub start: Option<f64>,
    /// Offset in seconds, when the table gives one.
    pub end: Option<f64>,
}

/// A word table and the rows that were skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WordTable {
    /// The words in file order.
    pub words: Vec<TableWord>,
    /// Skipped rows: `(1-based line, why)`.
    pub skipped: Vec<(u64, String)>,
}

/// Why a word table could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum WordTableError {
    /// The file could not be read.
    #[error("cannot read the word table {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("the word table {0} is not UTF-8 text; save it as UTF-8 (CSV or TSV)")]
    NotUtf8(std::path::PathBuf),
}

/// Reads a word table (CSV or TSV with a `word` column) or plain text.
pub fn read_word_table(path: &Path) -> Result<WordTable, WordTableError> {
    let bytes = std::fs::read(path).map_err(|source| WordTableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| WordTableError::NotUtf8(path.into()))?;
    Ok(parse_word_table(&text))
}

/// Parses word-table text; see [`read_word_table`].
pub fn parse_word_table(text: &str) -> WordTable {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let header = text.lines().next().unwrap_or_default();
    let delimiter = if header.contains('\t') { b'\t' } else { b',' };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let columns: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_lowercase).collect(),
        Err(_) => Vec::new(),
    };
    let find = |names: [&str; 2]| columns.iter().position(|c| names.contains(&c.as_str()));
    let Some(word_col) = find(["word", "text"]) else {
        let words = text
            .split_whitespace()
            .map(|w| TableWord {
                text: w.to_string(),
                start: None,
                end: None,
            })
            .collect();
        return WordTable {
            words,
            skipped: Vec::new(),
        };
    };
    let (start_col, end_col) = (find(["start", "onset"]), find(["end", "offset"]));
    let mut table = WordTable::default();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                table.skipped.push((line, format!("not a CSV row: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        if record.iter().all(str::is_empty) {
            continue;
        }
        match row(&record, word_col, start_col, end_col) {
            Ok(word) => table.words.push(word),
            Err(why) => table.skipped.push((line, why)),
        }
    }
    table
}

fn row(
    record: &csv::StringRecord,
    word_col: usize,
    start_col: Option<usize>,
    end_col: Option<usize>,
) -> Result<TableWord, String> {
    let time = |col: Option<usize>| -> Result<Option<f64>, String> {
        match col.and_then(|c| record.get(c)) {
            None | Some("") => Ok(None),
            Some(f) => match f.parse::<f64>() {
                Ok(t) if t.is_finite() => Ok(Some(t)),
                Ok(t) => Err(format!("time {t} is not finite")),
                Err(_) => Err(format!("time {f:?} is not a number")),
            },
        }
    };
    let text = record.get(word_col).unwrap_or_default();
    if text.is_empty() {
        return Err("empty word".into());
    }
    let (start, end) = (time(start_col)?, time(end_col)?);
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(format!("end {e} before start {s}"));
        }
    }
    Ok(TableWord {
        text: text.to_string(),
        start,
        end,
    })
}

/// A word table as CSV text (`word,start,end`, seconds; words quoted where CSV needs it), the
/// layout [`parse_word_table`] reads back: what `neuralign transcribe --out` writes.
pub fn word_table_csv(words: &[TableWord]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let time = |t: Option<f64>| t.map_or_else(String::new, |t| format!("{t:.3}"));
    let rows = std::iter::once(["word".to_string(), "start".into(), "end".into()]).chain(
        words
            .iter()
            .map(|w| [w.text.clone(), time(w.start), time(w.end)]),
    );
    for row in rows {
        out.write_record(&row).expect("writing CSV to memory");
    }
    String::from_utf8(out.into_inner().expect("writing CSV to memory"))
        .expect("UTF-8 in, UTF-8 out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_table_reads_back() {
        let words = vec![
            TableWord {
                text: "Paris, \"France\"".into(),
                start: Some(1.25),
                end: Some(1.5),
            },
            TableWord {
                text: "home".into(),
                start: Some(2.0),
                end: None,
            },
        ];
        let back = parse_word_table(&word_table_csv(&words));
        assert_eq!(back.words, words);
        assert!(back.skipped.is_empty());
    }

    #[test]
    fn csv_with_quotes_times_and_bad_rows() {
        let t = parse_word_table(
            "word,start,end\nHello,0.5,0.9\n\"Paris, France\",1.0,1.4\n,2,3\nbad,x,1\n\"say \"\"hi\"\"\",2,2.5\n",
        );
        assert_eq!(t.words.len(), 3);
        assert_eq!(t.words[1].text, "Paris, France");
        assert_eq!(t.words[2].text, "say \"hi\"");
        assert_eq!((t.words[0].start, t.words[0].end), (Some(0.5), Some(0.9)));
        assert_eq!(
            t.skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![4, 5]
        );
    }

    #[test]
    fn byte_order_mark_and_nan_rows_as_in_podcast_transcript_csv() {
        let t = parse_word_table(
            "\u{feff}word,start,end\nAct,3.71,3.79\nnumber,nan,nan\none,3.99,4.19\nback,5,4\n",
        );
        assert_eq!(
            t.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(),
            vec!["Act", "one"],
            "the BOM does not hide the header, NaN times are skipped"
        );
        assert_eq!(t.skipped.len(), 2);
        assert!(t.skipped[0].1.contains("not finite"), "{:?}", t.skipped);
        assert!(t.skipped[1].1.contains("before start"), "{:?}", t.skipped);
    }

    #[test]
    fn tsv_and_plain_text() {
        let t = parse_word_table("start\tword\n0.1\tthe\n0.2\tcat\n");
        assert_eq!(t.words[1].text, "cat");
        assert_eq!(t.words[1].end, None);
        let p = parse_word_table("The cat\nsat.  ");
        assert_eq!(
            p.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(),
            vec!["The", "cat", "sat."]
        );
    }
}
