//! Helpers for the planner tests: build inputs from YAML, and apply plans on an in-memory
//! tenant that enforces domain.md with the local provider's own rules
//! ([`MemoryProvider`]), or on the local provider itself.

use crmctl::desired::model::Desired;
use crmctl::domain::kinds::{AccessMode, InstanceType, LicensePlan, Region};
use crmctl::domain::op::{ActionKind, ObjKind, ObjRef, Op};
use crmctl::observed::{AdminModeState, Instance, InstanceStatus, Tenant, User};
use crmctl::plan::action::Action;
use crmctl::plan::Plan;
use crmctl::provider::local::LocalProvider;
use crmctl::provider::memory::MemoryProvider;
use crmctl::provider::Provider;
use crmctl::state::{Resource, State};

pub const DOMAIN: &str = "coho.onmicrosoft.com";

/// A desired file from YAML; `tenant:` is added when missing.
pub fn desired(yaml: &str) -> Desired {
    let text = if yaml.contains("tenant:") {
        yaml.to_string()
    } else {
        format!("tenant: {DOMAIN}\n{yaml}")
    };
    crmctl::desired::load::from_yaml(&text)
        .unwrap_or_else(|e| panic!("bad desired YAML: {e}\n{text}"))
}

/// An observed tenant from YAML, on top of a fresh tenant's defaults (versions etc.).
pub fn tenant(yaml: &str) -> Tenant {
    if yaml.trim().is_empty() {
        return fresh();
    }
    let mut t: Tenant = crmctl::desired::load::from_yaml(&format!("domain: {DOMAIN}\n{yaml}"))
        .unwrap_or_else(|e| panic!("bad tenant YAML: {e}\n{yaml}"));
    if t.versions.is_empty() {
        t.versions = fresh().versions;
    }
    t
}

pub fn fresh() -> Tenant {
    Tenant::fresh(DOMAIN)
}

/// A state managing `address -> (kind, id, protect)`.
pub fn state(entries: &[(&str, ObjKind, &str, bool)]) -> State {
    let mut s = State::empty("test-lineage");
    for (a, k, id, p) in entries {
        s.resources.insert(
            a.to_string(),
            Resource {
                kind: *k,
                id: id.to_string(),
                protect: *p,
                protected_at: None,
                copied_from: None,
                ids: Default::default(),
            },
        );
    }
    s
}

/// A user `ID` with UPN `ID@coho.com`, no roles and no admin role.
pub fn user(id: &str, license: Option<LicensePlan>, mode: AccessMode) -> User {
    User {
        id: id.to_string(),
        upn: format!("{id}@coho.com"),
        name: id.to_string(),
        license,
        access_mode: mode,
        roles: Default::default(),
        admin_roles: Default::default(),
        synced: false,
        application_id: None,
        usage_location: None,
    }
}

/// An instance `ID` (name and URL name `ID`) in its own type's slot, NA, USD, English,
/// version 8.0.0, without security group or settings.
pub fn instance(id: &str, kind: InstanceType, status: InstanceStatus) -> Instance {
    Instance {
        id: id.to_string(),
        name: id.to_string(),
        url: id.to_string(),
        kind,
        slot: kind,
        purpose: String::new(),
        region: Region::NA,
        currency: "USD".into(),
        language: 1033,
        security_group: None,
        status,
        version: "8.0.0".into(),
        admin_mode: AdminModeState::default(),
        notification_recipients: vec![],
        update: None,
    }
}

/// A reference by address only: apply fills its id in from the state.
pub fn by_address(address: &str) -> ObjRef {
    ObjRef {
        address: address.into(),
        id: None,
    }
}

/// A reference to the object with remote id `ID` (address `ref.ID`).
pub fn by_id(id: &str) -> ObjRef {
    ObjRef {
        address: format!("ref.{id}").into(),
        id: Some(id.to_string()),
    }
}

/// A hand-built action; destructive when it deletes or resets.
pub fn action(id: usize, kind: ActionKind, address: &str, deps: &[usize], op: Op) -> Action {
    Action {
        id,
        kind,
        address: address.to_string(),
        depends_on: deps.to_vec(),
        destructive: matches!(
            kind,
            ActionKind::DeleteUser
                | ActionKind::DeleteGroup
                | ActionKind::DeleteInstance
                | ActionKind::ResetInstance
        ),
        changes: vec![],
        reason: "test".into(),
        op: Box::new(op),
    }
}

/// A hand-built plan for the test tenant ([`DOMAIN`]).
pub fn plan_of(actions: Vec<Action>) -> Plan {
    Plan {
        format_version: "1".into(),
        tenant: DOMAIN.into(),
        actions,
        ..Plan::default()
    }
}

/// The local provider on a file in a new temporary folder, holding `t` (imported as is,
/// integrity checked); keep the folder as long as the provider.
pub fn local_seeded(t: Tenant) -> (tempfile::TempDir, LocalProvider) {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalProvider::open(&dir.path().join("tenant.db")).unwrap();
    p.admin_replace(t).unwrap();
    (dir, p)
}

/// Kinds of the actions of a plan, as `kind address` strings in execution order.
pub fn steps(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| format!("{} {}", a.kind.as_str(), a.address))
        .collect()
}

/// Position of the first action `kind address` (panics with the plan when absent).
pub fn pos(plan: &Plan, step: &str) -> usize {
    steps(plan)
        .iter()
        .position(|s| s == step)
        .unwrap_or_else(|| panic!("no `{step}` in plan:\n{:#?}", steps(plan)))
}

/// Rules cited by the plan's error diagnostics.
pub fn error_rules(plan: &Plan) -> Vec<String> {
    plan.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.rule.clone().unwrap_or_default())
        .collect()
}

pub fn warning_rules(plan: &Plan) -> Vec<String> {
    plan.diagnostics
        .iter()
        .filter(|d| !d.is_error())
        .map(|d| d.rule.clone().unwrap_or_default())
        .collect()
}

/// Every dependency points to an earlier action, and ids are positions.
pub fn assert_order_respects_edges(plan: &Plan) {
    for (i, a) in plan.actions.iter().enumerate() {
        assert_eq!(a.id, i);
        for d in &a.depends_on {
            assert!(*d < a.id, "action {} depends on later action {d}", a.id);
        }
    }
}

/// Apply `plan` to copies of `tenant` and `state`, in order, checking the rules.
/// Apply `plan` to copies of `tenant` and `state` on an in-memory provider that enforces
/// domain.md with the local provider's rules (issue 11 item 6: no rule engine of the tests'
/// own), one action at a time in plan order. An action that changes nothing (other than
/// an adoption) is refused: a plan should not carry it.
pub fn simulate(plan: &Plan, tenant: &Tenant, state: &State) -> Result<(Tenant, State), String> {
    assert_order_respects_edges(plan);
    let mut t = tenant.clone();
    if t.domain.is_empty() {
        t.domain = plan.tenant.clone();
    }
    let provider = MemoryProvider::new(t).refusing_no_ops();
    let state = apply_on(plan, &provider, state, 1)?;
    Ok((provider.into_tenant(), state))
}

/// Plan, simulate, re-plan: the plan must be valid and the re-plan empty.
pub fn converge(d: &Desired, t: &Tenant, s: &State) -> (Plan, Tenant, State) {
    let plan = crmctl::plan::plan(d, t, s);
    assert!(
        !plan.has_errors(),
        "unexpected errors: {:#?}",
        plan.diagnostics
    );
    let (t2, s2) =
        simulate(&plan, t, s).unwrap_or_else(|e| panic!("{e}\nplan: {:#?}", steps(&plan)));
    let again = crmctl::plan::plan(d, &t2, &s2);
    assert!(
        again.actions.is_empty() && !again.has_errors(),
        "re-plan not empty: {:#?}\n{:#?}",
        steps(&again),
        again.diagnostics
    );
    (plan, t2, s2)
}

/// Run `plan` through the apply engine on `provider` (destroy allowed, `parallelism`
/// requests in flight) on a copy of `state`; the new state, or the first action that
/// failed, in plan order, with their errors.
pub fn apply_on(
    plan: &Plan,
    provider: &dyn Provider,
    state: &State,
    parallelism: usize,
) -> Result<State, String> {
    let mut st = state.clone();
    let opts = crmctl::apply::ApplyOptions {
        allow_destroy: true,
        parallelism,
        ..crmctl::apply::ApplyOptions::default()
    };
    let report = crmctl::apply::apply(plan, provider, &mut st, &mut |_, _| Ok(()), &opts, &|_| {})
        .map_err(|e| e.to_string())?;
    let failed: Vec<String> = report
        .failed()
        .iter()
        .map(|id| {
            let a = &plan.actions[*id];
            let why = match &report.outcomes[id] {
                crmctl::apply::ActionOutcome::Failed(e) => e.to_string(),
                other => format!("{other:?}"),
            };
            format!("action #{id} {} {}: {why}", a.kind.as_str(), a.address)
        })
        .collect();
    if failed.is_empty() {
        Ok(st)
    } else {
        Err(failed.join("\n"))
    }
}

/// Apply `plan` on the local provider (a temp file seeded with `tenant`, which enforces
/// domain.md on its own) and re-plan: `Ok` when no action was refused and the next plan
/// has no changes and no errors; otherwise the refusals or what is left (issue 10: a plan
/// without errors is accepted in one pass). `Ok(false)`: the tenant cannot be stored as
/// is (e.g. roles in an instance that does not exist), nothing was checked.
pub fn converge_local(d: &Desired, tenant: &Tenant, state: &State) -> Result<bool, String> {
    let plan = crmctl::plan::plan(d, tenant, state);
    if plan.has_errors() {
        return Err(format!("plan has errors: {:#?}", plan.diagnostics));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let provider = crmctl::provider::local::LocalProvider::open(&dir.path().join("t.db"))
        .map_err(|e| e.to_string())?;
    let mut seeded = tenant.clone();
    if seeded.domain.is_empty() {
        seeded.domain = d.tenant.clone();
    }
    if provider.admin_replace(seeded).is_err() {
        return Ok(false);
    }
    let parallelism = crmctl::apply::DEFAULT_PARALLELISM;
    let st = apply_on(&plan, &provider, state, parallelism)
        .map_err(|e| format!("the local provider refused: {e}\nplan: {:#?}", steps(&plan)))?;
    let again = crmctl::plan::plan(d, &provider.observe().map_err(|e| e.to_string())?, &st);
    if !again.actions.is_empty() || again.has_errors() {
        return Err(format!(
            "not converged on the local provider: {:#?}\n{:#?}",
            steps(&again),
            again.diagnostics
        ));
    }
    Ok(true)
}
