//! `crmctl plan` / `crmctl graph` through the binary: exit codes and `--out`.

use crate::support;
use support::crmctl;

use predicates::prelude::*;

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const CHANGES: &str = "tenant: coho.onmicrosoft.com\nusers:\n  ana@coho.com: {name: Ana}\n";

#[test]
fn detailed_exitcode_2_with_changes_0_without() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", CHANGES);
    crmctl(dir.path())
        .args(["plan", "-f", "t.yaml", "--detailed-exitcode"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("+ create_user"))
        .stdout(predicate::str::contains(
            "Plan: 0 to buy, 1 to create, 0 to change, 0 to delete.",
        ));
    // Without --detailed-exitcode, changes still exit 0.
    crmctl(dir.path())
        .args(["plan", "-f", "t.yaml"])
        .assert()
        .code(0);
    write(dir.path(), "empty.yaml", "tenant: coho.onmicrosoft.com\n");
    crmctl(dir.path())
        .args(["plan", "-f", "empty.yaml", "--detailed-exitcode"])
        .assert()
        .code(0)
        .stdout("No changes.\n");
    // plan never creates the local tenant.
    assert!(!dir.path().join(".crmctl/tenant.db").exists());
}

#[test]
fn plan_errors_exit_1_with_location() {
    let dir = tempfile::tempdir().unwrap();
    // I10: administration mode on a production instance.
    write(
        dir.path(),
        "bad.yaml",
        "tenant: coho.onmicrosoft.com\ninstances:\n  p:\n    name: P\n    url: p\n    type: production\n    admin_mode: {enabled: true}\n",
    );
    crmctl(dir.path())
        .args(["plan", "-f", "bad.yaml", "--detailed-exitcode"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad.yaml:"))
        .stderr(predicate::str::contains("I10"));
    write(dir.path(), "broken.yaml", "tenant: [\n");
    crmctl(dir.path())
        .args(["plan", "-f", "broken.yaml"])
        .assert()
        .code(1);
}

#[test]
fn json_and_markdown_formats() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", CHANGES);
    let out = crmctl(dir.path())
        .args(["plan", "-f", "t.yaml", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format_version"], "1");
    assert_eq!(v["actions"][0]["kind"], "create_user");
    assert_eq!(v["actions"][0]["address"], "users.ana@coho.com");
    let again = crmctl(dir.path())
        .args(["plan", "-f", "t.yaml", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, again.stdout);
    crmctl(dir.path())
        .args(["plan", "-f", "t.yaml", "--format", "markdown"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("| 0 | `+` | create_user |"));
    crmctl(dir.path())
        .args(["graph", "-f", "t.yaml"])
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("digraph plan {"));
}

#[test]
fn out_saves_plan_with_fingerprint_and_serial() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", CHANGES);
    crmctl(dir.path())
        .args([
            "plan",
            "-f",
            "t.yaml",
            "--out",
            "p.json",
            "--detailed-exitcode",
            "--state",
            "s.json",
        ])
        .assert()
        .code(2);
    let saved: crmctl::plan::saved::SavedPlan =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("p.json")).unwrap()).unwrap();
    assert_eq!(saved.plan.actions.len(), 1);
    assert_eq!(saved.state_serial, 0);
    assert_eq!(saved.state_path, "s.json");
    assert_eq!(saved.backend, "local:.crmctl/tenant.db");
    assert_eq!(saved.plan.fingerprint.len(), 64);
}

/// issue 9 item 9: a usage error exits 1 in every command (never 2, which
/// `plan --detailed-exitcode` uses for "changes present"); `--help` and `--version` exit 0
/// and print to stdout. Nothing is created by a refused command line.
#[test]
fn usage_errors_exit_1_in_every_command_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", CHANGES);
    let commands: &[&[&str]] = &[
        &["validate", "-f", "t.yaml"],
        &["schema"],
        &["plan", "-f", "t.yaml", "--detailed-exitcode"],
        &["graph", "-f", "t.yaml"],
        &["apply", "-f", "t.yaml", "--auto-approve"],
        &["show"],
        &["local", "export"],
        &["local", "import", "t.yaml"],
        &["local", "edit"],
        &["local", "set", "trial", "true"],
        &["local", "add", "group", "G"],
        &["local", "delete", "group", "G"],
        &["force-unlock", "0123456789abcdef"],
    ];
    for args in commands {
        // An unknown flag (the field case: `--fromat json`).
        crmctl(dir.path())
            .args(*args)
            .args(["--fromat", "json"])
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicate::str::contains("--fromat"));
        // Help: stdout, exit 0.
        let name = args[..args.len().min(if args[0] == "local" { 2 } else { 1 })].to_vec();
        crmctl(dir.path())
            .args(&name)
            .arg("--help")
            .assert()
            .code(0)
            .stdout(predicate::str::contains("Usage: crmctl"))
            .stderr("");
    }
    // Other usage errors: a bad value, a missing argument, a missing subcommand, an
    // unknown command, a bad number.
    let others: &[&[&str]] = &[
        &[
            "plan",
            "-f",
            "t.yaml",
            "--format",
            "xml",
            "--detailed-exitcode",
        ],
        &["plan", "--detailed-exitcode"],
        &[],
        &["local"],
        &["plna", "-f", "t.yaml"],
        &["apply", "-f", "t.yaml", "--parallelism", "0"],
        &["apply", "plan.json", "-f", "t.yaml"],
    ];
    for args in others {
        crmctl(dir.path())
            .args(*args)
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicate::str::is_empty().not());
    }
    crmctl(dir.path())
        .arg("--version")
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("crmctl "));
    assert!(!dir.path().join(".crmctl").exists(), "nothing was created");
}

/// issue 10 item 2 (P6): a file that leaves one global admin of two is a plan error at the
/// line of the admin role that goes; nothing is applied.
#[test]
fn p6_floor_error_points_at_the_admin_role_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "two.yaml",
        "tenant: coho.onmicrosoft.com\nusers:\n  a@coho.com:\n    admin_roles: [global_admin]\n  b@coho.com:\n    admin_roles: [global_admin]\n",
    );
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f", "two.yaml"])
        .assert()
        .code(0);
    write(
        dir.path(),
        "one.yaml",
        "tenant: coho.onmicrosoft.com\nusers:\n  a@coho.com:\n    admin_roles: [global_admin]\n  b@coho.com:\n    admin_roles: [billing_admin]\n",
    );
    crmctl(dir.path())
        .args(["plan", "-f", "one.yaml", "--detailed-exitcode"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("one.yaml:6"))
        .stderr(predicate::str::contains("P6"));
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f", "one.yaml"])
        .assert()
        .code(1);
    // The tenant still has both global admins: the next plan of the first file is empty.
    crmctl(dir.path())
        .args(["plan", "-f", "two.yaml", "--detailed-exitcode"])
        .assert()
        .code(0);
}

/// issue 9 (items 4 and 5: no run may lose what it manages): `plan --out` never writes
/// the plan over the state, its journal or lock, the local tenant file or the desired file
/// (a typo in `--out` used to replace the state, or the whole tenant database, by a plan).
#[test]
fn out_never_replaces_the_state_the_tenant_or_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", CHANGES);
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f", "t.yaml"])
        .assert()
        .success();
    write(
        dir.path(),
        "t.yaml",
        "tenant: coho.onmicrosoft.com\nusers:\n  ana@coho.com: {name: Ana Diaz}\n",
    );
    std::fs::write(dir.path().join(".crmctl/state.json.journal"), "").unwrap();
    let files = [
        ".crmctl/state.json",
        "./.crmctl/state.json",
        ".crmctl/state.json.journal",
        ".crmctl/tenant.db",
        ".crmctl/../.crmctl/tenant.db",
        "t.yaml",
    ];
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    for out in files {
        let before = read(out);
        crmctl(dir.path())
            .args(["plan", "-f", "t.yaml", "--out", out])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("--out"))
            .stderr(predicate::str::contains("Saved the plan").not());
        assert_eq!(read(out), before, "--out {out} replaced it");
    }
    // A plan file of its own is written as before.
    crmctl(dir.path())
        .args(["plan", "-f", "t.yaml", "--out", "p.json"])
        .assert()
        .success();
    crmctl(dir.path())
        .args(["apply", "p.json"])
        .assert()
        .success();
}

/// issue 11 item 4: `plan --out` records the digests of the tenant's objects (to name what
/// changed when the plan is stale) in a sketch of a fixed size: a tenant of 400 users
/// saves no larger a sketch than an empty one. The file is written atomically by the one
/// atomic write of the library (a missing directory is created).
#[test]
fn out_saves_the_tenant_digests_in_a_fixed_size() {
    let sketch_len = |users: usize| -> usize {
        let dir = tempfile::tempdir().unwrap();
        let mut yaml = String::from("tenant: coho.onmicrosoft.com\nusers:\n");
        for i in 0..users {
            yaml.push_str(&format!("  u{i}@coho.com: {{name: U{i}}}\n"));
        }
        if users > 0 {
            write(dir.path(), "all.yaml", &yaml);
            crmctl(dir.path())
                .args(["apply", "--auto-approve", "-f", "all.yaml"])
                .assert()
                .success();
        }
        write(dir.path(), "t.yaml", CHANGES);
        crmctl(dir.path())
            .args(["plan", "-f", "t.yaml", "--out", "plans/p.json"])
            .assert()
            .success();
        let saved: crmctl::plan::saved::SavedPlan = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("plans/p.json")).unwrap(),
        )
        .unwrap();
        serde_json::to_string(&saved.digests.expect("digests recorded"))
            .unwrap()
            .len()
    };
    let empty = sketch_len(0);
    assert!(empty < 8_000, "{empty} bytes");
    assert_eq!(sketch_len(400), empty);
}
