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
    BackupInstance,
    Adopt,
}

/// What an action counts as in a plan's summary, and the symbol renderers print for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// A purchase (`$`).
    Buy,
    /// A new object (`+`).
    Create,
    /// A change in place (`~`).
    Change,
    /// A deletion (`-`).
    Delete,
    /// A replacement of content (`-/+`): resets and copies.
    Replace,
    /// An existing object taken under management (`+`): no remote change.
    Adopt,
}

impl Category {
    /// The symbol of the human and Markdown renderings.
    #[inline]
    pub const fn symbol(self) -> &'static str {
        match self {
            Category::Buy => "$",
            Category::Create | Category::Adopt => "+",
            Category::Change => "~",
            Category::Delete => "-",
            Category::Replace => "-/+",
        }
    }
}

/// The facts of one [`ActionKind`], from [`ActionKind::info`]: the one table that the
/// summary, the renderers, destructiveness and apply's state bookkeeping all read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// The snake_case name, as in the JSON plan.
    pub name: &'static str,
    /// What the summary counts it as.
    pub category: Category,
    /// The symbol the human and Markdown renderings print ([`Category::symbol`]).
    pub symbol: &'static str,
    /// Whether every action of the kind loses data or access (see
    /// [`ActionKind::always_destructive`]).
    pub always_destructive: bool,
    /// The kind of object it creates, whose id apply records under the action's address.
    pub creates: Option<ObjKind>,
    /// The kind of object it deletes at the action's address (apply forgets it).
    pub deletes: Option<ObjKind>,
}

/// One row of the table.
const fn row(
    name: &'static str,
    category: Category,
    always_destructive: bool,
    creates: Option<ObjKind>,
    deletes: Option<ObjKind>,
) -> KindInfo {
    KindInfo {
        name,
        category,
        symbol: category.symbol(),
        always_destructive,
        creates,
        deletes,
    }
}

impl ActionKind {
    /// Every kind, in declaration order.
    pub const ALL: [ActionKind; 29] = {
        use ActionKind as K;
        [
            K::PurchaseLicenses,
            K::ReduceLicenses,
            K::PurchaseStorage,
            K::ReduceStorage,
            K::PurchaseInstance,
            K::CreateGroup,
            K::UpdateGroup,
            K::DeleteGroup,
            K::AddGroupMembers,
            K::RemoveGroupMembers,
            K::CreateUser,
            K::UpdateUser,
            K::DeleteUser,
            K::AssignLicense,
            K::RemoveLicense,
            K::SetAccessMode,
            K::AssignRoles,
            K::RemoveRoles,
            K::ConfigureInstance,
            K::UpdateInstance,
            K::SwitchInstance,
            K::SetAdminMode,
            K::SetNotificationRecipients,
            K::ScheduleUpdate,
            K::CopyInstance,
            K::ResetInstance,
            K::DeleteInstance,
            K::BackupInstance,
            K::Adopt,
        ]
    };

    /// The table of action kinds: one row per kind (the match makes the compiler check
    /// that every kind has one).
    ///
    /// Destructive (I8, P5, I12, I9): deletes and resets. A copy (I11) is destructive only
    /// onto an existing instance, which depends on the op: see `Plan::destructive_flags`.
    #[inline]
    pub const fn info(self) -> KindInfo {
        use ActionKind as K;
        use Category::{Adopt, Buy, Change, Create, Delete, Replace};
        use ObjKind::{Group, Instance, User};
        // kind => row(name, category, always destructive, creates, deletes)
        match self {
            K::PurchaseLicenses => row("purchase_licenses", Buy, false, None, None),
            K::ReduceLicenses => row("reduce_licenses", Change, false, None, None),
            K::PurchaseStorage => row("purchase_storage", Buy, false, None, None),
            K::ReduceStorage => row("reduce_storage", Change, false, None, None),
            K::PurchaseInstance => row("purchase_instance", Buy, false, None, None),
            K::CreateGroup => row("create_group", Create, false, Some(Group), None),
            K::UpdateGroup => row("update_group", Change, false, None, None),
            K::DeleteGroup => row("delete_group", Delete, true, None, Some(Group)),
            K::AddGroupMembers => row("add_group_members", Change, false, None, None),
            K::RemoveGroupMembers => row("remove_group_members", Change, false, None, None),
            K::CreateUser => row("create_user", Create, false, Some(User), None),
            K::UpdateUser => row("update_user", Change, false, None, None),
            K::DeleteUser => row("delete_user", Delete, true, None, Some(User)),
            K::AssignLicense => row("assign_license", Change, false, None, None),
            K::RemoveLicense => row("remove_license", Change, false, None, None),
            K::SetAccessMode => row("set_access_mode", Change, false, None, None),
            K::AssignRoles => row("assign_roles", Change, false, None, None),
            K::RemoveRoles => row("remove_roles", Change, false, None, None),
            K::ConfigureInstance => row("configure_instance", Create, false, Some(Instance), None),
            K::UpdateInstance => row("update_instance", Change, false, None, None),
            K::SwitchInstance => row("switch_instance", Change, false, None, None),
            K::SetAdminMode => row("set_admin_mode", Change, false, None, None),
            K::SetNotificationRecipients => {
                row("set_notification_recipients", Change, false, None, None)
            }
            K::ScheduleUpdate => row("schedule_update", Change, false, None, None),
            K::CopyInstance => row("copy_instance", Replace, false, None, None),
            K::ResetInstance => row("reset_instance", Replace, true, None, None),
            K::DeleteInstance => row("delete_instance", Delete, true, None, Some(Instance)),
            K::BackupInstance => row("backup_instance", Change, false, None, None),
            K::Adopt => row("adopt", Adopt, false, None, None),
        }
    }

    /// The snake_case name.
    #[inline]
    pub const fn as_str(self) -> &'static str {
        self.info().name
    }

    /// The summary category.
    #[inline]
    pub const fn category(self) -> Category {
        self.info().category
    }

    /// The symbol of the human and Markdown renderings: `$` purchase, `+` create or adopt,
    /// `~` change, `-` delete, `-/+` replace (reset, copy).
    #[inline]
    pub const fn symbol(self) -> &'static str {
        self.info().symbol
    }

    /// Whether every action of this kind loses data or access: deletes (I8, P5, I12) and
    /// resets (I9). A copy (I11) is destructive only onto an existing instance, which
    /// depends on the op: see `Plan::destructive_flags`.
    #[inline]
    pub const fn always_destructive(self) -> bool {
        self.info().always_destructive
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
        /// Usage location (ISO 3166-1 alpha-2); `None`: the backend's default (on Microsoft,
        /// the tenant's country).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage_location: Option<String>,
        /// An application user's app registration (client) id (P3): what a Microsoft
        /// tenant binds its system user to; `None` for directory users.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        application_id: Option<String>,
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
        /// A new usage location (ISO 3166-1 alpha-2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage_location: Option<String>,
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
    /// Take an on-demand backup of an instance, labelled `label`, before an action that
    /// deletes or overwrites its data (issue 13 item 3). Outcome: the backup's id under
    /// the name `backup`.
    BackupInstance { instance: ObjRef, label: String },
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
            Op::BackupInstance { .. } => ActionKind::BackupInstance,
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
    /// address ([`ActionKind::info`]).
    pub fn creates(&self) -> Option<ObjKind> {
        self.kind().info().creates
    }

    /// Whether the op deletes the object at the action's address (apply forgets it;
    /// [`ActionKind::info`]).
    pub fn deletes(&self) -> bool {
        self.kind().info().deletes.is_some()
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
            | Op::DeleteInstance { instance }
            | Op::BackupInstance { instance, .. } => vec![instance],
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

    // Issue 11 item 1: one table of action kinds. Every kind is listed in `ALL` (checked
    // against the names serde knows), its table name is its JSON name, and the facts of a
    // row agree with one another.
    #[test]
    fn every_action_kind_has_a_consistent_row_in_the_table() {
        // serde lists every variant it accepts when it meets an unknown one.
        let err = serde_json::from_str::<ActionKind>("\"?\"")
            .unwrap_err()
            .to_string();
        let listed = err
            .split("expected one of ")
            .nth(1)
            .expect("serde lists the variants");
        let serde_names: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        let names: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names, serde_names,
            "ALL lists every kind, in declaration order"
        );
        for (i, kind) in ActionKind::ALL.into_iter().enumerate() {
            let info = kind.info();
            assert_eq!(kind as usize, i, "{kind:?}: ALL is in declaration order");
            // The JSON name round-trips.
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::Value::from(info.name), "{kind:?}");
            assert_eq!(serde_json::from_value::<ActionKind>(json).unwrap(), kind);
            assert_eq!(info.symbol, info.category.symbol(), "{kind:?}");
            // I8, P5, I12, I9: what is always destructive deletes or replaces.
            if info.always_destructive {
                assert!(
                    matches!(info.category, Category::Delete | Category::Replace),
                    "{kind:?} is destructive but counted as {:?}",
                    info.category
                );
            }
            // Deletes are exactly the kinds that remove an object, and always destructive.
            assert_eq!(
                info.deletes.is_some(),
                info.category == Category::Delete,
                "{kind:?}"
            );
            if info.deletes.is_some() {
                assert!(info.always_destructive, "{kind:?}");
            }
            // Creations are exactly the kinds that make an object apply records.
            assert_eq!(
                info.creates.is_some(),
                info.category == Category::Create,
                "{kind:?}"
            );
        }
    }

    // The facts the table replaced (issue 11 item 1), spelled out once more: a changed
    // row must be a decision, not an accident.
    #[test]
    fn the_table_keeps_the_categories_symbols_and_objects_of_each_kind() {
        use ActionKind as K;
        let row = |k: ActionKind| {
            let i = k.info();
            (
                i.category,
                i.symbol,
                i.always_destructive,
                i.creates,
                i.deletes,
            )
        };
        let cases = [
            (K::PurchaseInstance, (Category::Buy, "$", false, None, None)),
            (
                K::ReduceLicenses,
                (Category::Change, "~", false, None, None),
            ),
            (
                K::ConfigureInstance,
                (Category::Create, "+", false, Some(ObjKind::Instance), None),
            ),
            (K::Adopt, (Category::Adopt, "+", false, None, None)),
            (
                K::DeleteUser,
                (Category::Delete, "-", true, None, Some(ObjKind::User)),
            ),
            (
                K::ResetInstance,
                (Category::Replace, "-/+", true, None, None),
            ),
            (
                K::CopyInstance,
                (Category::Replace, "-/+", false, None, None),
            ),
        ];
        for (kind, want) in cases {
            assert_eq!(row(kind), want, "{kind:?}");
        }
    }
}
