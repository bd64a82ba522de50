//! The password policy: the arguments of Secrets Manager's `GetRandomPassword`, and the generator
//! that honours them the way `GetRandomPassword` does.
//!
//! The password is generated here, from the operating system's entropy through `rand`'s
//! cryptographically secure generator, instead of calling `GetRandomPassword`: same character
//! sets, same options, one Secrets Manager call and one round trip fewer per rotation (the budget
//! is 12 calls per single-user rotation, and finishSecret spends one confirming that AWSPENDING
//! still logs in).
//!
//! The policy is plain data; reading it from the environment (the variables of AWS's rotation
//! templates) is the Lambda crate's job (`crates/rotate-postgres/src/config.rs`).

use crate::secret::Password;
use rand::seq::{IndexedRandom, SliceRandom};

/// Characters excluded by default: they break connection strings and shell quoting.
pub const DEFAULT_EXCLUDE_CHARACTERS: &str = ":/@\"'\\";
/// The punctuation `GetRandomPassword` draws from (ASCII 33–47, 58–64, 91–96, 123–126).
pub const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
/// Digits.
pub const NUMBERS: &str = "0123456789";
/// Upper-case letters.
pub const UPPERCASE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Lower-case letters.
pub const LOWERCASE: &str = "abcdefghijklmnopqrstuvwxyz";

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

/// A policy no password can satisfy. Names the option at fault, never a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Every character type is excluded.
    #[error("every character type is excluded")]
    NothingIncluded,
    /// `ExcludeCharacters` removes every character of a type that is included and required.
    #[error("the excluded characters remove every {kind} character, but each included type is required (exclude {kind} too, or allow some of them)")]
    TypeEmptied {
        /// `numbers`, `punctuation`, `uppercase` or `lowercase`.
        kind: &'static str,
    },
    /// The length is outside [`PASSWORD_LENGTHS`].
    #[error("length {0} is outside {min}..={max}", min = PASSWORD_LENGTHS.start(), max = PASSWORD_LENGTHS.end())]
    Length(u32),
}

impl PasswordPolicy {
    /// Whether every character type is excluded (no password could be generated).
    pub fn excludes_every_type(&self) -> bool {
        self.exclude_numbers
            && self.exclude_punctuation
            && self.exclude_uppercase
            && self.exclude_lowercase
    }

    /// The character sets the policy draws from: each included type less the excluded
    /// characters, empty sets left out.
    pub fn character_sets(&self) -> Vec<(&'static str, Vec<char>)> {
        [
            ("numbers", NUMBERS, self.exclude_numbers),
            ("punctuation", PUNCTUATION, self.exclude_punctuation),
            ("uppercase", UPPERCASE, self.exclude_uppercase),
            ("lowercase", LOWERCASE, self.exclude_lowercase),
        ]
        .into_iter()
        .filter(|(_, _, excluded)| !excluded)
        .map(|(kind, chars, _)| {
            let set = chars
                .chars()
                .filter(|c| !self.exclude_characters.contains(*c))
                .collect::<Vec<_>>();
            (kind, set)
        })
        .collect()
    }

    /// Whether a password can be generated: a length in range, something included, and, when
    /// each included type is required, none emptied by the excluded characters.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !PASSWORD_LENGTHS.contains(&self.length) {
            return Err(PolicyError::Length(self.length));
        }
        let sets = self.character_sets();
        if let Some((kind, _)) = sets
            .iter()
            .find(|(_, set)| set.is_empty() && self.require_each_included_type)
        {
            return Err(PolicyError::TypeEmptied { kind });
        }
        if sets.iter().all(|(_, set)| set.is_empty()) {
            return Err(PolicyError::NothingIncluded);
        }
        Ok(())
    }

    /// A new random password: `length` characters from the included sets, at least one of each
    /// when `require_each_included_type`, positions shuffled. Drawn from `rand`'s thread-local
    /// generator (ChaCha, seeded and periodically reseeded from the operating system).
    pub fn generate(&self) -> Result<Password, PolicyError> {
        self.validate()?;
        let sets: Vec<Vec<char>> = self
            .character_sets()
            .into_iter()
            .map(|(_, set)| set)
            .filter(|set| !set.is_empty())
            .collect();
        let all: Vec<char> = sets.iter().flatten().copied().collect();
        let mut rng = rand::rng();
        let length = self.length as usize;
        let mut chars: Vec<char> = Vec::with_capacity(length);
        if self.require_each_included_type {
            for set in &sets {
                chars.extend(set.choose(&mut rng));
            }
        }
        while chars.len() < length {
            chars.extend(all.choose(&mut rng));
        }
        chars.shuffle(&mut rng);
        Ok(Password::new(chars.into_iter().collect::<String>()))
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

    #[test]
    fn punctuation_is_getrandompasswords_set() {
        let expected: String = (33u8..=126)
            .map(char::from)
            .filter(|c| c.is_ascii_punctuation())
            .collect();
        assert_eq!(PUNCTUATION, expected);
        assert_eq!(PUNCTUATION.len(), 32);
    }

    #[test]
    fn default_passwords_have_every_type_and_no_excluded_character() {
        let policy = PasswordPolicy::default();
        for _ in 0..200 {
            let password = policy.generate().unwrap();
            let p = password.expose();
            assert_eq!(p.chars().count(), 32);
            assert!(p.chars().any(|c| c.is_ascii_digit()));
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_punctuation()));
            assert!(!p.chars().any(|c| DEFAULT_EXCLUDE_CHARACTERS.contains(c)));
        }
    }

    #[test]
    fn passwords_differ_and_use_the_whole_alphabet() {
        let policy = PasswordPolicy {
            length: 4096,
            ..PasswordPolicy::default()
        };
        let a = policy.generate().unwrap();
        let b = policy.generate().unwrap();
        assert_ne!(a, b);
        let used: std::collections::BTreeSet<char> = a.expose().chars().collect();
        let alphabet: usize = policy.character_sets().iter().map(|(_, s)| s.len()).sum();
        // 4096 draws from 88 characters: every one appears (missing one has odds ~ 88 * e^-46).
        assert_eq!(used.len(), alphabet);
    }

    #[test]
    fn exclusions_are_honoured() {
        let policy = PasswordPolicy {
            length: 64,
            exclude_punctuation: true,
            exclude_uppercase: true,
            exclude_characters: "0123456789abc".into(),
            require_each_included_type: false,
            ..PasswordPolicy::default()
        };
        let p = policy.generate().unwrap();
        assert!(
            p.expose().chars().all(|c| ('d'..='z').contains(&c)),
            "only d-z"
        );
        let four = PasswordPolicy {
            length: 4,
            ..PasswordPolicy::default()
        };
        let p = four.generate().unwrap();
        assert_eq!(p.expose().len(), 4);
        assert!(p.expose().chars().any(|c| c.is_ascii_punctuation()));
    }

    #[test]
    fn impossible_policies_name_the_problem() {
        let emptied = PasswordPolicy {
            exclude_characters: NUMBERS.into(),
            ..PasswordPolicy::default()
        };
        assert_eq!(
            emptied.validate(),
            Err(PolicyError::TypeEmptied { kind: "numbers" })
        );
        let nothing = PasswordPolicy {
            exclude_numbers: true,
            exclude_punctuation: true,
            exclude_uppercase: true,
            exclude_lowercase: true,
            ..PasswordPolicy::default()
        };
        assert_eq!(nothing.generate().err(), Some(PolicyError::NothingIncluded));
        let short = PasswordPolicy {
            length: 3,
            ..PasswordPolicy::default()
        };
        assert_eq!(short.validate(), Err(PolicyError::Length(3)));
    }
}
