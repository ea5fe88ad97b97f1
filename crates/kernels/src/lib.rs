//! neuralign's hot numeric kernels, in a crate of their own so that the dev profile (the test
//! suite runs the real model in it) builds them at opt-level 3 like the dependencies
//! (`[profile.dev.package.neuralign-kernels]` in the workspace's Cargo.toml).
//!
//! - [`quant`]: products of GGUF Q4_1, Q5_0, Q8_0, Q4_K and Q6_K weight matrices with f32
//!   activations, quantized to 8 bits per block (optionally with their rounding residual)
//!   and multiplied in integer SIMD (AVX2, VNNI and AVX-512BW where present, with a portable
//!   fallback that sums in the same order).
//! - [`attention`]: the key/value cache of a block (f16, preallocated) and causal
//!   grouped-query attention over it.
//! - [`rope`]: rotary position embeddings.
//! - [`norm`]: RMSNorm over rows.
//! - [`pool`]: the persistent worker threads the kernels share.

pub mod attention;
pub mod norm;
pub mod pool;
pub mod quant;
pub mod rope;

/// What a kernel refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// Weights or activations whose size does not match the shape they claim.
    #[error("shape mismatch: {0}")]
    Shape(String),
}
