mod support;

mod attach;
mod crash;
mod demo;
mod run;
mod sessions;
