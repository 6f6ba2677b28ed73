//! The service's rules (domain.md), checked against the in-memory tenant before anything is
//! written. Each op becomes a list of [`Delta`]s or a refusal naming the rule.

use std::collections::BTreeSet;

use crate::domain::syntax::{cmp_version, is_currency_syntax, is_url_name};

use crate::domain::kinds::{AccessMode, AdminRole, InstanceType};
use crate::domain::limits::{
    MAX_NON_INTERACTIVE_PER_INSTANCE, MAX_PRODUCTION_INSTANCES, MAX_SANDBOX_INSTANCES,
};
use crate::domain::op::{ObjKind, ObjRef, Op};
use crate::observed::{
    AdminModeState, Group, Instance, InstanceStatus, Tenant, UpdatePhase, UpdateState, User,
};
use crate::provider::local::delta::{Counters, Delta, Index, Meta};
use crate::provider::{Outcome, ProviderError};

/// What an op will do once committed.
pub(crate) struct Effect {
    pub deltas: Vec<Delta>,
    pub outcome: Outcome,
}

impl Effect {
    fn none() -> Effect {
        Effect {
            deltas: vec![],
            outcome: Outcome::default(),
        }
    }
    fn of(deltas: Vec<Delta>) -> Effect {
        Effect {
            deltas,
            outcome: Outcome::default(),
        }
    }
}

fn refused(rule: &str, msg: impl Into<String>) -> ProviderError {
    ProviderError::refused(rule, msg)
}

fn id_of(r: &ObjRef) -> Result<&str, ProviderError> {
    r.id.as_deref().ok_or_else(|| {
        ProviderError::Invalid(format!(
            "reference to `{}` carries no remote id (was the object created earlier in this apply?)",
            r.address
        ))
    })
}

fn user<'t>(t: &'t Tenant, r: &ObjRef) -> Result<&'t User, ProviderError> {
    let id = id_of(r)?;
    t.users
        .get(id)
        .ok_or_else(|| ProviderError::NotFound(format!("user {} (id {id})", r.address)))
}

fn group<'t>(t: &'t Tenant, r: &ObjRef) -> Result<&'t Group, ProviderError> {
    let id = id_of(r)?;
    t.groups
        .get(id)
        .ok_or_else(|| ProviderError::NotFound(format!("security group {} (id {id})", r.address)))
}

fn instance<'t>(t: &'t Tenant, r: &ObjRef) -> Result<&'t Instance, ProviderError> {
    let id = id_of(r)?;
    t.instances
        .get(id)
        .ok_or_else(|| ProviderError::NotFound(format!("instance {} (id {id})", r.address)))
}

/// I4: only a ready instance can be edited.
fn editable(i: &Instance, what: &str) -> Result<(), ProviderError> {
    match i.status {
        InstanceStatus::Ready => Ok(()),
        InstanceStatus::Provisioning => Err(refused(
            "I4",
            format!("instance `{}` is still provisioning; it cannot be edited ({what}) until it is ready", i.url),
        )),
        InstanceStatus::Disabled => Err(refused(
            "I4",
            format!("instance `{}` is disabled; enable it before editing it ({what})", i.url),
        )),
    }
}

fn check_url(t: &Tenant, url: &str, except: Option<&str>) -> Result<(), ProviderError> {
    if !is_url_name(url) {
        return Err(refused(
            "I5",
            format!("URL name `{url}` is invalid: use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'"),
        ));
    }
    if let Some(other) = t
        .instances
        .values()
        // I5: URL names are host name labels, unique without regard to case (issue 9
        // item 2): an instance stored as `Sales` keeps `sales` taken.
        .find(|i| i.url.eq_ignore_ascii_case(url) && Some(i.id.as_str()) != except)
    {
        return Err(refused(
            "I5",
            format!(
                "URL name `{url}` is already used by instance `{}` ({})",
                other.name, other.id
            ),
        ));
    }
    Ok(())
}

fn check_currency(c: &str) -> Result<(), ProviderError> {
    if is_currency_syntax(c) {
        Ok(())
    } else {
        Err(ProviderError::Invalid(format!(
            "currency `{c}` is not an ISO 4217 code (three capital letters, e.g. USD)"
        )))
    }
}

fn check_language(l: u32) -> Result<(), ProviderError> {
    if l == 0 {
        Err(ProviderError::Invalid(
            "language LCID 0 is not a language (e.g. 1033 for English)".into(),
        ))
    } else {
        Ok(())
    }
}

fn check_upn(upn: &str) -> Result<(), ProviderError> {
    let ok = match upn.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !upn.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ProviderError::Invalid(format!(
            "user principal name `{upn}` is not of the form user@domain (P1)"
        )))
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

fn meta_with(t: &Tenant, counters: Counters, f: impl FnOnce(&mut Meta)) -> Delta {
    let mut m = Meta::of(t, counters);
    f(&mut m);
    Delta::Meta(Box::new(m))
}

/// T5: additional instances and storage only on a paid subscription with Professional or
/// Enterprise licenses.
fn check_t5(t: &Tenant, what: &str) -> Result<(), ProviderError> {
    if t.trial {
        return Err(refused(
            "T5",
            format!("{what} cannot be bought on a trial subscription; convert it to a paid subscription first"),
        ));
    }
    if t.pro_enterprise() == 0 {
        return Err(refused(
            "T5",
            format!("{what} can be bought only with Professional or Enterprise licenses; buy some first"),
        ));
    }
    Ok(())
}

/// Check `op` against the tenant and compute what it writes.
pub(crate) fn effect(
    t: &Tenant,
    idx: &Index,
    counters: Counters,
    op: &Op,
) -> Result<Effect, ProviderError> {
    match op {
        Op::PurchaseLicenses { plan, to } => {
            let have = t.purchased(*plan);
            if *to < have {
                return Err(ProviderError::Invalid(format!(
                    "purchase_licenses {} to {to} is below the {have} bought; use reduce_licenses",
                    plan.as_str()
                )));
            }
            if *to == have {
                return Ok(Effect::none());
            }
            Ok(Effect::of(vec![meta_with(t, counters, |m| {
                m.licenses.insert(*plan, *to);
            })]))
        }
        Op::ReduceLicenses { plan, to } => {
            let have = t.purchased(*plan);
            if *to > have {
                return Err(ProviderError::Invalid(format!(
                    "reduce_licenses {} to {to} is above the {have} bought; use purchase_licenses",
                    plan.as_str()
                )));
            }
            let assigned = idx.assigned(*plan);
            if *to < assigned {
                return Err(refused(
                    "T4",
                    format!(
                        "cannot reduce {} licenses to {to}: {assigned} are assigned; remove licenses from users (or delete users) first",
                        plan.as_str()
                    ),
                ));
            }
            if *to == have {
                return Ok(Effect::none());
            }
            // T6: below 25 Professional + Enterprise the included sandbox slot is gone; a
            // sandbox that occupies it needs a bought slot first.
            if plan.is_pro_or_enterprise() {
                let pe_after = t.pro_enterprise() - have + *to;
                let sandboxes = t.used_slots(InstanceType::Sandbox);
                let total_now = t.total_slots(InstanceType::Sandbox);
                let total_after = t.slots.sandbox
                    + crate::observed::included_slots(InstanceType::Sandbox, pe_after);
                if total_after < total_now && sandboxes > total_after {
                    return Err(refused(
                        "T6",
                        format!(
                            "reducing {} licenses to {to} leaves {pe_after} Professional + Enterprise licenses, which include no sandbox slot, and {sandboxes} sandbox instance(s) occupy {total_now} slot(s); buy a sandbox slot first (purchase_instance)",
                            plan.as_str()
                        ),
                    ));
                }
            }
            Ok(Effect::of(vec![meta_with(t, counters, |m| {
                if *to == 0 {
                    m.licenses.remove(plan);
                } else {
                    m.licenses.insert(*plan, *to);
                }
            })]))
        }
        Op::PurchaseStorage { to_gb } => {
            let have = t.storage.additional_gb;
            if *to_gb < have {
                return Err(ProviderError::Invalid(format!(
                    "purchase_storage to {to_gb} GB is below the {have} GB bought; use reduce_storage"
                )));
            }
            if *to_gb == have {
                return Ok(Effect::none());
            }
            check_t5(t, "storage")?;
            Ok(Effect::of(vec![meta_with(t, counters, |m| {
                m.storage.additional_gb = *to_gb;
            })]))
        }
        Op::ReduceStorage { to_gb } => {
            let have = t.storage.additional_gb;
            if *to_gb > have {
                return Err(ProviderError::Invalid(format!(
                    "reduce_storage to {to_gb} GB is above the {have} GB bought; use purchase_storage"
                )));
            }
            if *to_gb == have {
                return Ok(Effect::none());
            }
            Ok(Effect::of(vec![meta_with(t, counters, |m| {
                m.storage.additional_gb = *to_gb;
            })]))
        }
        Op::PurchaseInstance { kind } => {
            check_t5(t, &format!("a {} instance", kind.as_str()))?;
            let max = match kind {
                InstanceType::Production => MAX_PRODUCTION_INSTANCES,
                InstanceType::Sandbox => MAX_SANDBOX_INSTANCES,
            };
            let total = t.total_slots(*kind);
            if total + 1 > max {
                return Err(refused(
                    "T7",
                    format!(
                        "the tenant already has {total} {} slots; at most {max} are allowed",
                        kind.as_str()
                    ),
                ));
            }
            Ok(Effect::of(vec![meta_with(t, counters, |m| match kind {
                InstanceType::Production => m.slots.production += 1,
                InstanceType::Sandbox => m.slots.sandbox += 1,
            })]))
        }
        Op::CreateGroup { name, description } => {
            if name.trim().is_empty() {
                return Err(ProviderError::Invalid(
                    "a security group needs a display name".into(),
                ));
            }
            let mut c = counters;
            c.group += 1;
            let id = format!("grp-{:06}", c.group);
            let g = Group {
                id: id.clone(),
                name: name.clone(),
                description: description.clone(),
                members: BTreeSet::new(),
            };
            Ok(Effect {
                deltas: vec![meta_with(t, c, |_| {}), Delta::PutGroup(Box::new(g))],
                outcome: Outcome {
                    created_id: Some(id),
                    ..Outcome::default()
                },
            })
        }
        Op::UpdateGroup {
            group: r,
            name,
            description,
        } => {
            let g = group(t, r)?;
            let mut ng = g.clone();
            if let Some(n) = name {
                if n.trim().is_empty() {
                    return Err(ProviderError::Invalid(
                        "a security group needs a display name".into(),
                    ));
                }
                ng.name = n.clone();
            }
            if let Some(d) = description {
                ng.description = d.clone();
            }
            if &ng == g {
                return Ok(Effect::none());
            }
            Ok(Effect::of(vec![Delta::PutGroup(Box::new(ng))]))
        }
        Op::DeleteGroup { group: r } => {
            let g = group(t, r)?;
            let bound: Vec<&str> = t
                .instances
                .values()
                .filter(|i| i.security_group.as_deref() == Some(g.id.as_str()))
                .map(|i| i.url.as_str())
                .collect();
            if !bound.is_empty() {
                return Err(refused(
                    "I12",
                    format!(
                        "security group `{}` is bound to instance(s) {}; unbind it first",
                        g.name,
                        bound.join(", ")
                    ),
                ));
            }
            Ok(Effect::of(vec![Delta::DelGroup(g.id.clone())]))
        }
        Op::AddGroupMembers { group: r, users } | Op::RemoveGroupMembers { group: r, users } => {
            let adding = matches!(op, Op::AddGroupMembers { .. });
            let g = group(t, r)?;
            let mut deltas = Vec::new();
            let mut seen = BTreeSet::new();
            for ur in users {
                let u = user(t, ur)?;
                if !seen.insert(u.id.as_str()) {
                    continue;
                }
                let member = g.members.contains(&u.id);
                if adding && !member {
                    deltas.push(Delta::AddMember(g.id.clone(), u.id.clone()));
                } else if !adding && member {
                    deltas.push(Delta::DelMember(g.id.clone(), u.id.clone()));
                }
            }
            Ok(Effect::of(deltas))
        }
        Op::CreateUser {
            upn,
            name,
            access_mode,
        } => {
            check_upn(upn)?;
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
        } => {
            let u = user(t, r)?;
            let mut nu = u.clone();
            if let Some(n) = name {
                nu.name = n.clone();
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
            if &nu == u {
                return Ok(Effect::none());
            }
            Ok(Effect::of(vec![Delta::PutUser(Box::new(nu))]))
        }
        Op::DeleteUser { user: r } => {
            let u = user(t, r)?;
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
        Op::ConfigureInstance {
            name,
            url,
            kind,
            purpose,
            region,
            currency,
            language,
            security_group,
        } => {
            if name.trim().is_empty() {
                return Err(ProviderError::Invalid(
                    "an instance needs a friendly name".into(),
                ));
            }
            check_url(t, url, None)?;
            check_currency(currency)?;
            check_language(*language)?;
            if t.free_slots(*kind) == 0 {
                return Err(refused(
                    "I2",
                    format!(
                        "no {} slot is ready to configure ({} of {} in use); buy one first (purchase_instance)",
                        kind.as_str(),
                        t.used_slots(*kind),
                        t.total_slots(*kind)
                    ),
                ));
            }
            let group_id = match security_group {
                Some(g) => Some(bind_target(t, g)?),
                None => None,
            };
            let mut c = counters;
            c.instance += 1;
            let id = format!("org-{:06}", c.instance);
            let inst = Instance {
                id: id.clone(),
                name: name.clone(),
                url: url.clone(),
                kind: *kind,
                slot: *kind,
                purpose: purpose.clone(),
                region: *region,
                currency: currency.clone(),
                language: *language,
                security_group: group_id,
                status: InstanceStatus::Ready,
                version: newest(t),
                admin_mode: AdminModeState::default(),
                notification_recipients: vec![],
                update: None,
            };
            Ok(Effect {
                deltas: vec![meta_with(t, c, |_| {}), Delta::PutInstance(Box::new(inst))],
                outcome: Outcome {
                    created_id: Some(id),
                    ..Outcome::default()
                },
            })
        }
        Op::UpdateInstance {
            instance: r,
            name,
            url,
            purpose,
            security_group,
        } => {
            let i = instance(t, r)?;
            editable(i, "name, URL name, purpose or security group")?;
            let mut ni = i.clone();
            if let Some(n) = name {
                if n.trim().is_empty() {
                    return Err(ProviderError::Invalid(
                        "an instance needs a friendly name".into(),
                    ));
                }
                ni.name = n.clone();
            }
            if let Some(u) = url {
                if *u != i.url {
                    check_url(t, u, Some(&i.id))?;
                }
                ni.url = u.clone();
            }
            if let Some(p) = purpose {
                ni.purpose = p.clone();
            }
            match security_group {
                None => {}
                Some(None) => ni.security_group = None,
                Some(Some(g)) => ni.security_group = Some(bind_target(t, g)?),
            }
            if &ni == i {
                return Ok(Effect::none());
            }
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        Op::SwitchInstance { instance: r, to } => {
            let i = instance(t, r)?;
            if i.kind == *to {
                return Ok(Effect::none());
            }
            editable(i, "switch")?;
            let mut ni = i.clone();
            ni.kind = *to;
            match to {
                InstanceType::Sandbox => {
                    // I7: a production instance still in a sandbox slot (switched out of
                    // band) switches back into it.
                    if t.free_slots(InstanceType::Sandbox) > 0 || i.slot == InstanceType::Sandbox {
                        ni.slot = InstanceType::Sandbox;
                    } else if t.free_slots(InstanceType::Production) > 0 {
                        ni.slot = InstanceType::Production;
                    } else {
                        return Err(refused(
                            "I7",
                            format!(
                                "switching `{}` to sandbox needs a free sandbox slot (or another free production slot); buy a sandbox slot first",
                                i.url
                            ),
                        ));
                    }
                }
                InstanceType::Production => {
                    if i.admin_mode.enabled {
                        return Err(refused(
                            "I10",
                            format!("`{}` is in administration mode, which exists only for sandboxes; turn it off before switching to production", i.url),
                        ));
                    }
                    let free = t.free_slots(InstanceType::Production)
                        + u32::from(i.slot == InstanceType::Production);
                    if free == 0 {
                        return Err(refused(
                            "I7",
                            format!("switching `{}` to production needs a free production slot; buy one first", i.url),
                        ));
                    }
                    ni.slot = InstanceType::Production;
                }
            }
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        Op::SetAdminMode {
            instance: r,
            enabled,
            background_operations,
            message,
        } => {
            let i = instance(t, r)?;
            let wanted = AdminModeState {
                enabled: *enabled,
                background_operations: *background_operations,
                message: message.clone(),
            };
            if i.admin_mode == wanted {
                return Ok(Effect::none());
            }
            editable(i, "administration mode")?;
            if *enabled && i.kind == InstanceType::Production {
                return Err(refused(
                    "I10",
                    format!(
                        "administration mode exists only for sandboxes; `{}` is production",
                        i.url
                    ),
                ));
            }
            if !*enabled && !*background_operations {
                return Err(refused(
                    "I10",
                    format!(
                        "background operations of `{}` can be off only while administration mode is on",
                        i.url
                    ),
                ));
            }
            let mut ni = i.clone();
            ni.admin_mode = wanted;
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        Op::SetNotificationRecipients {
            instance: r,
            recipients,
        } => {
            let i = instance(t, r)?;
            if let Some(bad) = recipients.iter().find(|a| check_upn(a).is_err()) {
                return Err(ProviderError::Invalid(format!(
                    "notification recipient `{bad}` is not an email address (I13)"
                )));
            }
            if &i.notification_recipients == recipients {
                return Ok(Effect::none());
            }
            editable(i, "notification recipients")?;
            let mut ni = i.clone();
            ni.notification_recipients = recipients.clone();
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        Op::ScheduleUpdate {
            instance: r,
            target_version,
            preferred,
            alternate,
        } => {
            let i = instance(t, r)?;
            let wanted = UpdateState {
                target_version: target_version.clone(),
                preferred: preferred.clone(),
                alternate: alternate.clone(),
                state: UpdatePhase::Approved,
            };
            if i.update.as_ref() == Some(&wanted) {
                return Ok(Effect::none());
            }
            if let Some(u) = &i.update {
                if u.state == UpdatePhase::InProgress {
                    return Err(refused(
                        "U4",
                        format!("the update of `{}` to {} is in progress; it can no longer be rescheduled", i.url, u.target_version),
                    ));
                }
            }
            editable(i, "update approval")?;
            if !t.versions.iter().any(|v| v == target_version) {
                return Err(refused(
                    "U3",
                    format!(
                        "version {target_version} is not offered; known versions: {}",
                        t.versions.join(", ")
                    ),
                ));
            }
            if cmp_version(target_version, &i.version).is_le() {
                return Err(refused(
                    "U2",
                    format!(
                        "`{}` already runs {}; an update must target a newer version than that",
                        i.url, i.version
                    ),
                ));
            }
            if preferred.trim().is_empty() || alternate.trim().is_empty() {
                return Err(ProviderError::Invalid(
                    "an update approval names a preferred and an alternate date (U3)".into(),
                ));
            }
            let mut ni = i.clone();
            ni.update = Some(wanted);
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        Op::CopyInstance {
            source,
            target,
            kind: _,
        } => {
            let s = instance(t, source)?;
            let d = instance(t, target)?;
            if s.id == d.id {
                return Err(ProviderError::Invalid(format!(
                    "cannot copy instance `{}` onto itself",
                    s.url
                )));
            }
            if d.kind != InstanceType::Sandbox {
                return Err(refused(
                    "I11",
                    format!(
                        "copy target `{}` is a production instance; a copy lands only on a sandbox",
                        d.url
                    ),
                ));
            }
            if s.status == InstanceStatus::Provisioning {
                return Err(refused(
                    "I4",
                    format!("copy source `{}` is still provisioning", s.url),
                ));
            }
            editable(d, "copy onto it")?;
            if s.region != d.region {
                return Err(refused(
                    "I6",
                    format!(
                        "a copy lands in the source's region: `{}` is in {} but target `{}` is in {}",
                        s.url,
                        s.region.as_str(),
                        d.url,
                        d.region.as_str()
                    ),
                ));
            }
            let mut ni = d.clone();
            // The target's database is replaced by the source's: version, currency and
            // language come along; the target ends in administration mode with background
            // operations off (I11).
            ni.version = s.version.clone();
            ni.currency = s.currency.clone();
            ni.language = s.language;
            ni.update = None;
            ni.admin_mode = AdminModeState {
                enabled: true,
                background_operations: false,
                message: None,
            };
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        Op::ResetInstance {
            instance: r,
            currency,
            language,
        } => {
            let i = instance(t, r)?;
            if i.kind != InstanceType::Sandbox {
                return Err(refused(
                    "I9",
                    format!("only sandboxes can be reset; `{}` is production", i.url),
                ));
            }
            if i.status == InstanceStatus::Provisioning {
                return Err(refused("I4", format!("`{}` is still provisioning", i.url)));
            }
            check_currency(currency)?;
            check_language(*language)?;
            // I9: factory settings; currency and language chosen again; region kept (I6).
            let mut ni = i.clone();
            ni.currency = currency.clone();
            ni.language = *language;
            ni.version = newest(t);
            ni.update = None;
            ni.admin_mode = AdminModeState::default();
            ni.status = InstanceStatus::Ready;
            // Factory settings: the security roles held in the instance are gone too.
            let mut deltas = vec![Delta::PutInstance(Box::new(ni))];
            for u in t.users.values().filter(|u| u.roles.contains_key(&i.id)) {
                deltas.push(Delta::SetRoles(u.id.clone(), i.id.clone(), BTreeSet::new()));
            }
            Ok(Effect::of(deltas))
        }
        Op::DeleteInstance { instance: r } => {
            let i = instance(t, r)?;
            if i.kind != InstanceType::Sandbox {
                return Err(refused(
                    "I8",
                    format!(
                        "`{}` is a production instance; switch it to sandbox before deleting it",
                        i.url
                    ),
                ));
            }
            if i.status == InstanceStatus::Provisioning {
                return Err(refused("I4", format!("`{}` is still provisioning", i.url)));
            }
            // I2: the slot goes back to "ready to configure" (the instance row disappears).
            Ok(Effect::of(vec![Delta::DelInstance(i.id.clone())]))
        }
        Op::Adopt { kind, id, .. } => {
            let exists = match kind {
                ObjKind::Group => t.groups.contains_key(id),
                ObjKind::User => t.users.contains_key(id),
                ObjKind::Instance => t.instances.contains_key(id),
            };
            if exists {
                Ok(Effect::none())
            } else {
                Err(ProviderError::NotFound(format!("{kind:?} {id} (to adopt)")))
            }
        }
    }
}

/// I12: the group to bind must exist.
fn bind_target(t: &Tenant, g: &ObjRef) -> Result<String, ProviderError> {
    let id = id_of(g)?;
    if t.groups.contains_key(id) {
        Ok(id.to_string())
    } else {
        Err(refused(
            "I12",
            format!(
                "security group {} (id {id}) does not exist; create it before binding it",
                g.address
            ),
        ))
    }
}

fn newest(t: &Tenant) -> String {
    t.versions
        .iter()
        .max_by(|a, b| cmp_version(a, b))
        .cloned()
        .unwrap_or_else(|| {
            crate::observed::KNOWN_VERSIONS[crate::observed::KNOWN_VERSIONS.len() - 1].to_string()
        })
}
