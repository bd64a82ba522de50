//! The report model: each [`Check`] with its [`Status`], what was found and the fix, rendered as
//! text (the CLI) or JSON (the Lambda event's answer).

use rotation::Strategy;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// As needed.
    Pass,
    /// Rotation would fail.
    Fail,
    /// Rotation works, but look.
    Warn,
    /// Not checked: an earlier failure makes it meaningless.
    Skip,
    /// Information only.
    Info,
}

impl Status {
    /// The status's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::Skip => "skip",
            Status::Info => "info",
        }
    }
}

/// One check of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Stable name, e.g. `current-login`.
    pub name: &'static str,
    /// How it ended.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (for fail and warn).
    pub fix: Option<String>,
}

/// The result of a preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The secret's ARN, or the id asked for when it could not be described.
    pub secret: String,
    /// The strategy the secret rotates with, once known.
    pub strategy: Option<Strategy>,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// An empty report for `secret`.
    pub fn new(secret: &str) -> Self {
        Report {
            secret: secret.to_string(),
            strategy: None,
            checks: Vec::new(),
        }
    }

    /// No check failed.
    pub fn passed(&self) -> bool {
        self.count(Status::Fail) == 0
    }

    /// How many checks ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The names of the failed checks.
    pub fn failed_checks(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name)
            .collect()
    }

    /// `{"preflight": {secret, strategy, ok, failed, warnings, checks: [...]}}`.
    pub fn to_json(&self) -> Value {
        json!({
            "preflight": {
                "secret": self.secret,
                "strategy": self.strategy.map(Strategy::describe),
                "ok": self.passed(),
                "failed": self.count(Status::Fail),
                "warnings": self.count(Status::Warn),
                "checks": self.checks.iter().map(|c| {
                    let mut v = json!({"check": c.name, "status": c.status.as_str(), "detail": c.detail});
                    if let Some(fix) = &c.fix {
                        v["fix"] = json!(fix);
                    }
                    v
                }).collect::<Vec<_>>(),
            }
        })
    }

    /// A human-readable report, one check per line, fixes indented below.
    pub fn to_text(&self) -> String {
        let mut out = format!("Preflight of {}", self.secret);
        if let Some(strategy) = self.strategy {
            let _ = write!(out, " ({})", strategy.describe());
        }
        out.push('\n');
        for check in &self.checks {
            let _ = writeln!(
                out,
                "  {:<4}  {:<20} {}",
                check.status.as_str().to_ascii_uppercase(),
                check.name,
                check
                    .detail
                    .replace('\n', "\n                              ")
            );
            if let Some(fix) = &check.fix {
                let _ = writeln!(
                    out,
                    "        {:<20} fix: {}",
                    "",
                    fix.replace('\n', "\n                                   ")
                );
            }
        }
        let failed = self.count(Status::Fail);
        let warnings = self.count(Status::Warn);
        let _ = writeln!(
            out,
            "Result: {} ({failed} of {} checks failed, {warnings} {})",
            if failed == 0 { "OK" } else { "FAIL" },
            self.checks.len(),
            if warnings == 1 { "warning" } else { "warnings" }
        );
        out
    }

    /// Adds a check without a fix.
    pub(crate) fn push(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
            fix: None,
        });
    }

    /// Adds a check with its fix.
    pub(crate) fn push_fix(
        &mut self,
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }

    /// Adds a skipped check.
    pub(crate) fn skip(&mut self, name: &'static str, because: &str) {
        self.push(name, Status::Skip, format!("not checked: {because}"));
    }
}
