//! Helpers for the tests that run the `crmctl` binary.

use std::path::Path;

use assert_cmd::Command;

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
        .env("NO_COLOR", "1");
    c
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
