//! The service's rules (domain.md), checked against the in-memory tenant before anything is
//! written. Each op becomes a list of [`Delta`]s or a refusal naming the rule.
//!
//! One file per resource: [`licenses`] (T3-T7), [`groups`] (I12), [`users`] (P1-P6),
//! [`instances`] (I2, I4-I9, I11), [`settings`] (I10, I13, U2-U4); this one holds the
//! dispatch, the lookups and the checks they share.

mod groups;
mod instances;
mod licenses;
mod settings;
mod users;

use crate::domain::op::{ObjKind, ObjRef, Op};
use crate::observed::{Group, Instance, InstanceStatus, Tenant, User};
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

fn meta_with(t: &Tenant, counters: Counters, f: impl FnOnce(&mut Meta)) -> Delta {
    let mut m = Meta::of(t, counters);
    f(&mut m);
    Delta::Meta(Box::new(m))
}

/// An op given to the module of another resource (a dispatch error, never the caller's).
fn not_mine(op: &Op, resource: &str) -> ProviderError {
    ProviderError::Invalid(format!(
        "{} is not a {resource} operation",
        op.kind().as_str()
    ))
}

/// Check `op` against the tenant and compute what it writes.
pub(crate) fn effect(
    t: &Tenant,
    idx: &Index,
    counters: Counters,
    op: &Op,
) -> Result<Effect, ProviderError> {
    match op {
        Op::PurchaseLicenses { .. }
        | Op::ReduceLicenses { .. }
        | Op::PurchaseStorage { .. }
        | Op::ReduceStorage { .. }
        | Op::PurchaseInstance { .. } => licenses::effect(t, idx, counters, op),
        Op::CreateGroup { .. }
        | Op::UpdateGroup { .. }
        | Op::DeleteGroup { .. }
        | Op::AddGroupMembers { .. }
        | Op::RemoveGroupMembers { .. } => groups::effect(t, counters, op),
        Op::CreateUser { .. }
        | Op::UpdateUser { .. }
        | Op::DeleteUser { .. }
        | Op::AssignLicense { .. }
        | Op::RemoveLicense { .. }
        | Op::SetAccessMode { .. }
        | Op::AssignRoles { .. }
        | Op::RemoveRoles { .. } => users::effect(t, idx, counters, op),
        Op::ConfigureInstance { .. }
        | Op::UpdateInstance { .. }
        | Op::SwitchInstance { .. }
        | Op::ResetInstance { .. }
        | Op::DeleteInstance { .. }
        | Op::BackupInstance { .. }
        | Op::CopyInstance { .. } => instances::effect(t, counters, op),
        Op::SetAdminMode { .. }
        | Op::SetNotificationRecipients { .. }
        | Op::ScheduleUpdate { .. } => settings::effect(t, op),
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
