//! Simulated input, for trying and testing neuralign without a patient:
//! - [`session`]: a synthetic session written as XDF (neural, transcript and ground truth),
//!   what `neuralign simulate` and `demo` write and the tests recover;
//! - [`dashboard`]: frames published straight into the hub (`neuralign serve --synthetic`),
//!   to exercise clients and the dashboard without LSL streams or a model.
//!
//! Both score with the live pipeline's own statistics ([`crate::align`]).
pub mod dashboard;
pub mod session;
