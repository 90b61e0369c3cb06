mod support;

mod attach;
mod crash;
mod demo;
mod docs;
mod failures;
mod hardening;
mod hosted;
mod limits;
mod mcp;
mod output;
mod rewind;
mod run;
mod sandbox;
mod serve;
mod sessions;
mod spend;
