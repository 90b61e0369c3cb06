//! The CodePilot protocol: one model answer parsed into an [`Action`], the observation fed back, and the wire
//! contract every host shares ([`Event`], [`EventEnvelope`], [`Outcome`], permission and ask-user requests, tool
//! signatures and errors).
//!
//! Pure code, no I/O, fuzzable. Depends only on `serde`, `serde_json`, `schemars` and `thiserror`, so a client
//! (the Python package, the daemon's clients, a UI) can use these types without the engine.
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
//! While the answer streams in, [`StreamFilter`] decides what the user may see; after execution, [`Feedback`]
//! renders the next user message; [`context_status`], [`ArchiveEntry`] and the markers are how context management
//! reads to the model.
//!
//! Every wire type derives [`schemars::JsonSchema`], so the daemon's schema is generated from these definitions.

#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

mod checkpoint;
mod context;
mod error;
mod event;
mod fence;
mod limits;
mod message;
mod observation;
mod outcome;
mod parse;
mod payload;
mod payload_check;
mod request;
pub mod rpc;
mod stream;
mod subagent;
pub mod sync;
mod tool;
mod trajectory;

pub use context::ArchiveEntry;
pub use context::ArchiveOrigin;
pub use context::Candidate;
pub use context::SUMMARISER_PROMPT;
pub use context::archive_list_text;
pub use context::archived_text;
pub use context::context_status;
pub use context::dropped_tasks_marker;
pub use context::is_maintenance_message;
pub use context::maintenance_message;
pub use context::omitted_steps_marker;
pub use context::percent;
pub use context::reveal_text;
pub use context::summariser_request;
pub use context::task_number;

pub use checkpoint::CheckpointInfo;
pub use checkpoint::CheckpointKind;
pub use checkpoint::RewindScope;
pub use checkpoint::RewoundEvent;
pub use error::ParseError;
pub use error::Result;
pub use event::AbortedEvent;
pub use event::AskUserEvent;
pub use event::ContextDropEvent;
pub use event::ContextDropKind;
pub use event::ContextMaintenanceEvent;
pub use event::ErrorKind;
pub use event::Event;
pub use event::EventEnvelope;
pub use event::EventKind;
pub use event::FinishEvent;
pub use event::FinishReason;
pub use event::MaxStepsEvent;
pub use event::ModelRetryEvent;
pub use event::PermissionRequestEvent;
pub use event::ResourceKind;
pub use event::ResourceLimitEvent;
pub use event::RuntimeErrorEvent;
pub use event::SessionResetEvent;
pub use event::StartEvent;
pub use event::StepEvent;
pub use event::StreamEvent;
pub use event::StreamKind;
pub use event::StreamLine;
pub use event::ToolCallEvent;
pub use event::ToolResultEvent;
pub use event::TurnCompleted;
pub use event::UsageEvent;
pub use event::UserMessageEvent;
pub use event::WorkspaceSavedEvent;
pub use fence::BlockKind;
pub use limits::LimitKind;
pub use limits::LimitScope;
pub use limits::LimitWarningEvent;
pub use limits::Limits;
pub use limits::Spend;
pub use message::Message;
pub use message::Role;
pub use message::Usage;
pub use observation::ABORTED_ENTRY;
pub use observation::BlockEnd;
pub use observation::BlockReport;
pub use observation::CompletionRefusal;
pub use observation::ELIDED_OBSERVATION;
pub use observation::EXECUTION_RESULT_TAG;
pub use observation::ExecutionFailure;
pub use observation::FIX_RULES;
pub use observation::Feedback;
pub use observation::MAX_OBSERVATION_CHARS;
pub use observation::NO_OUTPUT;
pub use observation::Observation;
pub use observation::PermissionRefusal;
pub use observation::cap_observation;
pub use observation::completion_rejected;
pub use observation::environment_change;
pub use observation::execution_error_observation;
pub use observation::human_command_text;
pub use observation::parser_error_observation;
pub use observation::permission_denied_entry;
pub use observation::task_message;
pub use observation::tool_error_entry;
pub use observation::tool_value_entry;
pub use observation::user_message;
pub use outcome::Outcome;
pub use parse::Action;
pub use parse::Block;
pub use parse::ControlBlock;
pub use parse::parse;
pub use parse::visible_text;
pub use payload::Payload;
pub use payload_check::check_payloads;
pub use request::AskUserRequest;
pub use request::AskUserResponse;
pub use request::PermissionDecision;
pub use request::PermissionRequest;
pub use stream::StreamFilter;
pub use subagent::SubagentFinishEvent;
pub use subagent::SubagentMessageEvent;
pub use subagent::SubagentSpawnEvent;
pub use subagent::SubagentStatus;
pub use tool::ExcKind;
pub use tool::ParamSpec;
pub use tool::ToolError;
pub use tool::ToolSpec;
pub use tool::py_literal;
pub use trajectory::TRAJECTORY_FORMAT;
pub use trajectory::TrajectoryEnd;
pub use trajectory::TrajectoryEvent;
pub use trajectory::TrajectoryFile;
pub use trajectory::TrajectoryHeader;
pub use trajectory::TrajectoryLine;
pub use trajectory::TrajectoryMessage;
pub use trajectory::TrajectoryWorkspace;
