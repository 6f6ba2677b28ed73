//! After an *outcome unknown* (the request may have been carried out): did the op take
//! effect? A pure decision from the op, a fresh observation of its scope and the state
//! (issue 11 item 4).

use crate::domain::ident;
use crate::domain::op::{ObjKind, Op};
use crate::observed::Tenant;
use crate::provider::{replay_safe, Outcome};
use crate::state::State;

/// What to do with an op whose outcome was unknown, once its scope was observed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// It took effect: done, with this outcome (a create's id found by natural key).
    Done(Outcome),
    /// It did not take effect, or repeating it is harmless: send it again.
    Replay,
    /// Cannot tell, and repeating it could do it twice (buy a second slot, copy or reset
    /// again, make a second group): not replayed; the op fails as outcome unknown.
    Unknown,
}

/// Decide from `observed` (fresh, at least the op's [`crate::provider::Scope::for_op`])
/// whether `op` took effect. `state` tells which objects are managed already (a group
/// found by name that another address manages is not the one this op made).
///
/// - creates: the natural key (UPN, instance URL; a group's name held by exactly one
///   unmanaged group) now exists: done, with its id; absent: replay (a second user or
///   instance would be refused anyway, P1 / I5); several unmanaged groups of that name:
///   unknown;
/// - deletes: the object is gone: done; still there: replay;
/// - ops that set a value, a set union or difference ([`replay_safe`]): replay;
/// - `purchase_instance`, `copy_instance`, `reset_instance`: unknown (the observation
///   cannot tell one purchase, copy or reset from two).
pub fn settle(op: &Op, observed: &Tenant, state: &State) -> Settled {
    let found = |id: Option<&String>| match id {
        Some(id) => Settled::Done(Outcome::created(id.clone())),
        None => Settled::Replay,
    };
    let gone = |present: bool| {
        if present {
            Settled::Replay
        } else {
            Settled::Done(Outcome::default())
        }
    };
    let has = |r: &crate::domain::op::ObjRef, kind: ObjKind| {
        let Some(id) = r.id.as_deref() else {
            return true;
        };
        match kind {
            ObjKind::User => observed.users.contains_key(id),
            ObjKind::Group => observed.groups.contains_key(id),
            ObjKind::Instance => observed.instances.contains_key(id),
        }
    };
    match op {
        Op::CreateUser { upn, .. } => found(
            observed
                .users
                .values()
                .find(|u| ident::same(&u.upn, upn))
                .map(|u| &u.id),
        ),
        Op::ConfigureInstance { url, .. } => found(
            observed
                .instances
                .values()
                .find(|i| ident::same(&i.url, url))
                .map(|i| &i.id),
        ),
        Op::CreateGroup { name, .. } => {
            let managed = |id: &str| {
                state
                    .resources
                    .values()
                    .any(|r| r.kind == ObjKind::Group && r.id == id)
            };
            let mut candidates = observed
                .groups
                .values()
                .filter(|g| ident::same(&g.name, name) && !managed(&g.id));
            match (candidates.next(), candidates.next()) {
                (None, _) => Settled::Replay,
                (Some(g), None) => Settled::Done(Outcome::created(g.id.clone())),
                (Some(_), Some(_)) => Settled::Unknown,
            }
        }
        Op::DeleteUser { user } => gone(has(user, ObjKind::User)),
        Op::DeleteGroup { group } => gone(has(group, ObjKind::Group)),
        Op::DeleteInstance { instance } => gone(has(instance, ObjKind::Instance)),
        op if replay_safe(op) => Settled::Replay,
        _ => Settled::Unknown,
    }
}
