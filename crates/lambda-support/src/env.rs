//! Configuration from the environment: the rules both functions follow.
//!
//! A variable that is unset or blank means "use the default"; a value that cannot be used is an
//! error naming the variable, never silently the default.

/// A configuration value that cannot be used: names the variable and says what was expected.
/// The value itself is shown only when it is not secret (every variable read here is not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or blank.
    #[error("environment variable {name} is required")]
    Missing {
        /// The variable.
        name: &'static str,
    },
    /// A variable's value cannot be used.
    #[error("environment variable {name}={value:?} is invalid: {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value as given.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
}

impl ConfigError {
    /// `name` is required and unset.
    pub fn missing(name: &'static str) -> Self {
        ConfigError::Missing { name }
    }

    /// `name` has a value that cannot be used; `expected` says what would be.
    pub fn invalid(
        name: &'static str,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            name,
            value: value.into(),
            expected: expected.into(),
        }
    }

    /// The variable at fault.
    pub fn name(&self) -> &'static str {
        match self {
            ConfigError::Missing { name } | ConfigError::Invalid { name, .. } => name,
        }
    }
}

/// Parses a boolean the way AWS's templates do (`true`, `1`, `y`, `yes`, any case), and also
/// accepts the matching false words (and blank, meaning false); anything else is an error rather
/// than a silent `false`. Every boolean variable of both functions goes through here.
pub fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "y" | "yes" => Ok(true),
        "false" | "0" | "n" | "no" | "" => Ok(false),
        _ => Err(ConfigError::invalid(
            name,
            value,
            "expected true/1/y/yes or false/0/n/no",
        )),
    }
}

/// A variable's value, trimmed, or `None` when it is unset or blank.
pub fn non_empty(lookup: impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_strict() {
        for yes in ["true", "TRUE", "1", "y", "Yes", " yes "] {
            assert!(parse_bool("X", yes).unwrap(), "{yes}");
        }
        for no in ["false", "0", "n", "No", ""] {
            assert!(!parse_bool("X", no).unwrap(), "{no}");
        }
        let err = parse_bool("EXCLUDE_NUMBERS", "sometimes").unwrap_err();
        assert_eq!(err.name(), "EXCLUDE_NUMBERS");
        assert!(
            err.to_string().contains("EXCLUDE_NUMBERS=\"sometimes\""),
            "{err}"
        );
    }

    #[test]
    fn blank_is_unset() {
        let lookup = |k: &str| match k {
            "A" => Some("  x ".to_string()),
            "B" => Some("   ".to_string()),
            _ => None,
        };
        assert_eq!(non_empty(lookup, "A").as_deref(), Some("x"));
        assert_eq!(non_empty(lookup, "B"), None);
        assert_eq!(non_empty(lookup, "C"), None);
        assert_eq!(
            ConfigError::missing("BACKUP_BUCKET").to_string(),
            "environment variable BACKUP_BUCKET is required"
        );
    }
}
