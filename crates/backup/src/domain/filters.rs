//! Which secrets a run covers (name prefixes and tags), and the name patterns of verify and
//! restore.

use serde::{Deserialize, Serialize};

use crate::domain::model::Tag;
use crate::domain::settings::list_entries;

/// A tag the secret must carry: `key=value`, or just `key` for any value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagFilter {
    /// The tag key.
    pub key: String,
    /// The value it must have; `None`: any value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl TagFilter {
    /// Parses `key=value` or `key`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
            None => (s, None),
        };
        if key.is_empty() {
            return Err(format!("tag filter {s:?} has an empty key"));
        }
        Ok(TagFilter {
            key: key.to_string(),
            value,
        })
    }

    fn matches(&self, tags: &[Tag]) -> bool {
        tags.iter()
            .any(|t| t.key == self.key && self.value.as_ref().is_none_or(|v| *v == t.value))
    }
}

/// Which secrets a run covers: any of the name prefixes (all when none) and every tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filters {
    /// Name prefixes (case-sensitive); a secret matches any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_prefixes: Vec<String>,
    /// Tags; a secret must carry every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagFilter>,
}

impl Filters {
    /// No prefix and no tag: every secret.
    pub fn is_empty(&self) -> bool {
        self.name_prefixes.is_empty() && self.tags.is_empty()
    }

    /// Name prefixes are case-sensitive (Secrets Manager's own `name` filter is not, so the
    /// server-side filter only narrows and this check decides).
    pub fn matches_name(&self, name: &str) -> bool {
        self.name_prefixes.is_empty() || self.name_prefixes.iter().any(|p| name.starts_with(p))
    }

    /// Whether `tags` satisfy every tag filter.
    pub fn matches_tags(&self, tags: &[Tag]) -> bool {
        self.tags.iter().all(|f| f.matches(tags))
    }

    /// Whether a secret with this name and these tags is covered.
    pub fn matches(&self, name: &str, tags: &[Tag]) -> bool {
        self.matches_name(name) && self.matches_tags(tags)
    }
}

/// A secret-name pattern for restore: `*` matches any run of characters; a pattern without `*`
/// is a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    /// A pattern (`*` wildcards, or a prefix).
    pub fn new(p: impl Into<String>) -> Self {
        NamePattern(p.into())
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        if !self.0.contains('*') {
            return name.starts_with(&self.0);
        }
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Classic two-pointer wildcard match with backtracking to the last `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] != b'*' && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Whether `name` matches any of `patterns` (every name matches an empty list).
pub fn matches_any(patterns: &[NamePattern], name: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(name))
}

/// Secrets expected to be unreadable (`BACKUP_EXPECTED_UNREADABLE`): exact secret names, and
/// name prefixes (entries ending in `*`). Their failures are recorded as expected in the
/// manifest and do not make a run incomplete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedUnreadable {
    /// Entries without `*`: the whole name.
    pub names: Vec<String>,
    /// Entries ending in `*`, without it: the start of a name.
    pub prefixes: Vec<String>,
}

impl ExpectedUnreadable {
    /// Parses the comma-separated list; errors say what is wrong with which entry.
    pub fn parse(v: &str) -> Result<Self, String> {
        let mut out = ExpectedUnreadable::default();
        for entry in list_entries(v) {
            match entry.strip_suffix('*') {
                _ if entry.matches('*').count() > 1
                    || entry.trim_end_matches('*').contains('*') =>
                {
                    return Err(format!(
                        "{entry:?}: `*` is allowed only once, at the end (a name prefix)"
                    ))
                }
                Some("") => {
                    return Err(
                        "\"*\" alone would expect every secret to be unreadable: give a prefix \
                         before the `*`"
                            .into(),
                    )
                }
                Some(prefix) => out.prefixes.push(prefix.to_string()),
                None => out.names.push(entry.to_string()),
            }
        }
        Ok(out)
    }

    /// Whether a failure to read `name` is expected.
    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name) || self.prefixes.iter().any(|p| name.starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_prefixes_and_all_tags() {
        let tag = |k: &str, v: &str| Tag {
            key: k.into(),
            value: v.into(),
        };
        let f = Filters {
            name_prefixes: vec!["app/".into(), "db/".into()],
            tags: vec![
                TagFilter::parse("env=prod").unwrap(),
                TagFilter::parse("team").unwrap(),
            ],
        };
        let tags = [tag("env", "prod"), tag("team", "x")];
        assert!(f.matches("app/one", &tags));
        assert!(!f.matches("App/one", &tags), "prefixes are case-sensitive");
        assert!(!f.matches("web/one", &tags));
        assert!(!f.matches("db/one", &[tag("env", "prod")]));
        assert!(!f.matches("db/one", &[tag("env", "dev"), tag("team", "x")]));
        assert!(Filters::default().matches("anything", &[]));
    }

    #[test]
    fn name_patterns() {
        assert!(NamePattern::new("app/").matches("app/db"));
        assert!(!NamePattern::new("app/").matches("xapp/db"));
        assert!(NamePattern::new("*/db-?").matches("app/db-?"));
        assert!(NamePattern::new("app/*-1").matches("app/x-y-1"));
        assert!(!NamePattern::new("app/*-1").matches("app/x-y-12"));
        assert!(NamePattern::new("*").matches(""));
    }
}
