//! Issue 14 item 4: `--target`, `--exclude` and `--replace` through the binary on the local
//! backend (plan, apply, saved plans, `--detailed-exitcode`).

use std::path::{Path, PathBuf};

use predicates::prelude::*;
use serde_json::Value;

use crate::support::{all_output, apply_ok, crmctl, observe};

/// A tenant with a production instance, a sandbox copied from it (I11), a group whose
/// member is a user of the file, and an administrator with roles in the production
/// instance. 25 Professional licenses include the sandbox slot (T6).
const TENANT: &str = "\
tenant: fabrikam.onmicrosoft.com
licenses:
  professional: 25
security_groups:
  sales:
    name: Sales
    members: [ana@fabrikam.com]
users:
  admin@fabrikam.com:
    name: Admin
    license: professional
    roles:
      main: [System Administrator]
  ana@fabrikam.com:
    name: Ana
    license: professional
instances:
  main: {name: Main, url: fabmain, type: production, region: EMEA, currency: EUR, language: 1033}
  test: {name: Test, url: fabtest, type: sandbox, region: EMEA, copy_from: {instance: main, kind: full}}
";

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenant.yaml");
    std::fs::write(&file, TENANT).unwrap();
    (dir, file)
}

fn run(dir: &Path, file: &Path, args: &[&str]) -> std::process::Output {
    crmctl(dir).args(args).arg("-f").arg(file).output().unwrap()
}

fn plan_json(dir: &Path, file: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["plan", "--format", "json"];
    args.extend_from_slice(extra);
    let out = run(dir, file, &args);
    assert!(out.status.success(), "{}", all_output(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn steps(plan: &Value) -> Vec<String> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["kind"].as_str().unwrap(),
                a["address"].as_str().unwrap()
            )
        })
        .collect()
}

// A target brings in (transitively) what it depends on, and says so in every format; a
// targeted apply does only that; `--detailed-exitcode` reports on the targeted plan.
#[test]
fn a_target_brings_its_dependencies_and_says_so() {
    let (dir, file) = setup();
    let d = dir.path();
    // I12: adding a member needs the user created first.
    let plan = plan_json(d, &file, &["--target", "security_groups.sales"]);
    let s = steps(&plan);
    assert!(
        s.contains(&"create_group security_groups.sales".to_string()),
        "{s:?}"
    );
    assert!(
        s.contains(&"add_group_members security_groups.sales".to_string()),
        "{s:?}"
    );
    assert!(
        s.contains(&"create_user users.ana@fabrikam.com".to_string()),
        "{s:?}"
    );
    assert!(
        !s.iter()
            .any(|a| a.contains("admin@") || a.contains("instances.")),
        "{s:?}"
    );
    let t = &plan["targeting"];
    assert_eq!(t["dependencies"].as_array().unwrap().len(), 1);
    assert_eq!(t["targets"], serde_json::json!(["security_groups.sales"]));
    let deps: Vec<String> = t["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| s[i.as_u64().unwrap() as usize].clone())
        .collect();
    assert_eq!(deps, vec!["create_user users.ana@fabrikam.com"]);
    assert!(t["left_out"].as_u64().unwrap() > 0);
    // Human and Markdown say the plan is partial and what came in as a dependency.
    for format in ["human", "markdown"] {
        let out = run(
            d,
            &file,
            &[
                "plan",
                "--format",
                format,
                "--target",
                "security_groups.sales",
            ],
        );
        let text = all_output(&out);
        assert!(
            text.contains("Partial plan (--target security_groups.sales)"),
            "{text}"
        );
        let line = format!(
            "brought in as a dependency: [{}] create_user users.ana@fabrikam.com",
            plan["targeting"]["dependencies"][0]
        );
        assert!(text.contains(&line), "{line}\n{text}");
    }
    // The targeted apply does the subset only.
    crmctl(d)
        .args([
            "apply",
            "--auto-approve",
            "--target",
            "security_groups.sales",
            "-f",
        ])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains("Partial plan"));
    let t = observe(d);
    assert!(t.groups.values().any(|g| g.name == "Sales"));
    assert!(t.users.values().any(|u| u.upn == "ana@fabrikam.com"));
    assert!(!t.users.values().any(|u| u.upn == "admin@fabrikam.com"));
    assert!(t.instances.values().all(|i| i.url != "fabtest"));
    // Nothing left to do within the target; the full plan still has changes.
    run_code(
        d,
        &file,
        &[
            "plan",
            "--detailed-exitcode",
            "--target",
            "security_groups.sales",
        ],
        0,
    );
    run_code(
        d,
        &file,
        &["plan", "--detailed-exitcode", "--target", "users"],
        2,
    );
    run_code(d, &file, &["plan", "--detailed-exitcode"], 2);
}

fn run_code(dir: &Path, file: &Path, args: &[&str], code: i32) {
    let out = run(dir, file, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}",
        all_output(&out)
    );
}

// `--exclude` drops the address and, transitively, what depends on it, saying why.
#[test]
fn an_exclude_drops_its_dependents_and_says_why() {
    let (dir, file) = setup();
    let d = dir.path();
    let plan = plan_json(d, &file, &["--exclude", "users.ana@fabrikam.com"]);
    let s = steps(&plan);
    assert!(!s.iter().any(|a| a.contains("ana@")), "{s:?}");
    assert!(
        s.contains(&"create_group security_groups.sales".to_string()),
        "{s:?}"
    );
    assert!(
        !s.contains(&"add_group_members security_groups.sales".to_string()),
        "{s:?}"
    );
    assert!(
        s.contains(&"create_user users.admin@fabrikam.com".to_string()),
        "{s:?}"
    );
    let excluded = plan["targeting"]["excluded"].as_array().unwrap();
    let members = excluded
        .iter()
        .find(|x| x["kind"] == "add_group_members")
        .unwrap_or_else(|| panic!("{excluded:?}"));
    assert_eq!(
        members["depends_on_excluded"],
        "create_user users.ana@fabrikam.com"
    );
    let out = run(d, &file, &["plan", "--exclude", "users.ana@fabrikam.com"]);
    assert!(all_output(&out).contains(
        "skipped: add_group_members security_groups.sales: depends on excluded create_user users.ana@fabrikam.com"
    ));
}

// The done-when: a target whose dependency is excluded is an error naming both.
#[test]
fn a_target_whose_dependency_is_excluded_is_an_error_naming_both() {
    let (dir, file) = setup();
    for cmd in ["plan", "apply"] {
        let out = run(
            dir.path(),
            &file,
            &[
                cmd,
                "--auto-approve",
                "--target",
                "security_groups.sales",
                "--exclude",
                "users.ana@fabrikam.com",
            ]
            .iter()
            .copied()
            .filter(|a| cmd == "apply" || *a != "--auto-approve")
            .collect::<Vec<_>>(),
        );
        assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--target security_groups.sales"), "{err}");
        assert!(err.contains("--exclude users.ana@fabrikam.com"), "{err}");
    }
    assert!(!dir.path().join(".crmctl/state.json.lock").exists());
    assert!(
        observe_or_empty(dir.path()).users.is_empty(),
        "nothing applied"
    );
}

fn observe_or_empty(dir: &Path) -> crmctl::observed::Tenant {
    if crate::support::tenant_db(dir).exists() {
        observe(dir)
    } else {
        crmctl::observed::Tenant::default()
    }
}

// An address that matches nothing in the file, the state or the plan: an error with a hint.
#[test]
fn an_unknown_address_is_an_error_with_a_hint() {
    let (dir, file) = setup();
    for flag in ["--target", "--exclude", "--replace"] {
        let out = run(dir.path(), &file, &["plan", flag, "instances.tset"]);
        assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{flag} instances.tset")), "{err}");
        assert!(err.contains("did you mean `instances.test`?"), "{err}");
    }
}

// `--replace` of a sandbox with `copy_from` copies it again from its source (I11): it
// needs --allow-destroy, takes a backup first, and the target holds the source's content
// afterwards. Kinds that cannot be re-created are refused.
#[test]
fn replace_recopies_a_sandbox_from_its_source() {
    let (dir, file) = setup();
    let d = dir.path();
    apply_ok(d, &file);
    let url_of = |t: &crmctl::observed::Tenant, url: &str| {
        t.instances.values().find(|i| i.url == url).unwrap().clone()
    };
    // Out of band: the source moves to another version, the sandbox leaves administration
    // mode. A copy brings the source's version and ends in administration mode (I11).
    for args in [
        ["local", "set", "instance", "fabmain", "version", "8.0.0"],
        ["local", "set", "instance", "fabtest", "admin-mode", "off"],
    ] {
        crmctl(d).args(args).assert().success();
    }
    let before = observe(d);
    assert_ne!(url_of(&before, "fabtest").version, "8.0.0");
    assert!(!url_of(&before, "fabtest").admin_mode.enabled);

    let plan = plan_json(
        d,
        &file,
        &["--replace", "instances.test", "--target", "instances.test"],
    );
    let s = steps(&plan);
    let backup = s.iter().position(|a| a == "backup_instance instances.test");
    let copy = s.iter().position(|a| a == "copy_instance instances.test");
    assert!(backup.is_some() && copy.is_some() && backup < copy, "{s:?}");
    let c = &plan["actions"][copy.unwrap()];
    assert_eq!(c["destructive"], true);
    assert_eq!(
        plan["targeting"]["replaces"],
        serde_json::json!(["instances.test"])
    );

    // Destructive: refused without --allow-destroy, nothing done.
    let out = run(
        d,
        &file,
        &["apply", "--auto-approve", "--replace", "instances.test"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    assert!(all_output(&out).contains("--allow-destroy"));
    assert!(!url_of(&observe(d), "fabtest").admin_mode.enabled);

    let out = run(
        d,
        &file,
        &[
            "apply",
            "--auto-approve",
            "--allow-destroy",
            "--replace",
            "instances.test",
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let after = url_of(&observe(d), "fabtest");
    assert_eq!(after.version, "8.0.0", "the source's content");
    assert!(after.admin_mode.enabled && !after.admin_mode.background_operations);
    assert_eq!(after.id, url_of(&before, "fabtest").id, "the same instance");
}

// A sandbox without `copy_from` is reset (I9); a production instance, a user, a group or
// a count cannot be replaced.
#[test]
fn replace_resets_a_plain_sandbox_and_refuses_what_cannot_be_recreated() {
    let (dir, file) = setup();
    let d = dir.path();
    let plain = TENANT.replace(", copy_from: {instance: main, kind: full}", "");
    std::fs::write(&file, &plain).unwrap();
    apply_ok(d, &file);
    let plan = plan_json(d, &file, &["--replace", "instances.test"]);
    let s = steps(&plan);
    assert!(
        s.contains(&"reset_instance instances.test".to_string()),
        "{s:?}"
    );
    assert!(!s.iter().any(|a| a.starts_with("copy_instance")), "{s:?}");

    for (addr, says) in [
        ("users.ana@fabrikam.com", "a user cannot be replaced"),
        (
            "security_groups.sales",
            "a security group cannot be replaced",
        ),
        ("licenses.professional", "only an instance can be replaced"),
        (
            "instances.main",
            "a production instance cannot be re-created",
        ),
    ] {
        let out = run(d, &file, &["plan", "--replace", addr]);
        assert_eq!(out.status.code(), Some(1), "{addr}: {}", all_output(&out));
        assert!(
            all_output(&out).contains(says),
            "{addr}: {}",
            all_output(&out)
        );
    }
}

// A saved plan records its targeting under the checksum: `apply PLANFILE` shows it and
// does exactly that subset; an edited targeting is refused.
#[test]
fn a_saved_targeted_plan_applies_its_subset_and_refuses_an_edit() {
    let (dir, file) = setup();
    let d = dir.path();
    let saved = d.join("p.json");
    crmctl(d)
        .args(["plan", "--target", "security_groups.sales", "--out"])
        .arg(&saved)
        .arg("-f")
        .arg(&file)
        .assert()
        .success();
    // Tampered: the targeting widened by hand.
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(
        v["plan"]["targeting"]["targets"],
        serde_json::json!(["security_groups.sales"])
    );
    v["plan"]["targeting"]["targets"] = serde_json::json!(["users"]);
    let tampered = d.join("tampered.json");
    std::fs::write(&tampered, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    crmctl(d)
        .arg("apply")
        .arg(&tampered)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("checksum mismatch"));
    // Flags cannot change a saved plan's targeting.
    crmctl(d)
        .args(["apply", "--target", "users"])
        .arg(&saved)
        .assert()
        .code(1);
    crmctl(d)
        .arg("apply")
        .arg(&saved)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Partial plan (--target security_groups.sales)",
        ));
    let t = observe(d);
    assert!(t.groups.values().any(|g| g.name == "Sales"));
    assert!(!t.users.values().any(|u| u.upn == "admin@fabrikam.com"));
    assert!(t.instances.values().all(|i| i.url != "fabtest"));
}

// The large-plan check (issue 14 item 5) counts what the targeted plan does: deleting one
// of twelve managed users needs no --force even when the whole file would delete four.
#[test]
fn the_large_plan_check_counts_the_targeted_plan_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("t.yaml");
    let users = |n: usize| -> String {
        (0..n)
            .map(|i| format!("  u{i}@fabrikam.com: {{name: U{i}}}\n"))
            .collect()
    };
    let head = "tenant: fabrikam.onmicrosoft.com\nusers:\n";
    std::fs::write(&file, format!("{head}{}", users(12))).unwrap();
    apply_ok(d, &file);
    std::fs::write(&file, format!("{head}{}", users(8))).unwrap();
    let full = run(d, &file, &["apply", "--auto-approve", "--allow-destroy"]);
    assert_eq!(full.status.code(), Some(1), "{}", all_output(&full));
    assert!(all_output(&full).contains("--force"));
    let one = run(
        d,
        &file,
        &[
            "apply",
            "--auto-approve",
            "--allow-destroy",
            "--target",
            "users.u9@fabrikam.com",
        ],
    );
    assert!(one.status.success(), "{}", all_output(&one));
    let left: Vec<String> = observe(d).users.values().map(|u| u.upn.clone()).collect();
    assert_eq!(left.len(), 11);
    assert!(!left.contains(&"u9@fabrikam.com".to_string()));
}
