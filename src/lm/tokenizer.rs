//! The tokenizer, rebuilt from a GGUF file's metadata (there is no
//! tokenizer.json). `tokenizer.ggml.model = gpt2`: byte-level BPE from
//! `tokenizer.ggml.tokens` and `merges`, pre-tokenized by
//! `Digits(individual_digits)` then `ByteLevel(add_prefix_space=false)`, decoded
//! by `ByteLevel`, with control tokens (`token_type` 3) registered as special
//! tokens. `tokenizer.ggml.model = llama`: SentencePiece BPE ([`super::spm`]).

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use super::spm::Spm;
use super::LmError;

/// A model's tokenizer, by the kind its GGUF names.
#[derive(Debug, Clone)]
pub enum TextTokenizer {
    /// Byte-level BPE (`gpt2`: SmolLM2, Llama 3, Qwen2).
    Bpe(Box<Tokenizer>),
    /// SentencePiece BPE (`llama`: Gemma, Llama 2, Mistral).
    Spm(Spm),
}

impl TextTokenizer {
    /// Builds the tokenizer the GGUF's `tokenizer.ggml.model` names.
    pub fn from_gguf(content: &Content) -> Result<TextTokenizer, LmError> {
        let kind = content
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| LmError::Gguf("no tokenizer.ggml.model in the metadata".into()))?;
        match kind.as_str() {
            "gpt2" => Ok(TextTokenizer::Bpe(Box::new(bpe_from_gguf(content)?))),
            "llama" => Ok(TextTokenizer::Spm(Spm::from_gguf(content)?)),
            other => Err(LmError::Gguf(format!(
                "tokenizer kind {other:?} is not supported (gpt2: byte-level BPE, llama: SentencePiece are)"
            ))),
        }
    }

    /// The token ids of `text` (no BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LmError> {
        match self {
            TextTokenizer::Bpe(t) => Ok(t
                .encode(text, false)
                .map_err(|e| LmError::Tokenizer(e.to_string()))?
                .get_ids()
                .to_vec()),
            TextTokenizer::Spm(t) => Ok(t.encode(text)),
        }
    }

    /// The text of `ids` (special tokens included).
    pub fn decode(&self, ids: &[u32]) -> Result<String, LmError> {
        match self {
            TextTokenizer::Bpe(t) => t
                .decode(ids, false)
                .map_err(|e| LmError::Tokenizer(e.to_string())),
            TextTokenizer::Spm(t) => t.decode(ids),
        }
    }
}

/// GGUF `token_type` of control tokens (`<|im_start|>`, `<|endoftext|>` …).
const TOKEN_TYPE_CONTROL: i32 = 3;

/// Builds the tokenizer of a byte-level-BPE GGUF (`tokenizer.ggml.model = gpt2`).
fn bpe_from_gguf(content: &Content) -> Result<Tokenizer, LmError> {
    let meta = &content.metadata;
    let tokens = string_array(content, "tokenizer.ggml.tokens")?;
    let merges = string_array(content, "tokenizer.ggml.merges")?
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| LmError::Gguf(format!("malformed merge {m:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let types = match meta.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()?
            .iter()
            .map(|t| t.to_i32())
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![],
    };
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| LmError::Tokenizer(format!("building BPE: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]);
    tokenizer.with_pre_tokenizer(Some(pre));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL)
        .map(|(tok, _)| AddedToken::from(tok.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}

fn string_array(content: &Content, key: &str) -> Result<Vec<String>, LmError> {
    let values: &Vec<Value> = content
        .metadata
        .get(key)
        .ok_or_else(|| LmError::Gguf(format!("no {key} in the metadata")))?
        .to_vec()?;
    values.iter().map(|v| Ok(v.to_string()?.clone())).collect()
}
