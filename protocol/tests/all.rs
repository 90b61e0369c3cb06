//! Integration tests of `codepilot-protocol`, one binary.

mod suite;
