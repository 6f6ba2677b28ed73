//! Helpers for the tests that run the `crmctl` binary.
#![allow(dead_code)]

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
