//! Benchmarks behind `neuralign bench`: each target measures its stage and
//! returns a JSON report after printing a table.
pub mod lm;
