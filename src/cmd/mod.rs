//! The commands of odoo-db, one module (or one command group) per command.
//!
//! Each module is readable top to bottom as the steps of its job, and a job never
//! imports another job: what two commands share lives below them (`crate::pg`,
//! `crate::output`, `crate::catalog`, `crate::servers`) or, for the few lines of
//! operator dialogue, in `prompt`. A command group holds commands built on one
//! engine: `recreate` with `restore`, `sandbox` with `demo`, `suspend` with `resume`.

pub(crate) mod adopt;
pub(crate) mod audit;
pub(crate) mod init;
pub(crate) mod list;
pub(crate) mod prompt;
pub(crate) mod provision;
pub(crate) mod recreate;
pub(crate) mod retire;
pub(crate) mod rotate;
pub mod sandbox;
pub(crate) mod serve;
pub(crate) mod suspend;
