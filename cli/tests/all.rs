//! End-to-end tests of the `codepilot` binary against a scripted model server over HTTP.
mod suite;
