mod agent;
mod helpers;
mod lifecycle;
mod multiplexer;
mod sandboxed;
