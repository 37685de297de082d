//! Integration tests: one test binary, against real PostgreSQL servers that the
//! tests start themselves through `pgsandbox` (see `util.rs`), never mocks.

// Cargo hands the test binary every dependency of the package, most of which only the
// library uses; the library's own build is where `unused_crate_dependencies` is checked.
#![allow(unused_crate_dependencies)]

mod adopt;
mod audit;
mod cli;
mod conn;
mod demo;
mod harness;
mod health;
mod health_beyond;
mod lifecycle;
mod packaging;
mod provision;
mod recreate;
mod refresh;
mod restore_safety;
mod serve;
mod ssh;
mod util;
