mod agent;
mod helpers;
mod lifecycle;
mod multiplexer;
