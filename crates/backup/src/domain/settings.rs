//! How a run is sized and where its snapshots go: the defaults and limits, and the parsers that
//! the function's configuration and the CLI's options share.

/// Key prefix of the snapshots when none is configured.
pub const DEFAULT_PREFIX: &str = "secrets-backup";
/// Secrets read (or restored) at the same time when none is configured.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Plaintext size at which a part is sealed and uploaded when none is configured.
pub const DEFAULT_PART_SIZE: usize = 4 * 1024 * 1024;
/// Smallest accepted part size (tests use small parts to get many of them).
pub const MIN_PART_SIZE: usize = 1024;
/// Largest accepted part size: a part is built in memory, so this bounds memory.
pub const MAX_PART_SIZE: usize = 64 * 1024 * 1024;
/// Largest accepted concurrency.
pub const MAX_CONCURRENCY: usize = 64;

/// The entries of a comma-separated list (`a, b,,c`), trimmed, empty ones skipped: the syntax of
/// every list setting (`BACKUP_NAME_PREFIXES`, `BACKUP_TAGS`, `BACKUP_EXPECTED_UNREADABLE`,
/// `--kms-key-map`).
pub fn list_entries(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// The Parameter Store paths of `BACKUP_PARAMETER_PATHS` (`/prod,/staging/api`): each starts
/// with `/`, has no empty segment and no space; a trailing `/` is dropped. The error names the
/// entry at fault.
pub fn parse_parameter_paths(v: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = vec![];
    for entry in list_entries(v) {
        let path = if entry.len() > 1 {
            entry.trim_end_matches('/')
        } else {
            entry
        };
        if !path.starts_with('/') {
            return Err(format!("path {entry:?} does not start with '/'"));
        }
        if path.len() > 1 && path[1..].split('/').any(str::is_empty) {
            return Err(format!("path {entry:?} has an empty segment (`//`)"));
        }
        if path.chars().any(char::is_whitespace) {
            return Err(format!("path {entry:?} contains a space"));
        }
        if path.len() > 2048 {
            return Err(format!("path {entry:?} is longer than 2048 characters"));
        }
        if !out.iter().any(|p| p == path) {
            out.push(path.to_string());
        }
    }
    Ok(out)
}

/// `a/b/` and `/a/b` both become `a/b`.
pub fn normalize_prefix(p: &str) -> String {
    p.trim().trim_matches('/').to_string()
}

/// The number of secrets read (or restored) at the same time: 1 to [`MAX_CONCURRENCY`].
pub fn parse_concurrency(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(format!("{v:?} is not a number from 1 to {MAX_CONCURRENCY}")),
    }
}

/// `1048576`, `512KiB`, `4MiB`, `4MB` (MB taken as MiB).
pub fn parse_part_size(v: &str) -> Result<usize, String> {
    let s = v.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{v:?} is not a size such as 4MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("{v:?}: unknown unit {unit:?} (use B, KiB or MiB)")),
    };
    let size = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{v:?} is too large"))?;
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size) {
        return Err(format!(
            "{v:?} is outside {MIN_PART_SIZE} bytes to {} MiB",
            MAX_PART_SIZE / 1024 / 1024
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_paths_start_with_a_slash_and_name_the_entry_at_fault() {
        assert_eq!(
            parse_parameter_paths(" /prod/, /staging/api ,,/prod").unwrap(),
            vec!["/prod".to_string(), "/staging/api".to_string()]
        );
        assert_eq!(parse_parameter_paths("/").unwrap(), vec!["/".to_string()]);
        assert!(parse_parameter_paths("").unwrap().is_empty());
        let e = parse_parameter_paths("/ok,prod/api").unwrap_err();
        assert!(e.contains("\"prod/api\"") && e.contains("'/'"), "{e}");
        assert!(parse_parameter_paths("/a//b")
            .unwrap_err()
            .contains("empty segment"));
    }

    #[test]
    fn part_sizes() {
        assert_eq!(parse_part_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_part_size("2048"), Ok(2048));
        assert_eq!(parse_part_size("64 KiB"), Ok(64 << 10));
        assert!(parse_part_size("1GiB").is_err());
        assert!(parse_part_size("lots").is_err());
    }
}
