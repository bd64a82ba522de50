//! What a deployment decides about every secret: the password policy, a forced strategy and the
//! shared-owner default. Read from the environment by the Lambda crate; the rotator and the
//! preflight take it as it is.

use crate::policy::PasswordPolicy;
use crate::secret::{FieldError, SecretJson};

/// How a secret's password is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The user changes its own password.
    SingleUser,
    /// A master secret maintains `user` and `user_clone`; each rotation switches between them.
    AlternatingUsers,
}

impl Strategy {
    /// `masterarn` present → alternating users, else single user.
    pub fn for_secret(secret: &SecretJson) -> Result<Strategy, FieldError> {
        Ok(match secret.master_arn()? {
            Some(_) => Strategy::AlternatingUsers,
            None => Strategy::SingleUser,
        })
    }

    /// The strategy a name stands for (`single`, `alternating` and their spellings), any case.
    pub fn from_name(name: &str) -> Option<Strategy> {
        match name.trim().to_ascii_lowercase().as_str() {
            "single" | "single-user" | "single_user" => Some(Strategy::SingleUser),
            "alternating" | "alternating-users" | "alternating_users" | "multi" | "multi-user" => {
                Some(Strategy::AlternatingUsers)
            }
            _ => None,
        }
    }

    /// The strategy's stable name in metrics and events: `single_user` or `alternating_users`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::SingleUser => "single_user",
            Strategy::AlternatingUsers => "alternating_users",
        }
    }

    /// The strategy in words, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Strategy::SingleUser => "single user",
            Strategy::AlternatingUsers => "alternating users",
        }
    }
}

/// The deployment's choices that apply to every secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationSettings {
    /// The password policy (`GetRandomPassword`'s options).
    pub policy: PasswordPolicy,
    /// Forces one strategy for every secret (`None`: `masterarn` decides).
    pub strategy_override: Option<Strategy>,
    /// The shared-owner opt-in for alternating-users secrets that do not say.
    pub shared_owner_default: bool,
}

impl RotationSettings {
    /// The strategy for a secret: the override, else `masterarn` decides.
    pub fn strategy_for(&self, secret: &SecretJson) -> Result<Strategy, FieldError> {
        match self.strategy_override {
            Some(strategy) => Ok(strategy),
            None => Strategy::for_secret(secret),
        }
    }

    /// Whether the shared-owner opt-in applies to `secret` (its field, else the default).
    pub fn shared_owner_for(&self, secret: &SecretJson) -> Result<bool, FieldError> {
        Ok(secret.shared_owner()?.unwrap_or(self.shared_owner_default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names() {
        for name in ["single", "Single-User", " single_user "] {
            assert_eq!(Strategy::from_name(name), Some(Strategy::SingleUser));
        }
        for name in ["alternating", "ALTERNATING-USERS", "multi", "multi-user"] {
            assert_eq!(Strategy::from_name(name), Some(Strategy::AlternatingUsers));
        }
        assert_eq!(Strategy::from_name("both"), None);
    }
}
