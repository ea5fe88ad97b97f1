//! `neuralign embed`: per-word, per-layer embeddings of a transcript into a
//! safetensors file (format in docs/embeddings.md).
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::lm::{write_embeddings, EmbeddingsMeta, Engine, LmConfig, ModelRef, Pool};
use crate::word_table::{read_word_table, TableWord};

/// Arguments of `neuralign embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Transcript: csv/tsv with a `word,start,end` header, or plain text.
    #[arg(long)]
    pub transcript: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// Layers to keep: `all` or a comma-separated list (0 = token embedding).
    #[arg(long, default_value = "all")]
    pub layers: String,
    /// Limit each word's context to the N words before it (default: the whole transcript,
    /// up to the model's context limit).
    #[arg(long)]
    pub context: Option<usize>,
    /// How a multi-token word becomes one vector.
    #[arg(long, value_enum, default_value_t = Pool::Last)]
    pub pool: Pool,
    /// The model: a registry name (smollm2-135m, gemma3-270m, smollm2-135m-untrained[:SEED])
    /// or PATH.gguf; default smollm2-135m.
    #[arg(long)]
    pub model: Option<ModelRef>,
    /// Context limit in tokens (oldest words are dropped to half when reached).
    #[arg(long, default_value_t = 2048)]
    pub max_context_tokens: usize,
    /// Tokens per forward call in batch mode.
    #[arg(long, default_value_t = 512)]
    pub batch_tokens: usize,
    /// Also write the next-token logits after the last word (`next_logits`).
    #[arg(long)]
    pub next_logits: bool,
}

/// Words handed to the engine per call, so that the progress bar moves.
const WORDS_PER_CALL: usize = 64;

/// Runs `neuralign embed`.
pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let transcript = read_word_table(&args.transcript)?;
    for (line, why) in &transcript.skipped {
        tracing::warn!(line, "skipped transcript row: {why}");
    }
    if transcript.words.is_empty() {
        bail!("{} holds no words", args.transcript.display());
    }
    let cfg = LmConfig {
        model: args.model.clone(),
        max_context_tokens: args.max_context_tokens,
        pool: args.pool,
    };
    let mut engine = Engine::load(&cfg).context("loading the language model")?;
    let layers = parse_layers(&args.layers, engine.n_layers())?;
    let texts: Vec<&str> = transcript.words.iter().map(|w| w.text.as_str()).collect();

    let bar = ProgressBar::new(texts.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} words {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let started = std::time::Instant::now();
    let mut embeddings = Vec::with_capacity(texts.len());
    match args.context {
        None => {
            for chunk in texts.chunks(WORDS_PER_CALL) {
                embeddings.extend(engine.embed_words(chunk, args.batch_tokens)?);
                bar.inc(chunk.len() as u64);
            }
        }
        Some(n) => {
            for (i, word) in texts.iter().enumerate() {
                embeddings.push(engine.embed_in_context(&texts[i.saturating_sub(n)..i], word)?);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let next_logits = if args.next_logits {
        Some(engine.next_token_logits()?)
    } else {
        None
    };
    let tokens: usize = embeddings.iter().map(|e| e.tokens.len()).sum();
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        words = texts.len(),
        tokens,
        seconds = secs,
        tokens_per_s = tokens as f64 / secs,
        "embedded"
    );

    let all = |f: fn(&TableWord) -> Option<f64>| {
        transcript.words.iter().map(f).collect::<Option<Vec<f64>>>()
    };
    let words: Vec<String> = transcript.words.iter().map(|w| w.text.clone()).collect();
    let pool = match args.pool {
        Pool::Last => "last",
        Pool::Mean => "mean",
    };
    let meta = EmbeddingsMeta {
        model_name: engine.model_name(),
        model_sha256: engine.model_sha256(),
        words: &words,
        onsets: all(|w| w.start),
        offsets: all(|w| w.end),
        layers: &layers,
        pool,
        context_words: args.context,
        next_logits: next_logits.as_deref(),
    };
    write_embeddings(&args.out, &embeddings, &meta)?;
    println!(
        "{} words, {} layers x {} -> {} ({} rows skipped)",
        words.len(),
        layers.len(),
        engine.dim(),
        args.out.display(),
        transcript.skipped.len()
    );
    Ok(())
}

/// `all` or `0,5,10`, checked against the model's layer count.
fn parse_layers(spec: &str, n_layers: usize) -> anyhow::Result<Vec<usize>> {
    if spec.trim() == "all" {
        return Ok((0..n_layers).collect());
    }
    let layers = spec
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .with_context(|| format!("--layers: {s:?} is not a layer number"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(bad) = layers.iter().find(|&&l| l >= n_layers) {
        bail!(
            "--layers: layer {bad} does not exist; the model has layers 0..{}",
            n_layers - 1
        );
    }
    Ok(layers)
}
