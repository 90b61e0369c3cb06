mod limits;
mod resume;
mod rewind;
mod rpc;
mod spend;
mod support;
mod traces;
mod web;
