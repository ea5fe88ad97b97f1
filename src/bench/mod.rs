//! Benchmarks of the pipeline's stages, each returning its figures as JSON and printing a
//! table (`neuralign bench`).
pub mod lsl;
