//! The human rendering: Terraform-like, grouped by address, attribute-level changes.

use std::fmt::Write;

use serde_json::Value;

use crate::plan::{Action, Change, Plan};

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";

fn color_of(symbol: &str) -> &'static str {
    match symbol {
        "+" => "\x1b[32m",
        "~" => "\x1b[33m",
        "-" => "\x1b[31m",
        "-/+" => "\x1b[35m",
        _ => "\x1b[36m",
    }
}

struct Painter(bool);

impl Painter {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("{code}{s}{RESET}")
        } else {
            s.to_string()
        }
    }

    /// Write `s` painted with `code` straight into `out`.
    fn put(&self, out: &mut String, code: &str, s: &str) {
        if self.0 {
            out.push_str(code);
            out.push_str(s);
            out.push_str(RESET);
        } else {
            out.push_str(s);
        }
    }
}

/// The plan for a terminal. `color` adds ANSI colors (the caller decides: TTY, `NO_COLOR`,
/// `--no-color`).
pub fn render_human(plan: &Plan, color: bool) -> String {
    let p = Painter(color);
    // About 160 bytes per action and per change: one allocation for a typical plan.
    let changes: usize = plan.actions.iter().map(|a| a.changes.len()).sum();
    let mut out = String::with_capacity(256 + 96 * plan.actions.len() + 64 * changes);
    if !plan.actions.is_empty() {
        let _ = writeln!(
            out,
            "crmctl will perform the following actions on {}:\n",
            plan.tenant
        );
        // Group by address; within an address, actions stay in execution order (a stable
        // sort of the execution order by address).
        let mut order: Vec<&Action> = plan.actions.iter().collect();
        order.sort_by(|a, b| a.address.cmp(&b.address));
        for (i, a) in order.iter().enumerate() {
            if i == 0 || order[i - 1].address != a.address {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str("  ");
                if p.0 {
                    out.push_str(BOLD);
                }
                out.push_str("# ");
                out.push_str(&a.address);
                if p.0 {
                    out.push_str(RESET);
                }
                out.push('\n');
            }
            render_action(&mut out, &p, a);
        }
        out.push('\n');
    }
    for d in &plan.diagnostics {
        let (label, code) = if d.is_error() {
            ("Error", "\x1b[31m")
        } else {
            ("Warning", "\x1b[33m")
        };
        let rule = d
            .rule
            .as_deref()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        let addr = d
            .address
            .as_deref()
            .map(|a| format!(" {a}:"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}{rule}{addr} {}",
            p.paint(code, &format!("{label}:")),
            d.message
        );
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "  hint: {h}");
        }
    }
    if !plan.diagnostics.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{}",
        p.paint(BOLD, &super::summary_line(&plan.summary))
    );
    out
}

fn render_action(out: &mut String, p: &Painter, a: &Action) {
    let sym = super::symbol(a.kind);
    out.push_str("  ");
    if p.0 {
        out.push_str(color_of(sym));
    }
    for _ in sym.len()..3 {
        out.push(' '); // right-aligned in 3 columns
    }
    out.push_str(sym);
    if p.0 {
        out.push_str(RESET);
    }
    out.push(' ');
    out.push_str(a.kind.as_str());
    let _ = write!(out, " (#{})", a.id);
    if a.destructive {
        out.push_str("  ");
        p.put(out, "\x1b[31m", "! destructive");
    }
    out.push_str("\n        # ");
    out.push_str(&a.reason);
    out.push('\n');
    let width = a.changes.iter().map(|c| c.path.len()).max().unwrap_or(0);
    for c in &a.changes {
        render_change(out, p, c, width);
    }
}

fn render_change(out: &mut String, p: &Painter, c: &Change, width: usize) {
    let any_multiline = [&c.before, &c.after]
        .iter()
        .any(|v| v.as_str().is_some_and(|s| s.contains('\n')));
    if let (true, Some(b), Some(n)) = (any_multiline, multiline(&c.before), multiline(&c.after)) {
        let _ = writeln!(out, "        {}:", c.path);
        let diff = similar::TextDiff::from_lines(b, n);
        for line in diff
            .unified_diff()
            .header("before", "after")
            .to_string()
            .lines()
        {
            let code = match line.chars().next() {
                Some('+') => "\x1b[32m",
                Some('-') => "\x1b[31m",
                _ => "",
            };
            let _ = writeln!(
                out,
                "          {}",
                if code.is_empty() {
                    line.to_string()
                } else {
                    p.paint(code, line)
                }
            );
        }
        return;
    }
    out.push_str("        ");
    out.push_str(&c.path);
    // `{:width$}`: padded to `width` characters.
    for _ in c.path.chars().count()..width {
        out.push(' ');
    }
    out.push_str(" = ");
    match (&c.before, &c.after) {
        (Value::Null, after) => super::write_short_value(out, after),
        (before, Value::Null) => {
            super::write_short_value(out, before);
            out.push_str(" -> (none)");
        }
        (before, after) => {
            super::write_short_value(out, before);
            out.push_str(" -> ");
            super::write_short_value(out, after);
        }
    }
    out.push('\n');
}

/// The text of a string value (absent counts as ""), for a unified diff.
fn multiline(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Null => Some(""),
        _ => None,
    }
}
