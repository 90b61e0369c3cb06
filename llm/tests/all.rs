//! Integration tests of codepilot-llm against the scripted model server.
// Test helpers outside `#[test]` functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
