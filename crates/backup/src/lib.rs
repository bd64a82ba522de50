//! Encrypted point-in-time snapshots of AWS Secrets Manager secrets.
//!
//! The library is written against small ports (`ports`): one trait per AWS service, implemented
//! over the SDK in `aws` and in memory for the unit tests. The two binaries only wire them:
//! `backup-lambda` (the scheduled function, see `function`) and `secrets-backup` (the CLI).

pub mod aws;
pub mod config;
pub mod crypto;
pub mod diff;
pub mod event;
pub mod format;
pub mod function;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod reader;
pub mod render;
pub mod restore;
pub mod telemetry;
pub mod verify;
pub mod writer;
pub mod zbuf;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;
