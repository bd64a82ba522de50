//! The gate: the templates' checks every step runs first, in their order.

use crate::error::ErrorKind;
use crate::rotator::Outcome;
use crate::store::{SecretMetadata, AWSCURRENT, AWSPENDING};

/// Checks rotation is enabled and `token` is the AWSPENDING version. `Ok(Some(_))` means: stop
/// here with success (the token is already AWSCURRENT); `Ok(None)`: run the step.
pub fn gate(meta: &SecretMetadata, token: &str) -> Result<Option<Outcome>, ErrorKind> {
    if meta.rotation_enabled == Some(false) {
        return Err(ErrorKind::NotEnabled);
    }
    if meta.stages_of(token).is_none() {
        return Err(ErrorKind::TokenNotAVersion {
            token: token.to_string(),
        });
    }
    if meta.has_stage(token, AWSCURRENT) {
        return Ok(Some(Outcome::AlreadyCurrent));
    }
    if !meta.has_stage(token, AWSPENDING) {
        return Err(ErrorKind::TokenNotPending {
            token: token.to_string(),
        });
    }
    Ok(None)
}
