//! The observed tenant: what a provider reads from the service.
//!
//! Shared by the planner (which diffs it against the desired model) and by every provider
//! (which produces it). Objects are keyed by their remote id; ids are opaque strings.
//! Everything here is plain data: no I/O, no rules. The rules live in the planner (to order
//! actions) and, independently, in each provider (to refuse bad requests).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::kinds::{AccessMode, AdminRole, InstanceType, LicensePlan, Region};
use crate::domain::limits::{
    BASE_STORAGE_GB, LICENSES_FOR_INCLUDED_SANDBOX, MAX_INCLUDED_STORAGE_GB,
    STORAGE_PER_20_LICENSES_GB,
};

/// The versions a fresh local tenant knows, oldest first (U1).
pub const KNOWN_VERSIONS: [&str; 4] = ["7.0.0", "7.1.0", "8.0.0", "8.1.0"];

/// The whole observed tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// `<name>.onmicrosoft.com` (T1); empty for a fresh local tenant not yet named.
    pub domain: String,
    /// A trial subscription cannot buy instances or storage (T5).
    #[serde(default)]
    pub trial: bool,
    /// Purchased license count per plan (T2). A missing plan means 0.
    #[serde(default)]
    pub licenses: BTreeMap<LicensePlan, u32>,
    /// Storage (T6, T8).
    #[serde(default)]
    pub storage: StorageState,
    /// Instance slots bought as add-ons, beyond the included ones (I2, T6).
    #[serde(default)]
    pub slots: Slots,
    /// Versions the service offers, oldest first (U1).
    #[serde(default)]
    pub versions: Vec<String>,
    /// Security groups by id.
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
    /// Users by id.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    /// Instances by id.
    #[serde(default)]
    pub instances: BTreeMap<String, Instance>,
    /// What the backend cannot read (no public API): empty for the local tenant.
    #[serde(default)]
    pub unreadable: Unreadable,
    /// Who last changed each object and when, where the backend knows (issue 14 item 2).
    /// Not a managed field: the fingerprint and the drift snapshots leave it out, so it
    /// never makes a plan stale or an object drift by itself.
    #[serde(default)]
    pub changed: Provenance,
}

/// Who last changed an object and when (issue 14 item 2): what the backend records, e.g.
/// the local tenant's actor of each write, the admin API's `lastModifiedBy` /
/// `lastModifiedTime` of an environment, Dataverse's `modifiedby` / `modifiedon` of a
/// system user. Either part may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastChange {
    /// Who: a user principal name, a display name or an actor such as
    /// `crmctl local (ana)`.
    #[serde(default)]
    pub by: Option<String>,
    /// When, RFC 3339 (UTC for the local tenant).
    #[serde(default)]
    pub at: Option<String>,
}

impl LastChange {
    /// The later of two changes by their times (RFC 3339 UTC strings compare in time
    /// order); a change with a time wins over one without.
    pub fn later(self, other: LastChange) -> LastChange {
        match (&self.at, &other.at) {
            (Some(a), Some(b)) if b > a => other,
            (None, Some(_)) => other,
            _ => self,
        }
    }
}

/// [`LastChange`] by object: users, groups and instances by remote id, the tenant-wide
/// entries by their address (`licenses.professional`, `storage`, `slots`). An object
/// without an entry: the backend does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Users by id.
    #[serde(default)]
    pub users: BTreeMap<String, LastChange>,
    /// Security groups by id.
    #[serde(default)]
    pub groups: BTreeMap<String, LastChange>,
    /// Instances by id.
    #[serde(default)]
    pub instances: BTreeMap<String, LastChange>,
    /// Tenant-wide entries by address.
    #[serde(default)]
    pub tenant: BTreeMap<String, LastChange>,
}

impl Provenance {
    /// Nothing known.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.groups.is_empty()
            && self.instances.is_empty()
            && self.tenant.is_empty()
    }

    /// The entry of an object of `kind` with remote id `id`.
    pub fn of(&self, kind: crate::domain::op::ObjKind, id: &str) -> Option<&LastChange> {
        use crate::domain::op::ObjKind;
        match kind {
            ObjKind::User => self.users.get(id),
            ObjKind::Group => self.groups.get(id),
            ObjKind::Instance => self.instances.get(id),
        }
    }
}

/// Settings a backend cannot read because the service offers no public API for them (issue
/// 13 item 4; the Microsoft backend). The planner leaves them unmanaged and says so in a
/// warning with where a person sets them, instead of planning a change whose result it
/// could never see (which would never converge).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unreadable {
    /// Update approvals and schedules (U2-U4), and the versions the service offers (U1).
    #[serde(default)]
    pub updates: bool,
    /// Extra update notification recipients (I13).
    #[serde(default)]
    pub notification_recipients: bool,
    /// The administration-mode sign-in message (I10): the admin API has no field for it.
    #[serde(default)]
    pub admin_mode_message: bool,
}

impl Unreadable {
    /// Nothing unreadable (the local tenant).
    pub fn is_none(&self) -> bool {
        !self.updates && !self.notification_recipients && !self.admin_mode_message
    }
}

/// Storage figures (T6, T8).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageState {
    /// Storage add-on bought, in GB.
    #[serde(default)]
    pub additional_gb: u32,
    /// Storage in use by all instances, in GB (T8).
    #[serde(default)]
    pub used_gb: f64,
}

/// Instance slots bought as add-ons (I2). Included slots (T6) are derived, not stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slots {
    /// Production add-on slots bought.
    #[serde(default)]
    pub production: u32,
    /// Sandbox add-on slots bought.
    #[serde(default)]
    pub sandbox: u32,
}

/// A security group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Remote id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Member user ids.
    #[serde(default)]
    pub members: BTreeSet<String>,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Remote id.
    pub id: String,
    /// User principal name (P1).
    pub upn: String,
    /// Full name.
    #[serde(default)]
    pub name: String,
    /// License held, if any (T3).
    #[serde(default)]
    pub license: Option<LicensePlan>,
    /// Access mode (P3).
    pub access_mode: AccessMode,
    /// Security roles per instance id (P2).
    #[serde(default)]
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// Tenant administrator roles (P6).
    #[serde(default)]
    pub admin_roles: BTreeSet<AdminRole>,
    /// Usage location, an ISO 3166-1 alpha-2 code (Graph `usageLocation`; a licence needs
    /// one). Defaults when absent: a tenant file from before the field still reads.
    #[serde(default)]
    pub usage_location: Option<String>,
    /// Synchronised from an on-premises directory (Graph `onPremisesSyncEnabled`): its name,
    /// principal name and existence are managed there, not in the cloud (P1).
    #[serde(default)]
    pub synced: bool,
    /// An application user's app registration (client) id (P3), when known: a Microsoft
    /// tenant's system user has it (`applicationid`); the local tenant keeps what the file
    /// gave at creation. `None` for directory users.
    #[serde(default)]
    pub application_id: Option<String>,
}

/// Lifecycle status of an instance (I4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Being provisioned: cannot be edited (I4).
    Provisioning,
    /// Ready.
    Ready,
    /// Disabled: must be enabled before it can be edited (I4).
    Disabled,
}

/// An instance (I1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// Remote id.
    pub id: String,
    /// Friendly name.
    pub name: String,
    /// URL name (I5).
    pub url: String,
    /// Production or sandbox (I7).
    #[serde(rename = "type")]
    pub kind: InstanceType,
    /// The kind of slot the instance occupies (I7: a sandbox may sit in a production slot).
    pub slot: InstanceType,
    /// Purpose.
    #[serde(default)]
    pub purpose: String,
    /// Region (I6).
    pub region: Region,
    /// Base currency (I3).
    pub currency: String,
    /// Base language LCID (I3).
    pub language: u32,
    /// Id of the bound security group (I12).
    #[serde(default)]
    pub security_group: Option<String>,
    /// Lifecycle status (I4).
    pub status: InstanceStatus,
    /// Current version (U1).
    pub version: String,
    /// Administration mode (I10).
    #[serde(default)]
    pub admin_mode: AdminModeState,
    /// Extra update notification recipients (I13).
    #[serde(default)]
    pub notification_recipients: Vec<String>,
    /// The update approved or scheduled, if any (U2-U4).
    #[serde(default)]
    pub update: Option<UpdateState>,
}

/// Administration mode as observed (I10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminModeState {
    /// Administration mode on.
    pub enabled: bool,
    /// Background operations running.
    pub background_operations: bool,
    /// Message shown at sign-in.
    #[serde(default)]
    pub message: Option<String>,
}

impl Default for AdminModeState {
    fn default() -> Self {
        AdminModeState {
            enabled: false,
            background_operations: true,
            message: None,
        }
    }
}

/// Update status of an instance (U4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateState {
    /// Target version (U3).
    pub target_version: String,
    /// Preferred date.
    pub preferred: String,
    /// Alternate date.
    pub alternate: String,
    /// State of the update (U4).
    pub state: UpdatePhase,
}

/// The phases of an update (U4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdatePhase {
    /// Offered, not yet scheduled.
    Available,
    /// Scheduled by the service.
    Scheduled,
    /// Approved by an admin; can still be rescheduled.
    Approved,
    /// Running: can no longer be rescheduled (U4).
    InProgress,
    /// Done.
    Updated,
}

impl Tenant {
    /// A fresh local tenant: a new paid subscription with one production slot ready to
    /// configure, 5 GB storage, no licenses, users or groups; versions 7.0.0 to 8.1.0.
    pub fn fresh(domain: &str) -> Tenant {
        Tenant {
            domain: domain.to_string(),
            versions: KNOWN_VERSIONS.iter().map(|v| v.to_string()).collect(),
            ..Tenant::default()
        }
    }

    /// Purchased count of a plan.
    pub fn purchased(&self, plan: LicensePlan) -> u32 {
        self.licenses.get(&plan).copied().unwrap_or(0)
    }

    /// Paid Professional + Enterprise licenses (T5, T6).
    pub fn pro_enterprise(&self) -> u32 {
        self.purchased(LicensePlan::Professional) + self.purchased(LicensePlan::Enterprise)
    }

    /// Total slots of a kind: included (T6) plus bought (I2).
    pub fn total_slots(&self, kind: InstanceType) -> u32 {
        included_slots(kind, self.pro_enterprise())
            + match kind {
                InstanceType::Production => self.slots.production,
                InstanceType::Sandbox => self.slots.sandbox,
            }
    }

    /// Slots of a kind occupied by instances.
    pub fn used_slots(&self, kind: InstanceType) -> u32 {
        self.instances.values().filter(|i| i.slot == kind).count() as u32
    }

    /// Free ("ready to configure") slots of a kind (I2). Can be negative conceptually when
    /// licenses were reduced below the included sandbox threshold; saturates at 0.
    pub fn free_slots(&self, kind: InstanceType) -> u32 {
        self.total_slots(kind).saturating_sub(self.used_slots(kind))
    }

    /// Included storage in GB (T6).
    pub fn included_storage_gb(&self) -> f64 {
        included_storage_gb(self.pro_enterprise())
    }

    /// Licenses of a plan assigned to users (T3, T4).
    pub fn assigned(&self, plan: LicensePlan) -> u32 {
        self.users
            .values()
            .filter(|u| u.license == Some(plan))
            .count() as u32
    }
}

/// Included slots of a kind for a number of paid Professional + Enterprise licenses (T6).
pub fn included_slots(kind: InstanceType, pro_enterprise: u32) -> u32 {
    match kind {
        InstanceType::Production => 1,
        InstanceType::Sandbox => u32::from(pro_enterprise >= LICENSES_FOR_INCLUDED_SANDBOX),
    }
}

/// Included storage in GB for a number of paid Professional + Enterprise licenses (T6).
pub fn included_storage_gb(pro_enterprise: u32) -> f64 {
    (BASE_STORAGE_GB + STORAGE_PER_20_LICENSES_GB * f64::from(pro_enterprise / 20))
        .min(MAX_INCLUDED_STORAGE_GB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t6_included_capacity() {
        assert_eq!(included_slots(InstanceType::Production, 0), 1);
        assert_eq!(included_slots(InstanceType::Sandbox, 24), 0);
        assert_eq!(included_slots(InstanceType::Sandbox, 25), 1);
        assert_eq!(included_storage_gb(0), 5.0);
        assert_eq!(included_storage_gb(19), 5.0);
        assert_eq!(included_storage_gb(40), 10.0);
        assert_eq!(included_storage_gb(100_000), 50.0);
    }

    #[test]
    fn fresh_tenant_has_one_free_production_slot() {
        let t = Tenant::fresh("coho.onmicrosoft.com");
        assert_eq!(t.free_slots(InstanceType::Production), 1);
        assert_eq!(t.free_slots(InstanceType::Sandbox), 0);
        assert_eq!(t.versions.last().map(String::as_str), Some("8.1.0"));
    }
}
