//! The password policy: the arguments of Secrets Manager's `GetRandomPassword`.
//!
//! The policy is plain data; reading it from the environment (the variables of AWS's rotation
//! templates) is the Lambda crate's job (`crates/rotate-postgres/src/config.rs`).

/// Characters excluded by default: they break connection strings and shell quoting.
pub const DEFAULT_EXCLUDE_CHARACTERS: &str = ":/@\"'\\";
/// Default password length.
pub const DEFAULT_PASSWORD_LENGTH: u32 = 32;
/// The password lengths a policy may ask for.
pub const PASSWORD_LENGTHS: std::ops::RangeInclusive<u32> = 4..=4096;

/// The arguments of Secrets Manager's `GetRandomPassword`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// `PasswordLength`.
    pub length: u32,
    /// `ExcludeCharacters`.
    pub exclude_characters: String,
    /// `ExcludeNumbers`.
    pub exclude_numbers: bool,
    /// `ExcludePunctuation`.
    pub exclude_punctuation: bool,
    /// `ExcludeUppercase`.
    pub exclude_uppercase: bool,
    /// `ExcludeLowercase`.
    pub exclude_lowercase: bool,
    /// `RequireEachIncludedType`.
    pub require_each_included_type: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            length: DEFAULT_PASSWORD_LENGTH,
            exclude_characters: DEFAULT_EXCLUDE_CHARACTERS.to_string(),
            exclude_numbers: false,
            exclude_punctuation: false,
            exclude_uppercase: false,
            exclude_lowercase: false,
            require_each_included_type: true,
        }
    }
}

impl PasswordPolicy {
    /// Whether every character type is excluded (no password could be generated).
    pub fn excludes_every_type(&self) -> bool {
        self.exclude_numbers
            && self.exclude_punctuation
            && self.exclude_uppercase
            && self.exclude_lowercase
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_templates() {
        let p = PasswordPolicy::default();
        assert_eq!(p.length, 32);
        assert_eq!(p.exclude_characters, ":/@\"'\\");
        assert!(!p.exclude_numbers);
        assert!(!p.exclude_punctuation);
        assert!(!p.exclude_uppercase);
        assert!(!p.exclude_lowercase);
        assert!(p.require_each_included_type);
        assert!(!p.excludes_every_type());
    }
}
