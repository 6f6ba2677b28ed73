//! The human rendering: Terraform-like, grouped by address, attribute-level changes.

use std::fmt::Write;

use serde_json::Value;

use crate::domain::escape::{escape, escape_keep_tabs};
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
    render_parts(plan, color, PARALLEL_FROM).concat()
}

/// [`render_human`], written into `w` piece by piece (the CLI writes a large plan to
/// standard output without joining it into one string first). Fails only when `w` does.
pub fn write_human<W: std::io::Write>(plan: &Plan, color: bool, w: &mut W) -> std::io::Result<()> {
    for part in render_parts(plan, color, PARALLEL_FROM) {
        w.write_all(part.as_bytes())?;
    }
    Ok(())
}

/// The text of [`render_human`] in consecutive parts; from `parallel_from` actions on, the
/// actions are sorted and rendered in two halves on two threads (same text).
fn render_parts(plan: &Plan, color: bool, parallel_from: usize) -> Vec<String> {
    let p = Painter(color);
    let parallel = plan.actions.len() >= parallel_from.max(2) && plan.drift.is_empty();
    // About 160 bytes per action and per change: one allocation for a typical plan.
    let changes: usize = plan.actions.iter().map(|a| a.changes.len()).sum();
    let size = 256 + 96 * plan.actions.len() + 64 * changes;
    let mut out = String::with_capacity(if parallel { size / 2 } else { size });
    let mut parts = Vec::with_capacity(3);
    // Issue 14 item 4: a partial plan says so first.
    let targeting = super::targeting_lines(plan, 50);
    if !targeting.is_empty() {
        let _ = writeln!(out, "{}", p.paint(BOLD, &targeting[0]));
        for line in &targeting[1..] {
            let _ = writeln!(out, "  {line}");
        }
        out.push('\n');
    }
    // Issue 14 item 2: drift first, apart from the changes of the file.
    let reverts = plan.drift_reverts();
    if !plan.drift.is_empty() {
        let _ = writeln!(out, "{}\n", p.paint(BOLD, super::DRIFT_HEADING));
        for d in &plan.drift {
            out.push_str("  ");
            out.push_str(&super::drift_line(d));
            out.push('\n');
            let width = d
                .changes
                .iter()
                .map(|c| escape(&c.path).chars().count())
                .max()
                .unwrap_or(0);
            for c in &d.changes {
                render_change(&mut out, &p, c, width);
            }
        }
        out.push('\n');
    }
    let file_actions = reverts.iter().filter(|r| !**r).count();
    if file_actions > 0 {
        let _ = writeln!(
            out,
            "crmctl will perform the following actions on {}:\n",
            escape(&plan.tenant)
        );
        // Group by address; within an address, actions stay in execution order (a stable
        // sort of the execution order by address).
        let by_address = |a: &&Action, b: &&Action| a.address.cmp(&b.address);
        let mut order: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|a| !reverts.get(a.id).copied().unwrap_or(false))
            .collect();
        if !parallel {
            order.sort_by(by_address);
            render_groups(&mut out, &p, &order, true);
        } else {
            // rayon's parallel sort is stable too.
            use rayon::slice::ParallelSliceMut as _;
            order.par_sort_by(by_address);
            // Rendered in two halves split between two addresses.
            let mut mid = order.len() / 2;
            while mid < order.len() && order[mid].address == order[mid - 1].address {
                mid += 1;
            }
            let (left, right) = order.split_at(mid);
            let half = out.capacity();
            let second = std::thread::scope(|scope| {
                let other = scope.spawn(|| {
                    let mut out = String::with_capacity(half);
                    render_groups(&mut out, &Painter(color), right, false);
                    out
                });
                render_groups(&mut out, &p, left, true);
                other.join().expect("rendering does not panic")
            });
            parts.push(std::mem::take(&mut out));
            parts.push(second);
        }
        out.push('\n');
    }
    if file_actions < plan.actions.len() {
        let _ = writeln!(out, "{}\n", p.paint(BOLD, super::REVERT_HEADING));
        let mut order: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|a| reverts.get(a.id).copied().unwrap_or(false))
            .collect();
        order.sort_by(|a, b| a.address.cmp(&b.address));
        render_groups(&mut out, &p, &order, true);
        out.push('\n');
    }
    if !plan.manual.is_empty() {
        let _ = writeln!(out, "{}", p.paint(BOLD, super::MANUAL_HEADING));
        for m in &plan.manual {
            let (what, done) = super::manual_lines(m);
            let _ = writeln!(out, "  {what}\n      {done}");
        }
        out.push('\n');
    }
    // Issue 9 item 2: dropped state entries change the state; they are part of the plan.
    if !plan.forget.is_empty() {
        for f in &plan.forget {
            out.push_str("  ");
            out.push_str(&super::forget_line(f));
            out.push('\n');
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
            .map(|a| format!(" {}:", escape(a)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}{rule}{addr} {}",
            p.paint(code, &format!("{label}:")),
            escape(&d.message)
        );
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "  hint: {}", escape(h));
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
    parts.push(out);
    parts
}

/// From this many actions on, the plan is rendered on two threads.
const PARALLEL_FROM: usize = 20_000;

/// Render `order` (sorted by address) with a header per address; `first` when `order`
/// starts the plan (no blank line before its first header).
fn render_groups(out: &mut String, p: &Painter, order: &[&Action], first: bool) {
    for (i, a) in order.iter().enumerate() {
        if i == 0 || order[i - 1].address != a.address {
            if i > 0 || !first {
                out.push('\n');
            }
            out.push_str("  ");
            if p.0 {
                out.push_str(BOLD);
            }
            out.push_str("# ");
            out.push_str(&escape(&a.address));
            if p.0 {
                out.push_str(RESET);
            }
            out.push('\n');
        }
        render_action(out, p, a);
    }
}

fn render_action(out: &mut String, p: &Painter, a: &Action) {
    let sym = a.kind.symbol();
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
    out.push_str(&escape(&a.reason));
    out.push('\n');
    let width = a
        .changes
        .iter()
        .map(|c| escape(&c.path).chars().count())
        .max()
        .unwrap_or(0);
    for c in &a.changes {
        render_change(out, p, c, width);
    }
}

fn render_change(out: &mut String, p: &Painter, c: &Change, width: usize) {
    let any_multiline = [&c.before, &c.after]
        .iter()
        .any(|v| v.as_str().is_some_and(|s| s.contains('\n')));
    if let (true, Some(b), Some(n)) = (any_multiline, multiline(&c.before), multiline(&c.after)) {
        let _ = writeln!(out, "        {}:", escape(&c.path));
        let diff = similar::TextDiff::from_lines(b, n);
        for line in diff
            .unified_diff()
            .header("before", "after")
            .to_string()
            .lines()
        {
            let line = &*escape_keep_tabs(line);
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
    let path = escape(&c.path);
    out.push_str(&path);
    // `{:width$}`: padded to `width` characters.
    for _ in path.chars().count()..width {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::op::{ActionKind, ObjRef, Op};

    #[test]
    fn two_threads_render_the_same_text_as_one() {
        // Addresses repeat out of execution order (several actions per address), so that
        // the merge must keep ties in order and the split has to move
        // past an address; odd and even counts.
        for n in [2usize, 3, 7, 10, 41] {
            let actions: Vec<Action> = (0..n)
                .map(|i| Action {
                    id: i,
                    kind: ActionKind::AssignLicense,
                    address: format!("users.u{}@x.com", (i * 7 % 11) / 2),
                    depends_on: vec![],
                    destructive: i % 5 == 0,
                    changes: vec![Change {
                        path: "license".into(),
                        before: Value::Null,
                        after: Value::String("professional".into()),
                    }],
                    reason: "why".into(),
                    op: Box::new(Op::RemoveLicense {
                        user: ObjRef {
                            address: format!("users.u{}@x.com", (i * 7 % 11) / 2).into(),
                            id: None,
                        },
                    }),
                })
                .collect();
            let plan = Plan {
                tenant: "t.onmicrosoft.com".into(),
                actions,
                ..Plan::default()
            };
            for color in [false, true] {
                assert_eq!(
                    render_parts(&plan, color, usize::MAX).concat(),
                    render_parts(&plan, color, 2).concat(),
                    "{n} actions"
                );
            }
        }
    }
}
