//! `--backend microsoft` end to end against the emulator (issue 13 step 3): Graph for the
//! directory, the admin API for instances, Dataverse for roles, through the command line.

use std::time::Duration;

use crmctl::domain::kinds::LicensePlan;
use crmctl::emulator::{Emulator, EmulatorConfig, Faults};
use crmctl::observed::Tenant;
use crmctl::provider::{block_on, Scope};

use crate::emulator::{crmctl_on, CLIENT, SECRET};

fn args(cmd: &'static str, file: &'static str) -> Vec<&'static str> {
    let last = if cmd == "apply" {
        "--auto-approve"
    } else {
        "--detailed-exitcode"
    };
    vec![cmd, "--backend", "microsoft", "-f", file, last]
}

// issue 13 done-when (examples/minimal.yaml): the one production instance is created
// through the admin API (a lifecycle operation polled to the end), the administrator's
// role assigned through the instance's Dataverse, with 429/5xx on; the next plan shows no
// changes and the tenant has exactly one instance.
#[test]
fn microsoft_backend_applies_minimal_example_and_replans_empty() {
    let mut t = Tenant::fresh("fabrikam.onmicrosoft.com");
    t.licenses.insert(LicensePlan::Professional, 5);
    let mut cfg = EmulatorConfig::new(t, "fabrikam.onmicrosoft.com", CLIENT, SECRET);
    cfg.faults = Faults {
        seed: 3,
        throttle_rate: 0.05,
        server_error_rate: 0.05,
        retry_after_secs: 0,
        lifecycle_duration: Duration::from_millis(500),
        ..Faults::default()
    };
    let provider = cfg.provider.clone();
    let emu = Emulator::start(cfg).expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minimal.yaml");
    std::fs::copy(example, dir.path().join("minimal.yaml")).unwrap();
    let out = crmctl_on(&emu, dir.path())
        .args(args("apply", "minimal.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apply: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crmctl_on(&emu, dir.path())
        .args(args("plan", "minimal.yaml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "replan: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = block_on(provider.observe(&Scope::all())).unwrap().unwrap();
    assert_eq!(t.instances.len(), 1, "one instance");
    let i = t.instances.values().next().unwrap();
    assert_eq!((i.url.as_str(), i.currency.as_str()), ("fabrikam", "EUR"));
    let admin = t
        .users
        .values()
        .find(|u| u.upn == "admin@fabrikam.com")
        .unwrap();
    assert!(admin.roles[&i.id].contains("System Administrator"));
    assert!(emu.bap_requests() > 0 && emu.dataverse_requests() > 0);
}
