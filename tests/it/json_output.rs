//! Issue 15 item 2: every command's `--format json` output (validate, plan, apply) is one
//! document on stdout that validates against its schema in `schemas/`, on success and on
//! failure, checked by a real JSON Schema client (ajv, as in `schema_ajv`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::schema_ajv::{ajv, run_schema, skip_or_fail};
use crate::support::{all_output, crmctl, root};

/// Checks each document it is given against its schema with ajv (when ajv can run).
struct Checker {
    ajv: Option<PathBuf>,
    dir: tempfile::TempDir,
    n: usize,
}

impl Checker {
    fn new() -> Checker {
        let ajv = match ajv() {
            Ok(a) => Some(a),
            Err(reason) => {
                skip_or_fail(&reason);
                None
            }
        };
        Checker {
            ajv,
            dir: tempfile::tempdir().unwrap(),
            n: 0,
        }
    }

    /// Parse `stdout` as one JSON document and validate it against `schema`.
    fn check(&mut self, schema: &str, stdout: &[u8]) -> Value {
        let text = String::from_utf8(stdout.to_vec()).unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{text}"));
        assert_eq!(v["format_version"], "1", "{text}");
        if let Some(ajv) = &self.ajv {
            self.n += 1;
            let data = self.dir.path().join(format!("doc{}.json", self.n));
            std::fs::write(&data, &text).unwrap();
            let (ok, out) = run_schema(ajv, schema, &data);
            assert!(ok, "{schema} rejects:\n{text}\n{out}");
        }
        v
    }
}

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    crmctl(dir).args(args).output().unwrap()
}

fn example(name: &str) -> String {
    root().join("examples").join(name).display().to_string()
}

fn fixture(path: &str) -> String {
    root()
        .join("tests/fixtures")
        .join(path)
        .display()
        .to_string()
}

#[test]
fn validate_json_on_valid_warning_and_broken_files() {
    let mut c = Checker::new();
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "validate",
            "--format",
            "json",
            "-f",
            &example("minimal.yaml"),
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let v = c.check("schemas/validate.schema.json", &out.stdout);
    assert_eq!(v["valid"], true);
    assert_eq!(v["diagnostics"].as_array().unwrap().len(), 0);

    // Warnings: valid, exit 0, each with its place and rule.
    let warn = fixture("warnings/p2_no_license.yaml");
    let out = run(dir.path(), &["validate", "--format", "json", "-f", &warn]);
    assert!(out.status.success(), "{}", all_output(&out));
    let v = c.check("schemas/validate.schema.json", &out.stdout);
    assert_eq!(v["valid"], true);
    assert!(v["warnings"].as_u64().unwrap() >= 1, "{v:#}");
    let d = &v["diagnostics"][0];
    assert_eq!(d["severity"], "warning");
    assert_eq!(d["rule"], "P2", "{v:#}");
    assert_eq!(d["file"], warn.as_str());
    assert!(d["line"].as_u64().unwrap() > 1 && d["column"].as_u64().unwrap() >= 1);

    // Errors: exit 1, still one document, nothing else on stdout.
    let bad = fixture("invalid/bad_region.yaml");
    let out = run(dir.path(), &["validate", "--format", "json", "-f", &bad]);
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    let v = c.check("schemas/validate.schema.json", &out.stdout);
    assert_eq!(v["valid"], false);
    assert!(v["errors"].as_u64().unwrap() >= 1);
    let d = &v["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert!(d["line"].as_u64().is_some(), "{v:#}");
    assert!(d["hint"].is_string() || d["hint"].is_null());

    // A file that cannot be read.
    let out = run(
        dir.path(),
        &["validate", "--format", "json", "-f", "missing.yaml"],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = c.check("schemas/validate.schema.json", &out.stdout);
    assert_eq!(v["valid"], false);
}

#[test]
fn plan_json_and_markdown_carry_the_file_warnings_and_failures() {
    let mut c = Checker::new();
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "plan",
            "--format",
            "json",
            "-f",
            &example("coho-winery.yaml"),
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let v = c.check("schemas/plan.schema.json", &out.stdout);
    assert!(!v["actions"].as_array().unwrap().is_empty());
    // Issue 14 item 4: a partial plan carries its targeting, in the schema too.
    let out = run(
        dir.path(),
        &[
            "plan",
            "--format",
            "json",
            "--target",
            "instances.dev",
            "--exclude",
            "users.eli@cohowinery.com",
            "-f",
            &example("coho-winery.yaml"),
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let v = c.check("schemas/plan.schema.json", &out.stdout);
    assert_eq!(v["targeting"]["targets"][0], "instances.dev");

    // The file's warnings are in the JSON and the Markdown plans, with their place.
    let warn = fixture("warnings/i13_duplicate_recipient.yaml");
    let out = run(dir.path(), &["plan", "--format", "json", "-f", &warn]);
    assert!(out.status.success(), "{}", all_output(&out));
    let v = c.check("schemas/plan.schema.json", &out.stdout);
    let i13 = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["rule"] == "I13")
        .unwrap_or_else(|| panic!("no I13 warning in {v:#}"));
    assert_eq!(i13["severity"], "warning");
    assert_eq!(i13["file"], warn.as_str());
    assert!(i13["line"].as_u64().unwrap() > 1);
    let out = run(dir.path(), &["plan", "--format", "markdown", "-f", &warn]);
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.contains("> **Warning** (I13)"), "{md}");

    // A file with errors: exit 1 and one document with the errors.
    let bad = fixture("invalid/bad_region.yaml");
    let out = run(dir.path(), &["plan", "--format", "json", "-f", &bad]);
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    let v = c.check("schemas/plan.schema.json", &out.stdout);
    assert_eq!(v["command"], "plan");
    assert!(v["error"].as_str().unwrap().contains("problem"), "{v:#}");
    assert_eq!(v["diagnostics"][0]["severity"], "error");
    let out = run(dir.path(), &["plan", "--format", "markdown", "-f", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("### crmctl plan failed"), "{md}");
    assert!(md.contains("> **Error**"), "{md}");

    // No plan for another reason (an unknown backend): still a document.
    let out = run(
        dir.path(),
        &[
            "plan",
            "--format",
            "json",
            "--backend",
            "nowhere:x",
            "-f",
            &example("minimal.yaml"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    let v = c.check("schemas/plan.schema.json", &out.stdout);
    assert!(v["error"].as_str().unwrap().contains("nowhere"), "{v:#}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: "));

    // A plan with the planner's errors (I8: a protected instance deleted) is a plan
    // document whose diagnostics hold the error, with its place in the file.
    let file = dir.path().join("t.yaml");
    std::fs::copy(example("minimal.yaml"), &file).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "    url: fabrikam\n",
            "    url: fabrikam\n    protect: true\n",
        ),
    )
    .unwrap();
    let out = run(dir.path(), &["apply", "--auto-approve", "-f", "t.yaml"]);
    assert!(out.status.success(), "{}", all_output(&out));
    std::fs::write(
        dir.path().join("gone.yaml"),
        "tenant: fabrikam.onmicrosoft.com\nlicenses:\n  professional: 5\nusers: {}\ninstances: {}\n",
    )
    .unwrap();
    let out = run(dir.path(), &["plan", "--format", "json", "-f", "gone.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    let v = c.check("schemas/plan.schema.json", &out.stdout);
    assert!(
        v["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["severity"] == "error"),
        "{v:#}"
    );
}

#[test]
fn apply_json_summaries_on_success_refusal_and_failure() {
    let mut c = Checker::new();
    let dir = tempfile::tempdir().unwrap();
    let file = example("coho-winery.yaml");
    // Failure midway: failed and (maybe) skipped actions, with reasons.
    let out = crmctl(dir.path())
        .args([
            "apply",
            "--format",
            "json",
            "--auto-approve",
            "--parallelism",
            "1",
            "-f",
            &file,
        ])
        .env("CRMCTL_LOCAL_FAIL_AT", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    let v = c.check("schemas/apply.schema.json", &out.stdout);
    assert_eq!(v["result"], "failed");
    let failed = v["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{v:#}");
    assert!(failed[0]["error"]
        .as_str()
        .unwrap()
        .contains("injected failure"));
    assert!(!v["done"].as_array().unwrap().is_empty());
    for s in v["skipped"].as_array().unwrap() {
        assert_eq!(s["because_of"], failed[0]["id"]);
        assert!(
            s["reason"].as_str().unwrap().ends_with("which failed"),
            "{s}"
        );
    }
    // The plan went to stderr, not into the document.
    assert!(String::from_utf8_lossy(&out.stderr).contains("Plan:"));

    // Success: the rest.
    let out = run(
        dir.path(),
        &["apply", "--format", "json", "--auto-approve", "-f", &file],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let v = c.check("schemas/apply.schema.json", &out.stdout);
    assert_eq!(v["result"], "complete");
    assert!(v["error"].is_null());
    assert!(!v["done"].as_array().unwrap().is_empty());
    assert!(v["failed"].as_array().unwrap().is_empty());

    // Nothing to do.
    let out = run(
        dir.path(),
        &["apply", "--format", "json", "--auto-approve", "-f", &file],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let v = c.check("schemas/apply.schema.json", &out.stdout);
    assert_eq!(v["result"], "no_changes");

    // Refused before anything ran: a destructive plan without --allow-destroy (I8 etc.).
    let text = std::fs::read_to_string(&file).unwrap();
    let fewer = text.replace("      - gus@cohowinery.com\n", "").replace(
        "  gus@cohowinery.com:\n    name: Gus Lindqvist\n    license: professional\n    roles:\n      dev: [System Customizer]\n",
        "",
    );
    assert_ne!(fewer, text);
    std::fs::write(dir.path().join("fewer.yaml"), fewer).unwrap();
    let out = run(
        dir.path(),
        &[
            "apply",
            "--format",
            "json",
            "--auto-approve",
            "-f",
            "fewer.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    let v = c.check("schemas/apply.schema.json", &out.stdout);
    assert_eq!(v["result"], "error");
    assert!(
        v["error"].as_str().unwrap().contains("--allow-destroy"),
        "{v:#}"
    );

    // A file with errors.
    let bad = fixture("invalid/bad_region.yaml");
    let out = run(
        dir.path(),
        &["apply", "--format", "json", "--auto-approve", "-f", &bad],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = c.check("schemas/apply.schema.json", &out.stdout);
    assert_eq!(v["result"], "error");
    assert_eq!(v["diagnostics"][0]["severity"], "error");

    // An error of the command line's workflow (a saved plan that is not one).
    std::fs::write(dir.path().join("junk.plan"), "{}").unwrap();
    let out = run(dir.path(), &["apply", "--format", "json", "junk.plan"]);
    assert_eq!(out.status.code(), Some(1));
    let v = c.check("schemas/apply.schema.json", &out.stdout);
    assert_eq!(v["result"], "error");
}

#[test]
fn schemas_name_every_action_kind() {
    for f in ["schemas/plan.schema.json", "schemas/apply.schema.json"] {
        let s: Value =
            serde_json::from_str(&std::fs::read_to_string(root().join(f)).unwrap()).unwrap();
        let listed: Vec<&str> = s["$defs"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let all: Vec<&str> = crmctl::domain::op::ActionKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(listed, all, "{f}: the kinds differ from ActionKind::ALL");
        assert!(s["$id"].as_str().unwrap().starts_with("urn:crmctl:schema:"));
    }
}

// issue 15 item 2: `show --format json` writes the tenant as a desired file that the desired
// file's schema accepts, and when the tenant cannot be read, the failure document (exit 1).
#[test]
fn show_json_is_a_desired_file_or_a_failure_document() {
    let mut c = Checker::new();
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["apply", "--auto-approve", "-f", &example("minimal.yaml")],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let out = run(dir.path(), &["show", "--format", "json"]);
    assert!(out.status.success(), "{}", all_output(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let v: Value = serde_json::from_str(&text).expect("one JSON document");
    assert!(
        v["users"].as_object().is_some_and(|u| !u.is_empty()),
        "{v:#}"
    );
    if let Some(ajv) = &c.ajv {
        let data = c.dir.path().join("show.json");
        std::fs::write(&data, &text).unwrap();
        let (ok, why) = run_schema(ajv, "schemas/crmctl.schema.json", &data);
        assert!(
            ok,
            "the desired schema rejects show's output:\n{text}\n{why}"
        );
    }
    // The desired file's own loader reads it back.
    let file = dir.path().join("shown.json");
    std::fs::write(&file, &text).unwrap();
    let out = run(dir.path(), &["validate", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", all_output(&out));

    let out = run(
        dir.path(),
        &["show", "--format", "json", "--backend", "nosuch:thing"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    let v = c.check("schemas/plan.schema.json", &out.stdout);
    assert_eq!(v["command"], "show");
    assert!(v["error"].as_str().unwrap().contains("nosuch"), "{v:#}");
}
