//! The plan as a value: actions, their typed operations, and diagnostics.
//!
//! A [`Plan`] is produced by the pure planner and consumed by renderers (human, JSON,
//! Markdown, DOT) and by apply. An [`Action`]'s [`Op`] is what a provider executes. Ops name
//! the objects they touch by [`ObjRef`]: the address from the file, plus the remote id when
//! the object already exists. For objects created earlier in the same apply, apply fills the
//! id in from the state before the op reaches the provider.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::diag::Diagnostic;
use crate::domain::op::{ActionKind, ObjKind, Op};

/// Version of the JSON plan format.
pub const FORMAT_VERSION: &str = "1";

/// A plan: every action in execution order, plus diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// JSON format version, `"1"`.
    pub format_version: String,
    /// Tenant domain.
    pub tenant: String,
    /// Fingerprint of the observed tenant the plan was made against (hex SHA-256).
    pub fingerprint: String,
    /// Counts per category.
    pub summary: Summary,
    /// Actions in a valid execution order; `actions[i].id == i`.
    pub actions: Vec<Action>,
    /// Warnings and errors found while planning. A plan with an error cannot be applied.
    pub diagnostics: Vec<Diagnostic>,
    /// State entries to drop: their object no longer exists in the observed tenant and the
    /// file no longer declares their address (e.g. left by a crash right after a delete).
    /// Apply removes them from the state and reports them; each is also a warning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forget: Vec<Forget>,
    /// Actions a person does because the backend has no API for them (issue 13 item 4),
    /// with instructions and the check that tells them done. Set by `ops` from the backend
    /// (the planner itself knows no backend); apply computes them again, never reads them
    /// from a saved plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manual: Vec<crate::plan::manual::ManualStep>,
    /// What changed in the tenant outside crmctl since the last apply (issue 14 item 2),
    /// by address, apart from the changes of the file. Computed by the planner from the
    /// observed tenant and the state's snapshots ([`crate::plan::drift`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<crate::plan::drift::Drift>,
    /// `--target` / `--exclude` / `--replace` (issue 14 item 4): what was asked, which
    /// actions came in as dependencies, what was excluded. Absent for a full plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeting: Option<crate::plan::target::Targeting>,
    /// A refresh-only plan (`plan --refresh-only`, [`crate::plan::drift::refresh_only`]):
    /// applying it (also saved: `plan --refresh-only --out`) accepts the drift into the
    /// state and changes nothing in the tenant. Not in the JSON output (its `actions` are
    /// empty and its `drift` says what is accepted); in a saved plan, under the checksum.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_only: bool,
}

/// A state entry the plan drops (see [`Plan::forget`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forget {
    /// The state address, e.g. `users.gus@coho.com`.
    pub address: String,
    /// What it managed.
    pub kind: ObjKind,
    /// The remote id the state holds (apply drops the entry only while it still holds it).
    pub id: String,
}

/// Counts of actions per category (for the summary line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Purchases (`$`).
    pub buy: usize,
    /// Creations (`+`).
    pub create: usize,
    /// Changes in place (`~`).
    pub change: usize,
    /// Deletions (`-`).
    pub delete: usize,
    /// Replacements (`-/+`): resets and copies.
    pub replace: usize,
    /// Existing objects taken under management (`adopt`): no remote change.
    #[serde(default)]
    pub adopt: usize,
    /// State entries dropped ([`Plan::forget`]): no remote change, but the state changes
    /// (issue 9 item 2). Absent from the JSON when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub forget: usize,
    /// Objects changed outside crmctl since the last apply ([`Plan::drift`]). Absent from
    /// the JSON when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drift: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Position in execution order.
    pub id: usize,
    /// The kind of action (snake_case in JSON).
    pub kind: ActionKind,
    /// Address of the resource in the file, e.g. `instances.sales`.
    pub address: String,
    /// Ids of the actions that must succeed before this one starts.
    pub depends_on: Vec<usize>,
    /// Whether the action loses data or access (gated by `--allow-destroy`). For display
    /// only: apply never trusts it (a saved plan file can be edited) and derives it from
    /// the kind and the op with [`Plan::destructive_flags`].
    pub destructive: bool,
    /// Attribute-level changes, for display.
    pub changes: Vec<Change>,
    /// Why the action is needed (one sentence, may cite a rule id). Mostly a fixed text:
    /// a 300,000-action plan does not allocate one per action.
    pub reason: Cow<'static, str>,
    /// What the provider executes.
    pub op: Box<Op>,
}

/// An attribute-level change: `path` from `before` to `after` (JSON values; null = absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Attribute path relative to the address, e.g. `name` or `roles.sales`.
    pub path: Cow<'static, str>,
    /// Value before.
    pub before: serde_json::Value,
    /// Value after.
    pub after: serde_json::Value,
}

impl Plan {
    /// Per action, whether it only puts back a change made outside crmctl (listed in a
    /// [`crate::plan::drift::Drift::reverted_by`]) rather than a change of the file.
    pub fn drift_reverts(&self) -> Vec<bool> {
        let mut out = vec![false; self.actions.len()];
        for d in &self.drift {
            for &i in &d.reverted_by {
                if let Some(x) = out.get_mut(i) {
                    *x = true;
                }
            }
        }
        out
    }

    /// Whether the plan changes something the file asks for: an action that is not only a
    /// revert of drift, or a state entry to forget (`plan --detailed-exitcode` 2).
    pub fn has_file_changes(&self) -> bool {
        !self.forget.is_empty() || self.drift_reverts().iter().any(|r| !r)
    }

    /// Which actions lose data or access, derived from each action's kind and op, never
    /// from its stored `destructive` flag (issue 9 item 3: an edited saved plan must not
    /// get past `--allow-destroy`). The always-destructive kinds
    /// ([`ActionKind::always_destructive`]), and a `copy_instance` unless its target is a
    /// new instance that an action of the same plan configures (a copy overwrites the
    /// target's application and data, I11) and whose id the plan leaves to apply. An
    /// instance adopted by the plan counts as configured for a copy without an id: the
    /// planner writes one only onto an instance whose create a killed run left pending
    /// (issue 13 item 2).
    pub fn destructive_flags(&self) -> Vec<bool> {
        // The addresses this plan configures: few (one per new instance).
        let mut configured: Vec<&str> = self
            .actions
            .iter()
            .filter(|a| {
                matches!(
                    *a.op,
                    Op::ConfigureInstance { .. }
                        | Op::Adopt {
                            kind: ObjKind::Instance,
                            ..
                        }
                )
            })
            .map(|a| a.address.as_str())
            .collect();
        configured.sort_unstable();
        self.actions
            .iter()
            .map(|a| {
                a.kind.always_destructive()
                    || a.op.kind().always_destructive()
                    || match &*a.op {
                        Op::CopyInstance { target, .. } => {
                            target.id.is_some()
                                || configured.binary_search(&&*target.address).is_err()
                        }
                        _ => false,
                    }
            })
            .collect()
    }

    /// [`Plan::destructive_flags`], except for the actions an earlier run started and the
    /// state holds as `pending` (same address and kind): apply polls those to their end and
    /// never sends them again, so they destroy nothing more (issue 13 item 2: a copy
    /// resumed after `kill -9`). Neither `--allow-destroy` nor a backup is asked for them.
    pub fn destructive_flags_resuming(
        &self,
        pending: &std::collections::BTreeMap<String, crate::state::PendingOperation>,
    ) -> Vec<bool> {
        let mut flags = self.destructive_flags();
        for (flag, a) in flags.iter_mut().zip(&self.actions) {
            if pending.get(&a.address).is_some_and(|p| p.kind == a.kind) {
                *flag = false;
            }
        }
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kinds::{CopyKind, InstanceType, Region};
    use crate::domain::op::ObjRef;

    fn r(address: &str, id: Option<&str>) -> ObjRef {
        ObjRef {
            address: address.into(),
            id: id.map(str::to_string),
        }
    }

    fn action(id: usize, address: &str, op: Op, stored: bool) -> Action {
        Action {
            id,
            kind: op.kind(),
            address: address.into(),
            depends_on: vec![],
            destructive: stored,
            changes: vec![],
            reason: "test".into(),
            op: Box::new(op),
        }
    }

    fn configure() -> Op {
        Op::ConfigureInstance {
            name: "t".into(),
            url: "t".into(),
            kind: InstanceType::Sandbox,
            purpose: String::new(),
            region: Region::NA,
            currency: "USD".into(),
            language: 1033,
            security_group: None,
        }
    }

    fn copy(target: ObjRef) -> Op {
        Op::CopyInstance {
            source: r("instances.p", Some("org-000001")),
            target,
            kind: CopyKind::Full,
        }
    }

    // issue 9 item 3: destructiveness comes from the kind and the op, never from the
    // stored flag (which every case below sets to the wrong value). I11: a copy is
    // destructive unless it lands on an instance this plan configures.
    #[test]
    fn destructive_flags_are_derived_from_the_ops() {
        let user = r("users.a", Some("usr-000001"));
        let inst = r("instances.t", Some("org-000002"));
        let cases: Vec<(&str, Vec<Action>, bool)> = vec![
            (
                "delete_user",
                vec![action(
                    0,
                    "users.a",
                    Op::DeleteUser { user: user.clone() },
                    false,
                )],
                true,
            ),
            (
                "delete_instance",
                vec![action(
                    0,
                    "instances.t",
                    Op::DeleteInstance {
                        instance: inst.clone(),
                    },
                    false,
                )],
                true,
            ),
            (
                "reset_instance",
                vec![action(
                    0,
                    "instances.t",
                    Op::ResetInstance {
                        instance: inst.clone(),
                        currency: "EUR".into(),
                        language: 1033,
                    },
                    false,
                )],
                true,
            ),
            (
                "remove_license",
                vec![action(
                    0,
                    "users.a",
                    Op::RemoveLicense { user: user.clone() },
                    true,
                )],
                false,
            ),
            (
                "copy onto an existing instance",
                vec![action(0, "instances.t", copy(inst.clone()), false)],
                true,
            ),
            (
                "copy onto an address nothing configures",
                vec![action(
                    0,
                    "instances.t",
                    copy(r("instances.t", None)),
                    false,
                )],
                true,
            ),
            (
                "copy onto a sandbox configured by the plan",
                vec![
                    action(0, "instances.t", configure(), true),
                    action(1, "instances.t", copy(r("instances.t", None)), true),
                ],
                false,
            ),
        ];
        for (what, actions, expected) in cases {
            let plan = Plan {
                actions,
                ..Plan::default()
            };
            assert_eq!(
                plan.destructive_flags().last().copied(),
                Some(expected),
                "{what}"
            );
        }
        // A kind that hides a destructive op still counts as destructive.
        let mut hidden = action(0, "users.a", Op::DeleteUser { user }, false);
        hidden.kind = ActionKind::UpdateUser;
        let plan = Plan {
            actions: vec![hidden],
            ..Plan::default()
        };
        assert_eq!(plan.destructive_flags(), vec![true]);
    }
}
