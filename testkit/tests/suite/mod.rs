mod server;
mod workspace;
