//! The CodePilot protocol: one model answer parsed into an [`Action`], and the observation fed back.
//!
//! Pure code, no I/O, fuzzable. Depends only on `serde`, `serde_json` and `thiserror`.
//!
//! A model answer is prose for the user plus CommonMark fenced blocks (SPEC §4):
//! - one ```` ```codepilot ```` **control block** whose code runs;
//! - after it, **payload blocks** whose info string carries `filename=PATH`, consumed in order by `write_file`;
//! - an optional ```` ```completion ```` block, the task summary;
//! - any other block is display only.
//!
//! ```
//! use codepilot_protocol::parse;
//!
//! let answer = "Creating it.\n```codepilot\nwrite_file('hello.txt')\n```\n```text filename=hello.txt\nhi\n```\n";
//! let action = parse(answer)?;
//! assert_eq!(action.text, "Creating it.\n");
//! assert_eq!(action.control.as_ref().map(|c| c.code.as_str()), Some("write_file('hello.txt')\n"));
//! assert_eq!(action.payloads[0].content, "hi\n");
//! // The history keeps a marker instead of the payload body.
//! assert!(action.compacted(answer).contains("[payload for 'hello.txt' — 1 line"));
//! # Ok::<(), codepilot_protocol::ParseError>(())
//! ```
//!
//! While the answer streams in, [`StreamFilter`] decides what the user may see; after execution,
//! [`Observation`] and the `*_observation` functions build the next user message.

#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

mod error;
mod fence;
mod message;
mod observation;
mod parse;
mod payload_check;
mod stream;

pub use error::ParseError;
pub use error::Result;
pub use fence::BlockKind;
pub use message::Message;
pub use message::Role;
pub use message::Usage;
pub use observation::EXECUTION_RESULT_TAG;
pub use observation::ExecutionFailure;
pub use observation::FIX_RULES;
pub use observation::NO_OUTPUT;
pub use observation::Observation;
pub use observation::completion_rejected;
pub use observation::environment_change;
pub use observation::execution_error_observation;
pub use observation::parser_error_observation;
pub use observation::task_message;
pub use observation::user_message;
pub use parse::Action;
pub use parse::Block;
pub use parse::ControlBlock;
pub use parse::Payload;
pub use parse::parse;
pub use parse::visible_text;
pub use payload_check::check_payloads;
pub use stream::StreamFilter;
