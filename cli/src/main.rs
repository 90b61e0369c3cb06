//! The `codepilot` binary. Parsing and everything else live in the `codepilot_cli` library.

use std::process::ExitCode;

use clap::Parser;

/// Counts live heap bytes, so a control block's memory cap (256 MiB by default) bounds what it holds at once, not
/// only single allocations: a block over its cap gets `MemoryError`, and the process carries on.
#[global_allocator]
static ALLOCATOR: codepilot_cli::CountingAllocator = codepilot_cli::CountingAllocator;

fn main() -> ExitCode {
    codepilot_cli::run_main(codepilot_cli::Cli::parse())
}
