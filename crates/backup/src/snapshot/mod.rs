//! The snapshot format and its two ends: where objects live ([`layout`]), the [`manifest`], the
//! encryption of a part ([`crypto`], with the zeroing buffer [`zbuf`]), taking a snapshot
//! ([`writer`]) and reading one back with every integrity check ([`reader`]).

pub mod crypto;
pub mod layout;
pub mod manifest;
pub mod reader;
pub mod writer;
pub mod zbuf;
