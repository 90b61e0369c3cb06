//! Integration tests of codepilot-search: fixture repos in each language with known answers, updates, the store,
//! embeddings against the scripted endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
