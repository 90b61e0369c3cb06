//! Integration tests of codepilot-store: one behavioural suite run against every backend.
// Test helpers outside `#[test]` functions may unwrap too (clippy's allow-unwrap-in-tests covers only those).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
