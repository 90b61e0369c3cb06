mod support;

mod api;
mod control;
mod files;
mod prompt;
mod step_loop;
mod terminals;
