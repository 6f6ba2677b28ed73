//! The operations a provider executes ([`Op`]), the objects they name ([`ObjRef`],
//! [`ObjKind`]) and the kinds of action ([`ActionKind`]). Shared by the planner, apply, the
//! state and every provider; no I/O.

use serde::{Deserialize, Serialize};

use crate::domain::kinds::{AccessMode, AdminRole, CopyKind, InstanceType, LicensePlan, Region};

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
