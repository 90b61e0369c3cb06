mod limits;
mod resume;
mod rewind;
mod rpc;
mod spend;
mod support;
mod web;
