//! `codepilot._native`: the Rust runtime behind the `codepilot` Python package.
//!
//! The pure-Python half (`python/codepilot/`) keeps the original library's names and call shapes — `Runtime`,
//! `AsyncRuntime`, hooks, decorators, `EventType` — and drives runs through `runtime::RunHandle`; everything else
//! (the agent, tools, terminals, sessions, the event-to-hook mapping and error types) happens here and in the
//! engine. See `bridge` for how a run on the engine's threads reaches hooks on the caller's thread.

mod bridge;
mod convert;
mod errors;
mod events;
mod logging;
mod runtime;

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;

use pyo3::prelude::*;

/// Counts the engine's live heap so a control block's memory cap bounds what the block adds, as in the CLI. It
/// sees only this library's Rust allocations (Python's objects have their own allocator), which is what a block
/// allocates.
#[global_allocator]
static ALLOCATOR: codepilot::script::CountingAllocator = codepilot::script::CountingAllocator;

/// The process that started the engine's threads; a forked child has none.
static ENGINE_PID: AtomicU32 = AtomicU32::new(0);

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    ENGINE_PID.store(std::process::id(), Ordering::Relaxed);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("codepilot-engine");
    pyo3_async_runtimes::tokio::init(builder);
    logging::install();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<runtime::NativeRuntime>()?;
    m.add_class::<runtime::RunHandle>()?;
    m.add_class::<bridge::Reply>()?;
    m.add_function(wrap_pyfunction!(event_types, m)?)?;
    m.add_function(wrap_pyfunction!(event_hooks, m)?)?;
    Ok(())
}

/// The `type` tag of every event the engine emits, read from its event enum.
#[pyfunction]
fn event_types() -> Vec<&'static str> {
    events::event_types().to_vec()
}

/// The Python hooks each engine event reaches, by the event's `type` tag.
#[pyfunction]
fn event_hooks() -> Vec<(&'static str, Vec<&'static str>)> {
    events::EVENT_HOOKS
        .iter()
        .map(|(event, hooks)| (*event, hooks.to_vec()))
        .collect()
}
