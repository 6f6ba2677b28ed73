//! A compact Markdown summary and table, for a pull-request comment.

use std::fmt::Write;

use crate::diag::Diagnostic;
use crate::plan::Plan;

/// At most this many rows in the table (GitHub comments are limited in size).
const MAX_ROWS: usize = 200;

/// A table cell: control and bidi characters shown as escapes (issue 9 item 6), pipes
/// escaped for the table.
fn cell(s: &str) -> String {
    super::escape(s).replace('|', "\\|")
}

/// The plan as Markdown: a heading, the summary line, a table of actions in execution
/// order (cut after 200 rows) and the diagnostics.
pub fn render_markdown(plan: &Plan) -> String {
    render_markdown_with(plan, &[])
}

/// [`render_markdown`] with the desired file's own diagnostics (its warnings) before the
/// plan's (issue 15 item 2: the pull-request comment shows every problem).
pub fn render_markdown_with(plan: &Plan, file_diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### crmctl plan for `{}`\n",
        super::escape(&plan.tenant)
    );
    let _ = writeln!(out, "**{}**\n", super::summary_line(&plan.summary));
    // Issue 14 item 4: a partial plan says so.
    let targeting = super::targeting_lines(plan, MAX_ROWS);
    if !targeting.is_empty() {
        let _ = writeln!(out, "> {}", cell(&targeting[0]));
        for line in &targeting[1..] {
            let _ = writeln!(out, "> - {}", cell(line));
        }
        out.push('\n');
    }
    // Issue 14 item 2: drift in its own section; actions that only put it back are marked.
    if !plan.drift.is_empty() {
        let _ = writeln!(out, "**{}**\n", super::DRIFT_HEADING);
        for d in plan.drift.iter().take(MAX_ROWS) {
            let changes: Vec<String> = d
                .changes
                .iter()
                .map(|c| {
                    format!(
                        "{}: {} → {}",
                        c.path,
                        super::short_value(&c.before),
                        super::short_value(&c.after)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "- {} {}",
                cell(&super::drift_line(d)),
                cell(&changes.join("; "))
            );
        }
        out.push('\n');
    }
    let reverts = plan.drift_reverts();
    if !plan.actions.is_empty() {
        out.push_str("| # | | Action | Address | Changes |\n|---:|:---:|---|---|---|\n");
        for a in plan.actions.iter().take(MAX_ROWS) {
            let bang = if a.destructive { " ⚠️" } else { "" };
            let bang = if reverts.get(a.id).copied().unwrap_or(false) {
                format!("{bang} (puts back drift)")
            } else {
                bang.to_string()
            };
            let _ = writeln!(
                out,
                "| {} | `{}` | {}{bang} | `{}` | {} |",
                a.id,
                a.kind.symbol(),
                a.kind.as_str(),
                cell(&a.address),
                cell(&super::changes_inline(a))
            );
        }
        if plan.actions.len() > MAX_ROWS {
            let _ = writeln!(
                out,
                "\n… and {} more actions (see `crmctl plan --format json`).",
                plan.actions.len() - MAX_ROWS
            );
        }
        let destructive = plan.actions.iter().filter(|a| a.destructive).count();
        if destructive > 0 {
            let _ = writeln!(
                out,
                "\n⚠️ {destructive} destructive action(s): apply needs `--allow-destroy`."
            );
        }
    }
    if !plan.manual.is_empty() {
        let _ = writeln!(out, "\n**{}**\n", super::MANUAL_HEADING);
        for m in &plan.manual {
            let (what, done) = super::manual_lines(m);
            let _ = writeln!(out, "- {} ({})", cell(&what), cell(&done));
        }
    }
    if !plan.forget.is_empty() {
        // Issue 9 item 2.
        out.push('\n');
        for f in &plan.forget {
            let _ = writeln!(out, "- {}", cell(&super::forget_line(f)));
        }
    }
    if !plan.diagnostics.is_empty() || !file_diagnostics.is_empty() {
        out.push('\n');
        for d in file_diagnostics.iter().chain(&plan.diagnostics) {
            diagnostic_line(&mut out, d);
        }
    }
    out
}

/// A plan that could not be made, for the pull-request comment: a heading, what stopped it,
/// and every diagnostic (issue 15 item 2).
pub fn render_markdown_failure(error: &str, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::from("### crmctl plan failed\n\n");
    let _ = writeln!(out, "**{}**", cell(error));
    if !diagnostics.is_empty() {
        out.push('\n');
        for d in diagnostics {
            diagnostic_line(&mut out, d);
        }
    }
    out
}

/// `> **Error** (RULE) `ADDRESS`: MESSAGE (FILE:LINE:COL; HINT)`.
fn diagnostic_line(out: &mut String, d: &Diagnostic) {
    let sev = if d.is_error() { "Error" } else { "Warning" };
    let rule = d
        .rule
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let addr = d
        .address
        .as_deref()
        .map(|a| format!(" `{}`:", cell(a)))
        .unwrap_or_default();
    let _ = write!(out, "> **{sev}**{rule}{addr} {}", cell(&d.message));
    let mut after = Vec::new();
    if let Some(l) = &d.location {
        after.push(format!("`{}:{}:{}`", cell(&l.file), l.line, l.column));
    }
    if let Some(h) = &d.hint {
        after.push(format!("hint: {}", cell(h)));
    }
    if !after.is_empty() {
        let _ = write!(out, " ({})", after.join("; "));
    }
    out.push('\n');
}
