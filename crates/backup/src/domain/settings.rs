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
    fn part_sizes() {
        assert_eq!(parse_part_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_part_size("2048"), Ok(2048));
        assert_eq!(parse_part_size("64 KiB"), Ok(64 << 10));
        assert!(parse_part_size("1GiB").is_err());
        assert!(parse_part_size("lots").is_err());
    }
}
