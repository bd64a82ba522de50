//! The compliance report's formats: a table, CSV, JSON and a self-contained HTML page (inline
//! CSS and an inline SVG chart, no external asset; every value escaped). Metadata only: the
//! report never holds a secret value.

use std::fmt::Write as _;

use backup::operations::report::{Report, SecretRow};
use chrono::{DateTime, Utc};

use crate::render::table;

/// The columns, in the order of the table, the CSV and the HTML page.
pub const COLUMNS: &[&str] = &[
    "secret",
    "in_policy",
    "rotation",
    "schedule",
    "last_rotated",
    "rotation_due",
    "current_version",
    "last_backup",
    "last_backup_snapshot",
    "last_drill",
    "last_drill_snapshot",
    "kms_key",
    "key_state",
    "owning_service",
    "findings",
];

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

fn dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// One row's cells, in [`COLUMNS`] order.
pub fn cells(r: &SecretRow) -> Vec<String> {
    vec![
        r.name.clone(),
        if r.in_policy() { "yes" } else { "no" }.into(),
        if r.rotation_enabled { "on" } else { "off" }.into(),
        dash(r.schedule.as_ref().map(|s| s.text.as_str())),
        time(r.last_rotated),
        time(r.rotation_due),
        dash(r.current_version.as_deref()),
        time(r.last_backup.as_ref().map(|b| b.completed_at)),
        dash(r.last_backup.as_ref().map(|b| b.snapshot_id.as_str())),
        time(r.last_drill.as_ref().map(|d| d.at)),
        dash(r.last_drill.as_ref().map(|d| d.snapshot_id.as_str())),
        r.kms_key.clone(),
        dash(r.key_state.as_deref()),
        dash(r.owning_service.as_deref()),
        r.findings
            .iter()
            .map(|f| f.kind.code())
            .collect::<Vec<_>>()
            .join(" "),
    ]
}

fn header_line(r: &Report) -> String {
    format!(
        "{} secrets in {} / {}: {} in policy, {} out of policy (policy at {}; {} trusted snapshots read from {})",
        r.totals.secrets,
        r.account,
        r.region,
        r.totals.in_policy,
        r.totals.out_of_policy,
        time(Some(r.policy.at)),
        r.snapshots_read,
        r.vault
    )
}

fn notes(r: &Report) -> Vec<String> {
    let mut n: Vec<String> = r
        .snapshots_passed_over
        .iter()
        .map(|p| format!("snapshot passed over: {p}"))
        .collect();
    n.extend(r.drill_notes.iter().map(|d| format!("drill: {d}")));
    if r.drills_read.is_none() {
        n.push("drills not checked (no --drill-log-group)".into());
    }
    n
}

/// The plain-text table, findings detailed below it.
pub fn text(r: &Report) -> String {
    let header: Vec<String> = COLUMNS.iter().map(|c| c.to_uppercase()).collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = r.secrets.iter().map(cells).collect();
    let mut out = format!("{}\n\n", header_line(r));
    out.push_str(&table(&header, &rows));
    let out_of: Vec<&SecretRow> = r.secrets.iter().filter(|s| !s.in_policy()).collect();
    if !out_of.is_empty() {
        out.push_str("\nFindings:\n");
        for s in out_of {
            for f in &s.findings {
                let _ = writeln!(out, "  {}: {}: {}", s.name, f.kind.code(), f.detail);
            }
        }
    }
    for n in notes(r) {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

/// A CSV cell: empty for "none", and a value a spreadsheet would run as a formula (starting
/// with `=`, `+`, `-`, `@`, a tab or a carriage return: a secret name may start with `=`, `+`,
/// `-` or `@`) prefixed with `'`, as OWASP's CSV injection advice says.
fn csv_cell(c: String) -> String {
    if c == "-" {
        return String::new();
    }
    match c.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{c}"),
        _ => c,
    }
}

/// CSV (RFC 4180): a header row of [`COLUMNS`], one row per secret; findings joined by spaces,
/// empty cells for "none".
pub fn csv(r: &Report) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record(COLUMNS)?;
    for s in &r.secrets {
        w.write_record(cells(s).into_iter().map(csv_cell))?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// `s` with the five characters that are markup in HTML text and attribute values escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;font-size:13px}\
th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}tr.out td{background:#fdecea}tr.in td{background:#edf7ed}\
.findings li{margin:2px 0}code{font-size:12px}";

/// A bar chart of in / out of policy and of each finding, as inline SVG.
fn chart(r: &Report) -> String {
    let mut bars: Vec<(String, usize, &str)> = vec![
        ("in policy".into(), r.totals.in_policy, "#2e7d32"),
        ("out of policy".into(), r.totals.out_of_policy, "#c62828"),
    ];
    for c in &r.totals.by_finding {
        bars.push((c.kind.code().to_string(), c.secrets, "#ef6c00"));
    }
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let (label_w, bar_w, row_h) = (230, 300, 24);
    let height = bars.len() * row_h + 10;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{}\" height=\"{height}\" \
         aria-label=\"secrets in and out of policy\">",
        label_w + bar_w + 60
    );
    for (i, (label, n, color)) in bars.iter().enumerate() {
        let y = i * row_h + 5;
        let w = n * bar_w / max;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{w}\" height=\"{}\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"13\">{n}</text>",
            y + 15,
            escape(label),
            row_h - 6,
            label_w + w + 6,
            y + 15
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut out = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(
        out,
        "<title>Secrets compliance report: {} / {}</title><style>{STYLE}</style></head><body>",
        escape(&r.account),
        escape(&r.region)
    );
    let _ = write!(
        out,
        "<h1>Secrets compliance report</h1><p>{}</p>{}",
        escape(&header_line(r)),
        chart(r)
    );
    out.push_str("<table><thead><tr>");
    for c in COLUMNS {
        let _ = write!(out, "<th>{}</th>", escape(c));
    }
    out.push_str("</tr></thead><tbody>\n");
    for s in &r.secrets {
        let class = if s.in_policy() { "in" } else { "out" };
        let _ = write!(
            out,
            "<tr class=\"{class}\" data-secret=\"{}\">",
            escape(&s.name)
        );
        let mut cs = cells(s);
        cs.pop();
        for c in cs {
            let _ = write!(out, "<td>{}</td>", escape(&c));
        }
        out.push_str("<td><ul class=\"findings\">");
        for f in &s.findings {
            let _ = write!(
                out,
                "<li><code>{}</code> {}</li>",
                escape(f.kind.code()),
                escape(&f.detail)
            );
        }
        out.push_str("</ul></td></tr>\n");
    }
    out.push_str("</tbody></table>");
    let n = notes(r);
    if !n.is_empty() {
        out.push_str("<h2>Notes</h2><ul>");
        for n in n {
            let _ = write!(out, "<li>{}</li>", escape(&n));
        }
        out.push_str("</ul>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::{csv_cell, escape};

    #[test]
    fn csv_cells_never_start_a_formula() {
        assert_eq!(csv_cell("=1+2".into()), "'=1+2");
        assert_eq!(csv_cell("@SUM(A1)".into()), "'@SUM(A1)");
        assert_eq!(csv_cell("+x".into()), "'+x");
        assert_eq!(csv_cell("-".into()), "");
        assert_eq!(csv_cell("app/db-1".into()), "app/db-1");
    }

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;"
        );
        assert_eq!(escape("app/db+prod@x=1"), "app/db+prod@x=1");
    }
}
