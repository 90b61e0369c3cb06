mod support;

mod attach;
mod crash;
mod demo;
mod output;
mod run;
mod sessions;
