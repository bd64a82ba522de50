//! What is done with a snapshot once written: compare it with the live secrets ([`diff`]),
//! check it ([`verify`]) and bring secrets back ([`restore`], which flags a resource policy
//! that widens access: [`policy`]).

pub mod diff;
pub mod policy;
pub mod report;
pub mod restore;
pub mod verify;

/// Progress callback: (parts done, parts total).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);
