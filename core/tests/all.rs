//! Integration tests of the `codepilot` runtime, driven by a scripted model over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support code may panic

mod suite;
