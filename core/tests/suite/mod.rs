mod support;

mod api;
mod checkpoints;
mod code_search;
mod context;
mod control;
mod files;
mod limits;
mod model;
mod prompt;
mod sessions;
mod step_loop;
mod subagents;
mod terminals;
