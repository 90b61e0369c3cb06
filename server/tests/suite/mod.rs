mod rpc;
mod support;
