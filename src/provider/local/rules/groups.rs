//! Security groups and their members: I12.

use std::collections::BTreeSet;

use crate::domain::op::Op;
use crate::observed::{Group, Tenant};
use crate::provider::local::delta::{Counters, Delta};
use crate::provider::{Outcome, ProviderError};

use super::{group, meta_with, not_mine, refused, user, Effect};

/// Check a security group op against the tenant and compute what it writes.
pub(super) fn effect(t: &Tenant, counters: Counters, op: &Op) -> Result<Effect, ProviderError> {
    match op {
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
        _ => Err(not_mine(op, "security group")),
    }
}
