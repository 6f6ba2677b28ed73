//! Terminal safety of every text field (issue 9 item 6).

use crate::desired::model::Desired;
use crate::diag::Diagnostic;

/// Text fields that may hold several lines (a tab or a line break is text there); every
/// other string is a name, key or reference and holds no control character at all.
const MULTI_LINE: [&str; 3] = ["description", "purpose", "message"];

/// Terminal safety (issue 9 item 6): no control character (C0 incl. NUL, ESC, CR; DEL; C1)
/// and no bidi override or isolate (U+202A-U+202E, U+2066-U+2069) in any name-like field,
/// key or reference. `description`, `purpose` and `admin_mode.message` may hold line breaks
/// and tabs (they are multi-line text, shown as a unified diff), nothing else. The same
/// predicate as the printers' escaping ([`crate::domain::escape::is_unsafe`]).
pub(super) fn text_safety(d: &Desired, out: &mut Vec<Diagnostic>) {
    use crate::domain::escape::{escape_char, first_unsafe, is_unsafe};
    let mut check = |address: &dyn Fn() -> String, field: &str, s: &str| {
        let multi = MULTI_LINE.contains(&field);
        let bad = if multi {
            first_unsafe(s)
                .and_then(|_| s.chars().find(|&c| is_unsafe(c) && c != '\n' && c != '\t'))
        } else {
            first_unsafe(s)
        };
        if let Some(c) = bad {
            let what = if c.is_control() {
                "a control character"
            } else {
                "a bidirectional-text control character"
            };
            out.push(
                Diagnostic::error(
                    address(),
                    format!("`{field}` contains {what} (`{}`)", escape_char(c)),
                )
                .hint(if multi {
                    "remove it: only line breaks and tabs are allowed in this text; other control and bidi characters can rewrite a terminal or hide text"
                } else {
                    "remove it: names, keys and references cannot hold control or bidi characters, which can rewrite a terminal or hide text"
                }),
            );
        }
    };
    check(&|| "tenant".into(), "tenant", &d.tenant);
    for (k, g) in d.security_groups.iter().flatten() {
        let at = |f: &'static str| move || format!("security_groups.{k}{f}");
        check(&at(""), "key", k);
        if let Some(n) = &g.name {
            check(&at(".name"), "name", n);
        }
        if let Some(n) = &g.description {
            check(&at(".description"), "description", n);
        }
    }
    // Addresses are built only when there is something to report (100,000 users: no
    // formatting).
    for (k, u) in d.users.iter().flatten() {
        check(&|| format!("users.{k}"), "key", k);
        if let Some(n) = &u.name {
            check(&|| format!("users.{k}.name"), "name", n);
        }
        for (inst, roles) in u.roles.iter().flatten() {
            check(&|| format!("users.{k}.roles.{inst}"), "key", inst);
            for (i, r) in roles.iter().enumerate() {
                check(&|| format!("users.{k}.roles.{inst}[{i}]"), "role", r);
            }
        }
    }
    for (k, inst) in d.instances.iter().flatten() {
        let at = |f: &'static str| move || format!("instances.{k}{f}");
        check(&at(""), "key", k);
        check(&at(".name"), "name", &inst.name);
        check(&at(".url"), "url", &inst.url);
        for (f, v) in [
            (".purpose", inst.purpose.as_deref()),
            (".currency", inst.currency.as_deref()),
            (".security_group", inst.security_group.as_deref()),
            (
                ".admin_mode.message",
                inst.admin_mode.as_ref().and_then(|m| m.message.as_deref()),
            ),
            (
                ".copy_from.instance",
                inst.copy_from.as_ref().map(|c| c.instance.as_str()),
            ),
        ] {
            if let Some(v) = v {
                let field = f.rsplit('.').next().unwrap_or(f);
                check(&at(f), field, v);
            }
        }
        for (i, r) in inst.notification_recipients.iter().flatten().enumerate() {
            check(
                &|| format!("instances.{k}.notification_recipients[{i}]"),
                "notification_recipients",
                r,
            );
        }
    }
}
