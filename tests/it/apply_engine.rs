//! The apply engine on hand-built plans: dependency order, concurrency, partial failure,
//! destroy gating, state bookkeeping.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crmctl::apply::{self, ActionOutcome, ApplyError, ApplyOptions};
use crmctl::diag::Diagnostic;
use crmctl::domain::kinds::{AccessMode, LicensePlan};
use crmctl::domain::op::{ActionKind, ObjKind, ObjRef, Op};
use crmctl::observed::Tenant;
use crmctl::plan::action::{Action, Plan};
use crmctl::provider::local::LocalProvider;
use crmctl::provider::{
    BoxFuture, Executed, Outcome, Provider, ProviderError, RequestFamily, Scope,
};
use crmctl::state::State;

use crate::common::{
    action as act, by_address as aref, local_seeded as seeded, plan_of as plan, state, DOMAIN,
};

fn tag(i: usize) -> Op {
    Op::Adopt {
        kind: ObjKind::User,
        id: format!("t{i}"),
        from: None,
    }
}

/// Records when each tagged op starts and ends; sleeps a little in between.
struct Recorder {
    log: Mutex<BTreeMap<String, (Instant, Instant)>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    calls: AtomicUsize,
    fail: Option<String>,
    batch: usize,
    batches: Mutex<Vec<usize>>,
}

impl Recorder {
    fn new(fail: Option<&str>) -> Recorder {
        Recorder {
            log: Mutex::new(BTreeMap::new()),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            fail: fail.map(str::to_string),
            batch: 1,
            batches: Mutex::new(Vec::new()),
        }
    }
}

impl Recorder {
    /// One op: sleeps 15 ms (async, as a request does), so that concurrent ones overlap.
    async fn run_op(&self, op: &Op) -> Result<Executed, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let Op::Adopt { id, .. } = op else {
            panic!("unexpected op {op:?}")
        };
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(15)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap()
            .insert(id.clone(), (start, Instant::now()));
        if self.fail.as_deref() == Some(id.as_str()) {
            return Err(ProviderError::refused("T3", "injected"));
        }
        Ok(Executed::Done(Outcome::default()))
    }
}

impl Provider for Recorder {
    fn observe<'a>(&'a self, _: &'a Scope) -> BoxFuture<'a, Result<Tenant, ProviderError>> {
        Box::pin(async { Ok(Tenant::fresh("coho.onmicrosoft.com")) })
    }
    fn execute<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Result<Executed, ProviderError>> {
        Box::pin(self.run_op(op))
    }
    fn execute_batch<'a>(
        &'a self,
        ops: &'a [Op],
    ) -> BoxFuture<'a, Vec<Result<Executed, ProviderError>>> {
        self.batches.lock().unwrap().push(ops.len());
        Box::pin(async move {
            let mut out = Vec::new();
            for op in ops {
                out.push(self.run_op(op).await);
            }
            out
        })
    }
    fn family(&self, _: &Op) -> RequestFamily {
        RequestFamily {
            name: "recorder",
            max_ops: self.batch,
        }
    }
}

fn run(
    plan: &Plan,
    provider: &dyn Provider,
    state: &mut State,
    opts: &ApplyOptions,
) -> (
    Result<apply::ApplyReport, ApplyError>,
    Vec<State>,
    Vec<String>,
) {
    let mut saves = Vec::new();
    let lines = Mutex::new(Vec::new());
    let result = {
        let mut save = |s: &State, _: &[crmctl::state::store::StateChange]| {
            saves.push(s.clone());
            Ok(())
        };
        let progress = |e: &apply::ProgressEvent<'_>| lines.lock().unwrap().push(e.line());
        apply::apply(plan, provider, state, &mut save, opts, &progress)
    };
    (result, saves, lines.into_inner().unwrap())
}

/// 0..8 independent; 8 waits for 0 and 1; 9 waits for 8; 10 waits for 9 and 7.
fn graph_plan() -> Plan {
    let mut actions: Vec<Action> = (0..8)
        .map(|i| {
            act(
                i,
                ActionKind::Adopt,
                &format!("users.u{i}@coho.com"),
                &[],
                tag(i),
            )
        })
        .collect();
    actions.push(act(
        8,
        ActionKind::Adopt,
        "users.u8@coho.com",
        &[0, 1],
        tag(8),
    ));
    actions.push(act(9, ActionKind::Adopt, "users.u9@coho.com", &[8], tag(9)));
    actions.push(act(
        10,
        ActionKind::Adopt,
        "users.u10@coho.com",
        &[9, 7],
        tag(10),
    ));
    plan(actions)
}

#[test]
fn actions_start_only_after_their_dependencies_and_run_concurrently() {
    let p = graph_plan();
    let rec = Recorder::new(None);
    let mut state = State::empty("lin");
    let opts = ApplyOptions {
        parallelism: 4,
        ..ApplyOptions::default()
    };
    let (report, saves, lines) = run(&p, &rec, &mut state, &opts);
    let report = report.unwrap();
    assert!(report.success());
    assert_eq!(report.done().len(), 11);
    let log = rec.log.lock().unwrap();
    for a in &p.actions {
        let (start, _) = log[&format!("t{}", a.id)];
        for d in &a.depends_on {
            let (_, end) = log[&format!("t{d}")];
            assert!(
                start >= end,
                "action {} started before its dependency {d} ended",
                a.id
            );
        }
    }
    let max = rec.max_running.load(Ordering::SeqCst);
    assert!(max <= 4, "parallelism 4 exceeded: {max}");
    assert!(max >= 2, "independent actions never ran concurrently");
    // Adopt records ids under the action's address; one save per batch, serial bumped each.
    assert_eq!(state.id_of("users.u10@coho.com"), Some("t10"));
    assert_eq!(state.serial as usize, saves.len());
    assert_eq!(lines.len(), 11);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[11/11] adopt users.") && l.ends_with("... done")),
        "{lines:?}"
    );
}

#[test]
fn batches_hold_only_ready_actions_and_respect_dependencies() {
    let p = graph_plan();
    let mut rec = Recorder::new(Some("t9"));
    rec.batch = 3;
    let mut state = State::empty("lin");
    let opts = ApplyOptions {
        parallelism: 2,
        ..ApplyOptions::default()
    };
    let report = run(&p, &rec, &mut state, &opts).0.unwrap();
    let batches = rec.batches.lock().unwrap().clone();
    assert!(batches.iter().all(|b| *b <= 3), "{batches:?}");
    assert!(
        batches.contains(&3),
        "ready actions were batched: {batches:?}"
    );
    let log = rec.log.lock().unwrap();
    for a in &p.actions {
        let Some((start, _)) = log.get(&format!("t{}", a.id)) else {
            continue;
        };
        for d in &a.depends_on {
            let (_, end) = log[&format!("t{d}")];
            assert!(
                *start >= end,
                "action {} started before its dependency {d} ended",
                a.id
            );
        }
    }
    // Per-op outcomes survive batching: t9 failed alone, t10 skipped.
    assert_eq!(report.failed(), vec![9]);
    assert_eq!(report.skipped(), vec![10]);
    assert_eq!(report.done().len(), 9);
}

#[test]
fn parallelism_one_runs_in_plan_order() {
    let p = graph_plan();
    let rec = Recorder::new(None);
    let mut state = State::empty("lin");
    let opts = ApplyOptions {
        parallelism: 1,
        ..ApplyOptions::default()
    };
    run(&p, &rec, &mut state, &opts).0.unwrap();
    assert_eq!(rec.max_running.load(Ordering::SeqCst), 1);
    let log = rec.log.lock().unwrap();
    let mut by_start: Vec<(Instant, usize)> =
        (0..11).map(|i| (log[&format!("t{i}")].0, i)).collect();
    by_start.sort();
    assert_eq!(
        by_start.iter().map(|x| x.1).collect::<Vec<_>>(),
        (0..11).collect::<Vec<_>>()
    );
}

#[test]
fn a_failure_skips_its_dependents_transitively_and_the_rest_continues() {
    let p = graph_plan();
    let rec = Recorder::new(Some("t8"));
    let mut state = State::empty("lin");
    let (report, _, lines) = run(&p, &rec, &mut state, &ApplyOptions::default());
    let report = report.unwrap();
    assert!(!report.success());
    assert_eq!(report.failed(), vec![8]);
    assert_eq!(report.skipped(), vec![9, 10]);
    assert_eq!(report.done(), (0..8).collect::<Vec<_>>());
    assert!(matches!(
        &report.outcomes[&9],
        ActionOutcome::Skipped { because_of: 8 }
    ));
    assert!(
        matches!(&report.outcomes[&8], ActionOutcome::Failed(ProviderError::Refused { rule, .. }) if rule == "T3")
    );
    // Skipped actions never reached the provider.
    assert_eq!(rec.calls.load(Ordering::SeqCst), 9);
    assert!(state.id_of("users.u9@coho.com").is_none());
    assert_eq!(state.id_of("users.u7@coho.com"), Some("t7"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("FAILED") && l.contains("(T3)")),
        "{lines:?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("skipped (depends on failed action 8)")));
}

#[test]
fn destructive_actions_need_allow_destroy_and_nothing_runs_without_it() {
    let p = plan(vec![
        act(0, ActionKind::Adopt, "users.a@coho.com", &[], tag(0)),
        act(
            1,
            ActionKind::DeleteUser,
            "users.b@coho.com",
            &[],
            Op::DeleteUser {
                user: aref("users.b@coho.com"),
            },
        ),
    ]);
    let rec = Recorder::new(None);
    let mut state = State::empty("lin");
    let (result, saves, _) = run(&p, &rec, &mut state, &ApplyOptions::default());
    match result {
        Err(ApplyError::DestroyNotAllowed(held)) => {
            assert_eq!(held.len(), 1);
            assert_eq!(held[0].address, "users.b@coho.com");
            assert_eq!(held[0].kind, "delete_user");
        }
        other => panic!("expected DestroyNotAllowed, got {other:?}"),
    }
    assert_eq!(rec.calls.load(Ordering::SeqCst), 0);
    assert!(saves.is_empty());
    assert_eq!(state, State::empty("lin"));
}

#[test]
fn plans_with_errors_or_cycles_are_refused() {
    let mut p = graph_plan();
    p.diagnostics
        .push(Diagnostic::error("instances.x", "bad").rule("I3"));
    let rec = Recorder::new(None);
    let mut state = State::empty("lin");
    assert!(matches!(
        run(&p, &rec, &mut state, &ApplyOptions::default()).0,
        Err(ApplyError::PlanHasErrors(1))
    ));
    let mut p = graph_plan();
    p.actions[0].depends_on = vec![10];
    assert!(
        matches!(run(&p, &rec, &mut state, &ApplyOptions::default()).0, Err(ApplyError::InvalidPlan(m)) if m.contains("cycle"))
    );
    assert_eq!(rec.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn an_empty_plan_does_not_bump_the_serial() {
    let p = plan(vec![]);
    let rec = Recorder::new(None);
    let mut state = State::empty("lin");
    state.serial = 7;
    let (report, saves, _) = run(&p, &rec, &mut state, &ApplyOptions::default());
    assert!(report.unwrap().success());
    assert!(saves.is_empty());
    assert_eq!(state.serial, 7);
}

/// A real plan on the local provider: create, then reference by address.
fn user_plan(n: usize, failing_license: Option<usize>) -> Plan {
    let mut actions = vec![
        act(
            0,
            ActionKind::PurchaseLicenses,
            "licenses.professional",
            &[],
            Op::PurchaseLicenses {
                plan: LicensePlan::Professional,
                to: n as u32,
            },
        ),
        act(
            1,
            ActionKind::CreateGroup,
            "security_groups.sales",
            &[],
            Op::CreateGroup {
                name: "Sales".into(),
                description: String::new(),
            },
        ),
    ];
    let mut members = vec![];
    for i in 0..n {
        let addr = format!("users.u{i}@coho.com");
        let c = actions.len();
        actions.push(act(
            c,
            ActionKind::CreateUser,
            &addr,
            &[],
            Op::CreateUser {
                upn: format!("u{i}@coho.com"),
                name: format!("U{i}"),
                access_mode: AccessMode::ReadWrite,
                usage_location: None,
                application_id: None,
            },
        ));
        let plan_kind = if Some(i) == failing_license {
            LicensePlan::Enterprise
        } else {
            LicensePlan::Professional
        };
        let l = actions.len();
        actions.push(act(
            l,
            ActionKind::AssignLicense,
            &addr,
            &[0, c],
            Op::AssignLicense {
                user: aref(&addr),
                plan: plan_kind,
            },
        ));
        members.push((c, aref(&addr)));
    }
    let mut deps: Vec<usize> = members.iter().map(|m| m.0).collect();
    deps.push(1);
    let id = actions.len();
    actions.push(act(
        id,
        ActionKind::AddGroupMembers,
        "security_groups.sales",
        &deps,
        Op::AddGroupMembers {
            group: aref("security_groups.sales"),
            users: members.into_iter().map(|m| m.1).collect(),
        },
    ));
    plan(actions)
}

#[test]
fn local_apply_fills_ids_from_created_objects_and_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalProvider::open(&dir.path().join("tenant.db")).unwrap();
    let mut state = State::empty("lin");
    let (report, saves, _) = run(
        &user_plan(20, None),
        &p,
        &mut state,
        &ApplyOptions::default(),
    );
    assert!(report.unwrap().success());
    let t = p.observe().unwrap();
    assert_eq!(t.users.len(), 20);
    assert_eq!(t.assigned(LicensePlan::Professional), 20);
    let gid = state.id_of("security_groups.sales").unwrap();
    assert_eq!(t.groups[gid].members.len(), 20);
    for i in 0..20 {
        let id = state.id_of(&format!("users.u{i}@coho.com")).unwrap();
        assert_eq!(t.users[id].upn, format!("u{i}@coho.com"));
    }
    assert_eq!(saves.last().unwrap(), &state);
    assert_eq!(state.tenant, "coho.onmicrosoft.com");
}

#[test]
fn partial_failure_on_the_local_tenant_leaves_a_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalProvider::open(&dir.path().join("tenant.db")).unwrap();
    let mut state = State::empty("lin");
    let plan = user_plan(5, Some(2));
    let (report, _, _) = run(&plan, &p, &mut state, &ApplyOptions::default());
    let report = report.unwrap();
    // u2's license is refused (no enterprise licenses, T3); the membership of all users
    // does not depend on it and is done.
    let failed = report.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(plan.actions[failed[0]].address, "users.u2@coho.com");
    assert!(
        matches!(&report.outcomes[&failed[0]], ActionOutcome::Failed(ProviderError::Refused { rule, .. }) if rule == "T3")
    );
    assert_eq!(report.done().len(), plan.actions.len() - 1);
    // Every object the tenant has is in the state, and vice versa.
    let t = p.observe().unwrap();
    for (addr, res) in &state.resources {
        let exists = match res.kind {
            ObjKind::User => t.users.contains_key(&res.id),
            ObjKind::Group => t.groups.contains_key(&res.id),
            ObjKind::Instance => t.instances.contains_key(&res.id),
        };
        assert!(exists, "{addr} -> {} is not in the tenant", res.id);
    }
    assert_eq!(state.resources.len(), t.users.len() + t.groups.len());
}

#[test]
fn protect_flags_are_recorded_for_instances() {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalProvider::open(&dir.path().join("tenant.db")).unwrap();
    let configure = Op::ConfigureInstance {
        name: "Sales".into(),
        url: "sales".into(),
        kind: crmctl::domain::kinds::InstanceType::Production,
        purpose: String::new(),
        region: crmctl::domain::kinds::Region::NA,
        currency: "USD".into(),
        language: 1033,
        security_group: None,
    };
    let pl = plan(vec![act(
        0,
        ActionKind::ConfigureInstance,
        "instances.sales",
        &[],
        configure,
    )]);
    let mut state = State::empty("lin");
    let opts = ApplyOptions {
        protect: BTreeMap::from([("instances.sales".to_string(), true)]),
        ..ApplyOptions::default()
    };
    run(&pl, &p, &mut state, &opts).0.unwrap();
    assert!(state.resources["instances.sales"].protect);
    // Turning protect off in the file is recorded by the next (empty) apply.
    let serial = state.serial;
    let opts = ApplyOptions {
        protect: BTreeMap::from([("instances.sales".to_string(), false)]),
        ..ApplyOptions::default()
    };
    let (_, saves, _) = run(&plan(vec![]), &p, &mut state, &opts);
    assert!(!state.resources["instances.sales"].protect);
    assert_eq!(saves.len(), 1);
    assert_eq!(state.serial, serial + 1);
}

/// The local tenant, except that every create of the kind named fails (a create the
/// service refuses: a quota, a transient error).
struct FailingCreates {
    inner: LocalProvider,
}

impl Provider for FailingCreates {
    fn observe<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Tenant, ProviderError>> {
        Provider::observe(&self.inner, scope)
    }
    fn execute<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Result<Executed, ProviderError>> {
        if matches!(op, Op::CreateGroup { .. }) {
            return Box::pin(async {
                Err(ProviderError::Backend("injected: the create failed".into()))
            });
        }
        Provider::execute(&self.inner, op)
    }
}

fn managing(entries: &[(&str, ObjKind, &str)]) -> State {
    let entries: Vec<_> = entries
        .iter()
        .map(|(a, k, id)| (*a, *k, *id, false))
        .collect();
    let mut s = state(&entries);
    s.tenant = DOMAIN.into();
    s
}

// issue 9 item 2 (I12): a plan that replaces a group (delete + create of one display name)
// never runs the delete when the create failed: the old group, its members and bindings
// stay. Before, the two were independent and the delete ran.
#[test]
fn a_replaced_objects_delete_is_skipped_when_its_create_fails() {
    let mut t = Tenant::fresh("coho.onmicrosoft.com");
    t.groups.insert(
        "g1".into(),
        crmctl::observed::Group {
            id: "g1".into(),
            name: "Sales".into(),
            description: String::new(),
            members: Default::default(),
        },
    );
    let (_dir, local) = seeded(t);
    let p = FailingCreates { inner: local };
    let desired: crmctl::desired::Desired = crmctl::desired::load::from_yaml(
        "tenant: coho.onmicrosoft.com\nsecurity_groups:\n  team: {name: sales}\n",
    )
    .unwrap();
    let mut state = managing(&[("security_groups.old", ObjKind::Group, "g1")]);
    let pl = crmctl::plan::plan(&desired, &p.inner.observe().unwrap(), &state);
    let kinds: Vec<ActionKind> = pl.actions.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        vec![ActionKind::CreateGroup, ActionKind::DeleteGroup]
    );
    let opts = ApplyOptions {
        allow_destroy: true,
        ..ApplyOptions::default()
    };
    let report = run(&pl, &p, &mut state, &opts).0.unwrap();
    assert!(matches!(report.outcomes[&0], ActionOutcome::Failed(_)));
    assert_eq!(
        report.outcomes[&1],
        ActionOutcome::Skipped { because_of: 0 },
        "the delete must wait for the create"
    );
    assert!(p.inner.observe().unwrap().groups.contains_key("g1"));
    assert_eq!(state.id_of("security_groups.old"), Some("g1"));
}

// issue 9 item 2 (P1): a user key whose case changed is applied without --allow-destroy:
// the same user keeps its id, the directory shows the file's spelling, and the state
// holds the user under the new key only; the next plan is empty.
#[test]
fn a_key_case_change_re_keys_the_state_and_keeps_the_user() {
    let mut t = Tenant::fresh("coho.onmicrosoft.com");
    t.users.insert(
        "usr-000001".into(),
        crmctl::observed::User {
            id: "usr-000001".into(),
            upn: "ana@coho.com".into(),
            name: "Ana".into(),
            license: None,
            access_mode: AccessMode::ReadWrite,
            roles: Default::default(),
            admin_roles: Default::default(),
            synced: false,
            application_id: None,
            usage_location: None,
        },
    );
    let (_dir, p) = seeded(t);
    let desired: crmctl::desired::Desired = crmctl::desired::load::from_yaml(
        "tenant: coho.onmicrosoft.com\nusers:\n  Ana@coho.com: {name: Ana}\n",
    )
    .unwrap();
    let mut state = managing(&[("users.ana@coho.com", ObjKind::User, "usr-000001")]);
    let pl = crmctl::plan::plan(&desired, &p.observe().unwrap(), &state);
    assert!(pl.actions.iter().all(|a| !a.destructive), "{pl:#?}");
    let report = run(&pl, &p, &mut state, &ApplyOptions::default())
        .0
        .unwrap();
    assert!(report.success(), "{report:?}");
    let after = p.observe().unwrap();
    assert_eq!(after.users.len(), 1);
    assert_eq!(after.users["usr-000001"].upn, "Ana@coho.com");
    assert_eq!(state.id_of("users.Ana@coho.com"), Some("usr-000001"));
    assert_eq!(state.id_of("users.ana@coho.com"), None);
    let again = crmctl::plan::plan(&desired, &after, &state);
    assert!(again.actions.is_empty(), "{:#?}", again.actions);
}

// issue 9 item 8 (review item 5): apply's own protect check (for any plan, a saved one
// included) says where `protect: true` was declared when the state recorded it.
#[test]
fn the_protect_refusal_names_where_protect_was_declared() {
    let mut state = managing(&[("instances.x", ObjKind::Instance, "org-1")]);
    let r = state.resources.get_mut("instances.x").unwrap();
    r.protect = true;
    r.protected_at = Some("t.yaml:9".into());
    let plan = Plan {
        actions: vec![Action {
            id: 0,
            kind: ActionKind::DeleteInstance,
            address: "instances.x".into(),
            depends_on: vec![],
            destructive: true,
            changes: vec![],
            reason: "removed".into(),
            op: Box::new(Op::DeleteInstance {
                instance: ObjRef {
                    address: "instances.x".into(),
                    id: Some("org-1".into()),
                },
            }),
        }],
        ..Plan::default()
    };
    let err = crmctl::apply::check_protected(&plan, &state, &Default::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("instances.x (the state remembers `protect: true`, declared at t.yaml:9)"),
        "{err}"
    );
}
