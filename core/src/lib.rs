//! CodePilot: an embeddable runtime for autonomous software-engineering agents.
//!
//! A host hands the runtime a task; the runtime asks the model, runs the small program of tool calls the model
//! wrote in a fenced `codepilot` block, feeds the results back, and repeats until the model completes the task,
//! replies, or runs out of steps.
//!
//! ```no_run
//! # async fn demo() -> Result<(), codepilot::Error> {
//! use codepilot::AgentFile;
//! use codepilot::AsyncRuntime;
//!
//! let rt = AsyncRuntime::builder(AgentFile::load("agent.yaml".as_ref())?).build().await?;
//! let outcome = rt.run("make the failing test pass").await?;
//! println!("{outcome:?}");
//! # Ok(()) }
//! ```
//!
//! Hosts follow and steer a run through [`Event`]s ([`AsyncRuntime::on_event`], [`AsyncRuntime::subscribe`]),
//! [`PermissionHandler`] and [`AskUserHandler`], [`AsyncRuntime::send_message`] and [`AsyncRuntime::abort`], and extend
//! it with custom tools ([`FnTool`]).

#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

mod agent;
mod code_index;
pub mod config;
mod context;
mod error;
pub mod events;
mod handlers;
mod instructions;
pub mod mcp;
mod prompt;
mod runtime;
mod state;
mod toolbox;
mod tools;
mod traces;
pub mod trajectory;

pub use agent::RunOptions;
pub use codepilot_llm as llm;
pub use codepilot_protocol as protocol;
pub use codepilot_protocol::CheckpointInfo;
pub use codepilot_protocol::CheckpointKind;
pub use codepilot_protocol::EventEnvelope;
pub use codepilot_protocol::ExcKind;
pub use codepilot_protocol::LimitKind;
pub use codepilot_protocol::LimitScope;
pub use codepilot_protocol::Limits as RunLimits;
pub use codepilot_protocol::Outcome;
pub use codepilot_protocol::ParamSpec;
pub use codepilot_protocol::RewindScope;
pub use codepilot_protocol::RewoundEvent;
pub use codepilot_protocol::Spend;
pub use codepilot_protocol::ToolError;
pub use codepilot_protocol::ToolSpec;
pub use codepilot_sandbox as sandbox;
pub use codepilot_script as script;
pub use codepilot_script::Limits;
pub use codepilot_search as search;
pub use codepilot_store as store;
pub use codepilot_store::StoreConfig;
pub use codepilot_store::pools;
pub use codepilot_telemetry as telemetry;
pub use codepilot_terminal as terminal;
pub use config::AgentFile;
pub use config::BUILTIN_TOOLS;
pub use error::Error;
pub use error::Result;
pub use events::Event;
pub use events::EventStream;
pub use handlers::AskUserHandler;
pub use handlers::BoxFuture;
pub use handlers::PermissionDecision;
pub use handlers::PermissionHandler;
pub use handlers::PermissionRequest;
pub use handlers::elicit;
pub use runtime::AsyncRuntime;
pub use runtime::Runtime;
pub use runtime::RuntimeBuilder;
pub use tools::FnTool;
pub use tools::RegisterError;
pub use tools::Tool;
pub use tools::ToolCall;
pub use tools::ToolOutput;

/// Installs the process-wide TLS crypto provider (ring) that HTTPS clients built on `rustls-no-provider` need;
/// harmless when one is installed already.
pub(crate) fn install_tls_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}
