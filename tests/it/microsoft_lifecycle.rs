//! The instance lifecycle end to end on `--backend microsoft` against the emulator, through
//! the command line (issue 13 leftovers): faults while instances are created, copied and
//! edited (I4, I10, I11, I12); `kill -9` during a long-running create and copy (the
//! operation is resumed, never started twice); manual steps across two runs and with
//! `--wait-manual` (T5); backups before a reset or a delete (I8, I9).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crmctl::domain::kinds::LicensePlan;
use crmctl::domain::op::Op;
use crmctl::emulator::{Emulator, EmulatorConfig, EmulatorHandle, Faults};
use crmctl::observed::Tenant;
use crmctl::provider::memory::MemoryProvider;
use crmctl::provider::{block_on, Provider, Scope};

use crate::emulator::{crmctl_on, emulator_env, CLIENT, SECRET};
use crate::support::all_output;

const DOMAIN: &str = "contoso.onmicrosoft.com";

/// A production instance bound to a security group, a sandbox copied from it and left in
/// administration mode, one licensed administrator with a role in each.
const INSTANCES: &str = "tenant: contoso.onmicrosoft.com
licenses:
  professional: 25
security_groups:
  devs:
    name: Developers
    members: [admin@contoso.com]
users:
  admin@contoso.com:
    name: Contoso Administrator
    license: professional
    roles:
      main: [System Administrator]
instances:
  main:
    name: Contoso
    url: contoso
    type: production
    region: EMEA
    currency: EUR
    language: 1033
    security_group: devs
  test:
    name: Contoso Test
    url: contoso-test
    type: sandbox
    region: EMEA
    currency: EUR
    language: 1033
    copy_from: { instance: main, kind: minimal }
    admin_mode:
      enabled: true
      background_operations: false
";

/// The tenant behind the emulator: 25 professional licences (T6: one production and one
/// sandbox instance included), nothing else.
fn tenant(professional: u32) -> Tenant {
    let mut t = Tenant::fresh(DOMAIN);
    t.licenses.insert(LicensePlan::Professional, professional);
    t
}

fn start(t: Tenant, faults: Faults) -> (EmulatorHandle, Arc<MemoryProvider>) {
    let provider = Arc::new(MemoryProvider::new(t));
    let mut cfg = EmulatorConfig::with_provider(provider.clone(), DOMAIN, CLIENT, SECRET);
    cfg.faults = faults;
    (Emulator::start(cfg).expect("emulator starts"), provider)
}

fn observe(p: &MemoryProvider) -> Tenant {
    block_on(p.observe(&Scope::all())).unwrap().unwrap()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let f = dir.join("t.yaml");
    std::fs::write(&f, text).unwrap();
    f
}

/// `crmctl CMD --backend microsoft -f t.yaml EXTRA...` on the emulator.
fn run(emu: &EmulatorHandle, dir: &Path, cmd: &str, extra: &[&str]) -> Output {
    let mut c = crmctl_on(emu, dir);
    c.args([cmd, "--backend", "microsoft", "-f", "t.yaml"]);
    if cmd == "apply" {
        c.arg("--auto-approve");
    }
    c.args(extra).output().unwrap()
}

fn assert_replans_empty(emu: &EmulatorHandle, dir: &Path) {
    let out = run(emu, dir, "plan", &["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "replan: {}", all_output(&out));
}

fn ops_of(emu: &EmulatorHandle, kind: &str) -> u64 {
    emu.lifecycle_operations().get(kind).copied().unwrap_or(0)
}

// Issue 13 item 1 (I4, I10, I11, I12): the instance-heavy file applies with 429/5xx,
// dropped answers (after the change was made) and 409 `OperationNotStartable` while
// lifecycle operations run; the next plan shows no changes, and the emulator started
// exactly one create per instance and one copy: a lost answer is looked up or its
// operation followed, never sent again.
#[test]
fn instances_converge_under_faults_with_one_create_each() {
    for seed in [11, 12] {
        let (emu, provider) = start(
            tenant(25),
            Faults {
                seed,
                throttle_rate: 0.1,
                server_error_rate: 0.1,
                drop_rate: 0.15,
                retry_after_secs: 0,
                lifecycle_duration: Duration::from_millis(600),
                copy_duration: Duration::from_millis(1500),
                ..Faults::default()
            },
        );
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), INSTANCES);
        let out = run(&emu, dir.path(), "apply", &[]);
        let first = all_output(&out);
        if !out.status.success() {
            // One recovery apply at most (an unknown outcome of a directory write).
            let again = run(&emu, dir.path(), "apply", &[]);
            assert!(
                again.status.success(),
                "seed {seed}: apply: {first}\nrecovery: {}",
                all_output(&again)
            );
        }
        assert_replans_empty(&emu, dir.path());
        let t = observe(&provider);
        let mut urls: Vec<&str> = t.instances.values().map(|i| i.url.as_str()).collect();
        urls.sort_unstable();
        assert_eq!(
            urls,
            ["contoso", "contoso-test"],
            "seed {seed}: no duplicates"
        );
        assert_eq!(
            ops_of(&emu, "Create"),
            2,
            "seed {seed}: {:?}",
            emu.lifecycle_operations()
        );
        assert_eq!(
            ops_of(&emu, "Copy"),
            1,
            "seed {seed}: {:?}",
            emu.lifecycle_operations()
        );
        let test = t
            .instances
            .values()
            .find(|i| i.url == "contoso-test")
            .unwrap();
        assert!(test.admin_mode.enabled && !test.admin_mode.background_operations);
        let main = t.instances.values().find(|i| i.url == "contoso").unwrap();
        let devs = t.groups.values().find(|g| g.name == "Developers").unwrap();
        assert_eq!(main.security_group.as_deref(), Some(devs.id.as_str()));
        assert_eq!(t.groups.len(), 1, "seed {seed}: one group");
        // The copy is recorded: the next plan says nothing about `copy_from`.
        let plan = run(&emu, dir.path(), "plan", &[]);
        assert!(
            !all_output(&plan).contains("copy_from"),
            "seed {seed}: {}",
            all_output(&plan)
        );
    }
}

/// A child `crmctl apply --backend microsoft` on the emulator, to be killed.
fn spawn_apply(emu: &EmulatorHandle, dir: &Path) -> std::process::Child {
    let log = std::fs::File::create(dir.join("apply.log")).unwrap();
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("crmctl"));
    c.current_dir(dir)
        .args([
            "apply",
            "--backend",
            "microsoft",
            "-f",
            "t.yaml",
            "--auto-approve",
        ])
        .env_remove("CRMCTL_BACKEND")
        .env_remove("CRMCTL_STATE")
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .env_remove("AZURE_CLIENT_CERTIFICATE_PATH")
        .env_remove("CRMCTL_CLOUD")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in emulator_env(emu) {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// The state and its journal as text (the pending handle is in one of them).
fn state_text(dir: &Path) -> String {
    let state = dir.join(".crmctl/state.json");
    let mut s = std::fs::read_to_string(&state).unwrap_or_default();
    s.push_str(
        &std::fs::read_to_string(crmctl::state::store::journal_path(&state)).unwrap_or_default(),
    );
    s
}

/// Wait until the state (or its journal) holds a pending `bap:` handle of an action of
/// `kind`, then `kill -9` the child.
fn kill_when_pending(child: &mut std::process::Child, dir: &Path, kind: &str) {
    let t0 = Instant::now();
    loop {
        let s = state_text(dir);
        if s.contains("\"bap:") && s.contains(&format!("\"{kind}\"")) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("apply.log")).unwrap_or_default();
            panic!("the apply ended ({status}) before a pending {kind}: {s}\n{log}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no pending {kind} handle: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());
}

fn force_unlock(emu: &EmulatorHandle, dir: &Path) {
    let state = dir.join(".crmctl/state.json");
    if let Some(info) = crmctl::state::lock::read_lock(&state).unwrap() {
        crmctl_on(emu, dir)
            .args(["force-unlock", &info.id])
            .assert()
            .success();
    }
}

// Issue 13 item 2 (provider boundary v2, I11): `kill -9` while a long-running create and
// then a copy are polled; the handle was in the state before the first poll, so each
// rerun resumes polling the same operation ("resuming: ..."), never starts a second create
// or copy, and converges in one recovery apply. The rerun after the first kill finds the
// instances the pending creates made (by URL name) and adopts them once those creates
// end; the copy onto the sandbox still happens (it used to be lost: adopted instances got
// no copy), and the copy resumed after the second kill is recorded.
#[test]
fn kill_9_during_create_and_during_copy_resumes_the_operation() {
    let (emu, provider) = start(
        tenant(25),
        Faults {
            lifecycle_duration: Duration::from_secs(4),
            copy_duration: Duration::from_secs(6),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), INSTANCES);

    let mut child = spawn_apply(&emu, dir.path());
    kill_when_pending(&mut child, dir.path(), "configure_instance");
    let creates = ops_of(&emu, "Create");
    assert!(creates >= 1, "{:?}", emu.lifecycle_operations());
    force_unlock(&emu, dir.path());

    // The rerun resumes the create(s); kill it again once the copy is pending.
    let mut child = spawn_apply(&emu, dir.path());
    kill_when_pending(&mut child, dir.path(), "copy_instance");
    assert_eq!(ops_of(&emu, "Copy"), 1, "{:?}", emu.lifecycle_operations());
    force_unlock(&emu, dir.path());

    let out = run(&emu, dir.path(), "apply", &[]);
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("resuming: copy_instance instances.test polls operation bap:"),
        "{text}"
    );
    assert!(
        !text.contains("accepted: copy_instance"),
        "copied again: {text}"
    );
    assert_eq!(
        ops_of(&emu, "Create"),
        2,
        "{:?}",
        emu.lifecycle_operations()
    );
    assert_eq!(ops_of(&emu, "Copy"), 1, "{:?}", emu.lifecycle_operations());
    assert_eq!(observe(&provider).instances.len(), 2);
    let state = crmctl::state::store::load(&dir.path().join(".crmctl/state.json"))
        .unwrap()
        .unwrap();
    assert!(state.pending.is_empty(), "{:?}", state.pending);
    // The copy is recorded as done (the next plan says nothing about `copy_from`).
    assert_eq!(
        state.resources["instances.test"].copied_from.as_deref(),
        Some("main")
    );
    let plan = run(&emu, dir.path(), "plan", &[]);
    assert!(
        !all_output(&plan).contains("copy_from"),
        "{}",
        all_output(&plan)
    );
    assert_replans_empty(&emu, dir.path());
}

/// The file of [`INSTANCES`] with 30 professional licences wanted: 5 more than the tenant
/// holds, and a second user who needs one of them.
fn needs_purchase() -> String {
    INSTANCES
        .replace("professional: 25", "professional: 30")
        .replace(
            "instances:\n",
            "  new@contoso.com:\n    name: New Hire\n    license: professional\ninstances:\n",
        )
}

fn buy(provider: &MemoryProvider, to: u32) {
    block_on(provider.execute(&Op::PurchaseLicenses {
        plan: LicensePlan::Professional,
        to,
    }))
    .unwrap()
    .unwrap();
}

// Issue 13 item 4 (T5: buying is its own step, no public API): the first apply does
// everything that does not depend on the purchase, stops before the manual step with its
// instructions and exit code 3; the test buys in the tenant; the second run goes on and
// converges.
#[test]
fn a_licence_purchase_is_applied_in_two_runs() {
    let (emu, provider) = start(tenant(25), Faults::default());
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &needs_purchase());
    let out = run(&emu, dir.path(), "apply", &[]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("manual step: purchase_licenses licenses.professional")
            && text.contains("Buy licenses"),
        "{text}"
    );
    // What does not depend on the purchase was done: the instances and the group.
    let t = observe(&provider);
    assert_eq!(t.instances.len(), 2, "{text}");
    assert_eq!(t.groups.len(), 1, "{text}");
    assert!(
        t.users
            .values()
            .all(|u| u.upn != "new@contoso.com" || u.license.is_none()),
        "{text}"
    );

    buy(&provider, 30);
    let out = run(&emu, dir.path(), "apply", &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    let t = observe(&provider);
    let new = t
        .users
        .values()
        .find(|u| u.upn == "new@contoso.com")
        .unwrap();
    assert_eq!(new.license, Some(LicensePlan::Professional));
    assert_eq!(ops_of(&emu, "Create"), 2);
    assert_replans_empty(&emu, dir.path());
}

// Issue 13 item 4: with `--wait-manual`, apply waits for the tenant to show the purchase
// (re-observing, never executing it) and one run converges; the test buys while it waits.
#[test]
fn wait_manual_goes_on_once_the_purchase_shows() {
    let (emu, provider) = start(tenant(25), Faults::default());
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &needs_purchase());
    let p = provider.clone();
    let buyer = std::thread::spawn(move || {
        // Buy once the apply has been waiting a moment (it created the instances first).
        let t0 = Instant::now();
        while observe(&p).instances.len() < 2 && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(2));
        buy(&p, 30);
    });
    let out = run(&emu, dir.path(), "apply", &["--wait-manual", "2m"]);
    buyer.join().unwrap();
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Buy licenses"), "the step was shown: {text}");
    let t = observe(&provider);
    assert_eq!(t.licenses[&LicensePlan::Professional], 30);
    let new = t
        .users
        .values()
        .find(|u| u.upn == "new@contoso.com")
        .unwrap();
    assert_eq!(new.license, Some(LicensePlan::Professional));
    assert_replans_empty(&emu, dir.path());
}

/// [`INSTANCES`] with the sandbox's currency changed (a reset, I3/I9) or the sandbox gone
/// (a delete, I8).
fn reset_file() -> String {
    INSTANCES.replacen(
        "    currency: EUR\n    language: 1033\n    copy_from: { instance: main, kind: minimal }\n",
        "    currency: GBP\n    language: 1033\n",
        1,
    )
}

fn delete_file() -> String {
    let i = INSTANCES.find("  test:\n").unwrap();
    INSTANCES[..i].to_string()
}

// Issue 13 item 3 (I8, I9): before a reset and before a delete, apply takes an on-demand
// backup of the instance through the Power Platform API, labelled with the plan and the
// action; the plan shows it, the apply summary prints its id and the state records it.
#[test]
fn reset_and_delete_take_a_backup_first() {
    let (emu, provider) = start(tenant(25), Faults::default());
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), INSTANCES);
    let out = run(&emu, dir.path(), "apply", &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(
        emu.backups().is_empty(),
        "a copy onto a new instance destroys nothing"
    );
    let test_id = observe(&provider)
        .instances
        .values()
        .find(|i| i.url == "contoso-test")
        .unwrap()
        .id
        .clone();

    for (file, kind, n) in [
        (reset_file(), "reset_instance", 1),
        (delete_file(), "delete_instance", 2),
    ] {
        write(dir.path(), &file);
        let plan = run(&emu, dir.path(), "plan", &[]);
        let text = all_output(&plan);
        assert!(text.contains("backup_instance"), "{kind}: {text}");
        let out = run(&emu, dir.path(), "apply", &["--allow-destroy"]);
        let text = all_output(&out);
        assert!(out.status.success(), "{kind}: {text}");
        let backups = emu.backups();
        assert_eq!(backups.len(), n, "{kind}: {backups:?}");
        let b = backups.last().unwrap();
        assert_eq!(b.environment, test_id);
        assert!(
            b.label.starts_with("crmctl plan ")
                && b.label
                    .ends_with(&format!("before {kind} of instances.test")),
            "{}",
            b.label
        );
        assert!(
            text.contains(&format!(
                "backup: instances.test taken before the next action, id {}",
                b.id
            )),
            "{kind}: {text}"
        );
        let state = crmctl::state::store::load(&dir.path().join(".crmctl/state.json"))
            .unwrap()
            .unwrap();
        let recorded = state.backups.last().unwrap();
        assert_eq!((&recorded.id, &recorded.label), (&b.id, &b.label));
        assert_eq!(recorded.instance, test_id);
    }
    let t = observe(&provider);
    assert_eq!(t.instances.len(), 1, "the sandbox was deleted");
    assert_eq!(ops_of(&emu, "Reset"), 1);
    assert_eq!(ops_of(&emu, "Delete"), 1);
    assert_replans_empty(&emu, dir.path());
}

// Issue 13 item 3: `--no-backup` takes none, and the plan says so on the destroying
// action (I9).
#[test]
fn no_backup_skips_it_and_the_plan_says_so() {
    let (emu, provider) = start(tenant(25), Faults::default());
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), INSTANCES);
    let out = run(&emu, dir.path(), "apply", &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    write(dir.path(), &reset_file());
    let plan = run(&emu, dir.path(), "plan", &["--no-backup"]);
    let text = all_output(&plan);
    assert!(!text.contains("backup_instance"), "{text}");
    assert!(
        text.contains("no backup of instances.test is taken before reset_instance (--no-backup)"),
        "{text}"
    );
    let out = run(
        &emu,
        dir.path(),
        "apply",
        &["--allow-destroy", "--no-backup"],
    );
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("backup: "), "{text}");
    assert!(emu.backups().is_empty(), "{:?}", emu.backups());
    assert_eq!(ops_of(&emu, "Reset"), 1);
    let t = observe(&provider);
    let test = t
        .instances
        .values()
        .find(|i| i.url == "contoso-test")
        .unwrap();
    assert_eq!(test.currency, "GBP");
    assert_replans_empty(&emu, dir.path());
}

/// The admin API client over crmctl's transport against `emu` (few, fast retries).
fn bap_http(emu: &EmulatorHandle) -> crmctl::provider::http::transport::Transport {
    use crmctl::provider::http::transport::TransportOptions;
    let env = emulator_env(emu);
    let opts = TransportOptions {
        max_attempts: 5,
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        ca_file: Some(emu.ca_file().to_path_buf()),
        ..TransportOptions::default()
    };
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    crmctl::provider::http::connect(
        crmctl::provider::http::cloud::Cloud::Public,
        DOMAIN,
        lookup,
        Some(opts),
    )
    .expect("transport")
}

/// An emulator over a tenant with `prod` (production) and `sb` (sandbox), both ready.
fn prod_and_sandbox(faults: Faults) -> (EmulatorHandle, Arc<MemoryProvider>) {
    use crmctl::domain::kinds::InstanceType;
    use crmctl::observed::InstanceStatus;
    let mut t = tenant(25);
    for (id, kind) in [
        ("prod", InstanceType::Production),
        ("sb", InstanceType::Sandbox),
    ] {
        t.instances.insert(
            id.into(),
            crate::common::instance(id, kind, InstanceStatus::Ready),
        );
    }
    start(t, faults)
}

/// A copy of `prod` onto `sb` (`kind`) and a reset of `sb` to GBP / 2057.
fn copy_and_reset(kind: crmctl::domain::kinds::CopyKind) -> [(&'static str, Op); 2] {
    use crmctl::domain::op::ObjRef;
    let obj = |id: &str| ObjRef {
        address: format!("instances.{id}").into(),
        id: Some(id.into()),
    };
    [
        (
            "Copy",
            Op::CopyInstance {
                source: obj("prod"),
                target: obj("sb"),
                kind,
            },
        ),
        (
            "Reset",
            Op::ResetInstance {
                instance: obj("sb"),
                currency: "GBP".into(),
                language: 2057,
            },
        ),
    ]
}

/// Start `op` through the admin API client; its handle.
fn start_op(
    http: &crmctl::provider::http::transport::Transport,
    op: &Op,
) -> crmctl::provider::OperationHandle {
    use crmctl::provider::powerplatform::environments as bap;
    match block_on(bap::execute(http, op)).unwrap() {
        Ok(Some(crmctl::provider::Executed::Accepted(h))) => h,
        other => panic!("{op:?}: {other:?}"),
    }
}

/// Poll `h` until it ends: `Ok` done, `Err(message)` failed.
fn poll_to_end(
    http: &crmctl::provider::http::transport::Transport,
    h: &crmctl::provider::OperationHandle,
) -> Result<(), String> {
    use crmctl::provider::powerplatform::environments as bap;
    use crmctl::provider::Polled;
    let t0 = Instant::now();
    loop {
        match block_on(bap::poll(http, h)).unwrap().unwrap() {
            Polled::Done(_) => return Ok(()),
            Polled::Failed(e) => return Err(e.to_string()),
            Polled::Running { .. } => {
                assert!(t0.elapsed() < Duration::from_secs(20), "never ended");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

// Issue 13 item 1 (I9, I11: a copy and a reset are not safe to send twice): every answer
// to a write is lost (after the service acted). The client reads the environment again,
// finds it busy with the operation its request started, and follows it until it is ready
// (a `ready:` handle) instead of failing as unknown or sending it again: one copy, one
// reset.
#[test]
fn a_lost_answer_to_a_copy_or_reset_follows_the_environment() {
    let (emu, provider) = prod_and_sandbox(Faults {
        drop_rate: 1.0,
        lifecycle_duration: Duration::from_millis(1500),
        ..Faults::default()
    });
    let http = bap_http(&emu);
    for (kind, op) in &copy_and_reset(crmctl::domain::kinds::CopyKind::Minimal) {
        let h = start_op(&http, op);
        assert!(h.id.contains("|ready:sb"), "{}", h.id);
        poll_to_end(&http, &h).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    assert_eq!(ops_of(&emu, "Copy"), 1, "{:?}", emu.lifecycle_operations());
    assert_eq!(ops_of(&emu, "Reset"), 1, "{:?}", emu.lifecycle_operations());
    let sb = observe(&provider).instances["sb"].clone();
    assert_eq!((sb.currency.as_str(), sb.language), ("GBP", 2057));
}

// Issue 13 item 1 (I9, I11): the answer to a copy or a reset is lost and the operation it
// started then fails (the emulator's `failing_operations`). Following the environment
// until it is ready is not enough: the environment's latest lifecycle operation of that
// type says Failed, and the poll reports the failure, never "done". Each request is sent
// once, and the tenant is left as it was.
#[test]
fn a_lost_answer_to_a_copy_or_reset_that_then_fails_is_reported_failed() {
    let (emu, provider) = prod_and_sandbox(Faults {
        drop_rate: 1.0,
        lifecycle_duration: Duration::from_millis(800),
        failing_operations: vec!["copy".into(), "RESET".into()],
        ..Faults::default()
    });
    let before = observe(&provider).instances["sb"].clone();
    let http = bap_http(&emu);
    for (kind, op) in &copy_and_reset(crmctl::domain::kinds::CopyKind::Full) {
        let h = start_op(&http, op);
        assert!(h.id.contains("|ready:sb|"), "{}", h.id);
        let failure = poll_to_end(&http, &h)
            .expect_err(&format!("{kind}: a failed operation was reported done"));
        assert!(failure.contains(kind), "{kind}: {failure}");
        assert!(
            failure.contains("left the environment unchanged"),
            "{failure}"
        );
        assert_eq!(ops_of(&emu, kind), 1, "{:?}", emu.lifecycle_operations());
    }
    let after = observe(&provider).instances["sb"].clone();
    assert_eq!(
        (after.currency.as_str(), after.language),
        (before.currency.as_str(), before.language)
    );
}

// Issue 13 item 1: the same failures with their answers delivered: polling the lifecycle
// operation the answer named reports Failed with the service's message.
#[test]
fn a_copy_that_fails_is_reported_failed() {
    let (emu, _provider) = prod_and_sandbox(Faults {
        lifecycle_duration: Duration::from_millis(300),
        failing_operations: vec!["Copy".into()],
        ..Faults::default()
    });
    let http = bap_http(&emu);
    let [(_, copy), _] = copy_and_reset(crmctl::domain::kinds::CopyKind::Minimal);
    let h = start_op(&http, &copy);
    assert!(!h.id.contains("ready:"), "{}", h.id);
    let failure = poll_to_end(&http, &h).expect_err("a failed copy was reported done");
    assert!(
        failure.contains("left the environment unchanged"),
        "{failure}"
    );
}

/// The desired file of the planner tests: `main` (production) and `test`, a sandbox
/// copied from it (I11).
fn copy_desired() -> crmctl::desired::model::Desired {
    crate::common::desired(
        "licenses: {professional: 25}
instances:
  main: {name: Main, url: main, type: production, region: NA, currency: USD, language: 1033}
  test:
    name: Test
    url: test
    type: sandbox
    region: NA
    currency: USD
    language: 1033
    copy_from: {instance: main, kind: full}
",
    )
}

fn pending(kind: crmctl::domain::op::ActionKind) -> crmctl::state::PendingOperation {
    crmctl::state::PendingOperation {
        kind,
        handle: crmctl::provider::OperationHandle {
            id: "bap:x|https://bap/lifecycleOperations/1".into(),
            retry_after: None,
        },
    }
}

// Issue 13 item 2 (I11), the planner's half: the instance a killed run's pending create
// made is adopted by URL name, and the copy `copy_from` asks for is still planned onto it
// (its id left to apply, after the adoption), neither destructive nor preceded by a
// backup. Without the pending create, an adopted instance gets no copy (a warning).
#[test]
fn a_pending_create_is_adopted_and_still_copied_onto() {
    use crmctl::domain::kinds::InstanceType;
    use crmctl::domain::op::{ActionKind, ObjKind};
    use crmctl::observed::InstanceStatus;

    let d = copy_desired();
    let mut t = crate::common::tenant("licenses: {professional: 25}");
    for (id, kind) in [
        ("main", InstanceType::Production),
        ("test", InstanceType::Sandbox),
    ] {
        t.instances.insert(
            id.into(),
            crate::common::instance(id, kind, InstanceStatus::Ready),
        );
    }
    let mut s = crate::common::state(&[("instances.main", ObjKind::Instance, "main", false)]);
    s.pending.insert(
        "instances.test".into(),
        pending(ActionKind::ConfigureInstance),
    );
    let plan = crmctl::plan::plan(&d, &t, &s);
    assert!(!plan.has_errors(), "{:?}", plan.diagnostics);
    let adopt = plan
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Adopt && &*a.address == "instances.test")
        .expect("adopted");
    let copy = plan
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::CopyInstance)
        .expect("still copied");
    assert!(copy.depends_on.contains(&adopt.id));
    let Op::CopyInstance { target, .. } = &*copy.op else {
        unreachable!()
    };
    assert_eq!(
        target.id, None,
        "resolved from the state after the adoption"
    );
    assert!(!plan.destructive_flags()[copy.id]);
    let with = crmctl::plan::backups::with_backups(plan.clone(), &s.pending);
    assert!(with
        .actions
        .iter()
        .all(|a| a.kind != ActionKind::BackupInstance));

    // Without a pending create: adopted, not copied onto (the field acts on creation).
    s.pending.clear();
    let plan = crmctl::plan::plan(&d, &t, &s);
    assert!(plan
        .actions
        .iter()
        .all(|a| a.kind != ActionKind::CopyInstance));
}

// Issue 13 item 2 (I11): a copy a killed run left pending is planned again (so apply polls
// it and records it), and it asks for neither `--allow-destroy` nor a backup; the same
// copy without a pending handle would be destructive.
#[test]
fn a_pending_copy_is_planned_again_and_resumed_without_allow_destroy() {
    use crmctl::domain::kinds::InstanceType;
    use crmctl::domain::op::{ActionKind, ObjKind};
    use crmctl::observed::InstanceStatus;

    let d = copy_desired();
    let mut t = crate::common::tenant("licenses: {professional: 25}");
    for (id, kind) in [
        ("main", InstanceType::Production),
        ("test", InstanceType::Sandbox),
    ] {
        t.instances.insert(
            id.into(),
            crate::common::instance(id, kind, InstanceStatus::Ready),
        );
    }
    let mut s = crate::common::state(&[
        ("instances.main", ObjKind::Instance, "main", false),
        ("instances.test", ObjKind::Instance, "test", false),
    ]);
    s.pending
        .insert("instances.test".into(), pending(ActionKind::CopyInstance));
    let plan = crmctl::plan::plan(&d, &t, &s);
    let copy = plan
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::CopyInstance)
        .expect("planned again");
    assert!(
        plan.destructive_flags()[copy.id],
        "a copy onto an existing instance"
    );
    assert!(!plan.destructive_flags_resuming(&s.pending)[copy.id]);
    crmctl::apply::preflight(&plan, false, &s.pending).expect("no --allow-destroy needed");
    assert!(crmctl::apply::preflight(&plan, false, &Default::default()).is_err());
    let with = crmctl::plan::backups::with_backups(plan, &s.pending);
    assert!(with
        .actions
        .iter()
        .all(|a| a.kind != ActionKind::BackupInstance));
}

// Issue 13 item 4 (I2, T5): a third instance needs a bought sandbox slot, a manual step;
// the first run stops at it (exit 3), the test buys the slot in the tenant, and the
// second run goes on: Graph's `subscribedSkus` shows the instance add-on the purchase made
// (src/provider/graph/skus.rs), so the step is seen done.
#[test]
fn a_slot_purchase_is_applied_in_two_runs() {
    let (emu, provider) = start(tenant(25), Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        "{INSTANCES}  qa:\n    name: Contoso QA\n    url: contoso-qa\n    type: sandbox\n    region: EMEA\n    currency: EUR\n    language: 1033\n"
    );
    write(dir.path(), &file);
    let out = run(&emu, dir.path(), "apply", &[]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("manual step: purchase_instance"), "{text}");
    block_on(provider.execute(&Op::PurchaseInstance {
        kind: crmctl::domain::kinds::InstanceType::Sandbox,
    }))
    .unwrap()
    .unwrap();
    let out = run(&emu, dir.path(), "apply", &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    assert_eq!(observe(&provider).instances.len(), 3);
    assert_replans_empty(&emu, dir.path());
}
