//! Semantic validation of a parsed desired tenant: the service's rules that can be checked
//! from the file alone (domain.md ids in every diagnostic's `rule`).
//!
//! Pure: no I/O, no file format. Each diagnostic carries in `address` the YAML path of the
//! offending value (`instances.dev.admin_mode.background_operations`,
//! `users.ana@x.com.roles.sales`, `security_groups.sales.members[2]`); `desired::load` turns
//! paths into file:line:col only when there is something to report.
//!
//! Cost: O(n log n) in the size of the file (maps and sets, no quadratic scans), so that
//! validating a 100,000-user tenant stays a small fraction of parsing it.
//!
//! Decisions that domain.md leaves open:
//! - `update.preferred` and `update.alternate` are RFC 3339 instants in UTC (`...Z`), and the
//!   alternate date must be strictly later than the preferred one (U3: it is the fallback).
//! - Group members must be declared under `users` even when they exist in the tenant: an
//!   empty entry (`ana@x.com: {}`) declares a user without managing any of its fields.
//! - U5 is checked only when the file declares at least one sandbox.

mod groups;
mod identities;
mod instances;
pub(crate) mod moved;
mod skus;
mod tenant;
mod text;
mod updates;
mod users;

use std::collections::BTreeMap;

use crate::desired::index::MemberPositions;
use crate::desired::model::Desired;
use crate::diag::Diagnostic;

/// Check every rule; diagnostics come in a deterministic order (file order is restored by
/// `desired::load` once they are located).
pub fn validate(d: &Desired) -> Vec<Diagnostic> {
    validate_with(d, &MemberPositions::resolve(d))
}

/// [`validate`] given the members of `d` already resolved to users.
pub fn validate_with(d: &Desired, members: &MemberPositions) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    tenant::tenant(d, &mut out);
    users::users(d, &mut out);
    groups::groups(d, members, &mut out);
    instances::instances(d, &mut out);
    tenant::licenses(d, &mut out);
    skus::skus(d, &mut out);
    users::admins(d, &mut out);
    identities::identities(d, &mut out);
    moved::moved(d, &mut out);
    moved::safety(d, &mut out);

    text::text_safety(d, &mut out);
    users::duplicate_roles(d, &mut out);
    users::upn_lengths(d, &mut out);
    users::duplicate_application_ids(d, &mut out);
    out
}

fn err(address: String, rule: &str, message: String) -> Diagnostic {
    Diagnostic::error(address, message).rule(rule)
}

fn warn(address: String, rule: &str, message: String) -> Diagnostic {
    Diagnostic::warning(address, message).rule(rule)
}

/// Up to `n` names, comma-separated, with "..." when there are more.
fn some_of<'a>(names: impl Iterator<Item = &'a str>, n: usize) -> String {
    let all: Vec<&str> = names.collect();
    let mut s = all
        .iter()
        .take(n)
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > n {
        s.push_str(&format!(" and {} more", all.len() - n));
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

/// The hint of a reference to a key that is not declared: "did you mean" the closest of the
/// `declared` keys and `why`, else `listed` given the declared keys (up to 8, or "none").
fn reference_hint<T>(
    wanted: &str,
    declared: Option<&BTreeMap<String, T>>,
    why: &str,
    listed: impl FnOnce(String) -> String,
) -> String {
    let keys = || {
        declared
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
    };
    match closest(wanted, keys()) {
        Some(c) => format!("did you mean `{c}`? {why}"),
        None => listed(some_of(keys(), 8)),
    }
}

/// The closest name to `wanted` among `names`, if close enough to be a likely typo (at most
/// two edits, and few for a short name).
pub(crate) fn closest<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names
        .map(|n| (strsim::levenshtein(wanted, n), n))
        .filter(|&(d, _)| d <= 2 && 3 * d <= wanted.chars().count() + 2)
        .min()
        .map(|(_, n)| n)
}
