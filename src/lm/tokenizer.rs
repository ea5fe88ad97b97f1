//! The tokenizer, rebuilt from a GGUF file's metadata (there is no
//! tokenizer.json): byte-level BPE from `tokenizer.ggml.tokens` and `merges`,
//! pre-tokenized by `Digits(individual_digits)` then
//! `ByteLevel(add_prefix_space=false)`, decoded by `ByteLevel`, with control
//! tokens (`token_type` 3) registered as special tokens.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use super::LmError;

/// GGUF `token_type` of control tokens (`<|im_start|>`, `<|endoftext|>` …).
const TOKEN_TYPE_CONTROL: i32 = 3;

/// Builds the tokenizer of a byte-level-BPE GGUF (`tokenizer.ggml.model = gpt2`).
pub fn from_gguf(content: &Content) -> Result<Tokenizer, LmError> {
    let meta = &content.metadata;
    let kind = meta
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .ok_or_else(|| LmError::Gguf("no tokenizer.ggml.model in the metadata".into()))?;
    if kind != "gpt2" {
        return Err(LmError::Gguf(format!(
            "tokenizer kind {kind:?} is not byte-level BPE (gpt2); only byte-level-BPE models are supported"
        )));
    }
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
