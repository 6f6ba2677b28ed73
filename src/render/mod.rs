//! Renderers of a [`Plan`](crate::plan::Plan): human (Terraform-like), JSON, Markdown (for
//! a pull-request comment) and Graphviz DOT. All are pure functions of the same plan value,
//! so the outputs always agree with one another and with what apply executes.

mod dot;

mod human;
mod json;
mod markdown;

use crate::domain::escape::escape;
pub use dot::render_dot;
pub use human::{render_human, write_human};
pub use json::{render_json, write_json, write_json_with, JsonDiag};
pub use markdown::{render_markdown, render_markdown_failure, render_markdown_with};

use crate::plan::{Action, Plan, Summary};

/// The summary line: `Plan: 3 to buy, 5 to create, 2 to change, 1 to delete.` (plus
/// `, N to replace` when resets or copies are planned, `, N to adopt` when existing objects
/// are taken under management, `, N to forget from the state` when state entries of
/// vanished objects are dropped), or `No changes.`.
pub fn summary_line(s: &Summary) -> String {
    if s.buy + s.create + s.change + s.delete + s.replace + s.adopt + s.forget == 0 {
        if s.drift > 0 {
            // Issue 14 item 2: drift alone is not a change of the file.
            return format!(
                "No changes in the file. {} object(s) changed outside crmctl since the last apply.",
                s.drift
            );
        }
        return "No changes.".to_string();
    }
    let mut line = format!(
        "Plan: {} to buy, {} to create, {} to change, {} to delete",
        s.buy, s.create, s.change, s.delete
    );
    if s.replace > 0 {
        line.push_str(&format!(", {} to replace", s.replace));
    }
    if s.adopt > 0 {
        line.push_str(&format!(", {} to adopt", s.adopt));
    }
    if s.forget > 0 {
        line.push_str(&format!(", {} to forget from the state", s.forget));
    }
    line.push('.');
    if s.drift > 0 {
        line.push_str(&format!(
            " {} object(s) changed outside crmctl since the last apply.",
            s.drift
        ));
    }
    line
}

/// The heading of the drift section (issue 14 item 2).
pub(crate) const DRIFT_HEADING: &str = "Changed outside crmctl since the last apply:";
/// The heading of the actions that put drift back.
pub(crate) const REVERT_HEADING: &str =
    "To put back what changed outside crmctl (not a change of the file):";

/// A drift entry's one-line head: `~ users.ana@coho.com changed outside crmctl`.
pub(crate) fn drift_line(d: &crate::plan::drift::Drift) -> String {
    use crate::plan::drift::DriftChange;
    let mut line = match d.change {
        DriftChange::Changed => format!("~ {} changed", escape(&d.address)),
        DriftChange::Deleted => format!("- {} deleted", escape(&d.address)),
    };
    if let Some(by) = &d.by {
        line.push_str(&format!(" by {}", escape(by)));
    }
    if let Some(at) = &d.at {
        line.push_str(&format!(" at {}", escape(at)));
    }
    if d.reverted_by.is_empty() {
        line.push_str(" (the file agrees: apply records it)");
    } else {
        let ids: Vec<String> = d.reverted_by.iter().map(|i| format!("#{i}")).collect();
        line.push_str(&format!(" (put back by {})", ids.join(", ")));
    }
    line
}

/// A JSON value as one short line; long lists are cut to their first 20 items.
pub(crate) fn short_value(v: &serde_json::Value) -> String {
    const MAX_ITEMS: usize = 20;
    match v {
        serde_json::Value::Null => "(none)".to_string(),
        serde_json::Value::Array(items) if items.len() > MAX_ITEMS => {
            let shown: Vec<String> = items[..MAX_ITEMS]
                .iter()
                .map(|i| escape(&i.to_string()).into_owned())
                .collect();
            format!(
                "[{}, ... ({} more)]",
                shown.join(", "),
                items.len() - MAX_ITEMS
            )
        }
        other => escape(&other.to_string()).into_owned(),
    }
}

/// [`short_value`], written into `out`.
pub(crate) fn write_short_value(out: &mut String, v: &serde_json::Value) {
    const MAX_ITEMS: usize = 20;
    match v {
        serde_json::Value::Null => out.push_str("(none)"),
        serde_json::Value::Array(items) if items.len() > MAX_ITEMS => {
            out.push('[');
            for (i, item) in items[..MAX_ITEMS].iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_compact(out, item);
            }
            use std::fmt::Write as _;
            let _ = write!(out, ", ... ({} more)]", items.len() - MAX_ITEMS);
        }
        other => write_compact(out, other),
    }
}

/// `v` as compact JSON (its `Display`), without the formatting machinery for the values
/// a plan is made of: strings that need no escaping and lists of them (a large plan
/// shows about a million).
fn write_compact(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    let plain = |s: &str| {
        !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
            && crate::domain::escape::first_unsafe(s).is_none()
    };
    match v {
        Value::String(s) if plain(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(out, item);
            }
            out.push(']');
        }
        other => {
            // serde_json escapes C0 controls; bidi and C1 characters are escaped here.
            out.push_str(&escape(&other.to_string()));
        }
    }
}

/// The line of a state entry the plan forgets (issue 9 item 2), without a line break:
/// `state: forget users.gus@coho.com (the object no longer exists)`.
pub(crate) fn forget_line(f: &crate::plan::Forget) -> String {
    format!(
        "state: forget {} (the object no longer exists)",
        escape(&f.address)
    )
}

/// The targeting of a partial plan (issue 14 item 4) as lines without line breaks: what
/// was asked, how much of the full plan is left out, which actions came in as
/// dependencies, and what `--exclude` skipped. Empty for a full plan. At most `max` lines
/// of each list.
pub(crate) fn targeting_lines(plan: &Plan, max: usize) -> Vec<String> {
    let Some(t) = &plan.targeting else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let flags = |flag: &str, list: &[String]| {
        list.iter()
            .map(|a| format!("{flag} {}", escape(a)))
            .collect::<Vec<_>>()
    };
    let mut asked = flags("--target", &t.targets);
    asked.extend(flags("--exclude", &t.excludes));
    asked.extend(flags("--replace", &t.replaces));
    out.push(if t.is_partial() {
        format!(
            "Partial plan ({}): {} action(s) of the full plan are left out; plan without them to see everything.",
            asked.join(", "),
            t.left_out + t.excluded.len()
        )
    } else {
        format!("Targeted plan ({}): nothing of the full plan is left out.", asked.join(", "))
    });
    for &id in t.dependencies.iter().take(max) {
        if let Some(a) = plan.actions.get(id) {
            out.push(format!(
                "brought in as a dependency: [{id}] {} {}",
                a.kind.as_str(),
                escape(&a.address)
            ));
        }
    }
    if t.dependencies.len() > max {
        out.push(format!(
            "... and {} more dependencies",
            t.dependencies.len() - max
        ));
    }
    for x in t.excluded.iter().take(max) {
        out.push(match &x.depends_on_excluded {
            Some(on) => format!(
                "skipped: {} {}: depends on excluded {}",
                x.kind.as_str(),
                escape(&x.address),
                escape(on)
            ),
            None => format!(
                "skipped: {} {}: excluded",
                x.kind.as_str(),
                escape(&x.address)
            ),
        });
    }
    if t.excluded.len() > max {
        out.push(format!("... and {} more skipped", t.excluded.len() - max));
    }
    out
}

/// The heading of the manual steps (issue 13 item 4).
pub(crate) const MANUAL_HEADING: &str =
    "Manual steps (no API: a person does them; apply waits for the tenant to show each done, or stops before it):";

/// A manual step in two lines: `[id] address: instructions` and when it counts as done.
pub(crate) fn manual_lines(m: &crate::plan::manual::ManualStep) -> (String, String) {
    (
        format!(
            "[{}] {}: {}",
            m.action,
            escape(&m.address),
            escape(&m.instructions)
        ),
        format!("done when {}", escape(&m.done_when.describe())),
    )
}

/// One-line description of an action's changes (Markdown table cell).
pub(crate) fn changes_inline(a: &Action) -> String {
    a.changes
        .iter()
        .map(|c| {
            format!(
                "{}: {} → {}",
                escape(&c.path),
                short_value(&c.before),
                short_value(&c.after)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn written_values_are_their_short_form() {
        let long: Vec<String> = (0..25).map(|i| format!("u{i}@x.com")).collect();
        for v in [
            json!(null),
            json!("plain"),
            json!("quote \" backslash \\ tab \t newline \n bell \u{7} é ✓"),
            json!(""),
            json!(42),
            json!(-2.5),
            json!(true),
            json!([]),
            json!(["a", "b\"c", 1, null, [2, ["x"]], {"k": "v"}]),
            json!({"a": [1, 2], "b": {"c": null}}),
            json!(long),
            serde_json::Value::Array(vec![json!([1, "2"]); 21]),
        ] {
            let mut out = String::from(">");
            write_short_value(&mut out, &v);
            assert_eq!(out, format!(">{}", short_value(&v)), "{v}");
        }
    }
}
