//! What a backup is about, with no I/O: secrets, their versions and values, which secrets a run
//! covers, and the run settings shared by the function and the CLI.

pub mod filters;
pub mod model;
pub mod settings;
pub mod sources;
