//! Password policy, read from the same environment variables as AWS's rotation templates.

/// Characters excluded by default: they break connection strings and shell quoting.
pub const DEFAULT_EXCLUDE_CHARACTERS: &str = ":/@\"'\\";
/// Default password length.
pub const DEFAULT_PASSWORD_LENGTH: u32 = 32;

/// The arguments of Secrets Manager's `GetRandomPassword`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub length: u32,
    pub exclude_characters: String,
    pub exclude_numbers: bool,
    pub exclude_punctuation: bool,
    pub exclude_uppercase: bool,
    pub exclude_lowercase: bool,
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

/// A configuration value that cannot be used; names the variable, shows the (non-secret) value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {expected}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Parses a boolean the way the templates do (`true`, `1`, `y`, `yes`, any case), and also accepts
/// the matching false words; anything else is an error rather than a silent `false`.
pub fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "y" | "yes" => Ok(true),
        "false" | "0" | "n" | "no" | "" => Ok(false),
        _ => Err(ConfigError {
            name,
            value: value.to_string(),
            expected: "expected true/1/y/yes or false/0/n/no",
        }),
    }
}

impl PasswordPolicy {
    /// Reads the policy from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the policy through `lookup` (a variable that is unset yields `None`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut policy = PasswordPolicy::default();
        if let Some(chars) = lookup("EXCLUDE_CHARACTERS") {
            policy.exclude_characters = chars;
        }
        if let Some(length) = lookup("PASSWORD_LENGTH") {
            policy.length = match length.trim().parse::<u32>() {
                Ok(n) if (4..=4096).contains(&n) => n,
                _ => {
                    return Err(ConfigError {
                        name: "PASSWORD_LENGTH",
                        value: length,
                        expected: "expected a whole number from 4 to 4096",
                    })
                }
            };
        }
        let flags: [(&'static str, &mut bool); 5] = [
            ("EXCLUDE_NUMBERS", &mut policy.exclude_numbers),
            ("EXCLUDE_PUNCTUATION", &mut policy.exclude_punctuation),
            ("EXCLUDE_UPPERCASE", &mut policy.exclude_uppercase),
            ("EXCLUDE_LOWERCASE", &mut policy.exclude_lowercase),
            (
                "REQUIRE_EACH_INCLUDED_TYPE",
                &mut policy.require_each_included_type,
            ),
        ];
        for (name, slot) in flags {
            if let Some(value) = lookup(name) {
                *slot = parse_bool(name, &value)?;
            }
        }
        if policy.exclude_numbers
            && policy.exclude_punctuation
            && policy.exclude_uppercase
            && policy.exclude_lowercase
        {
            return Err(ConfigError {
                name: "EXCLUDE_LOWERCASE",
                value: "true".into(),
                expected: "at least one character type must stay included",
            });
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn policy(vars: &[(&str, &str)]) -> Result<PasswordPolicy, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PasswordPolicy::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_templates() {
        let p = policy(&[]).unwrap();
        assert_eq!(p.length, 32);
        assert_eq!(p.exclude_characters, ":/@\"'\\");
        assert!(!p.exclude_numbers);
        assert!(!p.exclude_punctuation);
        assert!(!p.exclude_uppercase);
        assert!(!p.exclude_lowercase);
        assert!(p.require_each_included_type);
    }

    #[test]
    fn each_variable_is_read() {
        let p = policy(&[
            ("EXCLUDE_CHARACTERS", "abc"),
            ("PASSWORD_LENGTH", "64"),
            ("EXCLUDE_NUMBERS", "true"),
            ("EXCLUDE_PUNCTUATION", "1"),
            ("EXCLUDE_UPPERCASE", "Y"),
            ("EXCLUDE_LOWERCASE", "no"),
            ("REQUIRE_EACH_INCLUDED_TYPE", "FALSE"),
        ])
        .unwrap();
        assert_eq!(
            p,
            PasswordPolicy {
                length: 64,
                exclude_characters: "abc".into(),
                exclude_numbers: true,
                exclude_punctuation: true,
                exclude_uppercase: true,
                exclude_lowercase: false,
                require_each_included_type: false,
            }
        );
        // An empty exclusion list is allowed and means "exclude nothing".
        assert_eq!(
            policy(&[("EXCLUDE_CHARACTERS", "")])
                .unwrap()
                .exclude_characters,
            ""
        );
    }

    #[test]
    fn booleans_accept_the_template_words() {
        for yes in ["true", "TRUE", "1", "y", "Yes", " yes "] {
            assert!(parse_bool("X", yes).unwrap(), "{yes}");
        }
        for no in ["false", "0", "n", "NO", ""] {
            assert!(!parse_bool("X", no).unwrap(), "{no}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = policy(&[("EXCLUDE_NUMBERS", "sometimes")]).unwrap_err();
        assert_eq!(err.name, "EXCLUDE_NUMBERS");
        assert!(err.to_string().contains("EXCLUDE_NUMBERS"));
        for bad in ["3", "4097", "abc", "-5", ""] {
            assert_eq!(
                policy(&[("PASSWORD_LENGTH", bad)]).unwrap_err().name,
                "PASSWORD_LENGTH"
            );
        }
        assert!(policy(&[
            ("EXCLUDE_NUMBERS", "1"),
            ("EXCLUDE_PUNCTUATION", "1"),
            ("EXCLUDE_UPPERCASE", "1"),
            ("EXCLUDE_LOWERCASE", "1"),
        ])
        .is_err());
    }
}
