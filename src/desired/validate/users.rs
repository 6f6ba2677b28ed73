//! Users: P1 (user principal names, their length), P2 (roles in declared instances, no
//! repeated role, a licence to use them), P3 (application users hold no licence; at most
//! [`MAX_NON_INTERACTIVE_PER_INSTANCE`] non-interactive users with roles per instance), P6
//! (admin roles held once, at least two global admins). P3 also: an `application_id` is a
//! GUID, given only to application users, and names one application user.

use std::collections::BTreeMap;

use super::{err, reference_hint, some_of, warn};
use crate::desired::model::{Desired, Instance};
use crate::diag::Diagnostic;
use crate::domain::iso3166;
use crate::domain::kinds::{AccessMode, AdminRole};
use crate::domain::limits::{MAX_NON_INTERACTIVE_PER_INSTANCE, MAX_UPN, MAX_UPN_LOCAL};
use crate::domain::syntax;

pub(super) fn users(d: &Desired, out: &mut Vec<Diagnostic>) {
    let Some(users) = &d.users else { return };
    let instances = d.instances.as_ref();
    for (upn, u) in users {
        // Built only when there is something to report (100,000 users: no formatting).
        let at = || format!("users.{upn}");
        if !syntax::is_email(upn) {
            out.push(
                err(
                    at(),
                    "P1",
                    format!("user key `{upn}` is not a user principal name"),
                )
                .hint("users are keyed by their UPN, `user@domain`, e.g. `ana@cohowinery.com`"),
            );
        }
        // Issue 12 item 4: Graph's `usageLocation`, an ISO 3166-1 alpha-2 code.
        if let Some(loc) = u
            .usage_location
            .as_deref()
            .filter(|l| !iso3166::is_country(l))
        {
            let hint = match iso3166::suggest(loc) {
                Some(s) => format!("did you mean `{s}`? usage locations are ISO 3166-1 alpha-2 country codes in upper case"),
                None => "use an ISO 3166-1 alpha-2 country code in upper case, e.g. US, DE, GB, JP".into(),
            };
            out.push(
                err(
                    format!("{}.usage_location", at()),
                    "P1",
                    format!("usage location `{loc}` of `{upn}` is not an ISO 3166-1 alpha-2 country code"),
                )
                .hint(hint),
            );
        }
        // P3: an application user's app registration (client) id, a GUID, and only theirs.
        if let Some(app) = &u.application_id {
            if !syntax::is_guid(app) {
                out.push(
                    err(
                        format!("{}.application_id", at()),
                        "P3",
                        format!("application id `{app}` of `{upn}` is not a GUID"),
                    )
                    .hint("use the app registration's Application (client) ID as Microsoft Entra ID shows it: 8-4-4-4-12 hexadecimal digits, e.g. `8f3c2a1e-5b7d-4c9a-a2e1-3d4f5a6b7c8d`"),
                );
            }
            if u.access_mode != Some(AccessMode::Application) {
                out.push(
                    err(
                        format!("{}.application_id", at()),
                        "P3",
                        format!("`{upn}` has an application id but is not an application user"),
                    )
                    .hint("add `access_mode: application`, or remove `application_id` (directory users have none)"),
                );
            }
        }
        if u.access_mode == Some(AccessMode::Application) && u.license.is_some() {
            out.push(
                err(
                    format!("{}.license", at()),
                    "P3",
                    format!("application user `{upn}` holds a license; application users are never licensed"),
                )
                .hint("remove `license`, or use `access_mode: non-interactive` or `read-write`"),
            );
        }
        if let Some(roles) = &u.roles {
            for inst in roles.keys() {
                if instances.is_none_or(|m| !m.contains_key(inst)) {
                    let why = "roles are keyed by instance keys declared under `instances`";
                    let hint = reference_hint(inst, instances, why, |declared| {
                        format!("{why} (declared: {declared})")
                    });
                    out.push(
                        err(
                            format!("{}.roles.{inst}", at()),
                            "P2",
                            format!("user `{upn}` has roles in instance `{inst}`, which is not declared"),
                        )
                        .hint(hint),
                    );
                }
            }
            // P2: a read-write user needs a license to use any instance it has roles in.
            // Global and service admins get access without a license (P6).
            let read_write = matches!(u.access_mode, None | Some(AccessMode::ReadWrite));
            let has_roles = roles.values().any(|r| !r.is_empty());
            let license_free_admin = u.admin_roles.as_ref().is_some_and(|a| {
                a.iter()
                    .any(|r| matches!(r, AdminRole::GlobalAdmin | AdminRole::ServiceAdmin))
            });
            if read_write && has_roles && u.license.is_none() && !license_free_admin {
                out.push(
                    warn(
                        format!("{}.roles", at()),
                        "P2",
                        format!("read-write user `{upn}` has security roles but no license, so cannot use any instance"),
                    )
                    .hint("add `license: professional` (or another plan), or remove the roles"),
                );
            }
        }
    }
}

pub(super) fn admins(d: &Desired, out: &mut Vec<Diagnostic>) {
    let Some(users) = &d.users else { return };
    // P6: keep at least two global admins, checked when the file models admin roles at all.
    if !users.values().any(|u| u.admin_roles.is_some()) {
        return;
    }
    let globals: Vec<&str> = users
        .iter()
        .filter(|(_, u)| {
            u.admin_roles
                .as_ref()
                .is_some_and(|r| r.contains(&AdminRole::GlobalAdmin))
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if globals.len() < 2 {
        out.push(
            warn(
                "users".into(),
                "P6",
                format!(
                    "{} global admin(s) declared ({}); keep at least two",
                    globals.len(),
                    some_of(globals.iter().copied(), 2)
                ),
            )
            .hint("add `admin_roles: [global_admin]` to a second administrator"),
        );
    }
}

/// Duplicate entries in `roles` (per instance, compared case-insensitively as the service
/// names roles) and in `admin_roles` (issue 9 item 10; P2, P6).
pub(super) fn duplicate_roles(d: &Desired, out: &mut Vec<Diagnostic>) {
    for (upn, u) in d.users.iter().flatten() {
        for (inst, roles) in u.roles.iter().flatten() {
            if roles.len() < 2 {
                continue;
            }
            // Pairs of (first, repeated) items: pairwise without allocation for the usual
            // short lists, by sorted lower-case keys for long ones (O(k log k)).
            let mut pairs: Vec<(usize, usize)> = Vec::new();
            if roles.len() <= 16 {
                for b in 1..roles.len() {
                    if let Some(a) = (0..b).find(|&a| same_name(&roles[a], &roles[b])) {
                        pairs.push((a, b));
                    }
                }
            } else {
                let mut order: Vec<usize> = (0..roles.len()).collect();
                order.sort_by_cached_key(|&i| (roles[i].to_lowercase(), i));
                for w in order.windows(2) {
                    if same_name(&roles[w[0]], &roles[w[1]]) {
                        pairs.push((w[0], w[1]));
                    }
                }
            }
            for (a, b) in pairs {
                out.push(
                    err(
                        format!("users.{upn}.roles.{inst}[{b}]"),
                        "P2",
                        format!(
                            "role `{}` is listed twice for `{upn}` in instance `{inst}` (also item {a})",
                            roles[b]
                        ),
                    )
                    .hint("remove the duplicate; each role is held once"),
                );
            }
        }
        if let Some(admin) = &u.admin_roles {
            let mut seen = [false; 5];
            for (i, r) in admin.iter().enumerate() {
                if std::mem::replace(&mut seen[*r as usize], true) {
                    out.push(
                        err(
                            format!("users.{upn}.admin_roles[{i}]"),
                            "P6",
                            format!(
                                "admin role `{}` is listed twice for `{upn}`",
                                serde_json::to_value(r)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_string))
                                    .unwrap_or_default()
                            ),
                        )
                        .hint("remove the duplicate; each admin role is held once"),
                    );
                }
            }
        }
    }
}

/// Whether two names are the same without case (Unicode lower case; no allocation).
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || (!(a.is_ascii() && b.is_ascii())
            && a.chars()
                .flat_map(char::to_lowercase)
                .eq(b.chars().flat_map(char::to_lowercase)))
}

/// A user principal name longer than the directory accepts (issue 9 item 10, P1).
pub(super) fn upn_lengths(d: &Desired, out: &mut Vec<Diagnostic>) {
    for upn in d.users.iter().flatten().map(|(k, _)| k) {
        if upn.len() <= MAX_UPN_LOCAL {
            continue; // cannot be too long in any part
        }
        let local = upn.rsplit_once('@').map_or(upn.as_str(), |(l, _)| l);
        let (n, l) = (upn.chars().count(), local.chars().count());
        if l > MAX_UPN_LOCAL || n > MAX_UPN {
            out.push(
                err(
                    format!("users.{upn}"),
                    "P1",
                    format!(
                        "user principal name is too long ({l} characters before `@`, {n} in all)"
                    ),
                )
                .hint(format!(
                    "the directory accepts at most {MAX_UPN_LOCAL} characters before `@` and {MAX_UPN} in all"
                )),
            );
        }
    }
}

/// P3: at most [`MAX_NON_INTERACTIVE_PER_INSTANCE`] non-interactive users with roles in
/// each declared instance.
pub(super) fn non_interactive(
    d: &Desired,
    instances: &BTreeMap<String, Instance>,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(users) = &d.users {
        let mut per_instance: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (upn, u) in users {
            if u.access_mode != Some(AccessMode::NonInteractive) {
                continue;
            }
            for (inst, roles) in u.roles.iter().flatten() {
                if !roles.is_empty() && instances.contains_key(inst) {
                    per_instance.entry(inst).or_default().push(upn);
                }
            }
        }
        for (inst, upns) in per_instance {
            if upns.len() > MAX_NON_INTERACTIVE_PER_INSTANCE {
                let first_over = upns[MAX_NON_INTERACTIVE_PER_INSTANCE];
                out.push(
                    err(
                        format!("users.{first_over}.roles.{inst}"),
                        "P3",
                        format!(
                            "instance `{inst}` has {} non-interactive users with roles; at most {MAX_NON_INTERACTIVE_PER_INSTANCE} are allowed: {}",
                            upns.len(),
                            some_of(upns.iter().copied(), 8)
                        ),
                    )
                    .hint("make some of them `access_mode: application` (unlimited), or remove their roles in this instance"),
                );
            }
        }
    }
}

/// P3: one application user per app registration (an instance has one application user for
/// each registered app, Power Platform admin center "Manage application users"): an
/// `application_id` given twice is an error at the second.
pub(super) fn duplicate_application_ids(d: &Desired, out: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (upn, u) in d.users.iter().flatten() {
        let Some(app) = u.application_id.as_deref().filter(|a| syntax::is_guid(a)) else {
            continue;
        };
        if let Some(first) = seen.insert(app.to_ascii_lowercase(), upn) {
            out.push(
                err(
                    format!("users.{upn}.application_id"),
                    "P3",
                    format!("application id `{app}` is also `{first}`'s; an app registration has one application user"),
                )
                .hint("give each application user its own app registration's client id"),
            );
            seen.insert(app.to_ascii_lowercase(), first);
        }
    }
}
