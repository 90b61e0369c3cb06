//! Host handlers: permission decisions and answers to the agent's questions.
//!
//! Both are async so a UI can wait for a person. With no handler registered, a gated tool call is denied and
//! `ask_user` fails, each with a message that says why; the library never reads stdin.

pub mod elicit;

use std::future::Future;
use std::pin::Pin;

pub use codepilot_protocol::PermissionDecision;
pub use codepilot_protocol::PermissionRequest;

/// A boxed future, as handlers return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides gated tool calls (tools configured with `require_permission: true`).
pub trait PermissionHandler: Send + Sync {
    /// Decide one request. May wait for a person; the run is cancelled meanwhile only by `abort`.
    fn decide<'a>(&'a self, request: &'a PermissionRequest) -> BoxFuture<'a, PermissionDecision>;

    /// Whether anyone can decide right now. A host whose deciders come and go (a language binding whose users
    /// register callbacks later) says `false` while it has none, and the call is refused as with no handler at
    /// all. Default: `true`.
    fn available(&self) -> bool {
        true
    }
}

impl<F, Fut> PermissionHandler for F
where
    F: Fn(PermissionRequest) -> Fut + Send + Sync,
    Fut: Future<Output = PermissionDecision> + Send + 'static,
{
    fn decide<'a>(&'a self, request: &'a PermissionRequest) -> BoxFuture<'a, PermissionDecision> {
        Box::pin(self(request.clone()))
    }
}

/// Answers `ask_user(question)`.
pub trait AskUserHandler: Send + Sync {
    /// The answer, or `None` if the user gave none.
    fn ask<'a>(&'a self, question: &'a str) -> BoxFuture<'a, Option<String>>;

    /// Whether anyone can answer right now; `false` fails `ask_user` as with no handler at all. Default: `true`.
    fn available(&self) -> bool {
        true
    }

    /// An MCP server's form (`elicitation/create`, `elicitation: ask`): `message` and a flat object `schema`; the
    /// answers as an object, `None` to decline. Default: one [`AskUserHandler::ask`] per field, typed and
    /// defaulted; a host that can show a whole form overrides it.
    fn elicit<'a>(
        &'a self,
        message: &'a str,
        schema: &'a serde_json::Value,
    ) -> BoxFuture<'a, Option<serde_json::Value>> {
        Box::pin(elicit::by_questions(self, message, schema))
    }
}

impl<F, Fut> AskUserHandler for F
where
    F: Fn(String) -> Fut + Send + Sync,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    fn ask<'a>(&'a self, question: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(self(question.to_owned()))
    }
}
