//! `crmctl state list | show ADDR | mv FROM TO | rm ADDR` (issue 14 item 3): read and edit
//! the state without touching the tenant. Edits run under the state lock, fold a journal
//! left by a crashed apply first, keep the previous state as `STATE.backup`, and bump the
//! serial (a plan saved before an edit is stale after it).

use std::path::{Path, PathBuf};

use crate::domain::op::ObjKind;
use crate::ops::session::Warn;
use crate::ops::OpsError;
use crate::state::lock::StateLock;
use crate::state::store::{self, StateWriter};
use crate::state::{Resource, State};

/// The file that keeps the state as it was before the last `state mv` / `state rm`.
pub fn backup_path(state: &Path) -> PathBuf {
    let mut s = store::resolve_symlinks(state).into_os_string();
    s.push(".backup");
    PathBuf::from(s)
}

/// The kind an address names by its prefix (`users.`, `security_groups.`, `instances.`).
pub fn kind_of_address(address: &str) -> Option<ObjKind> {
    let (prefix, key) = address.split_once('.')?;
    if key.is_empty() {
        return None;
    }
    match prefix {
        "users" => Some(ObjKind::User),
        "security_groups" => Some(ObjKind::Group),
        "instances" => Some(ObjKind::Instance),
        _ => None,
    }
}

fn read(state_path: &Path, warn: Warn<'_>) -> Result<State, OpsError> {
    let (state, warnings) = store::load_reporting(state_path)?;
    for w in &warnings {
        warn(w);
    }
    state.ok_or_else(|| {
        OpsError::StateEdit(format!(
            "there is no state at {}; check --state (or CRMCTL_STATE)",
            state_path.display()
        ))
    })
}

/// Every managed address with its object, in address order.
pub fn list(state_path: &Path, warn: Warn<'_>) -> Result<Vec<(String, Resource)>, OpsError> {
    Ok(read(state_path, warn)?.resources.into_iter().collect())
}

/// The object at `address`.
pub fn show(state_path: &Path, address: &str, warn: Warn<'_>) -> Result<Resource, OpsError> {
    let state = read(state_path, warn)?;
    state
        .resources
        .get(address)
        .cloned()
        .ok_or_else(|| not_managed(&state, address))
}

fn not_managed(state: &State, address: &str) -> OpsError {
    let near: Vec<&str> = state
        .resources
        .keys()
        .filter(|a| crate::domain::ident::same(a, address))
        .map(String::as_str)
        .collect();
    let hint = match near.as_slice() {
        [] => "`crmctl state list` shows what it manages".to_string(),
        some => format!("did you mean {}?", some.join(", ")),
    };
    OpsError::StateEdit(format!("the state manages nothing at `{address}`: {hint}"))
}

/// An edit of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Manage the object at `from` under `to` instead (a key renamed in the file).
    Move {
        /// The address it is managed under now.
        from: String,
        /// The address the file names it by.
        to: String,
    },
    /// Stop managing the object at `address` (the object itself stays in the tenant).
    Remove {
        /// The address.
        address: String,
    },
}

/// Apply `edit` to the state at `state_path` under its lock; returns the new serial.
pub fn edit(state_path: &Path, edit: &Edit, warn: Warn<'_>) -> Result<u64, OpsError> {
    let what = match edit {
        Edit::Move { .. } => "state mv",
        Edit::Remove { .. } => "state rm",
    };
    let _lock = StateLock::acquire(state_path, what)?;
    let before = read(state_path, warn)?;
    let mut state = before.clone();
    apply_edit(&mut state, edit)?;
    // The previous state first: the edit is undone by putting it back.
    // (A remote state keeps its history instead: `KEY.history/SERIAL`.)
    if !crate::state::remote::is_remote(state_path) {
        store::save(&backup_path(state_path), &before)?;
    }
    state.serial += 1;
    // Also folds (and removes) a journal left by a crashed apply: it is in `state` now.
    StateWriter::new(state_path).compact(&state)?;
    Ok(state.serial)
}

/// The serials of the states kept in the history of a remote state, oldest first
/// (`KEY.history/SERIAL`, issue 15 item 1). A local state keeps no history (its previous
/// version is `STATE.backup`).
pub fn history(state_path: &Path) -> Result<Vec<u64>, OpsError> {
    if !crate::state::remote::is_remote(state_path) {
        return Err(OpsError::StateEdit(format!(
            "{} is a local state: only a remote state (azblob://, s3://, gs://) keeps a history; the previous local state is {}",
            state_path.display(),
            backup_path(state_path).display()
        )));
    }
    let url = crate::state::remote::url_of(state_path);
    crate::state::remote::history(url).map_err(|e| OpsError::from(store::StateError::from(e)))
}

/// Put back the state of `serial` from the history of a remote state, under the lock, as a
/// new serial (a plan saved before it is stale after it); returns the new serial. Refused
/// when the kept state is of another lineage than the current one.
pub fn restore(state_path: &Path, serial: u64, warn: Warn<'_>) -> Result<u64, OpsError> {
    let kept = history(state_path)?;
    if !kept.contains(&serial) {
        return Err(OpsError::StateEdit(format!(
            "the history of {} has no state of serial {serial}; it keeps {}: see `crmctl state list --history`",
            state_path.display(),
            if kept.is_empty() {
                "none".to_string()
            } else {
                kept.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            }
        )));
    }
    let _lock = StateLock::acquire(state_path, "state restore")?;
    let current = read(state_path, warn)?;
    let url = crate::state::remote::history_url(crate::state::remote::url_of(state_path), serial);
    let bytes = crate::state::remote::get(&url)
        .map_err(|e| OpsError::from(store::StateError::from(e)))?
        .ok_or_else(|| OpsError::StateEdit(format!("{url} disappeared while restoring it; retry")))?
        .bytes;
    let mut old: State = serde_json::from_slice(&bytes)
        .map_err(|e| OpsError::StateEdit(format!("{url} is not a state: {e}")))?;
    if old.lineage != current.lineage {
        return Err(OpsError::StateEdit(format!(
            "{url} belongs to another state (lineage {}, the current one is {}); nothing restored",
            old.lineage, current.lineage
        )));
    }
    old.serial = current.serial + 1;
    // Conditional on the state read above; also folds a journal left by a crashed apply.
    StateWriter::new(state_path).compact(&old)?;
    Ok(old.serial)
}

/// The edit on a state in memory (pure): refused when it would lose or misbind anything.
pub fn apply_edit(state: &mut State, edit: &Edit) -> Result<(), OpsError> {
    let refuse = |m: String| Err(OpsError::StateEdit(m));
    match edit {
        Edit::Move { from, to } => {
            let Some(r) = state.resources.get(from).cloned() else {
                return Err(not_managed(state, from));
            };
            match kind_of_address(to) {
                Some(k) if k == r.kind => {}
                Some(_) | None => {
                    return refuse(format!(
                        "`{to}` is not an address of the same kind as `{from}`: write `{}.KEY`",
                        from.split('.').next().unwrap_or("users")
                    ))
                }
            }
            if from == to {
                return refuse(format!("`{from}` and `{to}` are the same address"));
            }
            if state.resources.contains_key(to) {
                return refuse(format!(
                    "the state already manages `{to}`: `crmctl state rm {to}` first if that entry is wrong"
                ));
            }
            if state.pending.contains_key(from) {
                return refuse(format!(
                    "an operation is still running for `{from}`: run `crmctl apply` to finish it first"
                ));
            }
            state.resources.remove(from);
            state.resources.insert(to.clone(), r);
            // Drift (issue 14 item 2): what the last apply left moves with the object, so
            // the next plan reports no spurious drift at either address.
            if let Some(snapshot) = state.applied.remove(from) {
                state.applied.insert(to.clone(), snapshot);
            }
        }
        Edit::Remove { address } => {
            if !state.resources.contains_key(address) {
                return Err(not_managed(state, address));
            }
            if state.pending.contains_key(address) {
                return refuse(format!(
                    "an operation is still running for `{address}`: run `crmctl apply` to finish it first"
                ));
            }
            state.resources.remove(address);
            // Not managed any more: no drift to report for it.
            state.applied.remove(address);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn res(kind: ObjKind, id: &str) -> Resource {
        Resource {
            kind,
            id: id.into(),
            protect: false,
            protected_at: None,
            copied_from: None,
            ids: BTreeMap::new(),
        }
    }

    // Issue 14 item 3: each refusal of an edit, and the edits that are allowed.
    #[test]
    fn edits_never_lose_or_misbind() {
        let mut s = State::empty("l");
        s.resources
            .insert("instances.prod".into(), res(ObjKind::Instance, "i1"));
        s.resources
            .insert("security_groups.sales".into(), res(ObjKind::Group, "g1"));
        let mv = |from: &str, to: &str| Edit::Move {
            from: from.into(),
            to: to.into(),
        };
        let refused: Vec<(Edit, &str)> = vec![
            (mv("instances.nope", "instances.x"), "manages nothing"),
            (
                mv("instances.PROD", "instances.x"),
                "did you mean instances.prod",
            ),
            (mv("instances.prod", "users.x@y.com"), "same kind"),
            (mv("instances.prod", "instances."), "same kind"),
            (mv("instances.prod", "security_groups.sales"), "same kind"),
            (mv("instances.prod", "instances.prod"), "same address"),
            (
                Edit::Remove {
                    address: "users.a@b.com".into(),
                },
                "manages nothing",
            ),
        ];
        for (e, want) in refused {
            let mut t = s.clone();
            let err = apply_edit(&mut t, &e).unwrap_err().to_string();
            assert!(err.contains(want), "{e:?}: {err}");
            assert_eq!(t, s, "a refused edit changes nothing");
        }
        let mut t = s.clone();
        t.resources
            .insert("instances.main".into(), res(ObjKind::Instance, "i2"));
        let err = apply_edit(&mut t, &mv("instances.prod", "instances.main")).unwrap_err();
        assert!(err.to_string().contains("already manages"), "{err}");

        let mut t = s.clone();
        apply_edit(&mut t, &mv("instances.prod", "instances.main")).unwrap();
        assert_eq!(t.id_of("instances.main"), Some("i1"));
        assert_eq!(t.id_of("instances.prod"), None);
        apply_edit(
            &mut t,
            &Edit::Remove {
                address: "security_groups.sales".into(),
            },
        )
        .unwrap();
        assert_eq!(t.resources.len(), 1);
    }

    // Issue 14 items 2-3: the drift snapshot (`applied`) moves and goes with its entry.
    #[test]
    fn edits_carry_the_drift_snapshots() {
        let mut s = State::empty("l");
        s.resources
            .insert("instances.prod".into(), res(ObjKind::Instance, "i1"));
        s.resources
            .insert("users.a@b.com".into(), res(ObjKind::User, "u1"));
        s.applied
            .insert("instances.prod".into(), serde_json::json!({"name": "P"}));
        s.applied
            .insert("users.a@b.com".into(), serde_json::json!({"name": "A"}));
        apply_edit(
            &mut s,
            &Edit::Move {
                from: "instances.prod".into(),
                to: "instances.main".into(),
            },
        )
        .unwrap();
        assert_eq!(
            s.applied.get("instances.main"),
            Some(&serde_json::json!({"name": "P"}))
        );
        assert!(!s.applied.contains_key("instances.prod"));
        apply_edit(
            &mut s,
            &Edit::Remove {
                address: "users.a@b.com".into(),
            },
        )
        .unwrap();
        assert!(!s.applied.contains_key("users.a@b.com"));
        assert_eq!(s.applied.len(), 1);
    }
}
