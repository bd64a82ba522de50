//! The scheduled function, independent of the Lambda runtime (the binary `backup-lambda` only
//! wires it): configuration from the environment, the event, the handler, its typed summaries
//! and their metrics line.

pub mod config;
pub mod event;
pub mod function;
pub mod lease;
pub mod metrics;
pub mod summary;
