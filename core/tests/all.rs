//! Integration tests of the `codepilot` runtime, driven by a scripted model over real HTTP.
mod suite;
