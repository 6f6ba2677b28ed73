//! A compact Markdown summary and table, for a pull-request comment.

use std::fmt::Write;

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
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### crmctl plan for `{}`\n",
        super::escape(&plan.tenant)
    );
    let _ = writeln!(out, "**{}**\n", super::summary_line(&plan.summary));
    if !plan.actions.is_empty() {
        out.push_str("| # | | Action | Address | Changes |\n|---:|:---:|---|---|---|\n");
        for a in plan.actions.iter().take(MAX_ROWS) {
            let bang = if a.destructive { " ⚠️" } else { "" };
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
    if !plan.diagnostics.is_empty() {
        out.push('\n');
        for d in &plan.diagnostics {
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
            let _ = writeln!(out, "> **{sev}**{rule}{addr} {}", cell(&d.message));
        }
    }
    out
}
