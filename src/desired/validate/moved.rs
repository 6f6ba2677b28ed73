//! `moved` entries (issue 14 item 3) and `safety` thresholds (item 5): each names an old and a new address of one kind; the
//! new one is declared in the file, the old one is not; no address is moved twice.

use std::collections::HashSet;

use crate::desired::model::Desired;
use crate::diag::Diagnostic;

/// The collection an address names (`users`, `security_groups`, `instances`) and its key.
pub(crate) fn split(address: &str) -> Option<(&str, &str)> {
    let (prefix, key) = address.split_once('.')?;
    (matches!(prefix, "users" | "security_groups" | "instances") && !key.is_empty())
        .then_some((prefix, key))
}

fn declared(d: &Desired, prefix: &str, key: &str) -> bool {
    match prefix {
        "users" => d.users.as_ref().is_some_and(|m| m.contains_key(key)),
        "security_groups" => d
            .security_groups
            .as_ref()
            .is_some_and(|m| m.contains_key(key)),
        "instances" => d.instances.as_ref().is_some_and(|m| m.contains_key(key)),
        _ => false,
    }
}

pub(super) fn moved(d: &Desired, out: &mut Vec<Diagnostic>) {
    let Some(moves) = &d.moved else {
        return;
    };
    let mut froms = HashSet::new();
    let mut tos = HashSet::new();
    let bad = |path: String, message: String, hint: &str| {
        Diagnostic::error(path, message).hint(hint.to_string())
    };
    for (i, m) in moves.iter().enumerate() {
        let at = |field: &str| format!("moved[{i}].{field}");
        let (Some((fp, fk)), Some((tp, tk))) = (split(&m.from), split(&m.to)) else {
            let field = if split(&m.from).is_none() {
                "from"
            } else {
                "to"
            };
            out.push(bad(
                at(field),
                format!(
                    "`{}` is not an address",
                    if field == "from" { &m.from } else { &m.to }
                ),
                "write `users.<upn>`, `security_groups.<key>` or `instances.<key>`",
            ));
            continue;
        };
        if fp != tp {
            out.push(bad(
                at("to"),
                format!(
                    "`{}` and `{}` are addresses of different kinds",
                    m.from, m.to
                ),
                "a key can only move within its own collection",
            ));
            continue;
        }
        if m.from == m.to {
            out.push(bad(
                at("to"),
                format!("`{}` is moved to itself", m.from),
                "remove the entry",
            ));
            continue;
        }
        if !declared(d, tp, tk) {
            out.push(bad(
                at("to"),
                format!("`{}` is not declared in this file", m.to),
                "`to` names the new key, which the file must declare",
            ));
        }
        if declared(d, fp, fk) {
            out.push(bad(
                at("from"),
                format!("`{}` is still declared in this file", m.from),
                "`from` names the old key, which the file no longer declares",
            ));
        }
        if !froms.insert(m.from.as_str()) {
            out.push(bad(
                at("from"),
                format!("`{}` is moved twice", m.from),
                "keep one entry per old address",
            ));
        }
        if !tos.insert(m.to.as_str()) {
            out.push(bad(
                at("to"),
                format!("two entries move to `{}`", m.to),
                "keep one entry per new address",
            ));
        }
    }
}

/// `safety` thresholds (issue 14 item 5) are percentages.
pub(super) fn safety(d: &Desired, out: &mut Vec<Diagnostic>) {
    let Some(s) = &d.safety else {
        return;
    };
    for (name, v) in [
        ("users", s.users),
        ("security_groups", s.security_groups),
        ("instances", s.instances),
    ] {
        if let Some(v) = v.filter(|v| *v > 100) {
            out.push(
                Diagnostic::error(
                    format!("safety.{name}"),
                    format!("`{v}` is not a percentage"),
                )
                .hint("write a number from 0 to 100 (100: never hold a plan back)".to_string()),
            );
        }
    }
}
