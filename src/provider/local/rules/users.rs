//! Users, their licenses, access modes and security roles: P1-P6, T3.

use std::collections::BTreeSet;

use crate::domain::iso3166;
use crate::domain::kinds::{AccessMode, AdminRole};
use crate::domain::limits::MAX_NON_INTERACTIVE_PER_INSTANCE;
use crate::domain::op::Op;
use crate::observed::{InstanceStatus, Tenant, User};
use crate::provider::local::delta::{Counters, Delta, Index};
use crate::provider::{Outcome, ProviderError};

use super::{check_upn, instance, meta_with, not_mine, refused, user, Effect};

/// Check a user op against the tenant and compute what it writes.
pub(super) fn effect(
    t: &Tenant,
    idx: &Index,
    counters: Counters,
    op: &Op,
) -> Result<Effect, ProviderError> {
    match op {
        Op::CreateUser {
            upn,
            name,
            access_mode,
            usage_location,
            application_id,
        } => {
            check_upn(upn)?;
            check_usage_location(usage_location.as_deref())?;
            // P3: an application user is bound to one app registration, and an instance has
            // one application user per app registration (Power Platform admin center,
            // "Manage application users": one application user for each registered app).
            if let Some(app) = application_id {
                if *access_mode != AccessMode::Application {
                    return Err(refused(
                        "P3",
                        format!("`{upn}` is not an application user: only application users have an application id"),
                    ));
                }
                if !crate::domain::syntax::is_guid(app) {
                    return Err(refused(
                        "P3",
                        format!("application id `{app}` of `{upn}` is not a GUID"),
                    ));
                }
                if let Some(other) = t.users.values().find(|o| {
                    o.application_id
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case(app))
                }) {
                    return Err(refused(
                        "P3",
                        format!(
                            "application id `{app}` is already the application user `{}`'s: one application user per app registration",
                            other.upn
                        ),
                    ));
                }
            }
            if let Some(other) = idx.upns.get(&upn.to_lowercase()) {
                return Err(refused(
                    "P1",
                    format!("a user with principal name `{upn}` already exists ({other})"),
                ));
            }
            if matches!(
                access_mode,
                AccessMode::Administrative | AccessMode::NonInteractive
            ) {
                return Err(refused(
                    "P4",
                    format!(
                        "a user cannot be created as {}: create it read-write, assign a license, set the access mode, then remove the license",
                        access_mode.as_str()
                    ),
                ));
            }
            let mut c = counters;
            c.user += 1;
            let id = format!("usr-{:06}", c.user);
            let u = User {
                id: id.clone(),
                upn: upn.clone(),
                name: name.clone(),
                license: None,
                access_mode: *access_mode,
                roles: Default::default(),
                admin_roles: BTreeSet::new(),
                usage_location: usage_location.clone(),
                synced: false,
                application_id: application_id.clone(),
            };
            Ok(Effect {
                deltas: vec![meta_with(t, c, |_| {}), Delta::PutUser(Box::new(u))],
                outcome: Outcome {
                    created_id: Some(id),
                    ..Outcome::default()
                },
            })
        }
        Op::UpdateUser {
            user: r,
            name,
            admin_roles,
            upn,
            usage_location,
        } => {
            let u = user(t, r)?;
            let mut nu = u.clone();
            if let Some(n) = name {
                nu.name = n.clone();
            }
            check_usage_location(usage_location.as_deref())?;
            if let Some(loc) = usage_location {
                nu.usage_location = Some(loc.clone());
            }
            if let Some(new_upn) = upn.as_ref().filter(|n| **n != u.upn) {
                // P1: a UPN names one user, compared without regard to case (issue 9
                // item 2): a new spelling may not be another user's.
                check_upn(new_upn)?;
                if let Some(other) = idx
                    .upns
                    .get(&new_upn.to_lowercase())
                    .filter(|o| **o != u.id)
                {
                    return Err(refused(
                        "P1",
                        format!("a user with principal name `{new_upn}` already exists ({other})"),
                    ));
                }
                nu.upn = new_upn.clone();
            }
            if let Some(roles) = admin_roles {
                nu.admin_roles = roles.iter().copied().collect();
                if u.admin_roles.contains(&AdminRole::GlobalAdmin)
                    && !nu.admin_roles.contains(&AdminRole::GlobalAdmin)
                {
                    check_p6(t, u)?;
                }
            }
            if u.synced && (nu.name != u.name || nu.upn != u.upn) {
                return Err(on_premises(u, "its name and principal name are"));
            }
            if &nu == u {
                return Ok(Effect::none());
            }
            Ok(Effect::of(vec![Delta::PutUser(Box::new(nu))]))
        }
        Op::DeleteUser { user: r } => {
            let u = user(t, r)?;
            if u.synced {
                return Err(on_premises(u, "its existence is"));
            }
            check_p6(t, u)?;
            // P5: deleting frees the license; memberships and roles go with the user.
            Ok(Effect::of(vec![Delta::DelUser(u.id.clone())]))
        }
        Op::AssignLicense { user: r, plan } => {
            let u = user(t, r)?;
            if u.access_mode == AccessMode::Application {
                return Err(refused(
                    "P3",
                    format!(
                        "`{}` is an application user; application users are never licensed",
                        u.upn
                    ),
                ));
            }
            if u.license == Some(*plan) {
                return Ok(Effect::none());
            }
            let (assigned, bought) = (idx.assigned(*plan), t.purchased(*plan));
            if assigned + 1 > bought {
                return Err(refused(
                    "T3",
                    format!(
                        "no free {} license for `{}`: {assigned} of {bought} are assigned; buy more first",
                        plan.as_str(),
                        u.upn
                    ),
                ));
            }
            let mut nu = u.clone();
            nu.license = Some(*plan);
            Ok(Effect::of(vec![Delta::PutUser(Box::new(nu))]))
        }
        Op::RemoveLicense { user: r } => {
            let u = user(t, r)?;
            if u.license.is_none() {
                return Ok(Effect::none());
            }
            let mut nu = u.clone();
            nu.license = None;
            Ok(Effect::of(vec![Delta::PutUser(Box::new(nu))]))
        }
        Op::SetAccessMode { user: r, mode } => {
            let u = user(t, r)?;
            if u.access_mode == *mode {
                return Ok(Effect::none());
            }
            if u.access_mode == AccessMode::Application || *mode == AccessMode::Application {
                return Err(refused(
                    "P3",
                    format!(
                        "`{}`: application users are created as such and cannot change access mode ({} -> {})",
                        u.upn,
                        u.access_mode.as_str(),
                        mode.as_str()
                    ),
                ));
            }
            if matches!(
                mode,
                AccessMode::Administrative | AccessMode::NonInteractive
            ) && u.license.is_none()
            {
                return Err(refused(
                    "P4",
                    format!(
                        "`{}` must hold a license while its access mode is set to {} (license, then access mode, then remove the license)",
                        u.upn,
                        mode.as_str()
                    ),
                ));
            }
            if *mode == AccessMode::NonInteractive {
                for (iid, roles) in &u.roles {
                    if !roles.is_empty()
                        && non_interactive_in(t, iid, &u.id) >= MAX_NON_INTERACTIVE_PER_INSTANCE
                    {
                        return Err(refused(
                            "P3",
                            format!(
                                "instance {iid} already has {MAX_NON_INTERACTIVE_PER_INSTANCE} non-interactive users; `{}` cannot be the next",
                                u.upn
                            ),
                        ));
                    }
                }
            }
            let mut nu = u.clone();
            nu.access_mode = *mode;
            Ok(Effect::of(vec![Delta::PutUser(Box::new(nu))]))
        }
        Op::AssignRoles {
            user: ur,
            instance: ir,
            roles,
        }
        | Op::RemoveRoles {
            user: ur,
            instance: ir,
            roles,
        } => {
            let assigning = matches!(op, Op::AssignRoles { .. });
            let u = user(t, ur)?;
            let i = instance(t, ir)?;
            // I4 (issue 10: the planner reports the same): a provisioning or disabled
            // instance cannot be changed, its security roles included.
            if i.status != InstanceStatus::Ready {
                return Err(refused(
                    "I4",
                    format!(
                        "security roles can be changed only in a ready instance; `{}` is {:?}",
                        i.url, i.status
                    ),
                ));
            }
            if roles.iter().any(|r| r.trim().is_empty()) {
                return Err(ProviderError::Invalid(
                    "a security role name is empty".into(),
                ));
            }
            let before = u.roles.get(&i.id).cloned().unwrap_or_default();
            let mut after = before.clone();
            if assigning {
                after.extend(roles.iter().cloned());
            } else {
                for r in roles {
                    after.remove(r);
                }
            }
            if after == before {
                return Ok(Effect::none());
            }
            if assigning {
                // P6: global and service admins get System Administrator in every
                // instance without a license.
                let license_free_admin = u
                    .admin_roles
                    .iter()
                    .any(|r| matches!(r, AdminRole::GlobalAdmin | AdminRole::ServiceAdmin));
                if u.access_mode == AccessMode::ReadWrite
                    && u.license.is_none()
                    && !license_free_admin
                {
                    return Err(refused(
                        "P2",
                        format!(
                            "`{}` needs a license before it gets security roles in `{}`",
                            u.upn, i.url
                        ),
                    ));
                }
                if u.access_mode == AccessMode::NonInteractive
                    && before.is_empty()
                    && non_interactive_in(t, &i.id, &u.id) >= MAX_NON_INTERACTIVE_PER_INSTANCE
                {
                    return Err(refused(
                        "P3",
                        format!(
                            "instance `{}` already has {MAX_NON_INTERACTIVE_PER_INSTANCE} non-interactive users; `{}` would be one too many (use an application user)",
                            i.url, u.upn
                        ),
                    ));
                }
            }
            Ok(Effect::of(vec![Delta::SetRoles(
                u.id.clone(),
                i.id.clone(),
                after,
            )]))
        }
        _ => Err(not_mine(op, "user")),
    }
}

/// P3: non-interactive users (other than `except`) holding roles in instance `iid`.
fn non_interactive_in(t: &Tenant, iid: &str, except: &str) -> usize {
    t.users
        .values()
        .filter(|u| {
            u.id != except
                && u.access_mode == AccessMode::NonInteractive
                && u.roles.get(iid).is_some_and(|r| !r.is_empty())
        })
        .count()
}

fn global_admins(t: &Tenant) -> usize {
    t.users
        .values()
        .filter(|u| u.admin_roles.contains(&AdminRole::GlobalAdmin))
        .count()
}

/// P6 (our reading): removing the global admin role (or deleting a global admin) is refused
/// when it would leave fewer than two global admins. A tenant that has fewer than two can
/// still gain admins.
fn check_p6(t: &Tenant, u: &User) -> Result<(), ProviderError> {
    if !u.admin_roles.contains(&AdminRole::GlobalAdmin) {
        return Ok(());
    }
    let n = global_admins(t);
    if n <= 2 {
        return Err(refused(
            "P6",
            format!(
                "`{}` is one of {n} global admins; keep at least two global admins (make another user global admin first)",
                u.upn
            ),
        ));
    }
    Ok(())
}

/// A usage location is an ISO 3166-1 alpha-2 code (Graph `usageLocation`, issue 12 item 4).
fn check_usage_location(loc: Option<&str>) -> Result<(), ProviderError> {
    match loc {
        Some(l) if !iso3166::is_country(l) => Err(ProviderError::Invalid(format!(
            "usage location `{l}` is not an ISO 3166-1 alpha-2 country code (e.g. US, DE, GB)"
        ))),
        _ => Ok(()),
    }
}

/// P1: a user synchronised from an on-premises directory is edited there (Graph answers
/// 400 to a cloud change of what the directory masters, issue 12 item 4).
fn on_premises(u: &User, what: &str) -> ProviderError {
    refused(
        "P1",
        format!(
            "`{}` is synchronised from an on-premises directory: {what} managed there; change it on-premises",
            u.upn
        ),
    )
}
