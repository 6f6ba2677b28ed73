//! `crmctl apply`, `show`, `local ...` and `force-unlock` through the binary.

mod support;
use support::{assert_no_changes, crmctl};

use std::path::{Path, PathBuf};

use predicates::prelude::*;

use crmctl::plan::action::{Action, ActionKind, ObjRef, Op, Plan};
use crmctl::plan::saved::{SavedPlan, SAVED_PLAN_VERSION};
use crmctl::provider::local::LocalProvider;
use crmctl::provider::Provider;
use crmctl::state::lock::StateLock;
use crmctl::tenant::{AccessMode, CopyKind, InstanceType, LicensePlan, Tenant};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

fn tenant_db(dir: &Path) -> PathBuf {
    dir.join(".crmctl/tenant.db")
}

fn observe(dir: &Path) -> Tenant {
    LocalProvider::open(&tenant_db(dir))
        .unwrap()
        .observe()
        .unwrap()
}

#[test]
fn every_example_applies_and_then_plans_no_changes() {
    let ex = examples();
    assert!(!ex.is_empty());
    for file in ex {
        let dir = tempfile::tempdir().unwrap();
        crmctl(dir.path())
            .args(["apply", "--auto-approve", "-f"])
            .arg(&file)
            .assert()
            .success()
            .stdout(predicate::str::contains("Apply complete!"));
        assert_no_changes(dir.path(), &file);
        // A second apply is a no-op and does not bump the serial.
        let serial = |d: &Path| -> u64 {
            let s: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(d.join(".crmctl/state.json")).unwrap(),
            )
            .unwrap();
            s["serial"].as_u64().unwrap()
        };
        let before = serial(dir.path());
        crmctl(dir.path())
            .args(["apply", "--auto-approve", "-f"])
            .arg(&file)
            .assert()
            .success()
            .stdout(predicate::str::contains("No changes"));
        assert_eq!(
            serial(dir.path()),
            before,
            "{}: a no-op apply bumped the serial",
            file.display()
        );
    }
}

fn minimal(dir: &Path) -> PathBuf {
    let file = dir.join("tenant.yaml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minimal.yaml"),
        &file,
    )
    .unwrap();
    file
}

#[test]
fn without_a_tty_apply_needs_auto_approve_and_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = minimal(dir.path());
    crmctl(dir.path())
        .args(["apply", "-f"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--auto-approve"));
    assert!(!tenant_db(dir.path()).exists(), "nothing may be created");
    assert!(!dir.path().join(".crmctl/state.json").exists());
    assert!(
        !dir.path().join(".crmctl/state.json.lock").exists(),
        "the lock is released"
    );
}

#[test]
fn invalid_file_prints_diagnostics_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "tenant: x.onmicrosoft.com\nusers: [oops\n").unwrap();
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("error"));
    assert!(!tenant_db(dir.path()).exists());
}

/// Save `actions` as a plan made against the current tenant and state (no state file).
fn saved_plan(dir: &Path, actions: Vec<Action>) -> PathBuf {
    let observed = observe(dir);
    let plan = Plan {
        format_version: "1".into(),
        tenant: observed.domain.clone(),
        fingerprint: crmctl::plan::fingerprint(&observed),
        actions,
        ..Plan::default()
    };
    let saved = SavedPlan {
        version: SAVED_PLAN_VERSION,
        backend: "local:.crmctl/tenant.db".into(),
        state_path: ".crmctl/state.json".into(),
        state_lineage: "test-lineage".into(),
        state_serial: 0,
        plan,
        protect: Default::default(),
    };
    let path = dir.join("plan.json");
    std::fs::write(&path, serde_json::to_string_pretty(&saved).unwrap()).unwrap();
    path
}

fn one(kind: ActionKind, op: Op, destructive: bool) -> Vec<Action> {
    vec![Action {
        id: 0,
        kind,
        address: "test.address".into(),
        depends_on: vec![],
        destructive,
        changes: vec![],
        reason: "hand-built to test a refusal".into(),
        op: Box::new(op),
    }]
}

fn id(id: &str) -> ObjRef {
    ObjRef {
        address: format!("x.{id}").into(),
        id: Some(id.to_string()),
    }
}

/// A tenant with a production instance (org-000001), a sandbox (org-000002), five
/// non-interactive users with roles in the sandbox, and a sixth licensed one.
fn refusal_tenant(dir: &Path) -> Tenant {
    let p = LocalProvider::open(&tenant_db(dir)).unwrap();
    p.set_domain_hint("coho.onmicrosoft.com").unwrap();
    p.execute(&Op::PurchaseLicenses {
        plan: LicensePlan::Professional,
        to: 30,
    })
    .unwrap();
    let conf = |url: &str, kind| Op::ConfigureInstance {
        name: url.into(),
        url: url.into(),
        kind,
        purpose: String::new(),
        region: crmctl::tenant::Region::NA,
        currency: "USD".into(),
        language: 1033,
        security_group: None,
    };
    p.execute(&conf("prod", InstanceType::Production)).unwrap();
    p.execute(&conf("sbx", InstanceType::Sandbox)).unwrap();
    for n in 1..=6 {
        let u = p
            .execute(&Op::CreateUser {
                upn: format!("ni{n}@coho.com"),
                name: String::new(),
                access_mode: AccessMode::ReadWrite,
            })
            .unwrap()
            .created_id
            .unwrap();
        p.execute(&Op::AssignLicense {
            user: id(&u),
            plan: LicensePlan::Professional,
        })
        .unwrap();
        p.execute(&Op::SetAccessMode {
            user: id(&u),
            mode: AccessMode::NonInteractive,
        })
        .unwrap();
        if n < 6 {
            p.execute(&Op::AssignRoles {
                user: id(&u),
                instance: id("org-000002"),
                roles: vec!["Integration".into()],
            })
            .unwrap();
        }
    }
    p.observe().unwrap()
}

#[test]
fn provider_refusals_through_the_cli_name_the_rule_and_change_nothing() {
    let cases: Vec<(&str, ActionKind, Op, bool)> = vec![
        (
            "I8",
            ActionKind::DeleteInstance,
            Op::DeleteInstance {
                instance: id("org-000001"),
            },
            true,
        ),
        (
            "P3",
            ActionKind::AssignRoles,
            Op::AssignRoles {
                user: id("usr-000006"),
                instance: id("org-000002"),
                roles: vec!["Integration".into()],
            },
            false,
        ),
        (
            "T4",
            ActionKind::ReduceLicenses,
            Op::ReduceLicenses {
                plan: LicensePlan::Professional,
                to: 0,
            },
            false,
        ),
        (
            "I10",
            ActionKind::SetAdminMode,
            Op::SetAdminMode {
                instance: id("org-000002"),
                enabled: false,
                background_operations: false,
                message: None,
            },
            false,
        ),
        (
            "I11",
            ActionKind::CopyInstance,
            Op::CopyInstance {
                source: id("org-000002"),
                target: id("org-000001"),
                kind: CopyKind::Full,
            },
            true,
        ),
        (
            "I2",
            ActionKind::ConfigureInstance,
            Op::ConfigureInstance {
                name: "x".into(),
                url: "x".into(),
                kind: InstanceType::Sandbox,
                purpose: String::new(),
                region: crmctl::tenant::Region::NA,
                currency: "USD".into(),
                language: 1033,
                security_group: None,
            },
            false,
        ),
        (
            "I9",
            ActionKind::ResetInstance,
            Op::ResetInstance {
                instance: id("org-000001"),
                currency: "EUR".into(),
                language: 1033,
            },
            true,
        ),
    ];
    for (rule, kind, op, destructive) in cases {
        let dir = tempfile::tempdir().unwrap();
        let before = refusal_tenant(dir.path());
        let plan = saved_plan(dir.path(), one(kind, op, destructive));
        let mut cmd = crmctl(dir.path());
        cmd.arg("apply").arg(&plan);
        if destructive {
            cmd.arg("--allow-destroy");
        }
        cmd.assert()
            .code(1)
            .stderr(predicate::str::contains(format!("({rule})")))
            .stderr(predicate::str::contains(
                "Apply failed: 0 done, 1 failed, 0 skipped",
            ));
        assert_eq!(observe(dir.path()), before, "{rule}: the tenant changed");
    }
}

#[test]
fn i4_edit_of_a_provisioning_instance_is_refused_by_the_provider() {
    let dir = tempfile::tempdir().unwrap();
    refusal_tenant(dir.path());
    crmctl(dir.path())
        .args(["local", "set", "instance", "sbx", "status", "provisioning"])
        .assert()
        .success();
    let plan = saved_plan(
        dir.path(),
        one(
            ActionKind::UpdateInstance,
            Op::UpdateInstance {
                instance: id("org-000002"),
                name: Some("New".into()),
                url: None,
                purpose: None,
                security_group: None,
            },
            false,
        ),
    );
    crmctl(dir.path())
        .arg("apply")
        .arg(&plan)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("(I4)"));
}

#[test]
fn i3_currency_change_of_a_production_instance_is_a_plan_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = minimal(dir.path());
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .success();
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("currency: EUR", "currency: USD");
    std::fs::write(&file, text).unwrap();
    let before = observe(dir.path());
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("I3"))
        .stderr(predicate::str::contains("nothing was done"));
    assert_eq!(observe(dir.path()), before);
}

#[test]
fn a_saved_plan_is_refused_when_the_tenant_or_the_state_changed() {
    let dir = tempfile::tempdir().unwrap();
    let file = minimal(dir.path());
    crmctl(dir.path())
        .args(["plan", "--out", "p1.json", "-f"])
        .arg(&file)
        .assert()
        .success();
    // Drift in the admin center after planning: the tenant's fingerprint changes.
    crmctl(dir.path())
        .args(["local", "set", "licenses", "basic", "3"])
        .assert()
        .success();
    crmctl(dir.path())
        .args(["apply", "p1.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("stale").and(predicate::str::contains("tenant")));
    assert!(observe(dir.path()).users.is_empty(), "nothing was done");

    // A fresh plan applies (a saved plan counts as approved, no TTY needed)...
    crmctl(dir.path())
        .args(["plan", "--out", "p2.json", "-f"])
        .arg(&file)
        .assert()
        .success();
    crmctl(dir.path())
        .args(["plan", "--out", "p3.json", "-f"])
        .arg(&file)
        .assert()
        .success();
    crmctl(dir.path())
        .args(["apply", "p2.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Apply complete!"));
    // ...and the other plan made at the same time is now stale (state serial and tenant).
    crmctl(dir.path())
        .args(["apply", "p3.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("stale"));
    assert_no_changes(dir.path(), &file);
}

#[test]
fn destructive_actions_need_allow_destroy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    let full = "tenant: fabrikam.onmicrosoft.com\nlicenses:\n  professional: 5\nusers:\n  a@fabrikam.com:\n    name: A\n  b@fabrikam.com:\n    name: B\n";
    std::fs::write(&file, full).unwrap();
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .success();
    assert_eq!(observe(dir.path()).users.len(), 2);
    std::fs::write(&file, full.replace("  b@fabrikam.com:\n    name: B\n", "")).unwrap();
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("delete_user users.b@fabrikam.com"))
        .stderr(predicate::str::contains("--allow-destroy"));
    assert_eq!(observe(dir.path()).users.len(), 2, "nothing was done");
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "--allow-destroy", "-f"])
        .arg(&file)
        .assert()
        .success();
    let t = observe(dir.path());
    assert_eq!(
        t.users.values().map(|u| u.upn.as_str()).collect::<Vec<_>>(),
        vec!["a@fabrikam.com"]
    );
    assert_no_changes(dir.path(), &file);
}

#[test]
fn a_held_lock_stops_apply_and_force_unlock_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = minimal(dir.path());
    let state = dir.path().join(".crmctl/state.json");
    let lock = StateLock::acquire(&state, "apply").unwrap();
    let lock_id = lock.info().id.clone();
    std::mem::forget(lock); // as if its run had crashed
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "crmctl force-unlock {lock_id}"
        )))
        .stderr(predicate::str::contains("pid"));
    assert!(!tenant_db(dir.path()).exists(), "nothing was done");
    crmctl(dir.path())
        .args(["force-unlock", "not-the-id"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(&lock_id));
    crmctl(dir.path())
        .args(["force-unlock", &lock_id])
        .assert()
        .success()
        .stdout(predicate::str::contains("Removed the lock"));
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .success();
}

#[test]
fn injected_failure_midway_then_apply_again_finishes_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/coho-winery.yaml");
    let out = crmctl(dir.path())
        .args(["apply", "--auto-approve", "--parallelism", "1", "-f"])
        .arg(&file)
        .env("CRMCTL_LOCAL_FAIL_AT", "5")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("injected failure"))
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    let summary = err
        .lines()
        .find(|l| l.starts_with("Apply failed:"))
        .unwrap()
        .to_string();
    assert!(summary.contains("1 failed"), "{summary}");
    assert!(
        !summary.starts_with("Apply failed: 0 done"),
        "independent actions continue: {summary}"
    );
    // The state names exactly the objects the tenant has.
    let state: crmctl::state::State = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".crmctl/state.json")).unwrap(),
    )
    .unwrap();
    let t = observe(dir.path());
    for r in state.resources.values() {
        assert!(
            t.users.contains_key(&r.id)
                || t.groups.contains_key(&r.id)
                || t.instances.contains_key(&r.id)
        );
    }
    assert_eq!(
        state.resources.len(),
        t.users.len() + t.groups.len() + t.instances.len()
    );
    // Re-plan finishes the job.
    crmctl(dir.path())
        .args(["plan", "--detailed-exitcode", "-f"])
        .arg(&file)
        .assert()
        .code(2);
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .success();
    assert_no_changes(dir.path(), &file);
}

#[test]
fn show_and_local_edits_simulate_the_admin_center() {
    let dir = tempfile::tempdir().unwrap();
    crmctl(dir.path())
        .args(["show", "--format", "json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"8.1.0\""));
    assert!(
        !tenant_db(dir.path()).exists(),
        "show must not create the tenant"
    );
    crmctl(dir.path())
        .args(["local", "set", "licenses", "professional", "10"])
        .assert()
        .success();
    crmctl(dir.path())
        .args(["local", "add", "user", "ana@coho.com", "Ana"])
        .assert()
        .success();
    crmctl(dir.path())
        .args([
            "local",
            "set",
            "user",
            "ana@coho.com",
            "license",
            "professional",
        ])
        .assert()
        .success();
    crmctl(dir.path())
        .args(["local", "set", "domain", "coho.onmicrosoft.com"])
        .assert()
        .success();
    let t = observe(dir.path());
    assert_eq!(t.purchased(LicensePlan::Professional), 10);
    assert_eq!(
        t.users["usr-000001"].license,
        Some(LicensePlan::Professional)
    );
    crmctl(dir.path())
        .args(["local", "set", "user", "nobody@coho.com", "license", "none"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no user `nobody@coho.com`"));
    crmctl(dir.path())
        .args(["local", "set", "frobnicate", "everything"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot understand"));
    // export -> edit the text -> import round-trips through YAML.
    let yaml = crmctl(dir.path())
        .args(["local", "export"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let yaml = String::from_utf8(yaml)
        .unwrap()
        .replace("name: Ana", "name: Ana Trujillo");
    std::fs::write(dir.path().join("t.yaml"), yaml).unwrap();
    crmctl(dir.path())
        .args(["local", "import", "t.yaml"])
        .assert()
        .success();
    assert_eq!(observe(dir.path()).users["usr-000001"].name, "Ana Trujillo");
    // `local edit` through $EDITOR (a script that edits the file in place).
    let editor = dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/professional: 10/professional: 12/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    crmctl(dir.path())
        .args(["local", "edit"])
        .env("EDITOR", &editor)
        .env_remove("VISUAL")
        .assert()
        .success();
    assert_eq!(observe(dir.path()).purchased(LicensePlan::Professional), 12);
    crmctl(dir.path())
        .args(["show", "--backend", "ftp:x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("only `local:PATH` is supported"));
}

#[test]
fn a_held_lock_also_stops_plan_and_plan_releases_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let file = minimal(dir.path());
    let state = dir.path().join(".crmctl/state.json");
    // plan takes and releases the lock itself: two plans in a row both work.
    for _ in 0..2 {
        crmctl(dir.path())
            .args(["plan", "-f"])
            .arg(&file)
            .assert()
            .success();
    }
    assert!(!dir.path().join(".crmctl/state.json.lock").exists());
    let lock = StateLock::acquire(&state, "apply").unwrap();
    let lock_id = lock.info().id.clone();
    crmctl(dir.path())
        .args(["plan", "-f"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "crmctl force-unlock {lock_id}"
        )));
    drop(lock);
    crmctl(dir.path())
        .args(["plan", "-f"])
        .arg(&file)
        .assert()
        .success();
}

/// A lost state file: everything that exists is adopted by natural key (UPN, group name,
/// URL name), counted as `to adopt` rather than `to create`, and nothing is created twice.
#[test]
fn a_lost_state_is_rebuilt_by_adoption_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let file = minimal(dir.path());
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .success();
    let before = LocalProvider::open(&tenant_db(dir.path()))
        .unwrap()
        .observe()
        .unwrap();
    std::fs::remove_file(dir.path().join(".crmctl/state.json")).unwrap();
    let _ = std::fs::remove_file(dir.path().join(".crmctl/state.json.journal"));
    crmctl(dir.path())
        .args(["plan", "-f"])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains("0 to create"))
        .stdout(predicate::str::contains("to adopt."))
        .stdout(predicate::str::contains("+ adopt"));
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .success();
    assert_no_changes(dir.path(), &file);
    let after = LocalProvider::open(&tenant_db(dir.path()))
        .unwrap()
        .observe()
        .unwrap();
    assert_eq!(before, after, "adoption changes nothing in the tenant");
}

// issue 9 item 2 (P1): a user key whose case changed in the file is the same user. Before,
// the plan deleted `users.ana@...` and created `users.Ana@...`; the service refused the
// create (P1) after the delete ran, and the user was gone. Now the apply needs no
// --allow-destroy, keeps the user's id, spells the UPN as the file does and converges.
#[test]
fn a_user_key_whose_case_changed_keeps_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenant.yaml");
    let write = |upn: &str| {
        std::fs::write(
            &file,
            format!(
                "tenant: coho.onmicrosoft.com\nlicenses: {{professional: 1}}\nusers:\n  {upn}: {{name: Ana, license: professional}}\nsecurity_groups:\n  sales: {{members: [{upn}]}}\n"
            ),
        )
        .unwrap()
    };
    write("ana@coho.com");
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .success();
    let before = observe(dir.path());
    let id = before.users.keys().next().unwrap().clone();
    write("Ana@coho.com");
    crmctl(dir.path())
        .args(["plan", "-f"])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "0 to create, 1 to change, 0 to delete, 1 to adopt",
        ))
        .stdout(predicate::str::contains(
            "address = \"users.ana@coho.com\" -> \"users.Ana@coho.com\"",
        ));
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f"])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains("Apply complete!"));
    let after = observe(dir.path());
    assert_eq!(after.users.len(), 1);
    let u = &after.users[&id];
    assert_eq!(u.upn, "Ana@coho.com");
    assert_eq!(u.license, Some(LicensePlan::Professional));
    assert!(after.groups.values().all(|g| g.members.contains(&id)));
    assert_no_changes(dir.path(), &file);
}
