//! The human rendering: Terraform-like, grouped by address, attribute-level changes.

use std::collections::BTreeMap;
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
}

/// The plan for a terminal. `color` adds ANSI colors (the caller decides: TTY, `NO_COLOR`,
/// `--no-color`).
pub fn render_human(plan: &Plan, color: bool) -> String {
    let p = Painter(color);
    let mut out = String::new();
    if !plan.actions.is_empty() {
        let _ = writeln!(
            out,
            "crmctl will perform the following actions on {}:\n",
            plan.tenant
        );
        // Group by address; within an address, actions stay in execution order.
        let mut groups: BTreeMap<&str, Vec<&Action>> = BTreeMap::new();
        for a in &plan.actions {
            groups.entry(&a.address).or_default().push(a);
        }
        for (address, actions) in groups {
            let _ = writeln!(out, "  {}", p.paint(BOLD, &format!("# {address}")));
            for a in actions {
                render_action(&mut out, &p, a);
            }
            out.push('\n');
        }
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
    let bang = if a.destructive {
        format!("  {}", p.paint("\x1b[31m", "! destructive"))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  {} {} (#{}){bang}",
        p.paint(color_of(sym), &format!("{sym:>3}")),
        a.kind.as_str(),
        a.id
    );
    let _ = writeln!(out, "        # {}", a.reason);
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
    let line = match (&c.before, &c.after) {
        (Value::Null, after) => format!("{:width$} = {}", c.path, super::short_value(after)),
        (before, Value::Null) => format!(
            "{:width$} = {} -> (none)",
            c.path,
            super::short_value(before)
        ),
        (before, after) => format!(
            "{:width$} = {} -> {}",
            c.path,
            super::short_value(before),
            super::short_value(after)
        ),
    };
    let _ = writeln!(out, "        {line}");
}

/// The text of a string value (absent counts as ""), for a unified diff.
fn multiline(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Null => Some(""),
        _ => None,
    }
}
