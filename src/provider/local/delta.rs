//! Row-level changes of the local tenant: what one op writes.
//!
//! The rules turn an op into a list of [`Delta`]s computed against the in-memory tenant;
//! the store writes them in one SQLite transaction; only after the commit does the cache
//! apply them. Each delta touches a handful of rows, so an op costs O(rows it touches), not
//! O(tenant).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::kinds::LicensePlan;
use crate::observed::{Group, Instance, LastChange, Slots, StorageState, Tenant, User};

/// Counters for deterministic ids (`usr-000001`, `grp-000001`, `org-000001`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    pub user: u64,
    pub group: u64,
    pub instance: u64,
    /// On-demand backups taken (issue 13 item 3); absent in older tenant files.
    #[serde(default)]
    pub backup: u64,
}

/// Tenant-level fields, stored as one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub domain: String,
    pub trial: bool,
    pub licenses: BTreeMap<LicensePlan, u32>,
    pub storage: StorageState,
    pub slots: Slots,
    pub versions: Vec<String>,
    pub counters: Counters,
}

impl Meta {
    pub fn of(t: &Tenant, counters: Counters) -> Meta {
        Meta {
            domain: t.domain.clone(),
            trial: t.trial,
            licenses: t.licenses.clone(),
            storage: t.storage.clone(),
            slots: t.slots.clone(),
            versions: t.versions.clone(),
            counters,
        }
    }
}

/// One row-level change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Delta {
    /// Replace the tenant-level fields and counters.
    Meta(Box<Meta>),
    /// Insert or replace a user (its `roles` are stored by [`Delta::SetRoles`]).
    PutUser(Box<User>),
    /// Delete a user, its memberships and its roles.
    DelUser(String),
    /// Insert or replace a group's name and description (members are separate rows).
    PutGroup(Box<Group>),
    /// Delete a group and its memberships.
    DelGroup(String),
    /// Add a membership (group id, user id).
    AddMember(String, String),
    /// Remove a membership (group id, user id).
    DelMember(String, String),
    /// Replace a user's roles in an instance (user id, instance id, roles; empty = none).
    SetRoles(String, String, BTreeSet<String>),
    /// Insert or replace an instance.
    PutInstance(Box<Instance>),
    /// Delete an instance and every role held in it.
    DelInstance(String),
    /// Record an on-demand backup of an instance (backup id, instance id, label; issue 13
    /// item 3). The observed tenant does not show backups: only the file keeps them.
    PutBackup(String, String, String),
    /// Record who changed an object and when (issue 14 item 2): kind, id (an address for
    /// [`Stamped::Tenant`]), the change. Deleting an object drops its record.
    Stamp(Stamped, String, LastChange),
}

/// What a [`Delta::Stamp`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stamped {
    User,
    Group,
    Instance,
    /// A tenant-wide entry, by address (`licenses.PLAN`, `storage`, `slots`).
    Tenant,
}

impl Stamped {
    /// The `kind` column of the `changes` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Stamped::User => "user",
            Stamped::Group => "group",
            Stamped::Instance => "instance",
            Stamped::Tenant => "tenant",
        }
    }

    pub fn parse(s: &str) -> Option<Stamped> {
        Some(match s {
            "user" => Stamped::User,
            "group" => Stamped::Group,
            "instance" => Stamped::Instance,
            "tenant" => Stamped::Tenant,
            _ => return None,
        })
    }
}

/// The [`Delta::Stamp`]s of a write (issue 14 item 2): `who` on every object `deltas`
/// change, `before` being the tenant they apply to. A user's put or roles, a group's put or
/// members, an instance's put; the groups a deleted user leaves; the tenant-wide entries
/// (licences per plan, storage, slots) a new tenant-level row changes. One stamp per object.
pub(crate) fn stamps(before: &Tenant, deltas: &[Delta], who: &LastChange) -> Vec<Delta> {
    let mut touched: BTreeSet<(Stamped, String)> = BTreeSet::new();
    for d in deltas {
        match d {
            Delta::Meta(m) => {
                let plans: BTreeSet<&LicensePlan> =
                    before.licenses.keys().chain(m.licenses.keys()).collect();
                for p in plans {
                    if before.licenses.get(p) != m.licenses.get(p) {
                        touched.insert((Stamped::Tenant, format!("licenses.{}", p.as_str())));
                    }
                }
                if before.storage.additional_gb != m.storage.additional_gb {
                    touched.insert((Stamped::Tenant, "storage".into()));
                }
                if before.slots != m.slots {
                    touched.insert((Stamped::Tenant, "slots".into()));
                }
            }
            Delta::PutUser(u) => {
                touched.insert((Stamped::User, u.id.clone()));
            }
            Delta::SetRoles(u, _, _) => {
                touched.insert((Stamped::User, u.clone()));
            }
            Delta::DelUser(id) => {
                for g in before.groups.values().filter(|g| g.members.contains(id)) {
                    touched.insert((Stamped::Group, g.id.clone()));
                }
            }
            Delta::PutGroup(g) => {
                touched.insert((Stamped::Group, g.id.clone()));
            }
            Delta::AddMember(g, _) | Delta::DelMember(g, _) => {
                touched.insert((Stamped::Group, g.clone()));
            }
            Delta::PutInstance(i) => {
                touched.insert((Stamped::Instance, i.id.clone()));
            }
            Delta::DelGroup(_)
            | Delta::DelInstance(_)
            | Delta::PutBackup(..)
            | Delta::Stamp(..) => {}
        }
    }
    // An object deleted later in the same write keeps no record.
    let gone = |kind: Stamped, id: &str| {
        deltas.iter().any(|d| match (kind, d) {
            (Stamped::User, Delta::DelUser(x)) => x == id,
            (Stamped::Group, Delta::DelGroup(x)) => x == id,
            (Stamped::Instance, Delta::DelInstance(x)) => x == id,
            _ => false,
        })
    };
    touched
        .into_iter()
        .filter(|(k, id)| !gone(*k, id))
        .map(|(k, id)| Delta::Stamp(k, id, who.clone()))
        .collect()
}

/// Lookups the rules need in O(1) instead of a scan of every user (a 100,000-user apply
/// would otherwise be quadratic).
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    /// Lower-cased UPN -> user id (P1 uniqueness).
    pub upns: HashMap<String, String>,
    /// Licenses assigned per plan (T3, T4).
    pub assigned: BTreeMap<LicensePlan, u32>,
}

impl Index {
    pub fn build(t: &Tenant) -> Index {
        let mut idx = Index::default();
        for u in t.users.values() {
            idx.add(u);
        }
        idx
    }
    pub fn assigned(&self, plan: LicensePlan) -> u32 {
        self.assigned.get(&plan).copied().unwrap_or(0)
    }
    fn add(&mut self, u: &User) {
        self.upns.insert(u.upn.to_lowercase(), u.id.clone());
        if let Some(p) = u.license {
            *self.assigned.entry(p).or_default() += 1;
        }
    }
    fn remove(&mut self, u: &User) {
        if self.upns.get(&u.upn.to_lowercase()) == Some(&u.id) {
            self.upns.remove(&u.upn.to_lowercase());
        }
        if let Some(p) = u.license {
            if let Some(n) = self.assigned.get_mut(&p) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// Apply committed deltas to the in-memory tenant and its index.
pub(crate) fn apply_to_cache(
    t: &mut Tenant,
    idx: &mut Index,
    counters: &mut Counters,
    deltas: &[Delta],
) {
    for d in deltas {
        match d {
            Delta::Meta(m) => {
                t.domain = m.domain.clone();
                t.trial = m.trial;
                t.licenses = m.licenses.clone();
                t.storage = m.storage.clone();
                t.slots = m.slots.clone();
                t.versions = m.versions.clone();
                *counters = m.counters;
            }
            Delta::PutUser(u) => {
                if let Some(old) = t.users.insert(u.id.clone(), (**u).clone()) {
                    idx.remove(&old);
                }
                idx.add(u);
            }
            Delta::DelUser(id) => {
                if let Some(old) = t.users.remove(id) {
                    idx.remove(&old);
                }
                for g in t.groups.values_mut() {
                    g.members.remove(id);
                }
                t.changed.users.remove(id);
            }
            Delta::PutGroup(g) => {
                t.groups.insert(g.id.clone(), (**g).clone());
            }
            Delta::DelGroup(id) => {
                t.groups.remove(id);
                t.changed.groups.remove(id);
            }
            Delta::AddMember(g, u) => {
                if let Some(g) = t.groups.get_mut(g) {
                    g.members.insert(u.clone());
                }
            }
            Delta::DelMember(g, u) => {
                if let Some(g) = t.groups.get_mut(g) {
                    g.members.remove(u);
                }
            }
            Delta::SetRoles(u, i, roles) => {
                if let Some(u) = t.users.get_mut(u) {
                    if roles.is_empty() {
                        u.roles.remove(i);
                    } else {
                        u.roles.insert(i.clone(), roles.clone());
                    }
                }
            }
            Delta::PutInstance(i) => {
                t.instances.insert(i.id.clone(), (**i).clone());
            }
            Delta::DelInstance(id) => {
                t.instances.remove(id);
                for u in t.users.values_mut() {
                    u.roles.remove(id);
                }
                t.changed.instances.remove(id);
            }
            Delta::PutBackup(..) => {}
            Delta::Stamp(kind, id, who) => {
                let map = match kind {
                    Stamped::User => &mut t.changed.users,
                    Stamped::Group => &mut t.changed.groups,
                    Stamped::Instance => &mut t.changed.instances,
                    Stamped::Tenant => &mut t.changed.tenant,
                };
                map.insert(id.clone(), who.clone());
            }
        }
    }
}

/// The deltas that turn `old` into `new` (used by the admin-center edits: import, set,
/// edit). Linear in the size of the tenants.
pub(crate) fn diff(old: &Tenant, new: &Tenant, counters: Counters) -> Vec<Delta> {
    let mut out = Vec::new();
    if Meta::of(old, counters) != Meta::of(new, counters) {
        out.push(Delta::Meta(Box::new(Meta::of(new, counters))));
    }
    // Deletions first (they cascade), then puts, then memberships and roles.
    for id in old.users.keys().filter(|id| !new.users.contains_key(*id)) {
        out.push(Delta::DelUser(id.clone()));
    }
    for id in old.groups.keys().filter(|id| !new.groups.contains_key(*id)) {
        out.push(Delta::DelGroup(id.clone()));
    }
    for id in old
        .instances
        .keys()
        .filter(|id| !new.instances.contains_key(*id))
    {
        out.push(Delta::DelInstance(id.clone()));
    }
    for (id, u) in &new.users {
        let changed = match old.users.get(id) {
            None => true,
            Some(o) => {
                o.upn != u.upn
                    || o.name != u.name
                    || o.license != u.license
                    || o.access_mode != u.access_mode
                    || o.admin_roles != u.admin_roles
                    || o.usage_location != u.usage_location
                    || o.synced != u.synced
            }
        };
        if changed {
            let mut row = u.clone();
            // Roles follow as SetRoles deltas; a put keeps the cache's roles consistent.
            row.roles = old
                .users
                .get(id)
                .map(|o| o.roles.clone())
                .unwrap_or_default();
            row.roles.retain(|i, _| new.instances.contains_key(i));
            out.push(Delta::PutUser(Box::new(row)));
        }
    }
    for (id, g) in &new.groups {
        let old_g = old.groups.get(id);
        let changed = old_g.is_none_or(|o| o.name != g.name || o.description != g.description);
        if changed {
            let mut row = g.clone();
            row.members = old_g.map(|o| o.members.clone()).unwrap_or_default();
            out.push(Delta::PutGroup(Box::new(row)));
        }
    }
    for (id, i) in &new.instances {
        if old.instances.get(id) != Some(i) {
            out.push(Delta::PutInstance(Box::new(i.clone())));
        }
    }
    let empty = BTreeSet::new();
    for (gid, g) in &new.groups {
        let before = old.groups.get(gid).map(|o| &o.members).unwrap_or(&empty);
        for u in g.members.difference(before) {
            out.push(Delta::AddMember(gid.clone(), u.clone()));
        }
        for u in before.difference(&g.members) {
            if new.users.contains_key(u) {
                out.push(Delta::DelMember(gid.clone(), u.clone()));
            }
        }
    }
    let no_roles = BTreeMap::new();
    for (uid, u) in &new.users {
        let before = old.users.get(uid).map(|o| &o.roles).unwrap_or(&no_roles);
        for (iid, roles) in &u.roles {
            if before.get(iid) != Some(roles) {
                out.push(Delta::SetRoles(uid.clone(), iid.clone(), roles.clone()));
            }
        }
        for iid in before.keys() {
            if !u.roles.contains_key(iid) && new.instances.contains_key(iid) {
                out.push(Delta::SetRoles(uid.clone(), iid.clone(), BTreeSet::new()));
            }
        }
    }
    out
}
