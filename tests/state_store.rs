//! The state file: atomic writes, the lock, force-unlock.

use crmctl::plan::action::ObjKind;
use crmctl::state::lock::{self, LockError, StateLock};
use crmctl::state::store::{self, StateError};
use crmctl::state::{Resource, State};

fn sample() -> State {
    let mut s = State::empty(store::new_lineage());
    s.serial = 3;
    s.tenant = "coho.onmicrosoft.com".into();
    s.resources.insert(
        "instances.sales".into(),
        Resource {
            kind: ObjKind::Instance,
            id: "org-000001".into(),
            protect: true,
        },
    );
    s
}

#[test]
fn missing_state_is_empty_with_a_fresh_lineage_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert!(store::load(&path).unwrap().is_none());
    let a = store::load_or_empty(&path).unwrap();
    let b = store::load_or_empty(&path).unwrap();
    assert_eq!((a.serial, a.resources.len()), (0, 0));
    assert_ne!(a.lineage, b.lineage, "lineages are random");
    assert_eq!(a.lineage.len(), 36);
    assert!(!path.exists());
}

#[test]
fn save_is_atomic_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/state.json");
    let s = sample();
    store::save(&path, &s).unwrap();
    assert_eq!(store::load(&path).unwrap(), Some(s.clone()));
    // Pretty JSON with the documented top-level keys.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\n  \"serial\": 3"), "{text}");
    // Overwrite: no temporary file is left behind, the new content is complete.
    let mut s2 = s.clone();
    s2.serial = 4;
    store::save(&path, &s2).unwrap();
    assert_eq!(store::load(&path).unwrap().unwrap().serial, 4);
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["state.json".to_string()]);
}

#[test]
fn a_torn_temp_file_never_replaces_the_state() {
    // A crash before the rename leaves a stray temp file and the old state intact.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let s = sample();
    store::save(&path, &s).unwrap();
    std::fs::write(dir.path().join(".state-crash.tmp"), "{\"version\":1,\"ser").unwrap();
    assert_eq!(store::load(&path).unwrap(), Some(s));
}

#[test]
fn invalid_and_newer_states_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, "{not json").unwrap();
    let e = store::load(&path).unwrap_err();
    assert!(matches!(e, StateError::Invalid { .. }));
    assert!(
        e.to_string().contains("not a valid crmctl state file"),
        "{e}"
    );
    let mut s = sample();
    s.version = 99;
    std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
    assert!(matches!(
        store::load(&path).unwrap_err(),
        StateError::TooNew { found: 99, .. }
    ));
}

#[test]
fn lock_is_exclusive_names_the_holder_and_is_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let held = StateLock::acquire(&state, "apply").unwrap();
    let lock_file = lock::lock_path(&state);
    assert!(lock_file.ends_with("state.json.lock"));
    let info = lock::read_lock(&state).unwrap().unwrap();
    assert_eq!(&info, held.info());
    assert_eq!(info.pid, std::process::id());
    assert!(info.owner.contains('@'));
    assert_eq!(info.operation, "apply");

    let err = StateLock::acquire(&state, "plan").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LockError::Held { .. }));
    assert!(
        msg.contains(&info.owner) && msg.contains(&format!("crmctl force-unlock {}", info.id)),
        "{msg}"
    );

    drop(held);
    assert!(!lock_file.exists());
    let again = StateLock::acquire(&state, "plan").unwrap();
    assert_ne!(again.info().id, info.id);
}

#[test]
fn force_unlock_needs_the_right_id() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let held = StateLock::acquire(&state, "apply").unwrap();
    let id = held.info().id.clone();
    std::mem::forget(held); // a crashed run leaves its lock behind

    let err = lock::force_unlock(&state, "0000").unwrap_err();
    assert!(matches!(err, LockError::WrongId { .. }), "{err}");
    assert!(lock::lock_path(&state).exists());
    let removed = lock::force_unlock(&state, &id).unwrap();
    assert_eq!(removed.id, id);
    assert!(!lock::lock_path(&state).exists());
    assert!(matches!(
        lock::force_unlock(&state, &id).unwrap_err(),
        LockError::NotLocked(_)
    ));
}

#[test]
fn the_writer_journals_batches_and_load_replays_them() {
    use crmctl::state::store::{journal_path, StateChange, StateWriter};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut state = State::empty("lin-a");
    let mut w = StateWriter::new(&path);
    let batch = |state: &mut State, w: &mut StateWriter, i: usize| {
        let c = StateChange::Set {
            address: format!("users.u{i}@coho.com"),
            resource: Resource {
                kind: ObjKind::User,
                id: format!("usr-{i:06}"),
                protect: false,
            },
        };
        c.apply_to(state);
        state.serial += 1;
        w.write(state, &[c]).unwrap();
    };
    batch(&mut state, &mut w, 1); // first write of a run: the whole file
    assert!(path.exists() && !journal_path(&path).exists());
    for i in 2..=5 {
        batch(&mut state, &mut w, i);
    }
    // The file still says serial 1; the journal holds the rest, and load replays it.
    let on_disk: State = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk.serial, 1);
    assert_eq!(store::load(&path).unwrap().unwrap(), state);

    // A torn last line (crash mid-write) is ignored; lines of another lineage too.
    let mut j = std::fs::OpenOptions::new()
        .append(true)
        .open(journal_path(&path))
        .unwrap();
    use std::io::Write;
    j.write_all(b"{\"lineage\":\"lin-a\",\"serial\":9,\"tenant\":\"\",\"chan")
        .unwrap();
    drop(j);
    assert_eq!(store::load(&path).unwrap().unwrap(), state);

    let mut other = std::fs::read_to_string(journal_path(&path)).unwrap();
    other = other.lines().take(4).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(journal_path(&path), other.replace("lin-a", "lin-b")).unwrap();
    assert_eq!(
        store::load(&path).unwrap().unwrap().serial,
        1,
        "another lineage's journal is ignored"
    );

    // finish() folds the journal into the file and removes it.
    std::fs::write(journal_path(&path), "").unwrap();
    let mut w = StateWriter::new(&path);
    batch(&mut state, &mut w, 6);
    batch(&mut state, &mut w, 7);
    w.finish(&state).unwrap();
    assert!(!journal_path(&path).exists());
    let on_disk: State = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk, state);
    assert_eq!(on_disk.serial, 7);

    // A run that crashes before its fold leaves a journal; the next run folds it at its
    // end even when it has nothing to write (a no-op apply), without a serial bump.
    let mut crashed = StateWriter::new(&path);
    batch(&mut state, &mut crashed, 8);
    batch(&mut state, &mut crashed, 9);
    drop(crashed); // no finish: killed
    assert!(journal_path(&path).exists());
    let loaded = store::load(&path).unwrap().unwrap();
    assert_eq!(loaded, state);
    let mut next = StateWriter::new(&path);
    next.finish(&loaded).unwrap();
    assert!(!journal_path(&path).exists());
    let on_disk: State = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk, state);
    assert_eq!(on_disk.serial, 9);
}
