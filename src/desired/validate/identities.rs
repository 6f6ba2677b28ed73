//! Names that differ only in case (issue 9 item 2; P1, I12).

use std::borrow::Cow;

use super::{err, some_of};
use crate::desired::model::Desired;
use crate::diag::Diagnostic;
use crate::domain::ident;

/// Issue 9 item 2: names the service compares without regard to case (see
/// [`crate::domain::ident`]) must not differ only in case in one file, or two entries would
/// be one object: two user keys (P1: one UPN, one user; today's apply creates the first and
/// the service refuses the second), two security groups with the same display name (I12: a
/// group is adopted by its display name; exact repeats included), two group keys (their
/// state addresses are matched without regard to case). Each entry of a clash gets its
/// own error, so that every line involved is shown.
pub(super) fn identities(d: &Desired, out: &mut Vec<Diagnostic>) {
    if let Some(users) = &d.users {
        // The map's keys are distinct, so a clash needs a key that is not lower case: only
        // those are folded (no allocation at all when every UPN is written in lower case).
        let mut folded: Vec<(Cow<str>, &str)> = Vec::new();
        for k in users.keys() {
            if let Cow::Owned(f) = ident::fold(k) {
                folded.push((Cow::Owned(f), k));
            }
        }
        if !folded.is_empty() {
            let lower: Vec<(Cow<str>, &str)> = folded
                .iter()
                .filter_map(|(f, _)| users.get_key_value(f.as_ref()))
                .map(|(k, _)| (Cow::Borrowed(k.as_str()), k.as_str()))
                .collect();
            folded.extend(lower);
            for clash in clashes(folded) {
                for &k in &clash {
                    out.push(
                        err(
                            format!("users.{k}"),
                            "P1",
                            format!(
                                "user `{k}` is the same user as {}: user principal names are compared without regard to case",
                                others(&clash, k)
                            ),
                        )
                        .hint("keep one entry for the user, with one spelling of the UPN"),
                    );
                }
            }
        }
    }
    if let Some(groups) = &d.security_groups {
        let name = |k: &str| {
            groups
                .get(k)
                .and_then(|g| g.name.as_deref())
                .unwrap_or(k)
                .to_string()
        };
        let by_name: Vec<(Cow<str>, &str)> = groups
            .iter()
            .map(|(k, g)| (ident::fold(g.name.as_deref().unwrap_or(k)), k.as_str()))
            .collect();
        for clash in clashes(by_name) {
            for &k in &clash {
                let explicit = groups[k].name.is_some();
                let at = if explicit {
                    format!("security_groups.{k}.name")
                } else {
                    format!("security_groups.{k}")
                };
                let shown = name(k);
                out.push(
                    err(
                        at,
                        "I12",
                        format!(
                            "security group `{k}` has the display name `{shown}`, as does {} (display names are compared without regard to case)",
                            others(&clash, k)
                        ),
                    )
                    .hint(if explicit {
                        "give each group its own `name`: a group is adopted by its display name"
                    } else {
                        "the display name defaults to the key: give each group its own `name`, or merge the entries"
                    }),
                );
            }
        }
        let by_key: Vec<(Cow<str>, &str)> = groups
            .keys()
            .map(|k| (ident::fold(k), k.as_str()))
            .collect();
        for clash in clashes(by_key) {
            // Keys whose display names clash as well were reported above.
            let first = ident::fold(&name(clash[0])).into_owned();
            if clash
                .iter()
                .all(|k| ident::fold(&name(k)) == first.as_str())
            {
                continue;
            }
            for &k in &clash {
                out.push(
                    err(
                        format!("security_groups.{k}"),
                        "I12",
                        format!(
                            "security group key `{k}` differs only in case from {}; keys are matched to the state without regard to case",
                            others(&clash, k)
                        ),
                    )
                    .hint("give the groups keys that differ in more than case"),
                );
            }
        }
    }
}

/// The runs of entries whose folded names are equal (two or more), each sorted, in order.
fn clashes<'a>(mut items: Vec<(Cow<'_, str>, &'a str)>) -> Vec<Vec<&'a str>> {
    items.sort_unstable();
    items.dedup();
    let mut out = Vec::new();
    for run in items.chunk_by(|a, b| a.0 == b.0) {
        if run.len() > 1 {
            out.push(run.iter().map(|(_, k)| *k).collect());
        }
    }
    out
}

/// The other members of a clash, for a message: "`a`" or "`a`, `b`".
fn others(clash: &[&str], me: &str) -> String {
    some_of(clash.iter().copied().filter(|k| *k != me), 4)
}
