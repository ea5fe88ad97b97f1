//! SentencePiece BPE encoding from a GGUF vocabulary (`tokenizer.ggml.model = llama`:
//! tokens, scores, token types), as llama.cpp's `llm_tokenizer_spm` does it: user-defined
//! tokens (Gemma's runs of newlines, spaces and tabs, HTML tags) are split out of the raw
//! text first, longest first; in the rest, spaces become `▁` (no prefix space is added
//! unless `tokenizer.ggml.add_space_prefix` says so), the text starts as one symbol per
//! character, and the adjacent pair whose concatenation is the highest-scoring vocabulary
//! entry is merged (ties: leftmost) until none is left. Every merged symbol is a token; a
//! single character that is not becomes its UTF-8 bytes' `<0xXX>` tokens.
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use candle_core::quantized::gguf_file::{Content, Value};

use super::LmError;

/// GGUF token types.
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;
/// SentencePiece's whitespace symbol.
const SPACE: char = '\u{2581}';

/// A SentencePiece-BPE tokenizer.
#[derive(Debug, Clone)]
pub struct Spm {
    tokens: Vec<String>,
    scores: Vec<f32>,
    ids: HashMap<String, u32>,
    /// Token of each byte (`<0xXX>`).
    bytes: Vec<Option<u32>>,
    /// User-defined tokens, longest first.
    user_defined: Vec<(String, u32)>,
    unknown: Option<u32>,
    add_space_prefix: bool,
}

/// A symbol of the text being merged: a byte range and its neighbours.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of two adjacent symbols.
#[derive(Debug, PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    /// Highest score first; among equal scores, the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Spm {
    /// Builds the tokenizer from a GGUF's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(content: &Content) -> Result<Spm, LmError> {
        let meta = &content.metadata;
        let array = |key: &str| -> Result<&Vec<Value>, LmError> {
            Ok(meta
                .get(key)
                .ok_or_else(|| LmError::Gguf(format!("no {key} in the metadata")))?
                .to_vec()?)
        };
        let tokens = array("tokenizer.ggml.tokens")?
            .iter()
            .map(|v| Ok(v.to_string()?.clone()))
            .collect::<Result<Vec<String>, LmError>>()?;
        let scores = array("tokenizer.ggml.scores")?
            .iter()
            .map(|v| Ok(v.to_f32()?))
            .collect::<Result<Vec<f32>, LmError>>()?;
        let types = array("tokenizer.ggml.token_type")?
            .iter()
            .map(|v| Ok(v.to_i32()?))
            .collect::<Result<Vec<i32>, LmError>>()?;
        if scores.len() != tokens.len() || types.len() != tokens.len() {
            return Err(LmError::Gguf(format!(
                "{} tokens but {} scores and {} token types",
                tokens.len(),
                scores.len(),
                types.len()
            )));
        }
        let flag = |key: &str| meta.get(key).and_then(|v| v.to_bool().ok());
        let unknown = match meta.get("tokenizer.ggml.unknown_token_id") {
            Some(v) => Some(v.to_u32()?),
            None => None,
        };
        Ok(Spm::new(
            tokens,
            scores,
            &types,
            unknown,
            flag("tokenizer.ggml.add_space_prefix").unwrap_or(true),
        ))
    }

    /// A tokenizer over `tokens` with their `scores` and GGUF `types`.
    pub fn new(
        tokens: Vec<String>,
        scores: Vec<f32>,
        types: &[i32],
        unknown: Option<u32>,
        add_space_prefix: bool,
    ) -> Spm {
        let mut ids = HashMap::with_capacity(tokens.len());
        let mut bytes = vec![None; 256];
        let mut user_defined = Vec::new();
        for (i, (tok, &ty)) in tokens.iter().zip(types).enumerate() {
            let id = i as u32;
            ids.entry(tok.clone()).or_insert(id);
            if ty == TYPE_BYTE {
                let hex = tok.strip_prefix("<0x").and_then(|t| t.strip_suffix('>'));
                if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    bytes[usize::from(b)] = Some(id);
                }
            } else if ty == TYPE_USER_DEFINED && !tok.is_empty() {
                user_defined.push((tok.clone(), id));
            }
        }
        user_defined.sort_by_key(|(tok, _)| std::cmp::Reverse(tok.len()));
        Spm {
            tokens,
            scores,
            ids,
            bytes,
            user_defined,
            unknown,
            add_space_prefix,
        }
    }

    /// Encodes `text` (no BOS).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        // Split out user-defined tokens, longest first, as llama.cpp does.
        let mut fragments: Vec<Result<&str, u32>> = vec![Ok(text)];
        for (tok, id) in &self.user_defined {
            let mut next = Vec::with_capacity(fragments.len());
            for f in fragments {
                match f {
                    Ok(raw) if raw.contains(tok.as_str()) => {
                        let mut parts = raw.split(tok.as_str()).peekable();
                        while let Some(part) = parts.next() {
                            if !part.is_empty() {
                                next.push(Ok(part));
                            }
                            if parts.peek().is_some() {
                                next.push(Err(*id));
                            }
                        }
                    }
                    other => next.push(other),
                }
            }
            fragments = next;
        }
        let mut out = Vec::new();
        for (i, f) in fragments.into_iter().enumerate() {
            match f {
                Err(id) => out.push(id),
                Ok(raw) => {
                    let mut escaped = String::with_capacity(raw.len() + 3);
                    if self.add_space_prefix && i == 0 {
                        escaped.push(SPACE);
                    }
                    escaped.extend(raw.chars().map(|c| if c == ' ' { SPACE } else { c }));
                    self.encode_escaped(&escaped, &mut out);
                }
            }
        }
        out
    }

    /// The BPE merges over one escaped fragment.
    fn encode_escaped(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .map(|(start, c)| Symbol {
                start,
                len: c.len_utf8(),
                prev: None,
                next: None,
            })
            .collect();
        let n = symbols.len();
        for (i, s) in symbols.iter_mut().enumerate() {
            s.prev = i.checked_sub(1);
            s.next = (i + 1 < n).then_some(i + 1);
        }
        let mut agenda = BinaryHeap::new();
        let try_pair = |symbols: &[Symbol],
                        agenda: &mut BinaryHeap<Bigram>,
                        left: Option<usize>,
                        right: Option<usize>| {
            let (Some(l), Some(r)) = (left, right) else {
                return;
            };
            let (a, b) = (symbols[l], symbols[r]);
            let piece = &text[a.start..a.start + a.len + b.len];
            if let Some(&id) = self.ids.get(piece) {
                agenda.push(Bigram {
                    score: self.scores[id as usize],
                    left: l,
                    right: r,
                    len: piece.len(),
                });
            }
        };
        for i in 1..n {
            try_pair(&symbols, &mut agenda, Some(i - 1), Some(i));
        }
        while let Some(bigram) = agenda.pop() {
            let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
            // Skip pairs that an earlier merge changed.
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.len {
                continue;
            }
            symbols[bigram.left].len += r.len;
            symbols[bigram.right].len = 0;
            symbols[bigram.left].next = r.next;
            if let Some(next) = r.next {
                symbols[next].prev = Some(bigram.left);
            }
            let left = symbols[bigram.left];
            try_pair(&symbols, &mut agenda, left.prev, Some(bigram.left));
            try_pair(&symbols, &mut agenda, Some(bigram.left), left.next);
        }
        let mut at = (n > 0).then_some(0);
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(
                    piece
                        .bytes()
                        .filter_map(|b| self.bytes[usize::from(b)].or(self.unknown)),
                ),
            }
            at = s.next;
        }
    }

    /// Decodes ids back to text: `▁` becomes a space, byte tokens become their bytes.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LmError> {
        let mut bytes = Vec::new();
        for &id in ids {
            let tok = self.tokens.get(id as usize).ok_or_else(|| {
                LmError::Tokenizer(format!("token id {id} is outside the vocabulary"))
            })?;
            match self.bytes.iter().position(|&b| b == Some(id)) {
                Some(b) => bytes.push(b as u8),
                None => bytes.extend(tok.replace(SPACE, " ").into_bytes()),
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: merges ranked by score, byte tokens for the rest.
    fn toy() -> Spm {
        let mut tokens: Vec<String> = [
            "<unk>", "▁", "a", "b", "c", "ab", "bc", "▁ab", "abc", "<br>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut scores = vec![0.0, -1.0, -2.0, -2.0, -2.0, -3.0, -1.5, -4.0, -5.0, 0.0];
        let mut types = vec![2, 1, 1, 1, 1, 1, 1, 1, 1, TYPE_USER_DEFINED];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            scores.push(0.0);
            types.push(TYPE_BYTE);
        }
        Spm::new(tokens, scores, &types, Some(0), false)
    }

    #[test]
    fn merges_by_score_and_falls_back_to_bytes() {
        let spm = toy();
        // "bc" (-1.5) beats "ab" (-3), then a + bc = "abc".
        assert_eq!(spm.encode("abc"), vec![8]);
        // In "cab" only "ab" can merge.
        assert_eq!(spm.encode("cab"), vec![4, 5]);
        // " ab": ▁ + a + b -> ab (-3) then ▁ab (-4).
        assert_eq!(spm.encode(" ab"), vec![7]);
        // "é" is not in the vocabulary: its two UTF-8 bytes.
        let e = spm.encode("é");
        assert_eq!(e, vec![10 + 0xC3, 10 + 0xA9]);
        assert_eq!(spm.decode(&e).unwrap(), "é");
        // User-defined tokens are split out of the raw text first.
        assert_eq!(spm.encode("a<br>b"), vec![2, 9, 3]);
        assert_eq!(spm.decode(&spm.encode(" ab c")).unwrap(), " ab c");
    }
}
