//! Latency and throughput benchmarks behind `neuralign bench`, one module per
//! part of the pipeline; each returns its figures as JSON and prints a table.

pub mod dsp;
pub mod lm;
pub mod lsl;
