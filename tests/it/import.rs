//! `crmctl import` and the desired-format `show` (issue 14 item 1): an existing tenant
//! written as a desired file and a state, so that `plan` right after shows no changes.

use std::path::Path;

use predicates::prelude::*;

use crate::support::{apply_ok, crmctl, files_in, new_tenant, root};

/// `crmctl import ARGS` in `dir` succeeds.
fn import_ok(dir: &Path, args: &[&str]) {
    crmctl(dir).arg("import").args(args).assert().success();
}

/// `validate -f FILE` passes and `plan --state STATE -f FILE` has no changes.
fn assert_imported_plans_nothing(dir: &Path, file: &str, state: &str) {
    crmctl(dir)
        .args(["validate", "-f", file])
        .assert()
        .success();
    let out = crmctl(dir)
        .args(["plan", "--detailed-exitcode", "--state", state, "-f", file])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{file}: {}",
        crate::support::all_output(&out)
    );
}

// Done-when of issue 14 item 1: every example tenant, applied first, imports into a file
// that validates and plans no changes with the imported state; and the round trip (import,
// apply into a fresh tenant, import) gives the same bytes.
#[test]
fn every_example_imports_plans_no_changes_and_round_trips() {
    let examples = files_in("examples", &["yaml", "yml", "json"]);
    assert!(examples.len() >= 3, "{examples:?}");
    for example in examples {
        let name = example.file_name().unwrap().to_string_lossy().to_string();
        let dir = tempfile::tempdir().unwrap();
        apply_ok(dir.path(), &example);
        import_ok(
            dir.path(),
            &["--state", "imported.json", "-o", "imported.yaml"],
        );
        assert_imported_plans_nothing(dir.path(), "imported.yaml", "imported.json");
        let first = std::fs::read(dir.path().join("imported.yaml")).unwrap();
        let text = String::from_utf8(first.clone()).unwrap();
        assert!(text.contains("tenant: "), "{name}:\n{text}");
        // The state maps every address of the file to the object it was read from.
        let state: crmctl::state::State = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("imported.json")).unwrap(),
        )
        .unwrap();
        let tenant = crate::support::observe(dir.path());
        for (address, r) in &state.resources {
            let known = match r.kind {
                crmctl::domain::op::ObjKind::User => tenant.users.contains_key(&r.id),
                crmctl::domain::op::ObjKind::Group => tenant.groups.contains_key(&r.id),
                crmctl::domain::op::ObjKind::Instance => tenant.instances.contains_key(&r.id),
            };
            assert!(known, "{name}: {address} -> {}", r.id);
        }
        assert_eq!(
            state.resources.len(),
            tenant.users.len() + tenant.groups.len() + tenant.instances.len(),
            "{name}"
        );
        // Round trip through a fresh tenant.
        let other = tempfile::tempdir().unwrap();
        std::fs::copy(
            dir.path().join("imported.yaml"),
            other.path().join("tenant.yaml"),
        )
        .unwrap();
        apply_ok(other.path(), &other.path().join("tenant.yaml"));
        import_ok(other.path(), &["--state", "again.json", "-o", "again.yaml"]);
        let again = std::fs::read_to_string(other.path().join("again.yaml")).unwrap();
        assert_eq!(
            again, text,
            "{name}: import, apply, import changed the file"
        );
    }
}

fn coho(dir: &Path) {
    apply_ok(dir, &root().join("examples/coho-winery.yaml"));
}

#[test]
fn only_and_instance_select_what_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    coho(dir.path());
    import_ok(
        dir.path(),
        &["--state", "u.json", "--only", "users", "-o", "users.yaml"],
    );
    let text = std::fs::read_to_string(dir.path().join("users.yaml")).unwrap();
    assert!(text.contains("\nusers:\n"), "{text}");
    for absent in [
        "\ninstances:",
        "\nsecurity_groups:",
        "\nlicenses:",
        "\nstorage:",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
    // Roles name instances: left out with the instances, and said so.
    assert!(text.contains("# roles not imported"), "{text}");
    assert_imported_plans_nothing(dir.path(), "users.yaml", "u.json");

    import_ok(
        dir.path(),
        &[
            "--state",
            "i.json",
            "--only",
            "instances",
            "--instance",
            "CohoWinerySales",
            "-o",
            "sales.yaml",
        ],
    );
    let text = std::fs::read_to_string(dir.path().join("sales.yaml")).unwrap();
    let d = crmctl::desired::load::load_file(&dir.path().join("sales.yaml"))
        .unwrap()
        .desired;
    let keys: Vec<&String> = d.instances.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["cohowinerysales"]);
    // The bound group comes along (I12: an instance without `security_group` has none),
    // without members (users are left out).
    let groups = d.security_groups.as_ref().unwrap();
    assert_eq!(groups.keys().collect::<Vec<_>>(), ["sales-sg"]);
    assert_eq!(groups["sales-sg"].members, None);
    assert!(d.users.is_none());
    assert!(text.contains("imported because an imported instance is bound to it"));
    assert_imported_plans_nothing(dir.path(), "sales.yaml", "i.json");

    // Unknown names say what there is.
    crmctl(dir.path())
        .args(["import", "--state", "x.json", "--instance", "nope"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("no instance with this URL name")
                .and(predicate::str::contains("cohowinerysales")),
        );
    crmctl(dir.path())
        .args(["import", "--state", "x.json", "--only", "robots"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown kind `robots`"));
}

#[test]
fn json_output_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    coho(dir.path());
    import_ok(dir.path(), &["--state", "j.json", "-o", "tenant.json"]);
    let text = std::fs::read_to_string(dir.path().join("tenant.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["tenant"], "cohowinery.onmicrosoft.com");
    assert!(v["instances"]["cohowinerysales"].is_object(), "{text}");
    assert_imported_plans_nothing(dir.path(), "tenant.json", "j.json");
}

#[test]
fn refuses_to_overwrite_a_managing_state_or_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    coho(dir.path());
    // The default state is the one apply wrote: it manages objects.
    crmctl(dir.path())
        .args(["import", "-o", "new.yaml"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("already manages").and(predicate::str::contains("--force")),
        );
    assert!(!dir.path().join("new.yaml").exists(), "nothing written");
    std::fs::write(dir.path().join("taken.yaml"), "mine\n").unwrap();
    crmctl(dir.path())
        .args(["import", "--state", "n.json", "-o", "taken.yaml"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("the file exists").and(predicate::str::contains("--force")),
        );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken.yaml")).unwrap(),
        "mine\n"
    );
    assert!(!dir.path().join("n.json").exists(), "no state written");
    // --force replaces both.
    import_ok(dir.path(), &["--force", "-o", "taken.yaml"]);
    assert_imported_plans_nothing(dir.path(), "taken.yaml", ".crmctl/state.json");
    // A missing tenant is an error, not an empty file.
    let empty = tempfile::tempdir().unwrap();
    crmctl(empty.path())
        .args(["import"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not exist"));
}

#[test]
fn show_prints_the_desired_format_and_raw_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    coho(dir.path());
    let shown = crmctl(dir.path()).arg("show").output().unwrap();
    assert!(shown.status.success());
    std::fs::write(dir.path().join("shown.yaml"), &shown.stdout).unwrap();
    crmctl(dir.path())
        .args(["validate", "-f", "shown.yaml"])
        .assert()
        .success();
    // The same text import writes.
    import_ok(dir.path(), &["--state", "s.json", "-o", "imported.yaml"]);
    assert_eq!(
        std::fs::read(dir.path().join("imported.yaml")).unwrap(),
        shown.stdout
    );
    let json = crmctl(dir.path())
        .args(["show", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v["users"]["ana@cohowinery.com"].is_object());
    let raw = crmctl(dir.path())
        .args(["show", "--raw", "--format", "json"])
        .output()
        .unwrap();
    let t: crmctl::observed::Tenant = serde_json::from_slice(&raw.stdout).unwrap();
    assert!(t.users.values().any(|u| u.upn == "ana@cohowinery.com"));
}

// A tenant crmctl never wrote (objects made with `crmctl local ...`, as in the admin
// center) imports too, with a comment on what the file cannot manage.
#[test]
fn an_out_of_band_tenant_imports() {
    let dir = tempfile::tempdir().unwrap();
    new_tenant(dir.path(), "adatum.onmicrosoft.com");
    let steps: &[&[&str]] = &[
        &["licenses", "professional", "3"],
        &["storage", "used-gb", "2"],
    ];
    for s in steps {
        crmctl(dir.path())
            .args(["local", "set"])
            .args(*s)
            .assert()
            .success();
    }
    let adds: &[&[&str]] = &[
        &["user", "Zoe@adatum.com", "Zoe Ray"],
        &["user", "al@adatum.com", "Al Fox"],
        &["group", "Help Desk"],
        &["group", "help desk!"],
    ];
    for a in adds {
        crmctl(dir.path())
            .args(["local", "add"])
            .args(*a)
            .assert()
            .success();
    }
    let sets: &[&[&str]] = &[
        &["user", "al@adatum.com", "license", "professional"],
        &["user", "al@adatum.com", "synced", "on"],
        &[
            "group",
            "Help Desk",
            "members",
            "Zoe@adatum.com,al@adatum.com",
        ],
        &["group", "Help Desk", "description", "First line"],
    ];
    for s in sets {
        crmctl(dir.path())
            .args(["local", "set"])
            .args(*s)
            .assert()
            .success();
    }
    import_ok(dir.path(), &["-o", "adatum.yaml"]);
    let text = std::fs::read_to_string(dir.path().join("adatum.yaml")).unwrap();
    assert!(
        text.contains("  help-desk:\n    name: Help Desk\n"),
        "{text}"
    );
    assert!(
        text.contains("  help-desk-2:\n    name: help desk!\n"),
        "{text}"
    );
    assert!(text.contains("  # synchronised from on-premises"), "{text}");
    assert!(text.contains("# in use: 2 GB"), "{text}");
    assert!(
        text.contains("  Zoe@adatum.com:\n    name: Zoe Ray\n"),
        "{text}"
    );
    assert_imported_plans_nothing(dir.path(), "adatum.yaml", ".crmctl/state.json");
}
