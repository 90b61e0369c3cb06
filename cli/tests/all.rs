//! End-to-end tests of the `codepilot` binary against a scripted model server over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support code may panic

mod suite;
