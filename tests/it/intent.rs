//! Write-ahead intent of an instance create with a copy to follow (I11, issue 13 item 2):
//! apply records that it is creating the address before it sends the create, so a run that
//! dies after the request left but before its handle or id reached the state (here: the
//! answer is lost, the process gives up) leaves the intent, and the next plan still copies
//! onto the instance it finds by URL name instead of only adopting it with a warning.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crmctl::apply::{self, ApplyOptions};
use crmctl::domain::kinds::LicensePlan;
use crmctl::domain::op::{ActionKind, Op};
use crmctl::observed::Tenant;
use crmctl::plan::action::Plan;
use crmctl::provider::memory::MemoryProvider;
use crmctl::provider::{
    BoxFuture, Executed, OperationHandle, Polled, Provider, ProviderError, Scope,
};
use crmctl::state::State;

const DESIRED: &str = "tenant: contoso.onmicrosoft.com
licenses:
  professional: 25
instances:
  main: {name: Contoso, url: contoso, type: production, region: EMEA, currency: EUR, language: 1033}
  test:
    name: Contoso Test
    url: contoso-test
    type: sandbox
    region: EMEA
    currency: EUR
    language: 1033
    copy_from: { instance: main, kind: minimal }
";

/// The in-memory tenant; while `lose_create` is set, an instance create is carried out and
/// its answer lost (what `kill -9` right after the request leaves: the instance exists, the
/// state does not know it).
struct Lossy {
    inner: MemoryProvider,
    lose_create: bool,
    creates: AtomicUsize,
    copies: AtomicUsize,
}

impl Provider for Lossy {
    fn observe<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Tenant, ProviderError>> {
        Provider::observe(&self.inner, scope)
    }

    fn execute<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Result<Executed, ProviderError>> {
        Box::pin(async move {
            match op.kind() {
                ActionKind::ConfigureInstance => {
                    self.creates.fetch_add(1, Ordering::SeqCst);
                }
                ActionKind::CopyInstance => {
                    self.copies.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
            let out = Provider::execute(&self.inner, op).await;
            if self.lose_create && op.kind() == ActionKind::ConfigureInstance {
                assert!(out.is_ok(), "{out:?}");
                return Err(ProviderError::Backend("process killed".into()));
            }
            out
        })
    }

    fn poll<'a>(
        &'a self,
        handle: &'a OperationHandle,
    ) -> BoxFuture<'a, Result<Polled, ProviderError>> {
        Provider::poll(&self.inner, handle)
    }
}

fn tenant() -> Tenant {
    let mut t = Tenant::fresh("contoso.onmicrosoft.com");
    t.licenses.insert(LicensePlan::Professional, 25);
    t
}

fn plan(p: &Lossy, state: &State) -> Plan {
    let desired = crmctl::desired::load::from_yaml(DESIRED).unwrap();
    let plan = crmctl::plan::plan(&desired, &p.inner.observe_now().unwrap(), state);
    assert!(!plan.has_errors(), "{:?}", plan.diagnostics);
    plan
}

/// Apply; every saved state, with the creates sent before that save.
async fn run(plan: &Plan, p: &Lossy, state: &mut State) -> Vec<(State, usize)> {
    let saves = Mutex::new(Vec::new());
    let mut save = |s: &State, _: &[crmctl::state::store::StateChange]| {
        let sent = p.creates.load(Ordering::SeqCst);
        saves.lock().unwrap().push((s.clone(), sent));
        Ok(())
    };
    let _ = apply::apply_async(plan, p, state, &mut save, &ApplyOptions::default(), &|_| {})
        .await
        .unwrap();
    saves.into_inner().unwrap()
}

fn copies_onto_test(plan: &Plan) -> Vec<usize> {
    plan.actions
        .iter()
        .filter(|a| a.kind == ActionKind::CopyInstance && a.address == "instances.test")
        .map(|a| a.id)
        .collect()
}

// I11: the copy of a sandbox whose create's answer was lost is planned again onto the
// instance found by URL name, without --allow-destroy or a backup, and done once.
#[tokio::test]
async fn a_create_killed_before_its_id_was_saved_still_gets_its_copy() {
    let mut p = Lossy {
        inner: MemoryProvider::new(tenant()),
        lose_create: true,
        creates: AtomicUsize::new(0),
        copies: AtomicUsize::new(0),
    };
    let mut state = State::empty("intent");
    let first = plan(&p, &state);
    assert_eq!(copies_onto_test(&first).len(), 1);
    let saves = run(&first, &p, &mut state).await;
    // The intent reached the state before any create was sent.
    let (intent_save, sent) = saves
        .iter()
        .find(|(s, _)| s.creating.contains("instances.test"))
        .expect("no save recorded the intent");
    assert_eq!(*sent, 0, "the intent was saved after a create was sent");
    assert!(!intent_save.resources.contains_key("instances.test"));
    // The killed run: both instances exist, the state knows neither, the copy never ran.
    assert_eq!(p.inner.observe_now().unwrap().instances.len(), 2);
    assert_eq!(p.copies.load(Ordering::SeqCst), 0);
    assert!(!state.resources.contains_key("instances.test"));
    assert!(state.creating.contains("instances.test"), "{state:?}");

    // Without the intent the rerun would only adopt `test` and warn (the hole this closes).
    let mut forgetful = state.clone();
    forgetful.creating.clear();
    let blind = plan(&p, &forgetful);
    assert!(copies_onto_test(&blind).is_empty());
    assert!(
        blind
            .diagnostics
            .iter()
            .any(|d| d.address.as_deref() == Some("instances.test.copy_from")),
        "{:?}",
        blind.diagnostics
    );

    // With it: the copy is planned onto the adopted instance, not destructive.
    p.lose_create = false;
    let second = plan(&p, &state);
    let copies = copies_onto_test(&second);
    assert_eq!(copies.len(), 1, "{:#?}", second.actions);
    assert!(second
        .actions
        .iter()
        .any(|a| a.kind == ActionKind::Adopt && a.address == "instances.test"));
    let flags = second.destructive_flags_resuming(&state.pending);
    assert!(
        !flags[copies[0]],
        "the resumed copy asks for --allow-destroy"
    );
    assert!(!second
        .diagnostics
        .iter()
        .any(|d| d.address.as_deref() == Some("instances.test.copy_from")));

    run(&second, &p, &mut state).await;
    assert_eq!(p.copies.load(Ordering::SeqCst), 1);
    assert_eq!(p.inner.observe_now().unwrap().instances.len(), 2);
    assert!(state.creating.is_empty(), "{:?}", state.creating);
    assert_eq!(
        state.resources["instances.test"].copied_from.as_deref(),
        Some("main")
    );
    // Converged: nothing more to copy, nothing to say about `copy_from`.
    let third = plan(&p, &state);
    assert!(copies_onto_test(&third).is_empty());
    assert!(!third
        .diagnostics
        .iter()
        .any(|d| d.address.as_deref() == Some("instances.test.copy_from")));
}

// I11 through the command line on the local backend: `CRMCTL_LOCAL_EXIT_AFTER=N` aborts the
// process right after the Nth tenant write commits, before crmctl learns the created id.
// At the crash point of the sandbox's create, the state holds the intent and not the
// instance; one plain rerun copies onto it (no --allow-destroy), and converges.
#[test]
fn an_apply_aborted_right_after_the_sandbox_create_still_copies_on_rerun() {
    use crate::support::{assert_no_changes, crmctl, observe};
    // The state with its journal replayed (what the next run reads).
    let state_json = |dir: &std::path::Path| {
        crmctl::state::store::load(&dir.join(".crmctl/state.json"))
            .unwrap()
            .unwrap()
    };
    let mut found = false;
    for at in 1..=8 {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.yaml");
        std::fs::write(&file, DESIRED).unwrap();
        let out = crmctl(dir.path())
            .args(["apply", "--auto-approve", "-f"])
            .arg(&file)
            .env("CRMCTL_LOCAL_EXIT_AFTER", at.to_string())
            .output()
            .unwrap();
        if out.status.success() || !dir.path().join(".crmctl/state.json").exists() {
            continue;
        }
        let state = state_json(dir.path());
        let made = observe(dir.path())
            .instances
            .values()
            .any(|i| i.url == "contoso-test");
        if !(made && state.creating.contains("instances.test")) {
            continue;
        }
        found = true;
        assert!(!state.resources.contains_key("instances.test"), "at {at}");
        let path = dir.path().join(".crmctl/state.json");
        if let Some(info) = crmctl::state::lock::read_lock(&path).unwrap() {
            crmctl(dir.path())
                .args(["force-unlock", &info.id])
                .assert()
                .success();
        }
        let out = crmctl(dir.path())
            .args(["apply", "--auto-approve", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "at {at}: {text}");
        let state = state_json(dir.path());
        assert!(state.creating.is_empty(), "at {at}: {:?}", state.creating);
        assert_eq!(
            state.resources["instances.test"].copied_from.as_deref(),
            Some("main"),
            "at {at}: {text}"
        );
        assert_eq!(observe(dir.path()).instances.len(), 2, "at {at}");
        assert_no_changes(dir.path(), &file);
    }
    assert!(
        found,
        "no crash point left the sandbox made and its intent recorded"
    );
}
