//! Drift follow-ups (issue 14 items 2-4): `state mv` / `state rm` carry the `applied`
//! snapshots with the object, a saved refresh-only plan accepts the drift when applied,
//! and a targeted apply records the snapshots of what it touched only.

use std::path::Path;

use predicates::prelude::*;

use crate::support::{self, all_output, crmctl, observe, state_json};

const FILE: &str = "tenant: coho.onmicrosoft.com
licenses:
  professional: 5
users:
  ana@coho.com: {name: Ana, license: professional}
  bo@coho.com: {name: Bo}
security_groups:
  sales:
    name: Sales
    description: Sales team
    members: [ana@coho.com]
";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::new_tenant(dir.path(), "coho.onmicrosoft.com");
    std::fs::write(dir.path().join("t.yaml"), FILE).unwrap();
    support::apply_ok(dir.path(), Path::new("t.yaml"));
    support::assert_no_changes(dir.path(), Path::new("t.yaml"));
    dir
}

/// `plan -f t.yaml --format json EXTRA...`: exit code and document.
fn plan_json(dir: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = crmctl(dir)
        .args([
            "plan",
            "-f",
            "t.yaml",
            "--format",
            "json",
            "--detailed-exitcode",
        ])
        .args(extra)
        .output()
        .unwrap();
    let doc =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", all_output(&out)));
    (out.status.code().unwrap(), doc)
}

fn drift_addresses(doc: &serde_json::Value) -> Vec<String> {
    doc["drift"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|x| x["address"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// `state mv` moves the drift snapshot with the object: the renamed key plans nothing and
// reports no drift, and a change made outside crmctl afterwards is reported at the new
// address (without the snapshot it would go unreported).
#[test]
fn state_mv_moves_the_drift_snapshot() {
    let dir = setup();
    let d = dir.path();
    assert!(state_json(d).applied.contains_key("security_groups.sales"));
    crmctl(d)
        .args([
            "state",
            "mv",
            "security_groups.sales",
            "security_groups.team",
        ])
        .assert()
        .success();
    std::fs::write(d.join("t.yaml"), FILE.replace("  sales:\n", "  team:\n")).unwrap();
    let state = state_json(d);
    assert!(state.applied.contains_key("security_groups.team"));
    assert!(!state.applied.contains_key("security_groups.sales"));
    let (code, doc) = plan_json(d, &[]);
    assert_eq!(code, 0, "no change and no spurious drift: {doc:#}");
    assert!(drift_addresses(&doc).is_empty(), "{doc:#}");
    // Out of band, after the rename: reported at the new address.
    crmctl(d)
        .args(["local", "set", "group", "Sales", "description", "Changed"])
        .assert()
        .success();
    let (code, doc) = plan_json(d, &[]);
    assert_eq!(
        drift_addresses(&doc),
        vec!["security_groups.team"],
        "{doc:#}"
    );
    assert_eq!(code, 4, "drift only");

    // `state rm` drops the snapshot with the entry.
    crmctl(d)
        .args(["state", "rm", "users.bo@coho.com"])
        .assert()
        .success();
    assert!(!state_json(d).applied.contains_key("users.bo@coho.com"));
}

// `plan --refresh-only --out FILE` then `apply FILE` accepts the drift into the state,
// changing nothing in the tenant; the next plan reports no drift.
#[test]
fn a_saved_refresh_only_plan_accepts_the_drift() {
    let dir = setup();
    let d = dir.path();
    crmctl(d)
        .args(["local", "set", "user", "bo@coho.com", "name", "Robert"])
        .assert()
        .success();
    let (code, doc) = plan_json(d, &[]);
    assert_eq!(
        (code, drift_addresses(&doc)),
        (4, vec!["users.bo@coho.com".to_string()])
    );
    crmctl(d)
        .args([
            "plan",
            "-f",
            "t.yaml",
            "--refresh-only",
            "--out",
            "refresh.json",
        ])
        .assert()
        .success();
    let before = observe(d);
    crmctl(d)
        .args(["apply", "refresh.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Refresh complete!"));
    assert_eq!(observe(d), before, "the tenant is not changed");
    // The drift is accepted: only the file's own change (Bo's name) is left.
    let (code, doc) = plan_json(d, &[]);
    assert!(drift_addresses(&doc).is_empty(), "{doc:#}");
    assert_eq!(code, 2, "the file still wants Bo: {doc:#}");
    // Applied twice: the state changed since, the plan is stale.
    crmctl(d)
        .args(["apply", "refresh.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("stale"));
}

// A targeted apply records the snapshots of what it touched only: the drift of an
// object outside its targets is still reported after it (issue 14 item 4).
#[test]
fn a_targeted_apply_keeps_the_drift_outside_its_targets() {
    let dir = setup();
    let d = dir.path();
    crmctl(d)
        .args(["local", "set", "user", "bo@coho.com", "name", "Robert"])
        .assert()
        .success();
    // A change of the file in the group, applied alone.
    std::fs::write(
        d.join("t.yaml"),
        FILE.replace("Sales team", "Sales and more"),
    )
    .unwrap();
    crmctl(d)
        .args([
            "apply",
            "--auto-approve",
            "--target",
            "security_groups.sales",
            "-f",
            "t.yaml",
        ])
        .assert()
        .success();
    let (code, doc) = plan_json(d, &[]);
    assert_eq!(drift_addresses(&doc), vec!["users.bo@coho.com"], "{doc:#}");
    assert_eq!(code, 4, "{doc:#}");
    let (code, _) = plan_json(d, &["--target", "security_groups.sales"]);
    assert_eq!(code, 0);
}
