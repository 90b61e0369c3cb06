//! The `codepilot` binary. Parsing and everything else live in the `codepilot_cli` library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    codepilot_cli::run_main(codepilot_cli::Cli::parse())
}
