//! Integration tests for diffsync, in one binary (link time matters on 2 cores).

mod apply;
mod bidir;
mod chaos;
mod compare;
mod depth;
mod digest;
mod dynamic;
mod flags;
mod laws;
mod render;
mod store;
mod sync;
mod ui;
mod worked_example;
