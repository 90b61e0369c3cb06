//! End-to-end tests of the daemon over real sockets against the scripted model server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
