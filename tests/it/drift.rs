//! Drift (issue 14 item 2): changes made outside crmctl (`crmctl local set/add/delete`)
//! are reported in the plan's drift section, apart from the changes of the file;
//! `plan --refresh-only` shows only them, `apply --refresh-only` accepts them into the
//! state without touching the tenant, and `plan --detailed-exitcode` exits 4 for them.

use std::path::Path;

use crate::support::{self, crmctl};

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
    // The apply recorded what it left: no drift, no changes.
    support::assert_no_changes(dir.path(), Path::new("t.yaml"));
    assert!(
        !support::state_json(dir.path()).applied.is_empty(),
        "apply records the managed fields it left"
    );
    dir
}

/// The JSON plan validates against schemas/plan.schema.json (ajv; skipped without it).
fn check_schema(dir: &Path, doc: &serde_json::Value) {
    let ajv = match crate::schema_ajv::ajv() {
        Ok(a) => a,
        Err(reason) => return crate::schema_ajv::skip_or_fail(&reason),
    };
    let data = dir.join("plan.json");
    std::fs::write(&data, serde_json::to_vec(doc).unwrap()).unwrap();
    let (ok, text) = crate::schema_ajv::run_schema(&ajv, "schemas/plan.schema.json", &data);
    assert!(ok, "{text}");
}

fn local(dir: &Path, words: &[&str]) {
    crmctl(dir).arg("local").args(words).assert().success();
}

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
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", support::all_output(&out));
    });
    (out.status.code().unwrap(), doc)
}

/// The drift addresses and paths of a JSON plan, and the addresses of its actions that
/// are changes of the file (not listed in any drift's `reverted_by`).
fn split(doc: &serde_json::Value) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let drift: Vec<(String, Vec<String>)> = doc["drift"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    (
                        d["address"].as_str().unwrap().to_string(),
                        d["changes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c["path"].as_str().unwrap().to_string())
                            .collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let reverts: Vec<u64> = doc["drift"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| {
            d["reverted_by"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap())
        })
        .collect();
    let file: Vec<String> = doc["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !reverts.contains(&a["id"].as_u64().unwrap()))
        .map(|a| a["address"].as_str().unwrap().to_string())
        .collect();
    (drift, file)
}

/// Make the out-of-band change `words`, plan: exit 4, the drift names `address` (and
/// `path` when not empty), no change of the file. Returns the drift and the JSON plan.
fn drift_after(
    dir: &Path,
    words: &[&str],
    address: &str,
    path: &str,
) -> (Vec<(String, Vec<String>)>, serde_json::Value) {
    local(dir, words);
    let what = words.join(" ");
    let (code, doc) = plan_json(dir, &[]);
    let (drift, file) = split(&doc);
    assert_eq!(code, 4, "{what}: drift only exits 4: {doc:#}");
    assert!(
        drift
            .iter()
            .any(|(a, p)| a == address && (path.is_empty() || p.iter().any(|x| x == path))),
        "{what}: drift {drift:?} names {address} {path}"
    );
    assert!(
        file.is_empty(),
        "{what}: no change of the file, got {file:?}"
    );
    (drift, doc)
}

/// `apply --refresh-only` accepts the drift without touching the tenant (the state's
/// serial moves on); the next refresh-only plan is empty.
fn accept_drift(dir: &Path, what: &str) {
    let before = support::observe(dir);
    let serial = support::state_json(dir).serial;
    crmctl(dir)
        .args(["apply", "--refresh-only", "--auto-approve", "-f", "t.yaml"])
        .assert()
        .success();
    assert_eq!(
        support::observe(dir),
        before,
        "{what}: the tenant is unchanged"
    );
    assert!(support::state_json(dir).serial > serial, "{what}");
    let (code, doc) = plan_json(dir, &["--refresh-only"]);
    assert_eq!(
        (code, doc.get("drift")),
        (0, None),
        "{what}: accepted: {doc:#}"
    );
}

// Each kind of out-of-band change: the drift names the object and the field; no action
// is a change of the file; exit code 4; `apply --refresh-only` accepts it, the tenant is
// unchanged, and the next refresh-only plan is empty.
#[test]
fn each_out_of_band_change_is_drift_and_refresh_only_accepts_it() {
    type Case = (&'static [&'static str], &'static str, &'static str);
    let cases: &[Case] = &[
        (
            &["set", "user", "ana@coho.com", "name", "Ana B"],
            "users.ana@coho.com",
            "name",
        ),
        (
            &["set", "user", "bo@coho.com", "license", "professional"],
            "users.bo@coho.com",
            "license",
        ),
        (
            &[
                "set",
                "user",
                "ana@coho.com",
                "access-mode",
                "administrative",
            ],
            "users.ana@coho.com",
            "access_mode",
        ),
        (
            &["set", "user", "ana@coho.com", "usage-location", "FR"],
            "users.ana@coho.com",
            "usage_location",
        ),
        (
            &["set", "group", "Sales", "description", "Other"],
            "security_groups.sales",
            "description",
        ),
        (
            &[
                "set",
                "group",
                "Sales",
                "members",
                "ana@coho.com,bo@coho.com",
            ],
            "security_groups.sales",
            "members",
        ),
        (
            &["set", "licenses", "professional", "7"],
            "licenses.professional",
            "purchased",
        ),
        (
            &["set", "storage", "additional-gb", "3"],
            "storage",
            "additional_gb",
        ),
        (&["delete", "user", "bo@coho.com"], "users.bo@coho.com", ""),
        (&["delete", "group", "Sales"], "security_groups.sales", ""),
    ];
    for (words, address, path) in cases {
        let dir = setup();
        let what = words.join(" ");
        let (drift, doc) = drift_after(dir.path(), words, address, path);
        if words[0] == "set" && words[1] == "user" && words[3] == "name" {
            check_schema(dir.path(), &doc);
        }
        assert_eq!(doc["summary"]["drift"].as_u64(), Some(drift.len() as u64));
        // Human: in the drift section, the putting back apart.
        let out = crmctl(dir.path())
            .args(["plan", "-f", "t.yaml"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            text.contains("Changed outside crmctl since the last apply:"),
            "{what}: {text}"
        );
        assert!(
            !text.contains("crmctl will perform the following actions"),
            "{what}: {text}"
        );
        // Refresh-only: the drift alone, then accepted without touching the tenant.
        let (code, doc) = plan_json(dir.path(), &["--refresh-only"]);
        assert_eq!(code, 4, "{what}");
        assert!(doc["actions"].as_array().unwrap().is_empty(), "{what}");
        let (drift_only, _) = split(&doc);
        assert_eq!(drift_only, drift, "{what}");
        accept_drift(dir.path(), &what);
    }
}

// The file's own changes exit 2 and stay in the action list, apart from the drift.
#[test]
fn file_changes_exit_2_and_stay_apart_from_drift() {
    let dir = setup();
    local(
        dir.path(),
        &["set", "user", "ana@coho.com", "name", "Ana B"],
    );
    std::fs::write(
        dir.path().join("t.yaml"),
        FILE.replace("bo@coho.com: {name: Bo}", "bo@coho.com: {name: Bob}"),
    )
    .unwrap();
    let (code, doc) = plan_json(dir.path(), &[]);
    assert_eq!(code, 2);
    let (drift, file) = split(&doc);
    assert_eq!(
        drift,
        vec![("users.ana@coho.com".to_string(), vec!["name".to_string()])]
    );
    assert_eq!(file, vec!["users.bo@coho.com".to_string()]);
    // The markdown marks the action that puts the drift back.
    let out = crmctl(dir.path())
        .args(["plan", "-f", "t.yaml", "--format", "markdown"])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("**Changed outside crmctl since the last apply:**"),
        "{md}"
    );
    assert!(md.contains("(puts back drift)"), "{md}");
    // Applying puts it back and records it: nothing left.
    support::apply_ok(dir.path(), Path::new("t.yaml"));
    support::assert_no_changes(dir.path(), Path::new("t.yaml"));
}

const INSTANCE_FILE: &str = "tenant: coho.onmicrosoft.com
licenses:
  professional: 5
users:
  ana@coho.com:
    name: Ana
    license: professional
    admin_roles: [global_admin]
    roles:
      main: [System Administrator]
security_groups:
  sales:
    name: Sales
    members: [ana@coho.com]
instances:
  main:
    name: Coho
    url: coho
    type: production
    region: EMEA
    currency: EUR
    language: 1033
    purpose: Sales
    security_group: sales
";

// Issue 14 item 2, the instance half: an instance's managed fields changed in the admin
// center (name, purpose, URL, administration mode, security group), an instance deleted
// there, and a user's admin roles are drift too (exit 4, no change of the file), and
// `apply --refresh-only` accepts each.
#[test]
fn instance_and_admin_role_changes_outside_crmctl_are_drift() {
    type Case = (&'static [&'static str], &'static str, &'static str);
    let cases: &[Case] = &[
        (
            &["set", "instance", "coho", "name", "Coho Winery"],
            "instances.main",
            "name",
        ),
        (
            &["set", "instance", "coho", "purpose", "Other"],
            "instances.main",
            "purpose",
        ),
        (
            &["set", "instance", "coho", "admin-mode", "on"],
            "instances.main",
            "",
        ),
        (
            &["set", "instance", "coho", "security-group", "none"],
            "instances.main",
            "",
        ),
        (
            &["set", "user", "ana@coho.com", "admin-roles", "none"],
            "users.ana@coho.com",
            "",
        ),
    ];
    for (words, address, path) in cases {
        let dir = tempfile::tempdir().unwrap();
        support::new_tenant(dir.path(), "coho.onmicrosoft.com");
        std::fs::write(dir.path().join("t.yaml"), INSTANCE_FILE).unwrap();
        support::apply_ok(dir.path(), Path::new("t.yaml"));
        support::assert_no_changes(dir.path(), Path::new("t.yaml"));
        drift_after(dir.path(), words, address, path);
        accept_drift(dir.path(), &words.join(" "));
    }
}
