mod support;

mod crash;
mod demo;
mod run;
mod sessions;
