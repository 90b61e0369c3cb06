mod moto;
mod server;
mod workspace;
