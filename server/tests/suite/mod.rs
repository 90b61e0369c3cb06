mod limits;
mod resume;
mod rewind;
mod rpc;
mod support;
mod web;
