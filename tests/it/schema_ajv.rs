//! A real JSON Schema client checks the committed schema: ajv-cli (from tests/js, installed
//! with `npm ci --prefix tests/js`) validates every example (must pass) and the broken files
//! under tests/fixtures/schema (must fail).
//!
//! Without Node.js or without tests/js/node_modules the test prints why and passes, except
//! under CI (`CI=true`), where a missing client is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{files_in, root};

/// The ajv binary, or the reason it cannot run.
pub(crate) fn ajv() -> Result<PathBuf, String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("Node.js (`node`) is not installed".into());
    }
    let bin = root().join("tests/js/node_modules/.bin/ajv");
    if !bin.exists() {
        return Err(format!(
            "{} is missing; install it with `npm ci --prefix tests/js`",
            bin.display()
        ));
    }
    Ok(bin)
}

pub(crate) fn skip_or_fail(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the real-validator test cannot run under CI: {reason}");
    }
    eprintln!("SKIPPED schema_ajv: {reason}");
}

fn run(ajv: &Path, data: &Path) -> (bool, String) {
    run_schema(ajv, "schemas/crmctl.schema.json", data)
}

/// ajv's verdict on `data` against `schema` (relative to the root), and its text.
pub(crate) fn run_schema(ajv: &Path, schema: &str, data: &Path) -> (bool, String) {
    let out = Command::new(ajv)
        .current_dir(root())
        .args([
            "validate",
            "--spec=draft2020",
            "--all-errors",
            "--errors=text",
            "-c",
            "./tests/js/formats.js",
            "-s",
            schema,
            "-d",
        ])
        .arg(data)
        .output()
        .expect("ajv runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn ajv_accepts_every_example_and_rejects_broken_files() {
    let ajv = match ajv() {
        Ok(a) => a,
        Err(reason) => return skip_or_fail(&reason),
    };
    let examples = files_in("examples", &["yaml", "json"]);
    assert!(examples.len() >= 3);
    for f in &examples {
        let (ok, out) = run(&ajv, f);
        assert!(ok, "ajv rejects {}:\n{out}", f.display());
        assert!(out.contains("valid"), "{out}");
    }
    let broken = files_in("tests/fixtures/schema", &["yaml", "json"]);
    assert!(!broken.is_empty());
    for f in &broken {
        let (ok, out) = run(&ajv, f);
        assert!(!ok, "ajv accepts the broken file {}:\n{out}", f.display());
        // Each broken file names the schema keyword it breaks on its first line.
        let text = std::fs::read_to_string(f).unwrap();
        let want = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# ajv: "))
            .unwrap_or_else(|| panic!("{} must start with `# ajv: <expected text>`", f.display()));
        assert!(
            out.contains(want),
            "{}: expected `{want}` in:\n{out}",
            f.display()
        );
        // crmctl rejects it too.
        let loaded = crmctl::desired::load::load_file(f);
        assert!(loaded.is_err(), "crmctl accepts {}", f.display());
    }
}
