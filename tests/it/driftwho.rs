//! Who changed what, and when (issue 14 item 2): the local tenant records the actor and
//! the time of each write (`crmctl apply (USER)`, `crmctl local (USER)`, `--by NAME`), the
//! plan's drift shows them in its human, JSON and Markdown renderings; a tenant file made
//! before the record opens and gains it. Also the smaller gaps of the same issue: the JSON
//! plan of `plan --refresh-only` says so (`refresh_only`), `crmctl graph` honours
//! `--target` / `--exclude`, and a targeted apply of a plan with errors elsewhere says why
//! it does nothing.

use std::path::Path;

use crate::support::{self, all_output, crmctl};

const FILE: &str = "tenant: coho.onmicrosoft.com
licenses:
  professional: 5
users:
  ana@coho.com: {name: Ana, license: professional}
  bo@coho.com: {name: Bo}
security_groups:
  sales:
    name: Sales
    members: [ana@coho.com]
";

const WHEN: &str = "2026-12-02T10:00:00Z";

/// A local tenant with FILE applied by `USER=deployer`, no drift.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::new_tenant(dir.path(), "coho.onmicrosoft.com");
    std::fs::write(dir.path().join("t.yaml"), FILE).unwrap();
    crmctl(dir.path())
        .args(["apply", "--auto-approve", "-f", "t.yaml"])
        .env("USER", "deployer")
        .env("CRMCTL_LOCAL_NOW", "2026-12-01T08:00:00Z")
        .assert()
        .success();
    support::assert_no_changes(dir.path(), Path::new("t.yaml"));
    dir
}

/// `crmctl local WORDS` as `USER=admin` at [`WHEN`].
fn local(dir: &Path, words: &[&str]) -> std::process::Output {
    crmctl(dir)
        .arg("local")
        .args(words)
        .env("USER", "admin")
        .env("CRMCTL_LOCAL_NOW", WHEN)
        .output()
        .unwrap()
}

fn plan(dir: &Path, extra: &[&str]) -> std::process::Output {
    crmctl(dir)
        .args(["plan", "-f", "t.yaml"])
        .args(extra)
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", all_output(out));
    String::from_utf8(out.stdout.clone()).unwrap()
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

/// The drift entry at `address` of a JSON plan.
fn drift_at<'d>(doc: &'d serde_json::Value, address: &str) -> &'d serde_json::Value {
    doc["drift"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["address"] == address))
        .unwrap_or_else(|| panic!("no drift at {address} in {doc:#}"))
}

// Issue 14 item 2: `crmctl local set --by NAME` at a known time, then `plan` names who and
// when in the human, JSON and Markdown plans; the default actor is `crmctl local (USER)`;
// apply's own writes are recorded as `crmctl apply (USER)` and never show as drift.
#[test]
fn a_local_edit_shows_who_and_when_in_every_format() {
    let dir = setup();
    let t = support::observe(dir.path());
    let ana = t.users.values().find(|u| u.upn == "ana@coho.com").unwrap();
    let applied = &t.changed.users[&ana.id];
    assert_eq!(applied.by.as_deref(), Some("crmctl apply (deployer)"));
    assert_eq!(applied.at.as_deref(), Some("2026-12-01T08:00:00Z"));
    assert!(
        t.changed.tenant.contains_key("licenses.professional"),
        "the licence purchase is recorded: {:?}",
        t.changed.tenant
    );

    let out = local(
        dir.path(),
        &[
            "set",
            "--by",
            "ana (admin center)",
            "user",
            "bo@coho.com",
            "name",
            "Bo B",
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let out = local(dir.path(), &["set", "licenses", "professional", "7"]);
    assert!(out.status.success(), "{}", all_output(&out));

    let human = stdout(&plan(dir.path(), &[]));
    assert!(
        human.contains(&format!(
            "~ users.bo@coho.com changed by ana (admin center) at {WHEN}"
        )),
        "{human}"
    );
    assert!(
        human.contains(&format!(
            "~ licenses.professional changed by crmctl local (admin) at {WHEN}"
        )),
        "{human}"
    );

    let doc: serde_json::Value =
        serde_json::from_str(&stdout(&plan(dir.path(), &["--format", "json"]))).unwrap();
    let bo = drift_at(&doc, "users.bo@coho.com");
    assert_eq!(bo["by"], "ana (admin center)");
    assert_eq!(bo["at"], WHEN);
    assert_eq!(
        drift_at(&doc, "licenses.professional")["by"],
        "crmctl local (admin)"
    );
    // Ana was changed by apply only: no drift there, whoever wrote last.
    assert!(doc["drift"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["address"] != "users.ana@coho.com"));
    check_schema(dir.path(), &doc);

    let md = stdout(&plan(dir.path(), &["--format", "markdown"]));
    assert!(
        md.contains(&format!(
            "users.bo@coho.com changed by ana (admin center) at {WHEN}"
        )),
        "{md}"
    );

    // Accepting the drift keeps the record; an object deleted outside crmctl has none.
    let out = local(dir.path(), &["delete", "user", "bo@coho.com"]);
    assert!(out.status.success(), "{}", all_output(&out));
    let doc: serde_json::Value =
        serde_json::from_str(&stdout(&plan(dir.path(), &["--format", "json"]))).unwrap();
    let bo = drift_at(&doc, "users.bo@coho.com");
    assert_eq!(bo["change"], "deleted");
    assert!(bo.get("by").is_none() && bo.get("at").is_none(), "{bo}");
    // The group lost no member (Bo was none), Ana's group did not change: no stamp.
    let t = support::observe(dir.path());
    assert_eq!(
        t.changed
            .groups
            .values()
            .next()
            .and_then(|c| c.by.as_deref()),
        Some("crmctl apply (deployer)")
    );
}

// Issue 14 item 2: `--by` takes no control or bidi character (they would reach every
// rendering of the plan), and an empty name is refused; nothing is written then.
#[test]
fn by_refuses_unsafe_and_empty_names() {
    let dir = setup();
    let before = support::observe(dir.path());
    for by in ["evil\u{1b}[2J", "\u{202e}x", "  "] {
        let out = local(
            dir.path(),
            &["set", "--by", by, "user", "bo@coho.com", "name", "X"],
        );
        assert!(!out.status.success(), "{by:?}: {}", all_output(&out));
        assert!(all_output(&out).contains("--by"), "{}", all_output(&out));
    }
    assert_eq!(support::observe(dir.path()), before);
}

// Issue 14 item 2: a tenant file of schema version 1 (no `changes` table) still opens:
// plan works and reports no drift, the table is added, and the next edit is recorded.
#[test]
fn a_tenant_file_from_before_the_record_opens_and_gains_it() {
    let dir = setup();
    let db = dir.path().join(".crmctl/tenant.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "DROP TABLE changes; UPDATE meta SET value = '1' WHERE key = 'schema_version';",
        )
        .unwrap();
    }
    let t = support::observe(dir.path());
    assert!(t.changed.is_empty(), "{:?}", t.changed);
    support::assert_no_changes(dir.path(), Path::new("t.yaml"));
    let out = local(dir.path(), &["set", "user", "bo@coho.com", "name", "Bo B"]);
    assert!(out.status.success(), "{}", all_output(&out));
    let doc: serde_json::Value =
        serde_json::from_str(&stdout(&plan(dir.path(), &["--format", "json"]))).unwrap();
    let bo = drift_at(&doc, "users.bo@coho.com");
    assert_eq!(bo["by"], "crmctl local (admin)");
    assert_eq!(bo["at"], WHEN);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, "2");
}

// Issue 14 item 2: the JSON plan of `plan --refresh-only` carries `"refresh_only": true`
// (schemas/plan.schema.json); a full plan has no such key.
#[test]
fn the_json_plan_marks_a_refresh_only_plan() {
    let dir = setup();
    let out = local(dir.path(), &["set", "user", "bo@coho.com", "name", "Bo B"]);
    assert!(out.status.success(), "{}", all_output(&out));
    let full: serde_json::Value =
        serde_json::from_str(&stdout(&plan(dir.path(), &["--format", "json"]))).unwrap();
    assert!(full.get("refresh_only").is_none(), "{full:#}");
    let refresh: serde_json::Value = serde_json::from_str(&stdout(&plan(
        dir.path(),
        &["--format", "json", "--refresh-only"],
    )))
    .unwrap();
    assert_eq!(refresh["refresh_only"], true, "{refresh:#}");
    assert_eq!(refresh["actions"], serde_json::json!([]));
    check_schema(dir.path(), &refresh);
    check_schema(dir.path(), &full);
}

/// The action addresses of a DOT graph (`label="N: ~ kind\naddress"`).
fn dot_addresses(dot: &str) -> Vec<String> {
    dot.lines()
        .filter_map(|l| {
            let label = l.split("label=\"").nth(1)?;
            let address = label.split("\\n").nth(1)?;
            Some(address.split('"').next()?.to_string())
        })
        .collect()
}

// Issue 14 item 4: `crmctl graph` draws the plan `--target` / `--exclude` select, as
// `plan` does (an unknown target is refused with its hint there too).
#[test]
fn graph_honours_target_and_exclude() {
    let dir = setup();
    std::fs::write(
        dir.path().join("t.yaml"),
        FILE.replace("{name: Ana,", "{name: Ana T,")
            .replace("{name: Bo}", "{name: Bo T}"),
    )
    .unwrap();
    let graph = |extra: &[&str]| {
        let out = crmctl(dir.path())
            .args(["graph", "-f", "t.yaml"])
            .args(extra)
            .output()
            .unwrap();
        dot_addresses(&stdout(&out))
    };
    let all = graph(&[]);
    assert!(all.contains(&"users.ana@coho.com".to_string()), "{all:?}");
    assert!(all.contains(&"users.bo@coho.com".to_string()), "{all:?}");
    assert_eq!(
        graph(&["--target", "users.ana@coho.com"]),
        ["users.ana@coho.com"]
    );
    assert_eq!(
        graph(&["--exclude", "users.ana@coho.com"]),
        ["users.bo@coho.com"]
    );
    let out = crmctl(dir.path())
        .args(["graph", "-f", "t.yaml", "--target", "users.nobody@coho.com"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", all_output(&out));
}

// Issue 14 item 4: a plan with errors applies nothing, a targeted one included; the
// refusal says that the errors outside the targets are why (docs/workflows.md).
#[test]
fn a_targeted_apply_with_errors_elsewhere_says_why_it_does_nothing() {
    let dir = setup();
    // T5: storage cannot be bought on a trial subscription (an error at `storage`).
    let out = local(dir.path(), &["set", "trial", "true"]);
    assert!(out.status.success(), "{}", all_output(&out));
    std::fs::write(
        dir.path().join("t.yaml"),
        format!(
            "{}storage:\n  additional_gb: 10\n",
            FILE.replace("{name: Bo}", "{name: Bo T}")
        ),
    )
    .unwrap();
    let before = support::observe(dir.path());
    let out = crmctl(dir.path())
        .args([
            "apply",
            "--auto-approve",
            "-f",
            "t.yaml",
            "--target",
            "users.bo@coho.com",
        ])
        .output()
        .unwrap();
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("T5"), "{text}");
    assert!(
        text.contains("a plan with errors applies nothing, also when --target/--exclude leave the objects with the errors out"),
        "{text}"
    );
    assert_eq!(support::observe(dir.path()).users, before.users);
    // `plan` says the same.
    let out = plan(dir.path(), &["--target", "users.bo@coho.com"]);
    assert!(
        all_output(&out)
            .contains("also when --target/--exclude leave the objects with the errors out"),
        "{}",
        all_output(&out)
    );
}

// Issue 14 item 2 on `--backend microsoft`, through the emulator backed by a local tenant
// file: an out-of-band change of an instance (admin API `lastModifiedBy` /
// `lastModifiedTime`) and of a user's access mode (Dataverse `modifiedon` /
// `_modifiedby_value`) shows who and when in the drift.
#[test]
fn the_microsoft_backend_reads_who_and_when_from_the_admin_api_and_dataverse() {
    use crate::emulator::{crmctl_on, CLIENT, SECRET};
    use crmctl::emulator::{Emulator, EmulatorConfig};

    let backing = tempfile::tempdir().unwrap();
    support::new_tenant(backing.path(), "fabrikam.onmicrosoft.com");
    let out = local(backing.path(), &["set", "licenses", "professional", "5"]);
    assert!(out.status.success(), "{}", all_output(&out));
    let db = backing.path().join(".crmctl/tenant.db");
    let provider = crmctl::provider::local::LocalProvider::open(&db).unwrap();
    let cfg = EmulatorConfig::with_provider(
        std::sync::Arc::new(provider),
        "fabrikam.onmicrosoft.com",
        CLIENT,
        SECRET,
    );
    let emu = Emulator::start(cfg).expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minimal.yaml");
    std::fs::copy(example, dir.path().join("minimal.yaml")).unwrap();
    let run = |args: &[&str]| {
        crmctl_on(&emu, dir.path())
            .args(args)
            .args(["--backend", "microsoft", "-f", "minimal.yaml"])
            .output()
            .unwrap()
    };
    let out = run(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "apply: {}", all_output(&out));
    let backend = format!("local:{}", db.display());
    for words in [
        &["instance", "fabrikam", "name", "Renamed"][..],
        &[
            "user",
            "admin@fabrikam.com",
            "access-mode",
            "administrative",
        ][..],
    ] {
        let out = local(
            backing.path(),
            &[
                &["set", "--backend", &backend, "--by", "admin@fabrikam.com"][..],
                words,
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", all_output(&out));
    }
    let out = run(&["plan", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for address in ["instances.main", "users.admin@fabrikam.com"] {
        let d = drift_at(&doc, address);
        assert_eq!(d["by"], "admin@fabrikam.com", "{d}");
        assert_eq!(d["at"], WHEN, "{d}");
    }
    let human = stdout(&run(&["plan"]));
    assert!(
        human.contains(&format!(
            "~ instances.main changed by admin@fabrikam.com at {WHEN}"
        )),
        "{human}"
    );
}
