//! Checks of the admin edits of the local tenant (`crmctl local import/edit/set`): the
//! tenant's referential integrity and id counters, not the service's rules.

use super::delta::Counters;
use crate::observed::Tenant;
use crate::provider::ProviderError;

/// Counters at least as high as every id of the form `xxx-NNNNNN` in the tenant, so that a
/// later creation never reuses an imported id.
pub(crate) fn counters_covering(t: &Tenant, mut c: Counters) -> Counters {
    fn num(id: &str, prefix: &str) -> u64 {
        id.strip_prefix(prefix)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
    for id in t.users.keys() {
        c.user = c.user.max(num(id, "usr-"));
    }
    for id in t.groups.keys() {
        c.group = c.group.max(num(id, "grp-"));
    }
    for id in t.instances.keys() {
        c.instance = c.instance.max(num(id, "org-"));
    }
    c
}

/// Referential integrity of an imported tenant (not the service's rules).
pub(super) fn check_integrity(t: &Tenant) -> Result<(), ProviderError> {
    let bad = |m: String| Err(ProviderError::Invalid(m));
    for (k, u) in &t.users {
        if *k != u.id {
            return bad(format!(
                "users: key `{k}` differs from the user's id `{}`",
                u.id
            ));
        }
        for iid in u.roles.keys() {
            if !t.instances.contains_key(iid) {
                return bad(format!("users.{k}.roles: no instance with id `{iid}`"));
            }
        }
    }
    for (k, g) in &t.groups {
        if *k != g.id {
            return bad(format!(
                "groups: key `{k}` differs from the group's id `{}`",
                g.id
            ));
        }
        if let Some(m) = g.members.iter().find(|m| !t.users.contains_key(*m)) {
            return bad(format!("groups.{k}.members: no user with id `{m}`"));
        }
    }
    for (k, i) in &t.instances {
        if *k != i.id {
            return bad(format!(
                "instances: key `{k}` differs from the instance's id `{}`",
                i.id
            ));
        }
        if let Some(g) = &i.security_group {
            if !t.groups.contains_key(g) {
                return bad(format!(
                    "instances.{k}.security_group: no group with id `{g}`"
                ));
            }
        }
    }
    Ok(())
}
