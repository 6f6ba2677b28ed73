//! The state file: which remote object each address of the file manages.
//!
//! `{"version":1,"serial":N,"lineage":"...","tenant":"...","backend":"local:/abs/tenant.db",
//! "resources":{address:{...}}}`.
//! Written atomically (temp file, fsync, rename) and locked while in use.

pub mod cache;
pub mod lock;
pub mod remote;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::op::{ActionKind, ObjKind};
use crate::provider::OperationHandle;

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// The state: address -> remote object, with a serial and a lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Bumped on every write that changes something.
    pub serial: u64,
    /// Random id fixed when the state is first created; a plan made against another lineage
    /// is refused.
    pub lineage: String,
    /// Tenant domain.
    #[serde(default)]
    pub tenant: String,
    /// The backend the state belongs to (`local:` and the tenant file's absolute path),
    /// recorded by apply. A state that manages objects is refused against another backend
    /// (issue 9 item 1); an empty one binds to any. Empty in states written before it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backend: String,
    /// Managed objects by address (`users.ana@coho.com`, `instances.sales`, ...).
    #[serde(default)]
    pub resources: BTreeMap<String, Resource>,
    /// Long-running operations started by apply and not known to have ended, by the
    /// address of their action (issue 11 item 4): recorded before apply waits for one, so
    /// that a later run polls it instead of starting it again. Absent in older states.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, PendingOperation>,
    /// Write-ahead intents (I11, issue 13 item 2): the addresses of instance creates with a
    /// copy to follow that apply recorded *before* sending them, cleared once the create is
    /// recorded (a `Set` or `Remove` of the address). A run killed after the request left
    /// but before its handle or id was saved leaves the address here, so the next plan
    /// treats the instance it finds by URL name as the one crmctl was creating and still
    /// copies onto it. Absent in older states.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub creating: std::collections::BTreeSet<String>,
    /// On-demand backups apply took before destroying an instance's data (issue 13 item
    /// 3), oldest first, the last [`MAX_BACKUPS`] kept: where to restore from. Absent in
    /// older states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<Backup>,
    /// What the last apply left, by address (issue 14 item 2): the managed fields of each
    /// managed object and of the tenant-wide settings (`licenses.PLAN`, `storage`,
    /// `slots`), as `crate::plan::drift` records and compares them to find drift. Absent
    /// in older states (no drift is reported until the next apply records it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<String, serde_json::Value>,
}

/// How many backups [`State::backups`] remembers.
pub const MAX_BACKUPS: usize = 100;

/// A backup apply took (see [`State::backups`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// The instance's address when it was taken.
    pub address: String,
    /// The instance's remote id.
    pub instance: String,
    /// The backup's id in the service.
    pub id: String,
    /// Its label (names the plan and the action it preceded).
    pub label: String,
}

/// A long-running operation the service accepted for an action (see [`State::pending`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOperation {
    /// The kind of the action that started it (a plan that no longer has an action of this
    /// kind at the address does not resume it).
    pub kind: ActionKind,
    /// The service's handle.
    pub handle: OperationHandle,
}

/// One managed remote object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// What kind of object.
    pub kind: ObjKind,
    /// Remote id.
    pub id: String,
    /// `protect: true` remembered from the file (instances only), so that a plan that
    /// deletes a protected instance removed from the file is still an error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protect: bool,
    /// Where `protect: true` was last declared (`FILE:LINE`), recorded by apply for a
    /// protected instance so that the plan error of its removal can say where it was
    /// (issue 9 item 8). Absent in states written before it, and when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_at: Option<String>,
    /// The instance key this instance was copied from when crmctl created it (I11), so that
    /// a `copy_from` that already acted is not reported as one added to an existing
    /// instance. Absent for instances not created by a copy, and in older states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<String>,
    /// Further remote ids of the object by name (a user's directory id, its id in each
    /// instance, an environment's id and org URL), as the provider reported them
    /// ([`crate::provider::Outcome::ids`]; issue 11 item 4). Absent in older states.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ids: BTreeMap<String, String>,
}

impl State {
    /// An empty state with the given lineage (serial 0).
    pub fn empty(lineage: impl Into<String>) -> State {
        State {
            version: STATE_VERSION,
            serial: 0,
            lineage: lineage.into(),
            tenant: String::new(),
            backend: String::new(),
            resources: BTreeMap::new(),
            pending: BTreeMap::new(),
            creating: Default::default(),
            backups: Vec::new(),
            applied: BTreeMap::new(),
        }
    }

    /// The remote id of an address.
    pub fn id_of(&self, address: &str) -> Option<&str> {
        self.resources.get(address).map(|r| r.id.as_str())
    }
}
