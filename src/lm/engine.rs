//! [`Engine`]: words in, per-layer embeddings out, with the context's keys
//! and values cached between words. See the module docs of [`crate::lm`] for
//! the context-limit policy.
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::Content;

use super::backbone::Backbone;
use super::fetch;
use super::registry::{ModelRef, SMOLLM2_135M};
use super::tokenizer::TextTokenizer;
use super::{LmConfig, LmError, Pool, StepTiming, WordEmbedding};

/// The smallest context limit that leaves room for a few words.
const MIN_CONTEXT_TOKENS: usize = 16;

/// Batches the prepared context may fall behind by and still make way for words: beyond
/// it, reaching the limit would wait for a long catch-up.
const YIELD_BATCHES: usize = 4;

/// A word of the current context and the tokens it was run as.
struct Word {
    text: String,
    tokens: Vec<u32>,
}

/// The context that will follow the next compaction, built ahead of need in the spare
/// key/value cache ([`Engine::prepare_compaction`]).
struct Shadow {
    /// Position (as [`Engine::next_position`] counts) of its first word.
    start: usize,
    /// Its first word's tokens, as the first of a context (no leading space).
    first_tokens: Vec<u32>,
    /// Words from `start` on in the spare cache.
    words: usize,
    /// Tokens in the spare cache.
    tokens: usize,
}

/// The language-model engine: model, tokenizer, key/value cache and the words
/// of the current context.
pub struct Engine {
    model: Backbone,
    tokenizer: TextTokenizer,
    max_context_tokens: usize,
    pool: Pool,
    name: String,
    sha256: String,
    /// Token put before the first word when the GGUF asks for one.
    bos: Option<u32>,
    words: Vec<Word>,
    /// Words dropped from the front of the context by the context limit since the last
    /// reset: the context's first word is at position `forgotten`.
    forgotten: usize,
    /// Words `..cached_words` are in the key/value cache.
    cached_words: usize,
    /// Whether [`Engine::prepare_compaction`] builds the next context ahead of need.
    prepare_ahead: bool,
    shadow: Option<Shadow>,
    compactions: Compactions,
}

/// How the context limit was met so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compactions {
    /// A prepared context took over ([`Engine::prepare_compaction`]): nothing recomputed.
    pub prepared: u64,
    /// The kept words were run again (a prefill of about half the limit).
    pub prefilled: u64,
}

impl Engine {
    /// Loads `cfg.model`, or the default model (fetching it on first use).
    pub fn load(cfg: &LmConfig) -> Result<Engine, LmError> {
        if cfg.max_context_tokens < MIN_CONTEXT_TOKENS {
            return Err(LmError::Gguf(format!(
                "max_context_tokens is {}, it must be at least {MIN_CONTEXT_TOKENS}",
                cfg.max_context_tokens
            )));
        }
        let path = match &cfg.model {
            None => fetch::ensure_model(&SMOLLM2_135M, None)?,
            Some(ModelRef::Named(spec)) => fetch::ensure_model(spec, None)?,
            Some(ModelRef::File(p)) => p.clone(),
            Some(ModelRef::Untrained { seed }) => super::untrained::ensure_untrained(*seed)?,
        };
        Self::load_file(&path, cfg)
    }

    fn load_file(path: &Path, cfg: &LmConfig) -> Result<Engine, LmError> {
        let file = File::open(path).map_err(LmError::io(format!(
            "opening model {} (pass --model PATH to an existing GGUF, or omit it to fetch the default)",
            path.display()
        )))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| {
            LmError::Gguf(format!(
                "{} is not a readable GGUF file: {e}",
                path.display()
            ))
        })?;
        let tokenizer = TextTokenizer::from_gguf(&content)?;
        let add_bos = content
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos = match content.metadata.get("tokenizer.ggml.bos_token_id") {
            Some(id) if add_bos => Some(id.to_u32()?),
            _ => None,
        };
        let model = Backbone::load(&content, &mut reader, cfg.max_context_tokens)?;
        let sha256 = fetch::file_sha256(path)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        tracing::info!(
            model = %name,
            layers = model.n_layers(),
            dim = model.dim(),
            avx = candle_core::utils::with_avx(),
            "language model loaded"
        );
        Ok(Engine {
            model,
            tokenizer,
            max_context_tokens: cfg.max_context_tokens,
            pool: cfg.pool,
            name,
            sha256,
            bos,
            words: Vec::new(),
            forgotten: 0,
            cached_words: 0,
            prepare_ahead: false,
            shadow: None,
            compactions: Compactions::default(),
        })
    }

    /// How the context limit was met since the engine was loaded.
    pub fn compactions(&self) -> Compactions {
        self.compactions
    }

    /// Lets [`Engine::prepare_compaction`] build the context that follows a compaction in
    /// a second key/value cache, so that reaching the context limit costs no re-prefill
    /// (a live session cannot wait seconds for one). Doubles the cache's memory bound.
    pub fn enable_prepared_compaction(&mut self) {
        self.prepare_ahead = true;
    }

    /// Runs `batch` words into the context that will follow the next compaction (when
    /// enabled): from the first word after the context passed half the limit, those words
    /// as a fresh context, in the spare cache. Only words older than the newest `trail` are
    /// run, and only a whole batch of them: a revision usually reaches back a few words,
    /// and would roll the prepared context back with it; one call per batch costs about
    /// what one word does. Call it when idle; it gives up between blocks once `yield_now()`
    /// is true (a word is waiting), unless the prepared context has fallen so far behind
    /// that the limit would wait for it. Returns whether it did the work. When the limit is
    /// reached, the words not prepared yet are run in one call, the words before the
    /// prepared context are dropped and its cache becomes the context; the result equals a
    /// fresh context holding the kept words.
    pub fn prepare_compaction(
        &mut self,
        batch: usize,
        trail: usize,
        yield_now: &dyn Fn() -> bool,
    ) -> Result<bool, LmError> {
        let end = self.words.len().saturating_sub(trail);
        match self.unprepared() {
            Some(first) if batch > 0 && first.saturating_add(batch) <= end => {
                let behind = end - first > YIELD_BATCHES * batch;
                let yield_now = || !behind && yield_now();
                match self.prepare_through(first + batch, &yield_now) {
                    Err(LmError::Yielded) => Ok(false),
                    done => done,
                }
            }
            _ => Ok(false),
        }
    }

    /// Index (into `words`) of the first word the prepared context lacks; `None` when
    /// there is no prepared context to extend (it starts once the context passes half the
    /// limit) or the newest words are not in the cache yet.
    fn unprepared(&mut self) -> Option<usize> {
        if !self.prepare_ahead || self.cached_words < self.words.len() {
            return None;
        }
        let Some(shadow) = &self.shadow else {
            if !self.words.is_empty() && self.n_tokens() >= self.max_context_tokens / 2 {
                self.shadow = Some(Shadow {
                    start: self.next_position(),
                    first_tokens: Vec::new(),
                    words: 0,
                    tokens: 0,
                });
            }
            return None;
        };
        Some(shadow.start - self.forgotten + shadow.words)
    }

    /// Runs the words from the first one the prepared context lacks to `end` (an index into
    /// `words`) into it, in one call; returns whether there were any. A call that yields
    /// (see [`Backbone::forward_or_yield`]) changes nothing.
    fn prepare_through(
        &mut self,
        end: usize,
        yield_now: &dyn Fn() -> bool,
    ) -> Result<bool, LmError> {
        let Some(first) = self.unprepared() else {
            return Ok(false);
        };
        let end = end.min(self.words.len());
        if first >= end {
            return Ok(false);
        }
        let shadow = self.shadow.as_ref().expect("unprepared() saw it");
        let starting = shadow.words == 0;
        let mut tokens = Vec::new();
        let mut first_tokens = Vec::new();
        if starting {
            tokens.extend(self.bos);
            first_tokens = self.tokenize(&self.words[first].text, true)?;
            tokens.extend_from_slice(&first_tokens);
        }
        for w in &self.words[first + usize::from(starting)..end] {
            tokens.extend_from_slice(&w.tokens);
        }
        self.model.swap_caches()?;
        if starting {
            self.model.truncate(0);
        }
        let result = self.model.forward_or_yield(&tokens, &[], false, yield_now);
        self.model.swap_caches()?;
        match result {
            Err(LmError::Yielded) => return Err(LmError::Yielded),
            Err(e) => {
                self.shadow = None;
                return Err(e);
            }
            Ok(_) => {}
        }
        let shadow = self.shadow.as_mut().expect("checked above");
        if starting {
            shadow.first_tokens = first_tokens;
        }
        shadow.words += end - first;
        shadow.tokens += tokens.len();
        Ok(true)
    }

    /// At the context limit: the prepared context, brought up to date, becomes the context
    /// (the words before it dropped). False when there is none to use.
    fn promote_shadow(&mut self, incoming: usize) -> Result<bool, LmError> {
        let usable = self.shadow.as_ref().is_some_and(|s| {
            s.start >= self.forgotten && s.start < self.next_position() && s.words > 0
        });
        if !usable {
            self.shadow = None;
            return Ok(false);
        }
        self.prepare_through(usize::MAX, &|| false)?;
        let shadow = self.shadow.take().expect("checked above");
        if shadow.start + shadow.words != self.next_position()
            || shadow.tokens + incoming > self.max_context_tokens
        {
            return Ok(false);
        }
        let dropped = shadow.start - self.forgotten;
        self.words.drain(..dropped);
        self.forgotten += dropped;
        self.words[0].tokens = shadow.first_tokens;
        self.model.swap_caches()?;
        self.cached_words = self.words.len();
        self.compactions.prepared += 1;
        tracing::debug!(
            dropped,
            kept = self.words.len(),
            "context limit reached: the prepared context takes over"
        );
        Ok(true)
    }

    /// Hidden states per word: the token embedding plus one per block (31 for SmolLM2, 19
    /// for Gemma-3-270M).
    pub fn n_layers(&self) -> usize {
        self.model.n_layers()
    }

    /// Width of the residual stream (576 for SmolLM2, 640 for Gemma-3-270M).
    pub fn dim(&self) -> usize {
        self.model.dim()
    }

    /// The model's file name.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// sha256 of the model file.
    pub fn model_sha256(&self) -> &str {
        &self.sha256
    }

    /// Bytes of weights one decoding step reads (the output layer skipped).
    pub fn step_weight_bytes(&self) -> usize {
        self.model.step_weight_bytes()
    }

    /// The tokenizer rebuilt from the model's metadata.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Bytes of the key/value cache: in use by the current context, and its bound (the cache
    /// is allocated for `max_context_tokens` at load, and the OS maps its pages as they are
    /// first written, so resident memory grows with the context up to the bound).
    pub fn kv_cache_bytes(&self) -> (usize, usize) {
        let per_token = self.model.kv_bytes_per_token();
        let caches = 1 + usize::from(self.prepare_ahead);
        let spare = self.shadow.as_ref().map_or(0, |s| s.tokens);
        (
            (self.model.cache_len() + spare) * per_token,
            caches * self.model.capacity() * per_token,
        )
    }

    /// Words in the current context.
    pub fn n_words(&self) -> usize {
        self.words.len()
    }

    /// Position of the next word: words pushed since the last reset and not rolled back,
    /// those the context limit dropped included. [`Engine::rollback`] takes positions.
    pub fn next_position(&self) -> usize {
        self.forgotten + self.words.len()
    }

    /// Tokens in the current context (including a BOS token if the model uses one).
    pub fn n_tokens(&self) -> usize {
        self.bos_len() + self.words.iter().map(|w| w.tokens.len()).sum::<usize>()
    }

    /// The words of the current context, oldest first.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.words.iter().map(|w| w.text.as_str())
    }

    /// The tokens a fresh context runs for `words`: the BOS token when the model uses one,
    /// then each word's tokens (every word but the first with a leading space). The
    /// current context is not touched.
    pub fn tokenize_words(&self, words: &[&str]) -> Result<(Option<u32>, Vec<Vec<u32>>), LmError> {
        let ids = words
            .iter()
            .enumerate()
            .map(|(i, w)| self.tokenize(w.trim(), i == 0))
            .collect::<Result<_, _>>()?;
        Ok((self.bos, ids))
    }

    /// Adds a word to the context (one forward call over its tokens) and
    /// returns its per-layer embedding. On error the context is unchanged.
    pub fn push_word(&mut self, text: &str) -> Result<WordEmbedding, LmError> {
        let started = Instant::now();
        let word = self.prepare(text)?;
        let tokenize = started.elapsed();
        self.commit(word)?;
        let mut out = self.flush(1)?;
        let mut emb = out.pop().expect("flush(1) returns one word");
        emb.timing.tokenize = tokenize;
        Ok(emb)
    }

    /// Adds many words, several per forward call (about `batch_tokens` tokens
    /// each), and returns their embeddings. Each word sees the same context as
    /// with [`Engine::push_word`], the context limit included. On error the
    /// words of this call are forgotten.
    pub fn embed_words(
        &mut self,
        words: &[&str],
        batch_tokens: usize,
    ) -> Result<Vec<WordEmbedding>, LmError> {
        let before = self.next_position();
        let result = self.embed_words_inner(words, batch_tokens.max(1));
        if result.is_err() {
            self.rollback(before);
        }
        result
    }

    fn embed_words_inner(
        &mut self,
        words: &[&str],
        batch_tokens: usize,
    ) -> Result<Vec<WordEmbedding>, LmError> {
        let mut out = Vec::with_capacity(words.len());
        let mut pending = 0;
        let mut tokenize_times = Vec::with_capacity(words.len());
        for text in words {
            let started = Instant::now();
            let word = self.prepare(text)?;
            tokenize_times.push(started.elapsed());
            // Embed what is pending before the context is compacted under it.
            if pending > 0 && self.needs_compaction(word.tokens.len()) {
                out.extend(self.flush(pending)?);
                pending = 0;
            }
            self.commit(word)?;
            pending += 1;
            if self.uncached_tokens() >= batch_tokens {
                out.extend(self.flush(pending)?);
                pending = 0;
            }
        }
        if pending > 0 {
            out.extend(self.flush(pending)?);
        }
        for (emb, tokenize) in out.iter_mut().zip(tokenize_times) {
            emb.timing.tokenize = tokenize;
        }
        Ok(out)
    }

    /// The embedding of `word` with exactly `context` before it and nothing
    /// else (the paper's limited-context analysis). Replaces the current
    /// context with `context` + `word`.
    pub fn embed_in_context(
        &mut self,
        context: &[&str],
        word: &str,
    ) -> Result<WordEmbedding, LmError> {
        self.reset();
        let result = (|| {
            for text in context.iter().chain(std::iter::once(&word)) {
                let prepared = self.prepare(text)?;
                if self.needs_compaction(prepared.tokens.len()) {
                    return Err(LmError::WordTooLong {
                        word: context.join(" "),
                        tokens: self.n_tokens() + prepared.tokens.len(),
                        limit: self.max_context_tokens,
                    });
                }
                self.commit(prepared)?;
            }
            let mut out = self.flush(1)?;
            Ok(out.pop().expect("flush(1) returns one word"))
        })();
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Forgets the words at positions `position..` (a retracted or revised word and all
    /// after it; positions as [`Engine::next_position`] counts them); the key/value cache is
    /// truncated to the kept words. A position before the context's first word (one the
    /// context limit dropped) empties the context: the next word starts it afresh.
    pub fn rollback(&mut self, position: usize) {
        self.rollback_shadow(position);
        if position < self.forgotten {
            self.forgotten = position;
            self.words.clear();
            self.cached_words = 0;
            self.model.truncate(0);
            return;
        }
        let keep_words = position - self.forgotten;
        if keep_words >= self.words.len() {
            return;
        }
        self.words.truncate(keep_words);
        self.cached_words = self.cached_words.min(keep_words);
        if self.model.cache_len() > 0 {
            let kept: usize = self.words[..self.cached_words]
                .iter()
                .map(|w| w.tokens.len())
                .sum();
            self.model.truncate(self.bos_len() + kept);
        }
    }

    /// The prepared context forgets the words at positions `position..` too.
    fn rollback_shadow(&mut self, position: usize) {
        let Some(shadow) = &self.shadow else {
            return;
        };
        if position >= self.next_position() {
            return; // nothing is forgotten
        }
        if shadow.start < self.forgotten || position <= self.forgotten {
            self.shadow = None;
            return;
        }
        if position <= shadow.start {
            let before: usize = self.words[..position - self.forgotten]
                .iter()
                .map(|w| w.tokens.len())
                .sum();
            if self.bos_len() + before < self.max_context_tokens / 2 {
                self.shadow = None; // made again once the context passes half the limit
                return;
            }
            // A live transcript revises its newest words at almost every update, and the
            // prepared context starts at the newest word: dropping it here would drop it
            // every time. It restarts at the revised word instead.
            self.shadow = Some(Shadow {
                start: position,
                first_tokens: Vec::new(),
                words: 0,
                tokens: 0,
            });
            return;
        }
        let keep = position - shadow.start;
        if keep >= shadow.words {
            return;
        }
        let first = shadow.start - self.forgotten;
        let tokens = self.bos_len()
            + shadow.first_tokens.len()
            + self.words[first + 1..first + keep]
                .iter()
                .map(|w| w.tokens.len())
                .sum::<usize>();
        let truncated = self
            .model
            .swap_caches()
            .map(|()| self.model.truncate(tokens))
            .and_then(|()| self.model.swap_caches());
        match (truncated, &mut self.shadow) {
            (Ok(()), Some(shadow)) => {
                shadow.words = keep;
                shadow.tokens = tokens;
            }
            _ => self.shadow = None,
        }
    }

    /// Forgets the whole context.
    pub fn reset(&mut self) {
        self.shadow = None;
        self.words.clear();
        self.forgotten = 0;
        self.cached_words = 0;
        self.model.truncate(0);
    }

    /// Next-token logits after the current context (for checks and
    /// generation). Re-runs the last token, which leaves the cache unchanged.
    pub fn next_token_logits(&mut self) -> Result<Vec<f32>, LmError> {
        if self.cached_words < self.words.len() || self.model.cache_len() == 0 {
            return Err(LmError::Gguf(
                "next_token_logits needs at least one word in the context".into(),
            ));
        }
        let last = *self
            .words
            .last()
            .and_then(|w| w.tokens.last())
            .expect("a cached word has tokens");
        self.model.logits_after_last(last)
    }

    fn bos_len(&self) -> usize {
        usize::from(self.bos.is_some())
    }

    fn uncached_tokens(&self) -> usize {
        self.words[self.cached_words..]
            .iter()
            .map(|w| w.tokens.len())
            .sum()
    }

    /// Tokenizes a word as the next word of the context.
    fn prepare(&self, text: &str) -> Result<Word, LmError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LmError::EmptyWord);
        }
        let tokens = self.tokenize(text, self.words.is_empty())?;
        if self.bos_len() + tokens.len() > self.max_context_tokens / 2 {
            return Err(LmError::WordTooLong {
                word: text.chars().take(40).collect(),
                tokens: tokens.len(),
                limit: self.max_context_tokens,
            });
        }
        Ok(Word {
            text: text.to_string(),
            tokens,
        })
    }

    /// Words are joined by single spaces: every word but the context's first
    /// is tokenized with a leading space.
    fn tokenize(&self, text: &str, first: bool) -> Result<Vec<u32>, LmError> {
        let spaced;
        let input = if first {
            text
        } else {
            spaced = format!(" {text}");
            &spaced
        };
        self.tokenizer.encode(input)
    }

    fn needs_compaction(&self, incoming: usize) -> bool {
        self.n_tokens() + incoming > self.max_context_tokens
    }

    /// Appends a prepared word, first applying the context-limit policy (the words it
    /// drops are counted in `forgotten`).
    fn commit(&mut self, mut word: Word) -> Result<(), LmError> {
        let mut dropped = 0;
        if self.needs_compaction(word.tokens.len()) && self.promote_shadow(word.tokens.len())? {
            self.words.push(word);
            return Ok(());
        }
        if self.needs_compaction(word.tokens.len()) {
            let budget = self.max_context_tokens / 2;
            while !self.words.is_empty() && self.n_tokens() + word.tokens.len() > budget {
                self.words.remove(0);
                self.forgotten += 1;
                dropped += 1;
                if !self.words.is_empty() {
                    let first = self.tokenize(&self.words[0].text, true)?;
                    self.words[0].tokens = first;
                }
            }
            if self.words.is_empty() {
                word.tokens = self.tokenize(&word.text, true)?;
            }
            self.cached_words = 0;
            self.model.truncate(0);
            self.compactions.prefilled += 1;
            tracing::debug!(
                dropped,
                kept = self.words.len(),
                "context limit reached: re-prefilling"
            );
        }
        self.words.push(word);
        Ok(())
    }

    /// Runs every uncached word in one forward call and returns the
    /// embeddings of the last `emit` words.
    fn flush(&mut self, emit: usize) -> Result<Vec<WordEmbedding>, LmError> {
        let first_emit = self.words.len() - emit;
        let mut tokens = Vec::with_capacity(self.uncached_tokens() + 1);
        if self.model.cache_len() == 0 {
            tokens.extend(self.bos);
        }
        let mut spans = Vec::with_capacity(emit);
        for (i, w) in self.words.iter().enumerate().skip(self.cached_words) {
            if i >= first_emit {
                spans.push(tokens.len()..tokens.len() + w.tokens.len());
            }
            tokens.extend_from_slice(&w.tokens);
        }
        let keep: Vec<usize> = match self.pool {
            Pool::Last => spans.iter().map(|s| s.end - 1).collect(),
            Pool::Mean => spans.iter().flat_map(|s| s.clone()).collect(),
        };
        let started = Instant::now();
        let forward = match self.model.forward(&tokens, &keep, false) {
            Ok(f) => f,
            Err(e) => {
                self.words.truncate(first_emit);
                return Err(e);
            }
        };
        let per_word = started.elapsed() / emit.max(1) as u32;
        self.cached_words = self.words.len();

        let (layers, dim) = (self.n_layers(), self.dim());
        let row = layers * dim;
        let mut offset = 0;
        let out = spans
            .iter()
            .zip(&self.words[first_emit..])
            .map(|(span, word)| {
                let n = if self.pool == Pool::Last {
                    1
                } else {
                    span.len()
                };
                let rows = &forward.hidden[offset * row..(offset + n) * row];
                offset += n;
                WordEmbedding {
                    layers,
                    dim,
                    data: mean_rows(rows, row, n),
                    tokens: word.tokens.clone(),
                    timing: StepTiming {
                        tokenize: Duration::ZERO,
                        forward: per_word,
                    },
                }
            })
            .collect();
        Ok(out)
    }
}

/// The mean of `n` consecutive rows of length `row`.
fn mean_rows(rows: &[f32], row: usize, n: usize) -> Vec<f32> {
    if n == 1 {
        return rows.to_vec();
    }
    let mut mean = vec![0f32; row];
    for chunk in rows.chunks_exact(row) {
        for (m, x) in mean.iter_mut().zip(chunk) {
            *m += x;
        }
    }
    let scale = 1.0 / n as f32;
    mean.iter_mut().for_each(|m| *m *= scale);
    mean
}
