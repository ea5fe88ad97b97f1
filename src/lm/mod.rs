//! The language-model engine: per-word, per-layer embeddings with a cached
//! key/value context.
