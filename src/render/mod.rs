//! Renderers of a [`Plan`](crate::plan::Plan): human (Terraform-like), JSON, Markdown (for
//! a pull-request comment) and Graphviz DOT. All are pure functions of the same plan value,
//! so the outputs always agree with one another and with what apply executes.

mod dot;
mod human;
mod json;
mod markdown;

pub use dot::render_dot;
pub use human::{render_human, write_human};
pub use json::{render_json, write_json};
pub use markdown::render_markdown;

use crate::plan::{Action, ActionKind, Summary};

/// The symbol of an action in human and Markdown output: `$` purchase, `+` create or adopt,
/// `~` change, `-` delete, `-/+` replace (reset, copy).
pub fn symbol(kind: ActionKind) -> &'static str {
    use ActionKind as K;
    match kind {
        K::PurchaseLicenses | K::PurchaseStorage | K::PurchaseInstance => "$",
        K::CreateGroup | K::CreateUser | K::ConfigureInstance | K::Adopt => "+",
        K::DeleteGroup | K::DeleteUser | K::DeleteInstance => "-",
        K::ResetInstance | K::CopyInstance => "-/+",
        _ => "~",
    }
}

/// The summary line: `Plan: 3 to buy, 5 to create, 2 to change, 1 to delete.` (plus
/// `, N to replace` when resets or copies are planned, `, N to adopt` when existing objects
/// are taken under management), or `No changes.`.
pub fn summary_line(s: &Summary) -> String {
    if s.buy + s.create + s.change + s.delete + s.replace + s.adopt == 0 {
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
    line.push('.');
    line
}

/// A JSON value as one short line; long lists are cut to their first 20 items.
pub(crate) fn short_value(v: &serde_json::Value) -> String {
    const MAX_ITEMS: usize = 20;
    match v {
        serde_json::Value::Null => "(none)".to_string(),
        serde_json::Value::Array(items) if items.len() > MAX_ITEMS => {
            let shown: Vec<String> = items[..MAX_ITEMS].iter().map(|i| i.to_string()).collect();
            format!(
                "[{}, ... ({} more)]",
                shown.join(", "),
                items.len() - MAX_ITEMS
            )
        }
        other => other.to_string(),
    }
}

/// [`short_value`], written into `out`.
pub(crate) fn write_short_value(out: &mut String, v: &serde_json::Value) {
    use std::fmt::Write as _;
    const MAX_ITEMS: usize = 20;
    match v {
        serde_json::Value::Null => out.push_str("(none)"),
        serde_json::Value::Array(items) if items.len() > MAX_ITEMS => {
            out.push('[');
            for (i, item) in items[..MAX_ITEMS].iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{item}");
            }
            let _ = write!(out, ", ... ({} more)]", items.len() - MAX_ITEMS);
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// One-line description of an action's changes (Markdown table cell).
pub(crate) fn changes_inline(a: &Action) -> String {
    a.changes
        .iter()
        .map(|c| {
            format!(
                "{}: {} → {}",
                c.path,
                short_value(&c.before),
                short_value(&c.after)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
