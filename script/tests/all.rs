//! Integration tests for codepilot-script (one binary).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
