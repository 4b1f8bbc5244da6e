//! Integration tests for diffsync, in one binary (link time matters on 2 cores).

mod apply;
mod base_doubt;
mod bidir;
mod chaos;
mod compare;
mod depth;
mod digest;
mod dynamic;
mod feed;
mod flags;
mod fuzz;
mod hooks;
mod journal;
mod keys;
mod laws;
mod layers;
mod live;
mod peer;
mod peer_security;
mod render;
mod seams;
mod store;
mod sync;
mod worked_example;
