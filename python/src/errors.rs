//! The runtime's errors as the typed exceptions of `codepilot.errors`, with the CLI's messages.

use codepilot::Error;
use codepilot::store::StoreError;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The `codepilot.errors` class for `error`.
fn class_name(error: &Error) -> &'static str {
    match error {
        Error::Config(_)
        | Error::MissingApiKey { .. }
        | Error::BadEnvironment { .. }
        | Error::WorkDir { .. }
        | Error::OutputSchema(_)
        | Error::Limits(_) => "ConfigError",
        Error::Register(_) => "ToolRegistrationError",
        Error::Provider(_) if error.is_config() => "ConfigError",
        Error::Provider(_) => "ProviderError",
        Error::Store(e) => store_class(e),
        Error::Busy => "SessionBusy",
        Error::LeaseLost(_) => "SessionLost",
        Error::Closed => "RuntimeClosed",
        Error::Terminal(_) => "TerminalError",
        Error::ContextOverflow { .. } => "ContextOverflowError",
        Error::Checkpoint(_) | Error::CheckpointsOff | Error::RewindHalfDone { .. } => {
            "CheckpointError"
        }
        _ => "CodePilotError",
    }
}

fn store_class(error: &StoreError) -> &'static str {
    if error.is_lease_held() {
        "SessionBusy"
    } else if error.is_lease_lost() {
        "SessionLost"
    } else if matches!(error, StoreError::InvalidId { .. } | StoreError::Config(_)) {
        "ConfigError"
    } else {
        "SessionError"
    }
}

/// `name` from `codepilot.errors` raised with `message`.
pub(crate) fn raise(py: Python<'_>, name: &str, message: String) -> PyErr {
    let Ok(class) = py.import("codepilot.errors").and_then(|m| m.getattr(name)) else {
        // The pure-Python half is missing: the native module was imported on its own.
        return PyRuntimeError::new_err(message);
    };
    match class.call1((message,)) {
        Ok(instance) => PyErr::from_value(instance),
        Err(e) => e,
    }
}

/// `error` as its typed Python exception.
pub(crate) fn to_py_err(py: Python<'_>, error: &Error) -> PyErr {
    raise(py, class_name(error), error.to_string())
}
