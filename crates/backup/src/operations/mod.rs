//! What is done with a snapshot once written: compare it with the live secrets ([`diff`]),
//! check it ([`verify`]) and bring secrets back ([`restore`]).

pub mod diff;
pub mod restore;
pub mod verify;

/// Progress callback: (parts done, parts total).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);
