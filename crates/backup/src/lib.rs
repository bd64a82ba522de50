//! Encrypted point-in-time snapshots of AWS Secrets Manager secrets: the library behind the
//! scheduled `backup-lambda` function (this crate's binary) and the `secrets-backup` CLI (crate
//! `backup-cli`).
//!
//! # Map of components
//!
//! Layers, each a folder; a layer uses only the layers above it in this list.
//!
//! | layer | what lives there |
//! | --- | --- |
//! | [`domain`] | [`domain::model`]: a secret's metadata, labelled versions and (redacted) values, the [`domain::model::SourceKind`] of a record; [`domain::filters`]: which secrets a run covers, name patterns; [`domain::settings`]: defaults, limits and the parsers the function and the CLI share |
//! | [`ports`] | one trait per AWS service ([`ports::SecretsApi`], [`ports::ObjectStore`], [`ports::KeyService`], [`ports::Identity`]), the [`ports::Ports`] bundle, the SDK adapters ([`ports::aws`], one file per service, one SDK-error mapping) and the in-memory fakes (`ports::fakes`, feature `testing`, one file per fake) |
//! | [`snapshot`] | the format: [`snapshot::layout`] (keys), [`snapshot::manifest`], [`snapshot::crypto`] (envelope encryption of a part), [`snapshot::signature`] (the manifest's KMS signature), [`snapshot::zbuf`] (a buffer zeroed on drop), [`snapshot::writer`] (take a snapshot), [`snapshot::reader`] (find snapshots, load a manifest, open a part with every integrity check), [`snapshot::trust`] (signature, part list, chain, source; choosing `latest` / as of) |
//! | [`operations`] | what is done with a snapshot: [`operations::diff`] (snapshot against live), [`operations::verify`], [`operations::restore`] |
//! | [`lambda`] | the function: [`lambda::config`] (environment), [`lambda::event`], [`lambda::function`] (one event in, a typed summary out), [`lambda::summary`] (the serde-derived run summaries), [`lambda::metrics`] (the EMF line) |
//!
//! Tests: the fakes (`ports::fakes`) and fixtures (`testing`) are compiled with the cargo feature
//! `testing`; the whole-library tests are in `tests/library.rs`; the dependency rule (no clap, no
//! anyhow here) is checked with the workspace's others in `tests/architecture.rs`.
//!
//! The CLI (`crates/backup-cli`) uses `ports::aws`, `snapshot` and `operations`, and renders
//! their reports; this crate does not depend on clap or anyhow.
//!
//! # Adding a source (Parameter Store, say)
//!
//! Add a variant to [`domain::model::SourceKind`] (its serde name is what manifests record), an
//! adapter of the port for it beside [`ports::aws`] (and a fake beside the others), and the
//! match arms the compiler then asks for, starting with [`ports::Ports::secrets_of`].

pub mod domain;
pub mod lambda;
pub mod operations;
pub mod ports;
pub mod snapshot;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
