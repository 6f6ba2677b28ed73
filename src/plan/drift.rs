//! Drift (issue 14 item 2): what changed in the tenant outside crmctl since the last apply.
//!
//! Apply records in the state, for every managed object and for the tenant-wide settings,
//! the managed fields it left ([`State::applied`], written by [`record`]). The planner
//! compares them with the observed tenant ([`drift`]): an object whose fields differ, or
//! that is gone, has drifted. The comparison is a pure function of the observed tenant and
//! the state, one lookup per state entry (O(n) in the tenant's size).
//!
//! The snapshot of an object is a JSON object of its managed fields without the remote id
//! (the state holds it already) and without the fields that change by themselves (an
//! instance's lifecycle `status` and update progress, I4, I13). A group's members are kept
//! by principal name up to [`MEMBERS_KEPT`]; above, by count and digest, so a large group
//! costs the state a few bytes (the drift then says the members changed, not which).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::observed::Tenant;
use crate::plan::action::{Action, Change};
use crate::state::State;

/// Members of a group kept by name in its snapshot; a larger group keeps count + digest.
pub const MEMBERS_KEPT: usize = 100;

/// An object changed outside crmctl since the last apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// The address (`users.ana@coho.com`, `licenses.professional`, `storage`, ...).
    pub address: String,
    /// `changed` (fields differ) or `deleted` (the object is gone from the tenant).
    pub change: DriftChange,
    /// Field by field: `before` is what the last apply left, `after` the tenant now.
    pub changes: Vec<Change>,
    /// Who last changed it, when the backend knows (the observed tenant's
    /// [`crate::observed::Provenance`]: the local tenant records every write; the admin API
    /// tells it for instances, Dataverse for users' access modes; Graph does not). Absent
    /// when unknown, and for an object deleted outside crmctl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When it last changed (RFC 3339), when the backend knows. Absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The plan's actions that put the object back to the file's values (ids); empty when
    /// the file agrees with the tenant now (apply, or `apply --refresh-only`, records it).
    #[serde(default)]
    pub reverted_by: Vec<usize>,
}

/// How an object drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftChange {
    /// Its managed fields differ from what the last apply left.
    Changed,
    /// It no longer exists in the tenant.
    Deleted,
}

/// Every snapshot of `tenant` for the objects `state` manages, plus the tenant-wide ones
/// (`licenses.PLAN`, `storage`, `slots`), by address.
pub fn snapshots(tenant: &Tenant, state: &State) -> BTreeMap<String, Value> {
    let mut out = tenant_wide(tenant);
    for (address, r) in &state.resources {
        if let Some(v) = object_snapshot(tenant, r.kind, &r.id) {
            out.insert(address.clone(), v);
        }
    }
    out
}

/// Record in `state` what the tenant holds now for what it manages (apply's last step,
/// and `apply --refresh-only`). Returns whether anything changed.
pub fn record(state: &mut State, tenant: &Tenant) -> bool {
    let now = snapshots(tenant, state);
    if now == state.applied {
        return false;
    }
    state.applied = now;
    true
}

/// [`record`] for the addresses `touched` says yes to only (a targeted apply, issue 14
/// item 4): the snapshots of the other objects stay as the last full apply left them, so
/// their drift is still reported. Returns whether anything changed.
pub fn record_only(state: &mut State, tenant: &Tenant, touched: impl Fn(&str) -> bool) -> bool {
    let now = snapshots(tenant, state);
    let mut next = state.applied.clone();
    next.retain(|a, _| !touched(a) || now.contains_key(a));
    for (a, v) in now {
        if touched(&a) {
            next.insert(a, v);
        }
    }
    if next == state.applied {
        return false;
    }
    state.applied = next;
    true
}

/// Accept the drift into the state (`apply --refresh-only`): the snapshots become the
/// tenant's, and managed objects gone from the tenant leave the state. Returns the number
/// of state entries dropped.
pub fn accept(state: &mut State, tenant: &Tenant) -> usize {
    let gone: Vec<String> = state
        .resources
        .iter()
        .filter(|(_, r)| object_snapshot(tenant, r.kind, &r.id).is_none())
        .map(|(a, _)| a.clone())
        .collect();
    for a in &gone {
        state.resources.remove(a);
    }
    record(state, tenant);
    gone.len()
}

/// The drift of `observed` against what `state` recorded, by address. Objects with no
/// snapshot (states written before drift was recorded, objects adopted since) have none.
pub fn drift(observed: &Tenant, state: &State) -> Vec<Drift> {
    if state.applied.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let wide = tenant_wide(observed);
    for (address, before) in &state.applied {
        let now = match state.resources.get(address) {
            Some(r) => object_snapshot(observed, r.kind, &r.id),
            None => match wide.get(address) {
                Some(v) => Some(v.clone()),
                // A tenant-wide entry that no longer applies (a plan with no licenses
                // left) compares with nothing; an address the state dropped is ignored.
                None if is_tenant_wide(address) => Some(Value::Object(Map::new())),
                None => continue,
            },
        };
        match now {
            Some(after) if &after == before => {}
            Some(after) => {
                let who = last_change(observed, state, address);
                out.push(Drift {
                    address: address.clone(),
                    change: DriftChange::Changed,
                    changes: field_changes(before, &after),
                    by: who.and_then(|w| w.by.clone()),
                    at: who.and_then(|w| w.at.clone()),
                    reverted_by: Vec::new(),
                })
            }
            None => out.push(Drift {
                address: address.clone(),
                change: DriftChange::Deleted,
                changes: Vec::new(),
                by: None,
                at: None,
                reverted_by: Vec::new(),
            }),
        }
    }
    // New tenant-wide entries (a licence plan bought outside crmctl).
    for (address, after) in &wide {
        if !state.applied.contains_key(address) && address.starts_with("licenses.") {
            let who = observed.changed.tenant.get(address);
            out.push(Drift {
                address: address.clone(),
                change: DriftChange::Changed,
                changes: field_changes(&Value::Object(Map::new()), after),
                by: who.and_then(|w| w.by.clone()),
                at: who.and_then(|w| w.at.clone()),
                reverted_by: Vec::new(),
            });
        }
    }
    out.sort_by(|a, b| a.address.cmp(&b.address));
    out
}

/// Fill each drift's [`Drift::reverted_by`]: the actions at its address whose every change
/// is to a drifted field (or that re-create a deleted object). Returns, per action, whether
/// it only puts drift back (it is then not a change of the file).
pub fn link(drift: &mut [Drift], actions: &[Action]) -> Vec<bool> {
    let mut reverts = vec![false; actions.len()];
    if drift.is_empty() {
        return reverts;
    }
    let by_address: BTreeMap<String, usize> = drift
        .iter()
        .enumerate()
        .map(|(i, d)| (d.address.clone(), i))
        .collect();
    for a in actions {
        let Some(&i) = by_address.get(&a.address) else {
            continue;
        };
        let d = &drift[i];
        let only_drift = match d.change {
            DriftChange::Deleted => true,
            DriftChange::Changed => {
                !a.changes.is_empty()
                    && a.changes.iter().all(|c| {
                        let head = c.path.split('.').next().unwrap_or("");
                        d.changes
                            .iter()
                            .any(|dc| dc.path == head || dc.path == c.path)
                    })
            }
        };
        if only_drift {
            reverts[a.id] = true;
            drift[i].reverted_by.push(a.id);
        }
    }
    reverts
}

/// The refresh-only form of `plan` (`plan --refresh-only`, `apply --refresh-only`): its
/// drift alone, nothing to do in the tenant (no action, no manual step, no state entry
/// forgotten; objects deleted outside crmctl leave the state when the drift is accepted).
pub fn refresh_only(mut plan: crate::plan::Plan) -> crate::plan::Plan {
    plan.actions.clear();
    plan.forget.clear();
    plan.manual.clear();
    for d in &mut plan.drift {
        d.reverted_by.clear();
    }
    plan.summary = crate::plan::Summary {
        drift: plan.drift.len(),
        ..crate::plan::Summary::default()
    };
    // Only the file's errors stop a refresh; warnings about its changes do not apply.
    plan.diagnostics.retain(|d| d.is_error());
    plan.refresh_only = true;
    plan
}

/// Who last changed the object at `address` and when, as the backend told
/// ([`Tenant::changed`]): by remote id for a managed object, by address for a tenant-wide
/// entry.
fn last_change<'t>(
    observed: &'t Tenant,
    state: &State,
    address: &str,
) -> Option<&'t crate::observed::LastChange> {
    match state.resources.get(address) {
        Some(r) => observed.changed.of(r.kind, &r.id),
        None => observed.changed.tenant.get(address),
    }
}

fn is_tenant_wide(address: &str) -> bool {
    address.starts_with("licenses.") || address == "storage" || address == "slots"
}

/// The tenant-wide snapshots: one per licence plan held, storage and slots.
fn tenant_wide(tenant: &Tenant) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (plan, n) in &tenant.licenses {
        out.insert(
            format!("licenses.{}", plan.as_str()),
            serde_json::json!({ "purchased": n }),
        );
    }
    out.insert(
        "storage".to_string(),
        serde_json::json!({ "additional_gb": tenant.storage.additional_gb }),
    );
    out.insert(
        "slots".to_string(),
        serde_json::json!({ "production": tenant.slots.production, "sandbox": tenant.slots.sandbox }),
    );
    out
}

/// The snapshot of one managed object, `None` when it is gone from the tenant.
fn object_snapshot(tenant: &Tenant, kind: crate::domain::op::ObjKind, id: &str) -> Option<Value> {
    use crate::domain::op::ObjKind;
    let mut v = match kind {
        ObjKind::User => serde_json::to_value(tenant.users.get(id)?),
        ObjKind::Instance => serde_json::to_value(tenant.instances.get(id)?),
        ObjKind::Group => {
            let g = tenant.groups.get(id)?;
            let mut names: Vec<&str> = g
                .members
                .iter()
                .map(|m| tenant.users.get(m).map_or(m.as_str(), |u| u.upn.as_str()))
                .collect();
            names.sort_unstable();
            let members = if names.len() <= MEMBERS_KEPT {
                serde_json::json!(names)
            } else {
                let mut h = Sha256::new();
                for n in &names {
                    h.update(n.as_bytes());
                    h.update([0]);
                }
                let digest: String = h.finalize()[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                serde_json::json!({ "count": names.len(), "digest": digest })
            };
            Ok(serde_json::json!({
                "name": g.name,
                "description": g.description,
                "members": members,
            }))
        }
    }
    .expect("the tenant model serializes");
    if let Value::Object(map) = &mut v {
        map.remove("id");
        // Change by themselves: lifecycle (I4) and update progress (I13).
        map.remove("status");
        map.remove("update");
        // Defaults cost the state nothing.
        map.retain(|_, v| !is_empty(v));
    }
    Some(v)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(_) => false,
    }
}

/// The fields of two snapshots that differ (absent = null).
fn field_changes(before: &Value, after: &Value) -> Vec<Change> {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let x = b.get(k).cloned().unwrap_or(Value::Null);
            let y = a.get(k).cloned().unwrap_or(Value::Null);
            (x != y).then(|| Change {
                path: k.clone().into(),
                before: x,
                after: y,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::op::ObjKind;
    use crate::state::Resource;

    fn tenant() -> Tenant {
        serde_json::from_value(serde_json::json!({
            "domain": "coho.onmicrosoft.com",
            "licenses": {"professional": 3},
            "users": {"u1": {"id": "u1", "upn": "ana@coho.com", "name": "Ana", "access_mode": "read-write"}},
            "groups": {"g1": {"id": "g1", "name": "Sales", "members": ["u1"]}},
        }))
        .expect("a tenant")
    }

    fn managed() -> State {
        let mut s = State::empty("l");
        for (a, k, id) in [
            ("users.ana", ObjKind::User, "u1"),
            ("security_groups.sales", ObjKind::Group, "g1"),
        ] {
            s.resources.insert(
                a.into(),
                Resource {
                    kind: k,
                    id: id.into(),
                    protect: false,
                    protected_at: None,
                    copied_from: None,
                    ids: BTreeMap::new(),
                },
            );
        }
        s
    }

    #[test]
    fn no_drift_right_after_recording_and_each_change_is_found() {
        let t = tenant();
        let mut s = managed();
        assert!(drift(&t, &s).is_empty(), "nothing recorded: no drift");
        assert!(record(&mut s, &t));
        assert!(drift(&t, &s).is_empty());
        assert_eq!(
            s.applied["security_groups.sales"]["members"],
            serde_json::json!(["ana@coho.com"])
        );
        let mut t2 = t.clone();
        t2.users.get_mut("u1").unwrap().name = "Ana B".into();
        t2.groups.get_mut("g1").unwrap().members.clear();
        t2.licenses
            .insert(crate::domain::kinds::LicensePlan::Professional, 5);
        let d = drift(&t2, &s);
        let got: Vec<(&str, Vec<&str>)> = d
            .iter()
            .map(|d| {
                (
                    d.address.as_str(),
                    d.changes.iter().map(|c| &*c.path).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("licenses.professional", vec!["purchased"]),
                ("security_groups.sales", vec!["members"]),
                ("users.ana", vec!["name"]),
            ]
        );
        assert_eq!(d[2].changes[0].before, "Ana");
        let mut t3 = t.clone();
        t3.users.clear();
        t3.groups.get_mut("g1").unwrap().members.clear();
        let d = drift(&t3, &s);
        assert_eq!(d.last().unwrap().change, DriftChange::Deleted);
        assert_eq!(accept(&mut s, &t3), 1);
        assert!(drift(&t3, &s).is_empty());
    }

    /// Issue 14 item 2: the drift says who changed an object and when, from the observed
    /// tenant's provenance (by id, tenant-wide entries by address); the provenance itself
    /// never drifts.
    #[test]
    fn drift_names_who_and_when_from_the_provenance() {
        use crate::observed::LastChange;
        let t = tenant();
        let mut s = managed();
        record(&mut s, &t);
        let mut t2 = t.clone();
        let who = LastChange {
            by: Some("crmctl local (ana)".into()),
            at: Some("2026-12-02T10:00:00Z".into()),
        };
        t2.changed.users.insert("u1".into(), who.clone());
        t2.changed.groups.insert("g1".into(), who.clone());
        assert!(drift(&t2, &s).is_empty(), "provenance alone is no drift");
        t2.users.get_mut("u1").unwrap().name = "Ana B".into();
        t2.licenses
            .insert(crate::domain::kinds::LicensePlan::Professional, 5);
        t2.changed.tenant.insert(
            "licenses.professional".into(),
            LastChange {
                by: Some("admin@coho.com".into()),
                at: None,
            },
        );
        let d = drift(&t2, &s);
        assert_eq!(d[0].address, "licenses.professional");
        assert_eq!(d[0].by.as_deref(), Some("admin@coho.com"));
        assert_eq!(d[0].at, None);
        assert_eq!(d[1].address, "users.ana");
        assert_eq!(d[1].by, who.by);
        assert_eq!(d[1].at, who.at);
    }

    #[test]
    fn large_groups_keep_a_count_and_digest() {
        let mut t = tenant();
        let g = t.groups.get_mut("g1").unwrap();
        for i in 0..=MEMBERS_KEPT {
            g.members.insert(format!("x{i}"));
        }
        let mut s = managed();
        record(&mut s, &t);
        let m = &s.applied["security_groups.sales"]["members"];
        assert_eq!(m["count"], MEMBERS_KEPT + 2);
        t.groups.get_mut("g1").unwrap().members.remove("x0");
        assert_eq!(drift(&t, &s).len(), 1);
    }
}
