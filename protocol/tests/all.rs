//! Integration tests of `codepilot-protocol`, one binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support code may panic

mod suite;
