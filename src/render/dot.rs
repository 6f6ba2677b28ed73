//! The action graph as Graphviz DOT (`crmctl graph`).

use std::fmt::Write;

use crate::plan::Plan;

/// A DOT string's content: control and bidi characters shown as escapes first (issue 9
/// item 6), then backslashes and quotes escaped for DOT.
fn escape(s: &str) -> String {
    super::escape(s).replace('\\', "\\\\").replace('"', "\\\"")
}

/// The plan's actions as nodes (`a<id>`), dependencies as edges prerequisite -> action.
pub fn render_dot(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str("digraph plan {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n");
    for a in &plan.actions {
        let style = if a.destructive { ", color=red" } else { "" };
        let _ = writeln!(
            out,
            "  a{} [label=\"{}: {} {}\\n{}\"{style}];",
            a.id,
            a.id,
            a.kind.symbol(),
            a.kind.as_str(),
            escape(&a.address)
        );
    }
    for a in &plan.actions {
        for d in &a.depends_on {
            let _ = writeln!(out, "  a{d} -> a{};", a.id);
        }
    }
    out.push_str("}\n");
    out
}
