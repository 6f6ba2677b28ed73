//! Snapshot tests of the human, JSON and Markdown renderings (expect-test; refresh with
//! `UPDATE_EXPECT=1 cargo test --test plan_render`), for our fixtures and for every
//! example planned against a fresh tenant.

mod common;

use std::path::Path;

use common::*;

fn snapshot(file: &Path) {
    let loaded = crmctl::spec::load::load_file(file)
        .unwrap_or_else(|e| panic!("{}: {:?}", file.display(), e.diagnostics));
    let t = crmctl::tenant::Tenant::fresh(&loaded.desired.tenant);
    let plan = crmctl::plan::plan(&loaded.desired, &t, &state(&[]));
    assert!(
        !plan.has_errors(),
        "{}: {:#?}",
        file.display(),
        plan.diagnostics
    );
    let stem = file.file_stem().unwrap().to_string_lossy().to_string();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/plan");
    expect_test::expect_file![dir.join(format!("{stem}.human.txt"))]
        .assert_eq(&crmctl::render::render_human(&plan, false));
    let json = crmctl::render::render_json(&plan);
    expect_test::expect_file![dir.join(format!("{stem}.json"))].assert_eq(&json);
    expect_test::expect_file![dir.join(format!("{stem}.md"))]
        .assert_eq(&crmctl::render::render_markdown(&plan));
    // Same input, byte-identical output.
    let again = crmctl::plan::plan(&loaded.desired, &t, &state(&[]));
    assert_eq!(json, crmctl::render::render_json(&again));
}

fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    files
}

#[test]
fn fixtures_render_as_snapshotted() {
    let files = yaml_files("tests/fixtures/plan");
    assert!(!files.is_empty());
    for f in files {
        snapshot(&f);
    }
}

#[test]
fn examples_render_as_snapshotted() {
    for f in yaml_files("examples") {
        snapshot(&f);
    }
}

#[test]
fn colors_only_when_asked_and_empty_plan_says_no_changes() {
    let d = desired("users:\n  a@coho.com: {}\n");
    let plan = crmctl::plan::plan(&d, &fresh(), &state(&[]));
    let plain = crmctl::render::render_human(&plan, false);
    assert!(!plain.contains('\x1b'));
    assert!(crmctl::render::render_human(&plan, true).contains("\x1b[32m"));
    assert!(
        plain.ends_with("Plan: 0 to buy, 1 to create, 0 to change, 0 to delete.\n"),
        "{plain}"
    );
    let empty = crmctl::plan::plan(&desired(""), &fresh(), &state(&[]));
    assert_eq!(crmctl::render::render_human(&empty, false), "No changes.\n");
    let dot = crmctl::render::render_dot(&plan);
    assert!(dot.starts_with("digraph plan {") && dot.contains("create_user"));
}
