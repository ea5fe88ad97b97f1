//! The transcript contract (`docs/transcript.md`): what a speech recogniser or a stimulus
//! player sends on the transcript stream, one JSON object (or a bare string) per LSL sample.
//!
//! - [`message`]: the typed message ([`TranscriptEvent`], serde) that every writer serialises
//!   and [`parse_message`] reads, with each rejection counted by its [`RejectReason`];
//! - [`state`]: [`TranscriptState`], which applies events in arrival order and tells the
//!   language model what to do ([`LmAction`]).
pub mod message;
pub mod state;

pub use message::{
    parse_message, RejectReason, Rejection, TranscriptEvent, Word, BARE_WORD_ID_BASE,
};
pub use state::{LmAction, TranscriptCounts, TranscriptState, CLOCK_JITTER_S};
