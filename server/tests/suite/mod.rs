mod rpc;
mod support;
mod web;
