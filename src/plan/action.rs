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
use crate::tenant::{AccessMode, AdminRole, CopyKind, InstanceType, LicensePlan, Region};

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

/// The kinds of action, as named in the JSON plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ActionKind {
    PurchaseLicenses,
    ReduceLicenses,
    PurchaseStorage,
    ReduceStorage,
    PurchaseInstance,
    CreateGroup,
    UpdateGroup,
    DeleteGroup,
    AddGroupMembers,
    RemoveGroupMembers,
    CreateUser,
    UpdateUser,
    DeleteUser,
    AssignLicense,
    RemoveLicense,
    SetAccessMode,
    AssignRoles,
    RemoveRoles,
    ConfigureInstance,
    UpdateInstance,
    SwitchInstance,
    SetAdminMode,
    SetNotificationRecipients,
    ScheduleUpdate,
    CopyInstance,
    ResetInstance,
    DeleteInstance,
    Adopt,
}

impl ActionKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::PurchaseLicenses => "purchase_licenses",
            ActionKind::ReduceLicenses => "reduce_licenses",
            ActionKind::PurchaseStorage => "purchase_storage",
            ActionKind::ReduceStorage => "reduce_storage",
            ActionKind::PurchaseInstance => "purchase_instance",
            ActionKind::CreateGroup => "create_group",
            ActionKind::UpdateGroup => "update_group",
            ActionKind::DeleteGroup => "delete_group",
            ActionKind::AddGroupMembers => "add_group_members",
            ActionKind::RemoveGroupMembers => "remove_group_members",
            ActionKind::CreateUser => "create_user",
            ActionKind::UpdateUser => "update_user",
            ActionKind::DeleteUser => "delete_user",
            ActionKind::AssignLicense => "assign_license",
            ActionKind::RemoveLicense => "remove_license",
            ActionKind::SetAccessMode => "set_access_mode",
            ActionKind::AssignRoles => "assign_roles",
            ActionKind::RemoveRoles => "remove_roles",
            ActionKind::ConfigureInstance => "configure_instance",
            ActionKind::UpdateInstance => "update_instance",
            ActionKind::SwitchInstance => "switch_instance",
            ActionKind::SetAdminMode => "set_admin_mode",
            ActionKind::SetNotificationRecipients => "set_notification_recipients",
            ActionKind::ScheduleUpdate => "schedule_update",
            ActionKind::CopyInstance => "copy_instance",
            ActionKind::ResetInstance => "reset_instance",
            ActionKind::DeleteInstance => "delete_instance",
            ActionKind::Adopt => "adopt",
        }
    }

    /// Whether every action of this kind loses data or access: deletes (I8, P5, I12) and
    /// resets (I9). A copy (I11) is destructive only onto an existing instance, which
    /// depends on the op: see [`Plan::destructive_flags`].
    pub fn always_destructive(self) -> bool {
        matches!(
            self,
            ActionKind::DeleteInstance
                | ActionKind::ResetInstance
                | ActionKind::DeleteUser
                | ActionKind::DeleteGroup
        )
    }
}

impl Plan {
    /// Which actions lose data or access, derived from each action's kind and op, never
    /// from its stored `destructive` flag (issue 9 item 3: an edited saved plan must not
    /// get past `--allow-destroy`). The always-destructive kinds
    /// ([`ActionKind::always_destructive`]), and a `copy_instance` unless its target is a
    /// new instance that an action of the same plan configures (a copy overwrites the
    /// target's application and data, I11).
    pub fn destructive_flags(&self) -> Vec<bool> {
        // The addresses this plan configures: few (one per new instance).
        let mut configured: Vec<&str> = self
            .actions
            .iter()
            .filter(|a| matches!(*a.op, Op::ConfigureInstance { .. }))
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
}

/// A reference to a remote object: its address in the file and, when known, its remote id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjRef {
    /// Address in the file (`users.ana@coho.com`), or the remote id for unmanaged objects.
    /// Shared: a user listed in many groups is referred to by one string.
    pub address: std::sync::Arc<str>,
    /// Remote id; `None` when the object is created earlier in the same apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Kinds of remote object that the state file tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjKind {
    /// A security group.
    Group,
    /// A user.
    User,
    /// An instance.
    Instance,
}

/// The typed operation a provider executes. Every op is one request to the service.
///
/// Idempotency contract (each provider documents how it keeps it): ops that *set* a value
/// (`Set*`, `Update*`, `ReduceLicenses`, `Assign*`/`Remove*` with explicit lists) are
/// idempotent; ops that *create* or *buy* (`Create*`, `PurchaseInstance`, `ConfigureInstance`,
/// `CopyInstance`) are not, which is why apply records their ids in the state after each
/// batch and the planner adopts objects found by natural key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Op {
    /// Raise the purchased count of a plan to `to` (T5).
    PurchaseLicenses { plan: LicensePlan, to: u32 },
    /// Lower the purchased count of a plan to `to` (T4).
    ReduceLicenses { plan: LicensePlan, to: u32 },
    /// Set the storage add-on to `to_gb` (raise, T5).
    PurchaseStorage { to_gb: u32 },
    /// Set the storage add-on to `to_gb` (lower).
    ReduceStorage { to_gb: u32 },
    /// Buy one instance slot of a kind (I2, T5, T7).
    PurchaseInstance { kind: InstanceType },
    /// Create a security group.
    CreateGroup { name: String, description: String },
    /// Change a group's name or description (None = unchanged).
    UpdateGroup {
        group: ObjRef,
        name: Option<String>,
        description: Option<String>,
    },
    /// Delete a group (I12: must be bound to no instance).
    DeleteGroup { group: ObjRef },
    /// Add members to a group.
    AddGroupMembers { group: ObjRef, users: Vec<ObjRef> },
    /// Remove members from a group.
    RemoveGroupMembers { group: ObjRef, users: Vec<ObjRef> },
    /// Create a user (P1). Application users are created with their access mode (P3).
    CreateUser {
        upn: String,
        name: String,
        access_mode: AccessMode,
    },
    /// Change a user's profile or tenant admin roles (None = unchanged). `upn` changes how
    /// the user principal name is spelled (its case: the file's key; P1 compares UPNs
    /// without regard to case).
    UpdateUser {
        user: ObjRef,
        name: Option<String>,
        admin_roles: Option<Vec<AdminRole>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upn: Option<String>,
    },
    /// Delete a user (frees the license, P5).
    DeleteUser { user: ObjRef },
    /// Assign (or change) a user's license (T3).
    AssignLicense { user: ObjRef, plan: LicensePlan },
    /// Remove a user's license (P5).
    RemoveLicense { user: ObjRef },
    /// Set a user's access mode (P3, P4).
    SetAccessMode { user: ObjRef, mode: AccessMode },
    /// Add security roles in an instance (P2).
    AssignRoles {
        user: ObjRef,
        instance: ObjRef,
        roles: Vec<String>,
    },
    /// Remove security roles in an instance.
    RemoveRoles {
        user: ObjRef,
        instance: ObjRef,
        roles: Vec<String>,
    },
    /// Configure a free slot into an instance (I2).
    ConfigureInstance {
        name: String,
        url: String,
        kind: InstanceType,
        purpose: String,
        region: Region,
        currency: String,
        language: u32,
        security_group: Option<ObjRef>,
    },
    /// Edit an instance's name, URL, purpose or security group (I4). For the group:
    /// `None` = unchanged, `Some(None)` = unbind, `Some(Some(g))` = bind.
    UpdateInstance {
        instance: ObjRef,
        name: Option<String>,
        url: Option<String>,
        purpose: Option<String>,
        // Absent = unchanged, null = unbind: without this, `null` read back from a saved
        // plan would be `None` and an unbind would silently do nothing.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        security_group: Option<Option<ObjRef>>,
    },
    /// Switch between production and sandbox (I7).
    SwitchInstance { instance: ObjRef, to: InstanceType },
    /// Set administration mode (I10).
    SetAdminMode {
        instance: ObjRef,
        enabled: bool,
        background_operations: bool,
        message: Option<String>,
    },
    /// Set the extra update notification recipients (I13).
    SetNotificationRecipients {
        instance: ObjRef,
        recipients: Vec<String>,
    },
    /// Approve or reschedule an update (U2-U4).
    ScheduleUpdate {
        instance: ObjRef,
        target_version: String,
        preferred: String,
        alternate: String,
    },
    /// Copy `source` onto the sandbox `target` (I11).
    CopyInstance {
        source: ObjRef,
        target: ObjRef,
        kind: CopyKind,
    },
    /// Reset a sandbox, optionally choosing currency and language again (I9).
    ResetInstance {
        instance: ObjRef,
        currency: String,
        language: u32,
    },
    /// Delete a sandbox instance (I8).
    DeleteInstance { instance: ObjRef },
    /// Take an existing object under management: no remote change, apply records the id.
    /// With `from`, the object is managed already, under the state address `from`, and is
    /// re-keyed: apply records it under the action's address and drops `from` (issue 9
    /// item 2: a key whose case changed names the same object).
    Adopt {
        kind: ObjKind,
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
}

/// A field that is present in the JSON, `null` included: `Some(value)`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

impl Op {
    /// The kind of action this op belongs to (an action whose kind is not its op's is
    /// malformed: apply refuses the plan).
    pub fn kind(&self) -> ActionKind {
        match self {
            Op::PurchaseLicenses { .. } => ActionKind::PurchaseLicenses,
            Op::ReduceLicenses { .. } => ActionKind::ReduceLicenses,
            Op::PurchaseStorage { .. } => ActionKind::PurchaseStorage,
            Op::ReduceStorage { .. } => ActionKind::ReduceStorage,
            Op::PurchaseInstance { .. } => ActionKind::PurchaseInstance,
            Op::CreateGroup { .. } => ActionKind::CreateGroup,
            Op::UpdateGroup { .. } => ActionKind::UpdateGroup,
            Op::DeleteGroup { .. } => ActionKind::DeleteGroup,
            Op::AddGroupMembers { .. } => ActionKind::AddGroupMembers,
            Op::RemoveGroupMembers { .. } => ActionKind::RemoveGroupMembers,
            Op::CreateUser { .. } => ActionKind::CreateUser,
            Op::UpdateUser { .. } => ActionKind::UpdateUser,
            Op::DeleteUser { .. } => ActionKind::DeleteUser,
            Op::AssignLicense { .. } => ActionKind::AssignLicense,
            Op::RemoveLicense { .. } => ActionKind::RemoveLicense,
            Op::SetAccessMode { .. } => ActionKind::SetAccessMode,
            Op::AssignRoles { .. } => ActionKind::AssignRoles,
            Op::RemoveRoles { .. } => ActionKind::RemoveRoles,
            Op::ConfigureInstance { .. } => ActionKind::ConfigureInstance,
            Op::UpdateInstance { .. } => ActionKind::UpdateInstance,
            Op::SwitchInstance { .. } => ActionKind::SwitchInstance,
            Op::SetAdminMode { .. } => ActionKind::SetAdminMode,
            Op::SetNotificationRecipients { .. } => ActionKind::SetNotificationRecipients,
            Op::ScheduleUpdate { .. } => ActionKind::ScheduleUpdate,
            Op::CopyInstance { .. } => ActionKind::CopyInstance,
            Op::ResetInstance { .. } => ActionKind::ResetInstance,
            Op::DeleteInstance { .. } => ActionKind::DeleteInstance,
            Op::Adopt { .. } => ActionKind::Adopt,
        }
    }

    /// The instance whose data the op deletes or overwrites: the instance of
    /// `delete_instance` and `reset_instance` (I8, I9), the target of `copy_instance` (I11).
    pub fn destroyed_instance(&self) -> Option<&ObjRef> {
        match self {
            Op::DeleteInstance { instance } | Op::ResetInstance { instance, .. } => Some(instance),
            Op::CopyInstance { target, .. } => Some(target),
            _ => None,
        }
    }

    /// Whether the op creates an object whose id apply must record under the action's
    /// address.
    pub fn creates(&self) -> Option<ObjKind> {
        match self {
            Op::CreateGroup { .. } => Some(ObjKind::Group),
            Op::CreateUser { .. } => Some(ObjKind::User),
            Op::ConfigureInstance { .. } => Some(ObjKind::Instance),
            _ => None,
        }
    }

    /// Whether the op deletes the object at the action's address (apply forgets it).
    pub fn deletes(&self) -> bool {
        matches!(
            self,
            Op::DeleteGroup { .. } | Op::DeleteUser { .. } | Op::DeleteInstance { .. }
        )
    }

    /// Every object reference the op holds, for apply to resolve ids.
    pub fn refs_mut(&mut self) -> Vec<&mut ObjRef> {
        match self {
            Op::UpdateGroup { group, .. } | Op::DeleteGroup { group } => vec![group],
            Op::AddGroupMembers { group, users } | Op::RemoveGroupMembers { group, users } => {
                let mut v = vec![group];
                v.extend(users.iter_mut());
                v
            }
            Op::UpdateUser { user, .. }
            | Op::DeleteUser { user }
            | Op::AssignLicense { user, .. }
            | Op::RemoveLicense { user }
            | Op::SetAccessMode { user, .. } => vec![user],
            Op::AssignRoles { user, instance, .. } | Op::RemoveRoles { user, instance, .. } => {
                vec![user, instance]
            }
            Op::ConfigureInstance { security_group, .. } => {
                security_group.as_mut().into_iter().collect()
            }
            Op::UpdateInstance {
                instance,
                security_group,
                ..
            } => {
                let mut v = vec![instance];
                if let Some(Some(g)) = security_group {
                    v.push(g);
                }
                v
            }
            Op::SwitchInstance { instance, .. }
            | Op::SetAdminMode { instance, .. }
            | Op::SetNotificationRecipients { instance, .. }
            | Op::ScheduleUpdate { instance, .. }
            | Op::ResetInstance { instance, .. }
            | Op::DeleteInstance { instance } => vec![instance],
            Op::CopyInstance { source, target, .. } => vec![source, target],
            Op::PurchaseLicenses { .. }
            | Op::ReduceLicenses { .. }
            | Op::PurchaseStorage { .. }
            | Op::ReduceStorage { .. }
            | Op::PurchaseInstance { .. }
            | Op::CreateGroup { .. }
            | Op::CreateUser { .. }
            | Op::Adopt { .. } => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
