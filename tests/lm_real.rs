//! The engine on the real default model (SmolLM2-135M-Instruct Q4_1): fetched
//! on first use. Skipped with a notice only when the model cannot be fetched
//! and `NEURALIGN_REQUIRE_MODEL` is unset (CI sets it).
use neuralign::lm::{Engine, LmConfig, LmError, Pool};

fn engine(pool: Pool) -> Option<Engine> {
    let cfg = LmConfig {
        pool,
        ..LmConfig::default()
    };
    match Engine::load(&cfg) {
        Ok(e) => Some(e),
        Err(e @ (LmError::Fetch(_) | LmError::Io { .. }))
            if std::env::var_os("NEURALIGN_REQUIRE_MODEL").is_none() =>
        {
            eprintln!("SKIPPED: the default model is unavailable ({e}); set NEURALIGN_REQUIRE_MODEL=1 to fail instead");
            None
        }
        Err(e) => panic!("loading the default model: {e}"),
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

#[test]
fn real_model_knows_berlin_and_shapes_are_right() {
    let Some(mut engine) = engine(Pool::Last) else {
        return;
    };
    assert_eq!(engine.n_layers(), 31);
    assert_eq!(engine.dim(), 576);
    assert_eq!(engine.model_sha256(), neuralign::lm::fetch::GGUF_SHA256);
    assert!(
        candle_core::utils::with_avx(),
        "AVX must be enabled at compile time for the fast kernels"
    );
    let text = "The capital of France is Paris. The capital of Germany is";
    for word in text.split(' ') {
        let emb = engine.push_word(word).unwrap();
        assert_eq!((emb.layers, emb.dim, emb.data.len()), (31, 576, 31 * 576));
        assert!(
            emb.data.iter().all(|x| x.is_finite()),
            "non-finite embedding for {word:?}"
        );
        assert!(!emb.tokens.is_empty());
    }
    let logits = engine.next_token_logits().unwrap();
    assert_eq!(logits.len(), 49152);
    let top = argmax(&logits) as u32;
    assert_eq!(engine.tokenizer().decode(&[top]).unwrap(), " Berlin");
}

#[test]
fn real_tokenizer_round_trips_and_matches_reference_ids() {
    let Some(engine) = engine(Pool::Last) else {
        return;
    };
    let tok = engine.tokenizer();
    for text in [
        "The year 2024 had 366 days; π ≈ 3.14159!",
        "Ünïcödé: naïve café, 東京, emoji 🧠 and tabs\tnewlines\n",
        "<|im_start|>user\nHi<|im_end|>",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
    // Digits are split one by one; control tokens are single special tokens.
    let ids = tok.encode("2024").unwrap();
    assert_eq!(ids.len(), 4);
    let ids = tok.encode("<|im_start|>").unwrap();
    assert_eq!(ids, vec![1]);
    // Reference ids from the python `tokenizers` package, built independently
    // from the same GGUF by tools/tokenizer_reference.py.
    for (text, expected) in REFERENCE {
        let ids = tok.encode(text).unwrap();
        assert_eq!(&ids, expected, "ids of {text:?}");
    }
}

/// (text, ids) printed by tools/tokenizer_reference.py.
const REFERENCE: &[(&str, &[u32])] = &[
    (
        "Hello world, the capital of Germany is Berlin.",
        &[19556, 905, 28, 260, 3575, 282, 4521, 314, 11452, 30],
    ),
    (" Paris", &[7042]),
    (
        "The year 2024 had 366 days; π ≈ 3.14159!",
        &[
            504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 43, 25143, 21004, 226, 216,
            35, 30, 33, 36, 33, 37, 41, 17,
        ],
    ),
    (
        "Ünïcödé: naïve café, 東京, emoji 🧠",
        &[
            142, 246, 94, 25972, 83, 7466, 84, 2756, 42, 15486, 46494, 37366, 28, 17097, 247, 126,
            16736, 122, 28, 649, 33777, 15107, 117, 250,
        ],
    ),
    ("<|im_start|>user\nHi<|im_end|>", &[1, 4093, 198, 26843, 2]),
];
