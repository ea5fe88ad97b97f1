//! The engine on a tiny random llama GGUF that the test writes itself (Q4_1,
//! Q8_0 and F32 tensors, a small byte-level BPE vocabulary): incremental
//! equals full-context forward, rollback equals never having seen the
//! retracted words, and the context limit does what its doc says.
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use neuralign::lm::{Engine, LmConfig, LmError, ModelRef, Pool, WordEmbedding};
use rand::{Rng, SeedableRng};

const DIM: usize = 64;
const FFN: usize = 128;
const HEADS: u32 = 4;
const KV_HEADS: u32 = 2;
const BLOCKS: usize = 2;

/// GPT-2's byte-to-character map used by byte-level BPE vocabularies.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap()
}

/// Byte tokens, a few merges and two control tokens.
fn vocabulary() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into()];
    let mut types = vec![3, 3];
    for b in 0..=255u8 {
        tokens.push(byte_char(b).to_string());
        types.push(1);
    }
    let merges: Vec<String> = [
        "Ġ t", "h e", "Ġt he", "Ġ c", "a t", "Ġc at", "Ġ s", "Ġs at", "o n", "Ġ on", "Ġ m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for m in &merges {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    (tokens, merges, types)
}

fn random(rng: &mut rand_chacha::ChaCha8Rng, shape: (usize, usize), scale: f32) -> Tensor {
    let data: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| rng.gen_range(-scale..scale))
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Writes the tiny model to `dir` and returns its path.
fn write_tiny_gguf(dir: &Path) -> PathBuf {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (tokens, merges, types) = vocabulary();
    let head_dim = DIM / HEADS as usize;
    let kv_dim = head_dim * KV_HEADS as usize;
    let q = |t: Tensor, dtype| QTensor::quantize(&t, dtype).unwrap();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    tensors.push((
        "token_embd.weight".into(),
        q(random(&mut rng, (tokens.len(), DIM), 1.0), GgmlDType::Q8_0),
    ));
    let norm = |rng: &mut rand_chacha::ChaCha8Rng| {
        let w: Vec<f32> = (0..DIM).map(|_| rng.gen_range(0.5..1.5)).collect();
        QTensor::quantize(
            &Tensor::from_vec(w, DIM, &Device::Cpu).unwrap(),
            GgmlDType::F32,
        )
        .unwrap()
    };
    for b in 0..BLOCKS {
        let s = 1.0 / (DIM as f32).sqrt();
        let mut add = |name: &str, t: QTensor| tensors.push((format!("blk.{b}.{name}"), t));
        add("attn_norm.weight", norm(&mut rng));
        add(
            "attn_q.weight",
            q(random(&mut rng, (DIM, DIM), s), GgmlDType::Q4_1),
        );
        add(
            "attn_k.weight",
            q(random(&mut rng, (kv_dim, DIM), s), GgmlDType::Q4_1),
        );
        add(
            "attn_v.weight",
            q(random(&mut rng, (kv_dim, DIM), s), GgmlDType::Q8_0),
        );
        add(
            "attn_output.weight",
            q(random(&mut rng, (DIM, DIM), s), GgmlDType::Q4_1),
        );
        add("ffn_norm.weight", norm(&mut rng));
        add(
            "ffn_gate.weight",
            q(random(&mut rng, (FFN, DIM), s), GgmlDType::Q4_1),
        );
        add(
            "ffn_up.weight",
            q(random(&mut rng, (FFN, DIM), s), GgmlDType::Q4_1),
        );
        add(
            "ffn_down.weight",
            q(
                random(&mut rng, (DIM, FFN), 1.0 / (FFN as f32).sqrt()),
                GgmlDType::Q4_1,
            ),
        );
    }
    tensors.push(("output_norm.weight".into(), norm(&mut rng)));

    let strings = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(BLOCKS as u32)),
        ("llama.embedding_length", Value::U32(DIM as u32)),
        ("llama.feed_forward_length", Value::U32(FFN as u32)),
        ("llama.attention.head_count", Value::U32(HEADS)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("llama.context_length", Value::U32(256)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.merges", strings(&merges)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
    ];
    let path = dir.join("tiny-llama.gguf");
    let mut file = std::fs::File::create(&path).unwrap();
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tens: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &meta, &tens).unwrap();
    path
}

struct Tiny {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn tiny() -> Tiny {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf(dir.path());
    Tiny { _dir: dir, path }
}

fn engine(t: &Tiny, max_context_tokens: usize, pool: Pool) -> Engine {
    Engine::load(&LmConfig {
        model: Some(ModelRef::File(t.path.clone())),
        max_context_tokens,
        pool,
    })
    .unwrap()
}

/// Largest absolute difference relative to the largest magnitude.
fn rel_diff(a: &WordEmbedding, b: &WordEmbedding) -> f32 {
    assert_eq!((a.layers, a.dim, &a.tokens), (b.layers, b.dim, &b.tokens));
    let scale = a.data.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.data
        .iter()
        .zip(&b.data)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

fn assert_same(a: &[WordEmbedding], b: &[WordEmbedding]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = rel_diff(x, y);
        assert!(d <= 1e-4, "word {i}: relative difference {d}");
    }
}

const TEXT: &str = "the cat sat on the mat, then the cat sat on 42 hats; über-cats ate 7 mats";

#[test]
fn shapes_and_tokenizer_of_the_tiny_model() {
    let t = tiny();
    let mut e = engine(&t, 256, Pool::Last);
    assert_eq!((e.n_layers(), e.dim()), (BLOCKS + 1, DIM));
    assert_eq!(
        e.model_sha256(),
        neuralign::lm::fetch::sha256_of(&t.path).unwrap()
    );
    let tok = e.tokenizer();
    let ids = tok.encode(" the cat").unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), " the cat");
    assert_eq!(ids.len(), 2, "merges Ġthe and Ġcat apply: {ids:?}");
    assert_eq!(tok.encode("<|im_start|>12").unwrap().len(), 3);
    let first = e.push_word("the").unwrap();
    let second = e.push_word("cat").unwrap();
    assert_eq!(
        first.tokens,
        tok_ids(&e, "the"),
        "the first word has no leading space"
    );
    assert_ne!(first.tokens, tok_ids(&e, " the"));
    assert_eq!(second.tokens, tok_ids(&e, " cat"));
    assert!(first.data.iter().chain(&second.data).all(|x| x.is_finite()));
    assert_eq!(second.layer(1).len(), DIM);
}

fn tok_ids(e: &Engine, s: &str) -> Vec<u32> {
    e.tokenizer().encode(s).unwrap()
}

#[test]
fn word_by_word_equals_one_full_context_forward() {
    let t = tiny();
    // Long enough that the full forward takes the kernels' batch paths (tiles of tokens).
    let words: Vec<&str> = TEXT.split(' ').cycle().take(60).collect();
    for pool in [Pool::Last, Pool::Mean] {
        let mut inc = engine(&t, 512, pool);
        let step: Vec<_> = words.iter().map(|w| inc.push_word(w).unwrap()).collect();
        assert!(inc.n_tokens() >= 100, "{} tokens", inc.n_tokens());
        let mut full = engine(&t, 512, pool);
        let all = full.embed_words(&words, usize::MAX).unwrap();
        assert_same(&step, &all);
        // Small batches give the same embeddings too.
        full.reset();
        assert_same(&step, &full.embed_words(&words, 5).unwrap());
        // The layers differ from each other: states really are per layer.
        assert_ne!(step[3].layer(0), step[3].layer(BLOCKS));
    }
}

#[test]
fn rollback_then_recompute_equals_never_seeing_the_retracted_words() {
    let t = tiny();
    let mut e = engine(&t, 256, Pool::Last);
    for w in ["the", "cat", "sat", "on", "hats"] {
        e.push_word(w).unwrap();
    }
    e.rollback(3);
    assert_eq!(e.n_words(), 3);
    let revised: Vec<_> = ["in", "the", "mat"]
        .iter()
        .map(|w| e.push_word(w).unwrap())
        .collect();
    let mut fresh = engine(&t, 256, Pool::Last);
    let expected = fresh
        .embed_words(&["the", "cat", "sat", "in", "the", "mat"], 64)
        .unwrap();
    assert_same(&revised, &expected[3..]);
    // Rolling back to nothing makes the next word the first of the context.
    e.rollback(0);
    assert_same(&[e.push_word("cat").unwrap()], &[fresh_first(&t, "cat")]);
}

fn fresh_first(t: &Tiny, word: &str) -> WordEmbedding {
    engine(t, 256, Pool::Last).push_word(word).unwrap()
}

#[test]
fn context_limit_drops_oldest_words_to_half_and_reprefills() {
    let t = tiny();
    let limit = 32;
    let mut e = engine(&t, limit, Pool::Last);
    let words: Vec<&str> = TEXT.split(' ').cycle().take(60).collect();
    let mut compactions = 0;
    for (i, w) in words.iter().enumerate() {
        let before = e.n_words();
        let emb = e.push_word(w).unwrap();
        assert!(
            e.n_tokens() <= limit,
            "context {} tokens over the limit",
            e.n_tokens()
        );
        if e.n_words() <= before {
            // Compacted: the kept words plus the new one fit in half the limit,
            compactions += 1;
            assert!(
                e.n_tokens() <= limit / 2,
                "after compaction {} tokens",
                e.n_tokens()
            );
            // and the new word sees exactly the kept words, as a fresh engine would.
            let kept: Vec<String> = e.words().map(str::to_string).collect();
            let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
            assert_eq!(kept.last(), Some(w));
            let mut fresh = engine(&t, limit, Pool::Last);
            let expected = fresh.embed_words(&kept, usize::MAX).unwrap();
            assert_same(&[emb], &expected[expected.len() - 1..]);
            assert!(i > 0);
        }
    }
    assert!(
        compactions >= 3,
        "the limit should have been reached several times, got {compactions}"
    );
    // Batch mode applies the same policy at the same words.
    let mut step = engine(&t, limit, Pool::Last);
    let one_by_one: Vec<_> = words.iter().map(|w| step.push_word(w).unwrap()).collect();
    let mut batch = engine(&t, limit, Pool::Last);
    assert_same(&one_by_one, &batch.embed_words(&words, 7).unwrap());
    assert_eq!(
        step.words().collect::<Vec<_>>(),
        batch.words().collect::<Vec<_>>()
    );
}

/// `emb`, the engine's newest word, equals that word in a fresh engine fed the words the
/// engine holds now.
fn assert_fresh(t: &Tiny, limit: usize, e: &Engine, emb: &WordEmbedding) {
    let kept: Vec<String> = e.words().map(str::to_string).collect();
    let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
    let mut fresh = engine(t, limit, Pool::Last);
    let expected = fresh.embed_words(&kept, usize::MAX).unwrap();
    assert_same(std::slice::from_ref(emb), &expected[expected.len() - 1..]);
}

/// A live engine builds the context that follows each compaction while idle: at the limit
/// that context takes over with nothing to recompute, keeps about half the limit, and every
/// word (the one that crossed the limit too) equals a fresh engine fed the kept words. A
/// revision inside the prepared words, and one before them, leave it consistent.
#[test]
fn prepared_compaction_takes_over_at_the_limit_and_equals_a_fresh_context() {
    let t = tiny();
    let limit = 48;
    let words: Vec<&str> = TEXT.split(' ').cycle().take(120).collect();
    let mut e = engine(&t, limit, Pool::Last);
    e.enable_prepared_compaction();
    let check = |e: &Engine, emb: &WordEmbedding| assert_fresh(&t, limit, e, emb);
    let (mut takeovers, mut prepared_words) = (0, 0);
    let per_token = e.kv_cache_bytes().1 / (2 * limit);
    for (i, w) in words.iter().enumerate() {
        let before = e.n_words();
        // Tokens cached beyond the context's own (and its BOS): the prepared ones.
        let spare_before = (e.kv_cache_bytes().0 / per_token).saturating_sub(e.n_tokens() + 1);
        let emb = e.push_word(w).unwrap();
        assert!(e.n_tokens() <= limit);
        if e.n_words() <= before {
            takeovers += 1;
            // The prepared context held about half the limit (one word either side).
            assert!(
                e.n_tokens() <= limit / 2 + 8,
                "{} tokens kept",
                e.n_tokens()
            );
            assert!(spare_before > 0, "word {i}: nothing was prepared");
            assert!(e.n_tokens() >= limit / 4, "{} tokens kept", e.n_tokens());
            check(&e, &emb);
        } else if i % 7 == 0 {
            check(&e, &emb);
        }
        if i == 70 {
            // A revision of the last two words (inside the prepared ones), then one
            // reaching back before them.
            let at = e.next_position() - 2;
            e.rollback(at);
            let emb = e.push_word("lantern").unwrap();
            check(&e, &emb);
            while e.prepare_compaction(1, 0, &|| false).unwrap() {}
            e.rollback(e.next_position() - e.n_words() / 2 - 3);
            let emb = e.push_word("glass").unwrap();
            check(&e, &emb);
        }
        // Idle between words: one prepared word at a time.
        if e.prepare_compaction(1, 0, &|| false).unwrap() {
            prepared_words += 1;
        }
    }
    assert!(takeovers >= 3, "{takeovers} takeovers");
    assert!(
        prepared_words > words.len() / 3,
        "{prepared_words} words prepared"
    );
    // Without enabling it, nothing is prepared and the cache bound is single.
    let mut plain = engine(&t, limit, Pool::Last);
    for w in &words[..30] {
        plain.push_word(w).unwrap();
        assert!(!plain.prepare_compaction(4, 0, &|| false).unwrap());
    }
    assert_eq!(plain.kv_cache_bytes().1 * 2, e.kv_cache_bytes().1);
}

/// A live transcript revises its newest word at almost every update (and sends updates that
/// revise nothing): the prepared context survives them, takes over at every limit with
/// nothing re-prefilled, and equals a fresh context of the kept words. Prepared one word at
/// a time right behind the newest, every revision rolls it back; prepared in batches that
/// trail the newest words, the revisions never reach it.
#[test]
fn prepared_compaction_survives_a_tail_revised_at_every_update() {
    let t = tiny();
    let limit = 48;
    let words: Vec<&str> = TEXT.split(' ').cycle().take(150).collect();
    for (batch, trail) in [(1, 0), (3, 2)] {
        let mut e = engine(&t, limit, Pool::Last);
        e.enable_prepared_compaction();
        let per_token = e.kv_cache_bytes().1 / (2 * limit);
        // Tokens in the spare cache: the prepared context's.
        let spare =
            |e: &Engine| (e.kv_cache_bytes().0 / per_token).saturating_sub(e.n_tokens() + 1);
        let mut rolled_back = 0;
        for (i, w) in words.iter().enumerate() {
            // Idle: one batch prepared. The next update revises the newest word (a rollback
            // to it, the word again) or nothing (a rollback to the next position).
            e.prepare_compaction(batch, trail, &|| false).unwrap();
            let (prepared, compactions) = (spare(&e), e.compactions());
            if i % 3 != 2 && e.n_words() > 0 {
                e.rollback(e.next_position() - 1);
                e.push_word(words[i - 1]).unwrap();
            } else {
                e.rollback(e.next_position());
            }
            // (a revision that reached the limit took the prepared context over)
            if spare(&e) < prepared && e.compactions() == compactions {
                rolled_back += 1;
            }
            let before = e.n_words();
            let emb = e.push_word(w).unwrap();
            if e.n_words() <= before {
                assert_eq!(
                    e.compactions().prefilled,
                    0,
                    "word {i}: the limit re-prefilled ({batch}, {trail})"
                );
                assert_fresh(&t, limit, &e, &emb);
            }
        }
        assert!(e.compactions().prepared >= 3, "{:?}", e.compactions());
        if trail == 0 {
            assert!(
                rolled_back >= 3,
                "{rolled_back} revisions reached the prepared words"
            );
        } else {
            assert_eq!(rolled_back, 0, "a revision reached the prepared words");
        }
    }
}

/// Idle-time preparation makes way for a waiting word: a call that yields changes nothing,
/// the same call later prepares the words; once the prepared context has fallen more than
/// a few batches behind, it no longer yields, and the limit still finds it complete.
#[test]
fn prepared_compaction_yields_to_a_waiting_word_until_it_falls_behind() {
    let t = tiny();
    let limit = 64;
    let mut e = engine(&t, limit, Pool::Last);
    e.enable_prepared_compaction();
    let per_token = e.kv_cache_bytes().1 / (2 * limit);
    let spare = |e: &Engine| (e.kv_cache_bytes().0 / per_token).saturating_sub(e.n_tokens() + 1);
    let mut words = TEXT.split(' ').cycle();
    // past half the limit, the first call starts the prepared context (empty)
    while e.n_tokens() < limit / 2 {
        e.push_word(words.next().unwrap()).unwrap();
    }
    assert!(!e.prepare_compaction(1, 0, &|| false).unwrap());
    for w in words.by_ref().take(2) {
        e.push_word(w).unwrap();
    }
    // two words behind: a waiting word stops it before its first block
    assert!(!e.prepare_compaction(1, 0, &|| true).unwrap());
    assert_eq!(spare(&e), 0, "a yielded call prepared nothing");
    assert!(e.prepare_compaction(1, 0, &|| false).unwrap());
    let prepared = spare(&e);
    assert!(prepared > 0);
    // six more words: seven behind, more than four batches of one; it no longer yields
    for w in words.by_ref().take(6) {
        e.push_word(w).unwrap();
    }
    assert!(e.prepare_compaction(1, 0, &|| true).unwrap());
    assert!(spare(&e) > prepared);
    // the limit: what is left is prepared in one call, and nothing is re-prefilled
    let before = e.compactions();
    loop {
        let n = e.n_words();
        let emb = e.push_word(words.next().unwrap()).unwrap();
        if e.n_words() <= n {
            assert_fresh(&t, limit, &e, &emb);
            break;
        }
    }
    assert_eq!(e.compactions().prepared, before.prepared + 1);
    assert_eq!(e.compactions().prefilled, 0);
}

/// A revision after the context limit has dropped words: positions count the dropped words
/// too, so the rollback forgets exactly the revised word and those after it, as a fresh
/// engine that never saw them would have.
#[test]
fn rollback_after_the_context_limit_forgets_the_revised_words() {
    let t = tiny();
    let limit = 32;
    let words: Vec<&str> = TEXT.split(' ').cycle().take(80).collect();
    let mut e = engine(&t, limit, Pool::Last);
    // Push until the limit has dropped words and the last two pushes did not compact.
    let mut pushed = 0;
    let mut quiet = 0;
    while quiet < 2 || e.next_position() == e.n_words() {
        let before = e.n_words();
        e.push_word(words[pushed]).unwrap();
        pushed += 1;
        quiet = if e.n_words() > before { quiet + 1 } else { 0 };
    }
    // A fresh engine fed all but those two words (the limit drops the same words).
    let mut fresh = engine(&t, limit, Pool::Last);
    for w in &words[..pushed - 2] {
        fresh.push_word(w).unwrap();
    }
    assert!(e.next_position() > e.n_words(), "the limit dropped words");
    assert_eq!(e.next_position(), pushed);
    e.rollback(pushed - 2);
    assert_eq!(e.next_position(), pushed - 2);
    assert_eq!(
        e.words().collect::<Vec<_>>(),
        fresh.words().collect::<Vec<_>>()
    );
    let revised = [
        e.push_word("lantern").unwrap(),
        e.push_word("glass").unwrap(),
    ];
    let expected = [
        fresh.push_word("lantern").unwrap(),
        fresh.push_word("glass").unwrap(),
    ];
    assert_same(&revised, &expected);
    // Back to before the context's first word: the context starts again from there.
    e.rollback(1);
    assert_eq!((e.next_position(), e.n_words()), (1, 0));
    assert_same(&[e.push_word("cat").unwrap()], &[fresh_first(&t, "cat")]);
}

#[test]
fn bad_words_are_rejected_and_lose_nothing() {
    let t = tiny();
    let mut e = engine(&t, 16, Pool::Last);
    e.push_word("the").unwrap();
    assert!(matches!(e.push_word("   "), Err(LmError::EmptyWord)));
    let long = "x".repeat(40);
    assert!(matches!(
        e.push_word(&long),
        Err(LmError::WordTooLong { .. })
    ));
    assert_eq!(e.n_words(), 1);
    let after = e.push_word("cat").unwrap();
    let mut fresh = engine(&t, 16, Pool::Last);
    assert_same(
        &[after],
        &fresh.embed_words(&["the", "cat"], 8).unwrap()[1..],
    );
}

#[test]
fn logits_leave_the_context_unchanged() {
    let t = tiny();
    let mut e = engine(&t, 256, Pool::Last);
    e.push_word("the").unwrap();
    e.push_word("cat").unwrap();
    let logits = e.next_token_logits().unwrap();
    assert_eq!(logits.len(), vocabulary().0.len());
    assert!(logits.iter().all(|x| x.is_finite()));
    assert_eq!(logits, e.next_token_logits().unwrap());
    let next = e.push_word("sat").unwrap();
    let mut fresh = engine(&t, 256, Pool::Last);
    assert_same(
        &[next],
        &fresh.embed_words(&["the", "cat", "sat"], 8).unwrap()[2..],
    );
}

#[test]
fn a_missing_model_file_is_a_clear_error() {
    let cfg = LmConfig {
        model: Some(ModelRef::File("/nonexistent/model.gguf".into())),
        ..LmConfig::default()
    };
    let err = Engine::load(&cfg)
        .err()
        .expect("loading must fail")
        .to_string();
    assert!(
        err.contains("/nonexistent/model.gguf") && err.contains("--model"),
        "{err}"
    );
}

/// The untrained control's writer on the tiny model: every tensor keeps its name, shape and
/// block type; norms become 1 and the rest N(0, 1/24²) (dequantized: mean and deviation
/// within sampling and rounding error); the same seed gives the same bytes, another seed
/// other weights; the file loads, tokenizes as the trained one and embeds differently.
#[test]
fn the_untrained_control_keeps_the_architecture_and_redraws_the_weights() {
    use neuralign::lm::untrained::{write_untrained, INIT_STD};
    let t = tiny();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a.gguf"),
        dir.path().join("b.gguf"),
        dir.path().join("c.gguf"),
    );
    write_untrained(&t.path, &a, 7).unwrap();
    write_untrained(&t.path, &b, 7).unwrap();
    write_untrained(&t.path, &c, 8).unwrap();
    let bytes = |p: &Path| std::fs::read(p).unwrap();
    assert_eq!(bytes(&a), bytes(&b), "the same seed writes the same file");
    assert_ne!(bytes(&a), bytes(&c));

    let read = |p: &Path| {
        let mut f = std::fs::File::open(p).unwrap();
        let content = gguf_file::Content::read(&mut f).unwrap();
        (content, f)
    };
    let dequantized = |t: QTensor| -> Vec<f32> {
        let t = t.dequantize(&Device::Cpu).unwrap();
        t.flatten_all().unwrap().to_vec1().unwrap()
    };
    let (trained, mut tf) = read(&t.path);
    let (untrained, mut uf) = read(&a);
    assert_eq!(
        untrained.metadata["general.name"].to_string().unwrap(),
        "smollm2-135m-untrained:7"
    );
    assert_eq!(
        untrained.metadata["tokenizer.ggml.tokens"]
            .to_vec()
            .unwrap()
            .len(),
        trained.metadata["tokenizer.ggml.tokens"]
            .to_vec()
            .unwrap()
            .len()
    );
    assert_eq!(untrained.tensor_infos.len(), trained.tensor_infos.len());
    for (name, info) in &trained.tensor_infos {
        let u = &untrained.tensor_infos[name];
        assert_eq!(
            (u.ggml_dtype, u.shape.dims()),
            (info.ggml_dtype, info.shape.dims())
        );
        let values = dequantized(untrained.tensor(&mut uf, name, &Device::Cpu).unwrap());
        let was = dequantized(trained.tensor(&mut tf, name, &Device::Cpu).unwrap());
        if name.ends_with("norm.weight") {
            assert!(values.iter().all(|&v| v == 1.0), "{name}");
            continue;
        }
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let sd = (values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        // n draws: the mean has deviation σ/√n, the deviation a relative one of 1/√(2n)
        // (≤ 1.6 % for the smallest tensor, 2 048 values); 4-bit blocks round by steps of
        // about 0.28σ, adding 0.3 % to the deviation
        assert!(
            mean.abs() < 5.0 * INIT_STD / n.sqrt(),
            "{name}: mean {mean}"
        );
        assert!((sd / INIT_STD - 1.0).abs() < 0.05, "{name}: sd {sd}");
        assert_ne!(values, was, "{name} was not redrawn");
    }

    let load = |p: &Path| {
        Engine::load(&LmConfig {
            model: Some(ModelRef::File(p.to_path_buf())),
            max_context_tokens: 64,
            pool: Pool::Mean,
        })
        .unwrap()
    };
    let (mut trained, mut control) = (engine(&t, 64, Pool::Mean), load(&a));
    assert_eq!(tok_ids(&trained, TEXT), tok_ids(&control, TEXT));
    let (x, y) = (
        trained.push_word("cat").unwrap(),
        control.push_word("cat").unwrap(),
    );
    assert_eq!((x.layers, x.dim, &x.tokens), (y.layers, y.dim, &y.tokens));
    assert!(
        rel_diff(&x, &y) > 0.1,
        "the control embeds like the trained model"
    );
}
