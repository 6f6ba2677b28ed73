//! Issue 15 item 4: completions and the manual page generated from the clap definitions,
//! `crmctl init`, and the schema's stable `$id`.

use crate::support::{all_output, crmctl};

/// Every subcommand crmctl has (the generated outputs must name each).
const SUBCOMMANDS: &[&str] = &[
    "validate",
    "schema",
    "plan",
    "graph",
    "apply",
    "show",
    "local",
    "force-unlock",
    "state",
    "emulate",
    "completions",
    "man",
    "init",
];

#[test]
fn completions_for_each_shell_name_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef crmctl"),
        ("fish", "complete -c crmctl"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = crmctl(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", all_output(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: no `{marker}` in:\n{text}");
        for sub in SUBCOMMANDS {
            assert!(text.contains(sub), "{shell}: `{sub}` missing");
        }
        // Options of subcommands too (from the same definitions).
        assert!(text.contains("detailed-exitcode"), "{shell}");
    }
    let out = crmctl(dir.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
}

#[test]
fn man_page_is_generated_from_the_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let out = crmctl(dir.path()).arg("man").output().unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.starts_with(".ie"), "roff expected:\n{page}");
    assert!(page.contains(".TH crmctl 1"), "{page}");
    assert!(page.contains("Manage a Dynamics CRM Online"), "{page}");
    // roff writes a hyphen as `\-`.
    let plain = page.replace("\\-", "-");
    for sub in SUBCOMMANDS {
        assert!(plain.contains(sub), "`{sub}` missing from the page");
    }
    // One page per command into a folder.
    let out = crmctl(dir.path())
        .args(["man", "--out-dir", "man"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
    let plan = std::fs::read_to_string(dir.path().join("man/crmctl-plan.1")).unwrap();
    assert!(plan.contains("detailed\\-exitcode"), "{plan}");
    assert!(dir.path().join("man/crmctl.1").exists());
    assert!(dir.path().join("man/crmctl-state-mv.1").exists());
}

#[test]
fn init_writes_a_valid_starter_file_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = crmctl(dir.path())
        .args(["init", "--tenant", "fabrikam.onmicrosoft.com"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
    let file = dir.path().join("crmctl.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("# yaml-language-server: $schema=crmctl.schema.json\n"),
        "{text}"
    );
    assert!(text.contains("tenant: fabrikam.onmicrosoft.com"));
    // The schema beside it is this binary's.
    let schema = std::fs::read_to_string(dir.path().join("crmctl.schema.json")).unwrap();
    assert_eq!(schema, crmctl::desired::schema::json_schema());
    // It validates without a warning.
    let out = crmctl(dir.path())
        .args(["validate", "-f", "crmctl.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("crmctl.yaml: valid\n"),
        "{}",
        all_output(&out)
    );
    // A second init refuses, and leaves the edited file alone.
    std::fs::write(&file, "tenant: edited.onmicrosoft.com\n").unwrap();
    let out = crmctl(dir.path()).arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("crmctl.yaml exists already"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "tenant: edited.onmicrosoft.com\n"
    );
    // --schema names a URL in the modeline; no schema file is written then.
    let out = crmctl(dir.path())
        .args([
            "init",
            "-f",
            "other.yaml",
            "--schema",
            "https://example.com/crmctl.schema.json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
    let other = std::fs::read_to_string(dir.path().join("other.yaml")).unwrap();
    assert!(other
        .starts_with("# yaml-language-server: $schema=https://example.com/crmctl.schema.json\n"));
    // T1: a bad tenant is refused with the validator's message, and nothing is written.
    let out = crmctl(dir.path())
        .args(["init", "-f", "bad.yaml", "--tenant", "fabrikam.com"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("bad.yaml").exists());
}

#[test]
fn schema_has_a_stable_versioned_id() {
    let s: serde_json::Value =
        serde_json::from_str(&crmctl::desired::schema::json_schema()).unwrap();
    let id = s["$id"].as_str().unwrap();
    assert_eq!(id, crmctl::desired::schema::SCHEMA_ID);
    // A URN: nothing outside the repository; the version is part of it.
    assert!(id.starts_with("urn:crmctl:"), "{id}");
    assert!(
        id.ends_with(&format!(":v{}", crmctl::desired::schema::SCHEMA_VERSION)),
        "{id}"
    );
    assert!(s["$comment"].as_str().unwrap().contains("format version 1"));
}
