//! The snapshot format and its two ends: where objects live ([`layout`]), the [`manifest`], the
//! encryption of a part ([`crypto`], with the zeroing buffer [`zbuf`]), taking a snapshot
//! ([`writer`]) and signing its manifest ([`signature`]), and reading one back with every
//! integrity check ([`reader`]) once it is trusted ([`trust`]: signature, part list, chain,
//! source).

pub mod checkpoint;
pub mod crypto;
pub mod layout;
pub mod manifest;
pub mod reader;
pub mod signature;
pub mod trust;
pub mod writer;
pub mod zbuf;
