mod support;

mod demo;
mod run;
mod sessions;
