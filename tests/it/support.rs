//! Helpers for the tests that run the `crmctl` binary.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

use crmctl::observed::Tenant;
use crmctl::provider::local::LocalProvider;

use crmctl::state::State;

/// The repository's root (where `examples/`, `tests/fixtures/` and `schemas/` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of folder `dir` (relative to the root) ending in one of `exts`, sorted; none
/// when the folder is missing.
pub fn files_in(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| exts.iter().any(|x| e == *x)));
    files.sort();
    files
}

/// The local tenant `crmctl` uses in `dir` by default.
pub fn tenant_db(dir: &Path) -> PathBuf {
    dir.join(".crmctl/tenant.db")
}

/// The local tenant of `dir` as it is now.
pub fn observe(dir: &Path) -> Tenant {
    LocalProvider::open(&tenant_db(dir))
        .unwrap()
        .observe()
        .unwrap()
}

/// The state file `crmctl` uses in `dir` by default.
pub fn state_json(dir: &Path) -> State {
    serde_json::from_str(&std::fs::read_to_string(dir.join(".crmctl/state.json")).unwrap()).unwrap()
}

/// `crmctl` run in `dir`, without colours and without any setting or test-only fault
/// injection inherited from the environment.
pub fn crmctl(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("crmctl").unwrap();
    c.current_dir(dir)
        .env_remove("CRMCTL_BACKEND")
        .env_remove("CRMCTL_STATE")
        .env_remove("CRMCTL_LOCAL_FAIL_AT")
        .env_remove("CRMCTL_LOCAL_EXIT_AT")
        .env_remove("CRMCTL_LOCAL_EXIT_AFTER")
        .env_remove("CRMCTL_LOCAL_PAUSE_AFTER")
        .env_remove("CRMCTL_LOCAL_PAUSE_FILE")
        .env_remove("CRMCTL_LOCAL_LRO")
        .env_remove("CRMCTL_LOCAL_LRO_DELAY_MS")
        .env_remove("CRMCTL_LOCAL_LRO_POLLS")
        .env_remove("CRMCTL_LOCAL_EXIT_AT_POLL")
        .env_remove("CRMCTL_LOCAL_NOW")
        .env("NO_COLOR", "1");
    c
}

/// `crmctl apply --auto-approve -f FILE` in `dir` succeeds.
pub fn apply_ok(dir: &Path, file: &Path) -> assert_cmd::assert::Assert {
    crmctl(dir)
        .args(["apply", "--auto-approve", "-f"])
        .arg(file)
        .assert()
        .success()
}

/// The tenant in `dir` matches `file`: `plan --detailed-exitcode` exits 0.
pub fn assert_no_changes(dir: &Path, file: &Path) {
    crmctl(dir)
        .args(["plan", "--detailed-exitcode", "-f"])
        .arg(file)
        .assert()
        .code(0);
}

/// Create the local tenant of `dir` (`.crmctl/tenant.db`) as a fresh tenant of `domain`
/// with `crmctl local import`: the other `local` commands refuse a missing tenant (issue 9
/// item 4).
pub fn new_tenant(dir: &Path, domain: &str) {
    let yaml = crmctl::desired::load::to_yaml(&crmctl::observed::Tenant::fresh(domain)).unwrap();
    let file = dir.join("fresh-tenant.yaml");
    std::fs::write(&file, yaml).unwrap();
    crmctl(dir)
        .args(["local", "import"])
        .arg(&file)
        .assert()
        .success();
    std::fs::remove_file(file).unwrap();
}

/// What a command printed: its standard output, then its standard error.
pub fn all_output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
