//! Integration tests: one test binary, against real PostgreSQL servers that the
//! tests start themselves through `pgsandbox` (see `util.rs`), never mocks.

mod adopt;
mod audit;
mod cli;
mod conn;
mod demo;
mod harness;
mod health;
mod packaging;
mod provision;
mod recreate;
mod restore_safety;
mod ssh;
mod util;
