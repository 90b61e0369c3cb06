//! Integration tests of codepilot-testkit, speaking raw HTTP/1.1 to the scripted server.
// Test helpers outside `#[test]` functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
