//! Application users (P3) on `--backend microsoft` against the emulator: each instance's
//! Dataverse system user bound to an app registration by `applicationid`, never a
//! directory user; the file's `application_id` (validated, required by the microsoft
//! backend's plan, optional for the local tenant).

use std::path::Path;
use std::time::Duration;

use crmctl::desired::validate::validate;
use crmctl::domain::kinds::{AccessMode, InstanceType, LicensePlan};
use crmctl::domain::op::Op;
use crmctl::emulator::{Emulator, EmulatorConfig, EmulatorHandle, Faults};
use crmctl::observed::Tenant;
use crmctl::provider::{block_on, Provider, Scope};

use crate::emulator::{crmctl_on, CLIENT, SECRET};

const DOMAIN: &str = "fabrikam.onmicrosoft.com";
const APP: &str = "8F3C2A1E-5B7D-4C9A-A2E1-3D4F5A6B7C8D";

/// Two instances (the included production one and a bought sandbox) and one application
/// user with roles in both; `extra` is added under the user.
fn file(extra: &str) -> String {
    format!(
        "\
tenant: {DOMAIN}
licenses:
  professional: 1
instances:
  ops:
    name: Fabrikam Ops
    url: fabrikamops
    type: production
    currency: EUR
  lab:
    name: Fabrikam Lab
    url: fabrikamlab
    type: sandbox
    currency: EUR
users:
  bot@fabrikam.com:
    name: Integration bot
    access_mode: application
{extra}    roles:
      ops: [Basic User]
      lab: [System Customizer, Basic User]
"
    )
}

/// The emulator of a fresh tenant with a professional licence and a sandbox slot bought,
/// `drop_rate` of the write answers dropped (after the change was made), 5% 429 and 5%
/// 5xx.
fn start(seed: u64, drop_rate: f64) -> (EmulatorHandle, std::sync::Arc<dyn Provider>) {
    let mut cfg = EmulatorConfig::new(Tenant::fresh(DOMAIN), DOMAIN, CLIENT, SECRET);
    cfg.faults = Faults {
        seed,
        throttle_rate: 0.05,
        server_error_rate: 0.05,
        drop_rate,
        retry_after_secs: 0,
        lifecycle_duration: Duration::from_millis(200),
        ..Faults::default()
    };
    let provider = cfg.provider.clone();
    for op in [
        Op::PurchaseLicenses {
            plan: LicensePlan::Professional,
            to: 1,
        },
        Op::PurchaseInstance {
            kind: InstanceType::Sandbox,
        },
    ] {
        block_on(provider.execute(&op)).unwrap().unwrap();
    }
    (Emulator::start(cfg).expect("emulator starts"), provider)
}

fn run(emu: &EmulatorHandle, dir: &Path, args: &[&str]) -> std::process::Output {
    crmctl_on(emu, dir)
        .args(args)
        .args(["--backend", "microsoft", "-f", "app.yaml"])
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tenant_of(provider: &dyn Provider) -> Tenant {
    block_on(provider.observe(&Scope::all())).unwrap().unwrap()
}

// P3 on --backend microsoft: the application user is created through each instance's
// Dataverse (the emulator's tenant records it with the file's application id, which only
// the Dataverse create carries: Graph creates no application users and refuses one), with
// its roles in both instances; the next plan shows no changes. Removed from the file, it is
// deactivated in every instance (the emulator's tenant keeps no deactivated users), and the
// plan after that shows no changes either. Answers to writes are dropped now and then: a
// lost create is looked up by application id, never sent twice (one user, not two).
#[test]
fn application_user_is_created_in_each_instance_with_its_roles_and_never_in_graph() {
    let (emu, provider) = start(31, 0.1);
    let dir = tempfile::tempdir().unwrap();
    let app_line = format!("    application_id: {APP}\n");
    std::fs::write(dir.path().join("app.yaml"), file(&app_line)).unwrap();
    let out = run(&emu, dir.path(), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "apply: {}", text(&out));
    let t = tenant_of(&*provider);
    let users: Vec<_> = t.users.values().collect();
    assert_eq!(users.len(), 1, "one user, created once: {users:#?}");
    let bot = users[0];
    assert_eq!(bot.upn, "bot@fabrikam.com");
    assert_eq!(bot.access_mode, AccessMode::Application);
    assert_eq!(bot.license, None, "never licensed (P3)");
    assert_eq!(
        bot.application_id.as_deref(),
        Some(APP.to_ascii_lowercase().as_str()),
        "created by the Dataverse create, bound to the file's app registration"
    );
    assert_eq!(bot.name, "Integration bot");
    let by_url = |url: &str| {
        t.instances
            .values()
            .find(|i| i.url == url)
            .map(|i| i.id.clone())
            .unwrap()
    };
    let roles = |url: &str| {
        bot.roles
            .get(&by_url(url))
            .map(|r| r.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(roles("fabrikamops"), ["Basic User"]);
    assert_eq!(roles("fabrikamlab"), ["Basic User", "System Customizer"]);
    let replan = run(&emu, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(replan.status.code(), Some(0), "replan: {}", text(&replan));

    // Removed from the file (the instances stay): deactivated in every instance, then no
    // change.
    let without = file("").split("users:").next().unwrap().to_string();
    std::fs::write(dir.path().join("app.yaml"), without).unwrap();
    let out = run(
        &emu,
        dir.path(),
        &["apply", "--auto-approve", "--allow-destroy"],
    );
    assert!(out.status.success(), "removal: {}", text(&out));
    let after = tenant_of(&*provider);
    assert!(after.users.is_empty(), "deactivated: {:#?}", after.users);
    assert_eq!(after.instances.len(), 2, "the instances stay");
    let replan = run(&emu, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(replan.status.code(), Some(0), "replan: {}", text(&replan));
}

// P3: without `application_id` the microsoft backend refuses in the plan, naming the user
// and what to add, and nothing is applied; the local tenant plans the same file.
#[test]
fn application_user_without_application_id_is_a_plan_error_on_microsoft_only() {
    let (emu, provider) = start(32, 0.0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), file("")).unwrap();
    let out = run(&emu, dir.path(), &["apply", "--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "refused: {all}");
    assert!(
        all.contains("users.bot@fabrikam.com")
            && all.contains("P3")
            && all.contains("application_id")
            && all.contains("app.yaml:"),
        "located, with the field to add: {all}"
    );
    let t = tenant_of(&*provider);
    assert!(
        t.users.is_empty() && t.instances.is_empty(),
        "nothing applied"
    );
    // The local tenant needs no application id.
    let out = crate::support::crmctl(dir.path())
        .args(["plan", "-f", "app.yaml", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "local plan: {}", text(&out));
}

// P3 on --backend microsoft: an application user is no directory user, so a security
// group cannot list it as a member: a plan error at the member's line.
#[test]
fn application_user_as_group_member_is_a_plan_error_on_microsoft() {
    let (emu, _provider) = start(33, 0.0);
    let dir = tempfile::tempdir().unwrap();
    let text_file = format!(
        "{}security_groups:\n  ops:\n    members: [bot@fabrikam.com]\n",
        file(&format!("    application_id: {APP}\n"))
    );
    std::fs::write(dir.path().join("app.yaml"), text_file).unwrap();
    let out = run(&emu, dir.path(), &["plan"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "refused: {all}");
    assert!(
        all.contains("security_groups.ops.members[0]") && all.contains("no directory user"),
        "{all}"
    );
}

// P3: one application user per app registration; the id is a GUID, and only application
// users have one (validation, with hints).
#[test]
fn application_ids_are_validated() {
    let parse = |s: &str| crmctl::desired::load::load_str("a.yaml", s.to_string());
    let two = format!(
        "tenant: {DOMAIN}\nusers:\n  a@fabrikam.com:\n    access_mode: application\n    application_id: {APP}\n  b@fabrikam.com:\n    access_mode: application\n    application_id: {}\n",
        APP.to_ascii_lowercase()
    );
    let err = parse(&two).unwrap_err();
    let d = err
        .diagnostics
        .iter()
        .find(|d| d.rule.as_deref() == Some("P3"))
        .expect("a P3 error");
    assert_eq!(
        d.address.as_deref(),
        Some("users.b@fabrikam.com.application_id")
    );
    assert!(d.hint.is_some() && d.location.as_ref().map(|l| l.line) == Some(8));
    // Fixed: each its own app registration.
    let ok = two.replace(
        &APP.to_ascii_lowercase(),
        "11111111-2222-3333-4444-555555555555",
    );
    let loaded = parse(&ok).expect("valid");
    assert!(validate(&loaded.desired)
        .iter()
        .all(|d| d.rule.as_deref() != Some("P3")));
}
