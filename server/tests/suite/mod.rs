mod limits;
mod resume;
mod rpc;
mod support;
mod web;
