//! The state file: atomic writes, the lock, force-unlock.

use crmctl::domain::op::ObjKind;
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
            protected_at: None,
            copied_from: None,
            ids: Default::default(),
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
                protected_at: None,
                copied_from: None,
                ids: Default::default(),
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

fn user_change(i: usize) -> crmctl::state::store::StateChange {
    crmctl::state::store::StateChange::Set {
        address: format!("users.u{i}@coho.com"),
        resource: Resource {
            kind: ObjKind::User,
            id: format!("usr-{i:06}"),
            protect: false,
            protected_at: None,
            copied_from: None,
            ids: Default::default(),
        },
    }
}

fn journal_line(lineage: &str, serial: u64, i: usize) -> String {
    format!(
        "{{\"lineage\":\"{lineage}\",\"serial\":{serial},\"tenant\":\"coho.onmicrosoft.com\",\"changes\":[{}]}}\n",
        serde_json::to_string(&user_change(i)).unwrap()
    )
}

/// issue 9 item 5: the journal replay rule. Every well-formed line of the state's lineage
/// above the last applied serial applies, in order, also after a damaged line; a damaged
/// line is reported (which line), except an unterminated last line (a crash mid-append).
#[test]
fn journal_replay_reports_damaged_lines_and_applies_the_good_ones_after_them() {
    use crmctl::state::store::{journal_path, JournalProblem};
    let good = |serial: u64| journal_line("lin-j", serial, serial as usize);
    // (case, journal text, users expected in the state, expected serial, warnings as
    // (line, kind))
    type Case = (
        &'static str,
        Vec<u8>,
        Vec<usize>,
        u64,
        Vec<(usize, &'static str)>,
    );
    let cat = |parts: &[&[u8]]| parts.concat();
    let cases: Vec<Case> = vec![
        (
            "clean",
            cat(&[good(2).as_bytes(), good(3).as_bytes()]),
            vec![2, 3],
            3,
            vec![],
        ),
        (
            "torn last line is silent",
            cat(&[good(2).as_bytes(), b"{\"lineage\":\"lin-j\",\"ser"]),
            vec![2],
            2,
            vec![],
        ),
        (
            "damaged middle line, good lines after it",
            cat(&[
                good(2).as_bytes(),
                b"{garbage}\n",
                good(4).as_bytes(),
                good(5).as_bytes(),
            ]),
            vec![2, 4, 5],
            5,
            vec![(2, "damaged")],
        ),
        (
            "damaged first line",
            cat(&[b"\0\0\0\0\n", good(3).as_bytes()]),
            vec![3],
            3,
            vec![(1, "damaged")],
        ),
        (
            "invalid UTF-8 in the middle",
            cat(&[good(2).as_bytes(), b"\xff\xfe\n", good(4).as_bytes()]),
            vec![2, 4],
            4,
            vec![(2, "damaged")],
        ),
        (
            "damaged terminated last line",
            cat(&[good(2).as_bytes(), b"{\"lineage\":1}\n"]),
            vec![2],
            2,
            vec![(2, "damaged")],
        ),
        (
            "a missing line (gap in the serials)",
            cat(&[good(2).as_bytes(), good(4).as_bytes()]),
            vec![2, 4],
            4,
            vec![(2, "gap")],
        ),
        (
            "out of order",
            cat(&[good(3).as_bytes(), good(2).as_bytes()]),
            vec![3],
            3,
            vec![(1, "gap"), (2, "out of order")],
        ),
        (
            "another lineage",
            cat(&[journal_line("lin-x", 2, 7).as_bytes(), good(2).as_bytes()]),
            vec![2],
            2,
            vec![(1, "other lineage")],
        ),
        (
            "lines already folded into the state are silent",
            cat(&[good(1).as_bytes(), good(2).as_bytes()]),
            vec![2],
            2,
            vec![],
        ),
    ];
    for (case, journal, users, serial, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut base = State::empty("lin-j");
        base.serial = 1;
        store::save(&path, &base).unwrap();
        std::fs::write(journal_path(&path), &journal).unwrap();
        let (state, warnings) = store::load_reporting(&path).unwrap();
        let state = state.unwrap();
        let mut want: Vec<String> = users
            .iter()
            .map(|i| format!("users.u{i}@coho.com"))
            .collect();
        want.sort();
        assert_eq!(
            state.resources.keys().cloned().collect::<Vec<_>>(),
            want,
            "{case}"
        );
        assert_eq!(state.serial, serial, "{case}");
        // `load` (what the old code had) gives the same state.
        assert_eq!(store::load(&path).unwrap().unwrap(), state, "{case}");
        let got: Vec<(usize, &str)> = warnings
            .iter()
            .map(|w| {
                let kind = match w.problem {
                    JournalProblem::Damaged { .. } => "damaged",
                    JournalProblem::Gap { .. } => "gap",
                    JournalProblem::OutOfOrder { .. } => "out of order",
                    JournalProblem::OtherLineage { .. } => "other lineage",
                    JournalProblem::NoStateFile { .. } => "no state file",
                };
                (w.line, kind)
            })
            .collect();
        assert_eq!(got, expected, "{case}");
        for w in &warnings {
            let text = w.to_string();
            assert!(
                text.starts_with(&format!("{}:{}: ", journal_path(&path).display(), w.line)),
                "{case}: {text}"
            );
            if matches!(
                w.problem,
                JournalProblem::Damaged { .. } | JournalProblem::Gap { .. }
            ) {
                assert!(text.contains("adopted on the next plan"), "{case}: {text}");
            }
        }
    }
}

/// issue 9 item 5: a lock file that is not a lock (empty, as a crash between create and
/// write left it before, or damaged) names an id that `force-unlock` accepts, and only
/// for that content: nobody is stuck, and no other lock is removed by mistake.
#[test]
fn an_unreadable_lock_can_be_removed_with_the_id_its_error_prints() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    for content in [&b""[..], b"{\"id\":\"12", b"\xff garbage"] {
        std::fs::write(lock::lock_path(&state), content).unwrap();
        let err = StateLock::acquire(&state, "apply").unwrap_err();
        let LockError::Unreadable { id, .. } = &err else {
            panic!("{err}")
        };
        assert!(id.starts_with("unreadable-") && id.len() == 27, "{id}");
        assert!(
            err.to_string()
                .contains(&format!("crmctl force-unlock {id}")),
            "{err}"
        );
        let id = id.clone();
        // Another content has another id: a wrong id removes nothing.
        let other = lock::force_unlock(&state, "unreadable-0000000000000000").unwrap_err();
        assert!(matches!(other, LockError::WrongId { .. }), "{other}");
        assert!(lock::lock_path(&state).exists());
        let removed = lock::force_unlock(&state, &id).unwrap();
        assert_eq!(removed.id, id);
        assert!(!lock::lock_path(&state).exists());
        StateLock::acquire(&state, "apply").unwrap();
    }
}

/// issue 9 item 5: the lock file is complete whenever it exists (written beside, then
/// linked into place): a reader racing with runs that take and release the lock never
/// sees an empty or partial one, and no temporary file is left.
#[test]
fn the_lock_file_is_never_seen_empty_or_partial() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (seen, bad) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut seen, mut bad) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match lock::read_lock(&state) {
                    Ok(Some(_)) => seen += 1,
                    Ok(None) => {}
                    Err(e) => bad.push(e.to_string()),
                }
            }
            (seen, bad)
        });
        for _ in 0..300 {
            match StateLock::acquire(&state, "apply") {
                Ok(l) => drop(l),
                Err(e) => panic!("{e}"),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(
        bad.is_empty(),
        "read {} bad lock(s) (of {seen} good): {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// issue 9 item 5: a symlinked state file is written through to its target (atomic
/// rewrite in the target's directory; the link stays a link), and the journal and the
/// lock live beside the target, so the link and the target share one lock.
#[cfg(unix)]
#[test]
fn a_symlinked_state_is_written_through_with_journal_and_lock_beside_the_target() {
    use crmctl::state::store::{journal_path, StateWriter};
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    std::fs::create_dir(&real_dir).unwrap();
    let link_dir = dir.path().join("work");
    std::fs::create_dir(&link_dir).unwrap();
    let link = link_dir.join("state.json");
    let target = real_dir.join("state.json");
    // A relative link to a target that does not exist yet (first use).
    std::os::unix::fs::symlink("../real/state.json", &link).unwrap();

    let beside_target = |p: std::path::PathBuf, name: &str| {
        assert_eq!(p.file_name().unwrap(), name);
        assert_eq!(
            p.parent().unwrap().canonicalize().unwrap(),
            real_dir.canonicalize().unwrap()
        );
    };
    beside_target(journal_path(&link), "state.json.journal");
    beside_target(lock::lock_path(&link), "state.json.lock");

    let held = StateLock::acquire(&link, "apply").unwrap();
    assert!(real_dir.join("state.json.lock").exists());
    assert!(matches!(
        StateLock::acquire(&target, "plan").unwrap_err(),
        LockError::Held { .. }
    ));

    let mut state = State::empty("lin-s");
    let mut w = StateWriter::new(&link);
    for i in 1..=3 {
        let c = user_change(i);
        c.apply_to(&mut state);
        state.serial += 1;
        w.write(&state, &[c]).unwrap();
    }
    // The first write rewrote the target; the others went to the journal beside it.
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(real_dir.join("state.json.journal").exists());
    assert!(!link_dir.join("state.json.journal").exists());
    assert_eq!(store::load(&link).unwrap().unwrap(), state);
    assert_eq!(store::load(&target).unwrap().unwrap(), state);
    w.finish(&state).unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(!real_dir.join("state.json.journal").exists());
    let on_disk: State = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(on_disk, state);
    drop(held);
    assert!(!real_dir.join("state.json.lock").exists());
    // Nothing but the link in the link's directory.
    let names: Vec<String> = std::fs::read_dir(&link_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["state.json".to_string()]);
}

/// issue 9 item 3: a journal whose state file is gone (moved or deleted) is replayed into a
/// state of its lineage and reported, not ignored (the next apply used to delete it).
#[test]
fn a_lone_journal_is_replayed_and_reported() {
    use crmctl::state::store::{journal_path, JournalProblem};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let journal = [journal_line("lin-j", 4, 4), journal_line("lin-j", 5, 5)].concat();
    std::fs::write(journal_path(&path), journal).unwrap();
    let (state, warnings) = store::load_reporting(&path).unwrap();
    let state = state.expect("the journal gives a state");
    assert_eq!(state.lineage, "lin-j");
    assert_eq!(state.serial, 5);
    assert_eq!(state.tenant, "coho.onmicrosoft.com");
    assert_eq!(
        state.resources.keys().cloned().collect::<Vec<_>>(),
        ["users.u4@coho.com", "users.u5@coho.com"]
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(matches!(
        warnings[0].problem,
        JournalProblem::NoStateFile { from_serial: 4, .. }
    ));
    let text = warnings[0].to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("is missing"), "{text}");
    // A journal with no readable line: no state, but still reported.
    std::fs::write(journal_path(&path), "garbage\n").unwrap();
    let (state, warnings) = store::load_reporting(&path).unwrap();
    assert!(state.is_none());
    assert!(
        warnings[0].to_string().contains("restore the state file"),
        "{warnings:?}"
    );
    // No journal, no state file: nothing to say.
    std::fs::remove_file(journal_path(&path)).unwrap();
    let (state, warnings) = store::load_reporting(&path).unwrap();
    assert!(state.is_none() && warnings.is_empty());
}

/// issue 9 item 1: a held lock knows when it was removed (`force-unlock`) or replaced by
/// another run's lock, so that its run stops writing the state.
#[test]
fn a_lock_notices_it_was_removed_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mine = StateLock::acquire(&path, "apply").unwrap();
    mine.check(&path).unwrap();
    lock::force_unlock(&path, &mine.info().id).unwrap();
    let err = mine.check(&path).unwrap_err();
    assert!(matches!(err, LockError::Lost { now: None, .. }), "{err:?}");
    assert!(err.to_string().contains("was removed"), "{err}");
    let other = StateLock::acquire(&path, "apply").unwrap();
    let err = mine.check(&path).unwrap_err();
    match &err {
        LockError::Lost {
            now: Some(i), id, ..
        } => {
            assert_eq!(i.id, other.info().id);
            assert_eq!(*id, mine.info().id);
        }
        e => panic!("{e:?}"),
    }
    assert!(err.to_string().contains(&other.info().id), "{err}");
    drop(mine);
    other.check(&path).unwrap();
}

// issue 11 item 4: a state written before pending operations and further ids existed loads
// (both empty), and one that has them is written without changing older entries' shape.
#[test]
fn older_states_load_and_pending_operations_and_ids_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let old = r#"{"version":1,"serial":2,"lineage":"l","tenant":"coho.onmicrosoft.com",
        "resources":{"users.ana@coho.com":{"kind":"user","id":"usr-000001"}}}"#;
    std::fs::write(&path, old).unwrap();
    let s = store::load(&path).unwrap().unwrap();
    assert!(s.pending.is_empty());
    assert!(s.resources["users.ana@coho.com"].ids.is_empty());
    // Written back, an entry without further ids has no `ids` key, a state without
    // pending operations no `pending` key.
    store::save(&path, &s).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("\"ids\"") && !text.contains("\"pending\""),
        "{text}"
    );

    let mut s = sample();
    s.resources
        .get_mut("instances.sales")
        .unwrap()
        .ids
        .insert("org_url".into(), "https://sales.crm.dynamics.com".into());
    s.pending.insert(
        "instances.test".into(),
        crmctl::state::PendingOperation {
            kind: crmctl::domain::op::ActionKind::ConfigureInstance,
            handle: crmctl::provider::OperationHandle {
                id: "lro-000001".into(),
                retry_after: Some(std::time::Duration::from_secs(20)),
            },
        },
    );
    store::save(&path, &s).unwrap();
    assert_eq!(store::load(&path).unwrap().unwrap(), s);
}

// issue 11 item 4: the journal carries a pending operation (recorded before apply waits
// for it) and its end; replay restores both.
#[test]
fn the_journal_records_pending_operations_and_their_end() {
    use crmctl::state::store::{StateChange, StateWriter};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut s = sample();
    let mut w = StateWriter::new(&path);
    w.write(&s, &[]).unwrap();
    let pending = StateChange::Pending {
        address: "instances.test".into(),
        operation: crmctl::state::PendingOperation {
            kind: crmctl::domain::op::ActionKind::CopyInstance,
            handle: crmctl::provider::OperationHandle {
                id: "op-7".into(),
                retry_after: None,
            },
        },
    };
    pending.apply_to(&mut s);
    s.serial += 1;
    w.write(&s, std::slice::from_ref(&pending)).unwrap();
    // A crash now: the journal holds the handle.
    let loaded = store::load(&path).unwrap().unwrap();
    assert_eq!(loaded.pending["instances.test"].handle.id, "op-7");
    let end = StateChange::Settled {
        address: "instances.test".into(),
    };
    end.apply_to(&mut s);
    s.serial += 1;
    w.write(&s, std::slice::from_ref(&end)).unwrap();
    let loaded = store::load(&path).unwrap().unwrap();
    assert!(loaded.pending.is_empty());
    assert_eq!(loaded, s);
}
