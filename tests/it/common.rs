//! Helpers for the planner tests: build inputs from YAML, and a pure simulator that
//! applies a plan's ops to an in-memory tenant while checking domain.md's rules (the real
//! enforcement lives in the local provider; this one exists to test the planner alone).

use std::collections::BTreeMap;

use crmctl::desired::model::Desired;
use crmctl::domain::kinds::{AccessMode, InstanceType};
use crmctl::domain::limits::{
    MAX_NON_INTERACTIVE_PER_INSTANCE, MAX_PRODUCTION_INSTANCES, MAX_SANDBOX_INSTANCES,
};
use crmctl::domain::op::{ObjKind, ObjRef, Op};
use crmctl::observed::{
    AdminModeState, Group, Instance, InstanceStatus, Tenant, UpdatePhase, UpdateState, User,
};
use crmctl::plan::Plan;
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
pub fn simulate(plan: &Plan, tenant: &Tenant, state: &State) -> Result<(Tenant, State), String> {
    assert_order_respects_edges(plan);
    let mut sim = Sim {
        t: tenant.clone(),
        s: state.clone(),
        next: 0,
    };
    if sim.t.domain.is_empty() {
        sim.t.domain = plan.tenant.clone();
    }
    for a in &plan.actions {
        sim.exec(&a.address, &a.op)
            .map_err(|e| format!("action #{} {} {}: {e}", a.id, a.kind.as_str(), a.address))?;
    }
    Ok((sim.t, sim.s))
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

struct Sim {
    t: Tenant,
    s: State,
    next: usize,
}

fn refuse<T>(rule: &str, msg: impl Into<String>) -> Result<T, String> {
    Err(format!("refused ({rule}): {}", msg.into()))
}

impl Sim {
    fn id(&self, r: &ObjRef) -> Result<String, String> {
        match &r.id {
            Some(id) => Ok(id.clone()),
            None => self
                .s
                .id_of(&r.address)
                .map(str::to_string)
                .ok_or_else(|| format!("no id for {}", r.address)),
        }
    }

    fn new_id(&mut self, prefix: &str) -> String {
        loop {
            self.next += 1;
            let id = format!("{prefix}-sim-{}", self.next);
            if !self.t.users.contains_key(&id)
                && !self.t.groups.contains_key(&id)
                && !self.t.instances.contains_key(&id)
            {
                return id;
            }
        }
    }

    fn record(&mut self, address: &str, kind: ObjKind, id: &str) {
        self.s.resources.insert(
            address.to_string(),
            Resource {
                kind,
                id: id.to_string(),
                protect: false,
                protected_at: None,
                copied_from: None,
                ids: Default::default(),
            },
        );
    }

    fn user(&mut self, r: &ObjRef) -> Result<&mut User, String> {
        let id = self.id(r)?;
        self.t.users.get_mut(&id).ok_or(format!("no user {id}"))
    }

    fn inst(&mut self, r: &ObjRef) -> Result<&mut Instance, String> {
        let id = self.id(r)?;
        self.t
            .instances
            .get_mut(&id)
            .ok_or(format!("no instance {id}"))
    }

    fn can_buy(&self) -> Result<(), String> {
        if self.t.trial || self.t.pro_enterprise() == 0 {
            return refuse(
                "T5",
                "add-ons need a paid subscription with Professional/Enterprise licenses",
            );
        }
        Ok(())
    }

    fn url_free(&self, url: &str, except: Option<&str>) -> Result<(), String> {
        if self
            .t
            .instances
            .values()
            .any(|i| i.url == url && Some(i.id.as_str()) != except)
        {
            return refuse("I5", format!("URL name {url} is taken"));
        }
        Ok(())
    }

    fn ni_with_roles(&self, inst: &str) -> usize {
        self.t
            .users
            .values()
            .filter(|u| {
                u.access_mode == AccessMode::NonInteractive
                    && u.roles.get(inst).is_some_and(|r| !r.is_empty())
            })
            .count()
    }

    fn exec(&mut self, address: &str, op: &Op) -> Result<(), String> {
        match op {
            Op::PurchaseLicenses { plan, to } => {
                if *to <= self.t.purchased(*plan) {
                    return Err("purchase does not raise the count".into());
                }
                self.t.licenses.insert(*plan, *to);
            }
            Op::ReduceLicenses { plan, to } => {
                if self.t.assigned(*plan) > *to {
                    return refuse("T4", "below the assigned count");
                }
                self.t.licenses.insert(*plan, *to);
            }
            Op::PurchaseStorage { to_gb } => {
                self.can_buy()?;
                self.t.storage.additional_gb = *to_gb;
            }
            Op::ReduceStorage { to_gb } => self.t.storage.additional_gb = *to_gb,
            Op::PurchaseInstance { kind } => {
                self.can_buy()?;
                let limit = match kind {
                    InstanceType::Production => MAX_PRODUCTION_INSTANCES,
                    InstanceType::Sandbox => MAX_SANDBOX_INSTANCES,
                };
                if self.t.total_slots(*kind) + 1 > limit {
                    return refuse("T7", "limit");
                }
                match kind {
                    InstanceType::Production => self.t.slots.production += 1,
                    InstanceType::Sandbox => self.t.slots.sandbox += 1,
                }
            }
            Op::CreateGroup { name, description } => {
                let id = self.new_id("g");
                self.t.groups.insert(
                    id.clone(),
                    Group {
                        id: id.clone(),
                        name: name.clone(),
                        description: description.clone(),
                        members: Default::default(),
                    },
                );
                self.record(address, ObjKind::Group, &id);
            }
            Op::UpdateGroup {
                group,
                name,
                description,
            } => {
                let id = self.id(group)?;
                let g = self.t.groups.get_mut(&id).ok_or("no group")?;
                if let Some(n) = name {
                    g.name = n.clone();
                }
                if let Some(d) = description {
                    g.description = d.clone();
                }
            }
            Op::DeleteGroup { group } => {
                let id = self.id(group)?;
                if self
                    .t
                    .instances
                    .values()
                    .any(|i| i.security_group.as_deref() == Some(&id))
                {
                    return refuse("I12", "group still bound");
                }
                self.t.groups.remove(&id).ok_or("no group")?;
                self.s.resources.remove(address);
            }
            Op::AddGroupMembers { group, users } | Op::RemoveGroupMembers { group, users } => {
                let gid = self.id(group)?;
                let mut ids = Vec::new();
                for u in users {
                    let uid = self.id(u)?;
                    if !self.t.users.contains_key(&uid) {
                        return Err(format!("member {uid} does not exist"));
                    }
                    ids.push(uid);
                }
                let g = self.t.groups.get_mut(&gid).ok_or("no group")?;
                for uid in ids {
                    if matches!(op, Op::AddGroupMembers { .. }) {
                        g.members.insert(uid);
                    } else {
                        g.members.remove(&uid);
                    }
                }
            }
            Op::CreateUser {
                upn,
                name,
                access_mode,
            } => {
                // P1: one user per UPN, compared without regard to case (issue 9 item 2).
                if self
                    .t
                    .users
                    .values()
                    .any(|u| u.upn.eq_ignore_ascii_case(upn))
                {
                    return refuse("P1", format!("duplicate UPN {upn}"));
                }
                let id = self.new_id("u");
                self.t.users.insert(
                    id.clone(),
                    User {
                        id: id.clone(),
                        upn: upn.clone(),
                        name: name.clone(),
                        license: None,
                        access_mode: *access_mode,
                        roles: Default::default(),
                        admin_roles: Default::default(),
                    },
                );
                self.record(address, ObjKind::User, &id);
            }
            Op::UpdateUser {
                user,
                name,
                admin_roles,
                upn,
            } => {
                let uid = self.id(user)?;
                if let Some(n) = upn {
                    if self
                        .t
                        .users
                        .values()
                        .any(|o| o.id != uid && o.upn.eq_ignore_ascii_case(n))
                    {
                        return refuse("P1", format!("duplicate UPN {n}"));
                    }
                }
                let u = self.user(user)?;
                if let Some(n) = upn {
                    u.upn = n.clone();
                }
                if let Some(n) = name {
                    u.name = n.clone();
                }
                if let Some(r) = admin_roles {
                    u.admin_roles = r.iter().copied().collect();
                }
            }
            Op::DeleteUser { user } => {
                let id = self.id(user)?;
                self.t.users.remove(&id).ok_or("no user")?;
                for g in self.t.groups.values_mut() {
                    g.members.remove(&id);
                }
                self.s.resources.remove(address);
            }
            Op::AssignLicense { user, plan } => {
                let (cur, mode) = {
                    let u = self.user(user)?;
                    (u.license, u.access_mode)
                };
                if mode == AccessMode::Application {
                    return refuse("P3", "application users are never licensed");
                }
                if cur != Some(*plan) && self.t.assigned(*plan) + 1 > self.t.purchased(*plan) {
                    return refuse("T3", format!("no free {} license", plan.as_str()));
                }
                self.user(user)?.license = Some(*plan);
            }
            Op::RemoveLicense { user } => self.user(user)?.license = None,
            Op::SetAccessMode { user, mode } => {
                let u = self.user(user)?;
                if matches!(
                    mode,
                    AccessMode::Administrative | AccessMode::NonInteractive
                ) && u.license.is_none()
                {
                    return refuse("P4", "needs a license while setting the access mode");
                }
                let has_roles: Vec<String> = u
                    .roles
                    .iter()
                    .filter(|(_, r)| !r.is_empty())
                    .map(|(k, _)| k.clone())
                    .collect();
                u.access_mode = *mode;
                if *mode == AccessMode::NonInteractive {
                    for i in has_roles {
                        if self.ni_with_roles(&i) > MAX_NON_INTERACTIVE_PER_INSTANCE {
                            return refuse("P3", "too many non-interactive users");
                        }
                    }
                }
            }
            Op::AssignRoles {
                user,
                instance,
                roles,
            } => {
                let iid = self.id(instance)?;
                if !self.t.instances.contains_key(&iid) {
                    return Err("no instance".into());
                }
                let u = self.user(user)?;
                let admin = u.admin_roles.iter().any(|r| {
                    matches!(
                        r,
                        crmctl::domain::kinds::AdminRole::GlobalAdmin
                            | crmctl::domain::kinds::AdminRole::ServiceAdmin
                    )
                });
                if u.access_mode == AccessMode::ReadWrite && u.license.is_none() && !admin {
                    return refuse("P2", "read-write user without license");
                }
                u.roles
                    .entry(iid.clone())
                    .or_default()
                    .extend(roles.iter().cloned());
                if self.ni_with_roles(&iid) > MAX_NON_INTERACTIVE_PER_INSTANCE {
                    return refuse("P3", "too many non-interactive users");
                }
            }
            Op::RemoveRoles {
                user,
                instance,
                roles,
            } => {
                let iid = self.id(instance)?;
                let u = self.user(user)?;
                if let Some(r) = u.roles.get_mut(&iid) {
                    for x in roles {
                        r.remove(x);
                    }
                    if r.is_empty() {
                        u.roles.remove(&iid);
                    }
                }
            }
            Op::ConfigureInstance {
                name,
                url,
                kind,
                purpose,
                region,
                currency,
                language,
                security_group,
            } => {
                if self.t.free_slots(*kind) == 0 {
                    return refuse("I2", format!("no free {} slot", kind.as_str()));
                }
                self.url_free(url, None)?;
                let group = match security_group {
                    Some(g) => {
                        let gid = self.id(g)?;
                        if !self.t.groups.contains_key(&gid) {
                            return Err("no group".into());
                        }
                        Some(gid)
                    }
                    None => None,
                };
                let id = self.new_id("i");
                self.t.instances.insert(
                    id.clone(),
                    Instance {
                        id: id.clone(),
                        name: name.clone(),
                        url: url.clone(),
                        kind: *kind,
                        slot: *kind,
                        purpose: purpose.clone(),
                        region: *region,
                        currency: currency.clone(),
                        language: *language,
                        security_group: group,
                        status: InstanceStatus::Ready,
                        version: self.t.versions.last().cloned().unwrap_or_default(),
                        admin_mode: AdminModeState::default(),
                        notification_recipients: vec![],
                        update: None,
                    },
                );
                self.record(address, ObjKind::Instance, &id);
            }
            Op::UpdateInstance {
                instance,
                name,
                url,
                purpose,
                security_group,
            } => {
                let iid = self.id(instance)?;
                if let Some(u) = url {
                    self.url_free(u, Some(&iid))?;
                }
                let group = match security_group {
                    Some(Some(g)) => Some(Some(self.id(g)?)),
                    Some(None) => Some(None),
                    None => None,
                };
                let i = self.inst(instance)?;
                if i.status != InstanceStatus::Ready {
                    return refuse("I4", "not ready");
                }
                if let Some(n) = name {
                    i.name = n.clone();
                }
                if let Some(u) = url {
                    i.url = u.clone();
                }
                if let Some(p) = purpose {
                    i.purpose = p.clone();
                }
                if let Some(g) = group {
                    i.security_group = g;
                }
            }
            Op::SwitchInstance { instance, to } => {
                let (kind, slot) = {
                    let i = self.inst(instance)?;
                    (i.kind, i.slot)
                };
                if kind == *to {
                    return Err("switch to the same type".into());
                }
                let new_slot = match to {
                    InstanceType::Sandbox => {
                        // A production instance still in a sandbox slot switches back into it.
                        if self.t.free_slots(InstanceType::Sandbox) > 0
                            || slot == InstanceType::Sandbox
                        {
                            InstanceType::Sandbox
                        } else if self.t.free_slots(InstanceType::Production) > 0 {
                            InstanceType::Production
                        } else {
                            return refuse("I7", "no free slot to switch to sandbox");
                        }
                    }
                    InstanceType::Production => {
                        let admin = &self.inst(instance)?.admin_mode;
                        if admin.enabled || !admin.background_operations {
                            return refuse(
                                "I10",
                                "administration mode is for sandboxes only: turn it off first",
                            );
                        }
                        // A sandbox still in a production slot switches back into it.
                        if self.t.free_slots(InstanceType::Production) == 0
                            && slot != InstanceType::Production
                        {
                            return refuse("I7", "no free production slot");
                        }
                        InstanceType::Production
                    }
                };
                let _ = slot;
                let i = self.inst(instance)?;
                i.kind = *to;
                i.slot = new_slot;
            }
            Op::SetAdminMode {
                instance,
                enabled,
                background_operations,
                message,
            } => {
                let i = self.inst(instance)?;
                if i.kind != InstanceType::Sandbox {
                    return refuse("I10", "admin mode on production");
                }
                if !enabled && !background_operations {
                    return refuse("I10", "background operations off without admin mode");
                }
                i.admin_mode = AdminModeState {
                    enabled: *enabled,
                    background_operations: *background_operations,
                    message: message.clone(),
                };
            }
            Op::SetNotificationRecipients {
                instance,
                recipients,
            } => {
                self.inst(instance)?.notification_recipients = recipients.clone();
            }
            Op::ScheduleUpdate {
                instance,
                target_version,
                preferred,
                alternate,
            } => {
                let known = self.t.versions.contains(target_version);
                let i = self.inst(instance)?;
                if !known {
                    return refuse("U3", "unknown version");
                }
                if i.update
                    .as_ref()
                    .is_some_and(|u| u.state == UpdatePhase::InProgress)
                {
                    return refuse("U4", "in progress");
                }
                i.update = Some(UpdateState {
                    target_version: target_version.clone(),
                    preferred: preferred.clone(),
                    alternate: alternate.clone(),
                    state: UpdatePhase::Approved,
                });
            }
            Op::CopyInstance { source, target, .. } => {
                let sid = self.id(source)?;
                let Some(src) = self.t.instances.get(&sid).cloned() else {
                    return Err("no source".into());
                };
                let i = self.inst(target)?;
                if i.kind != InstanceType::Sandbox {
                    return refuse("I11", "copy onto production");
                }
                // I11: the source's database comes along (version, currency, language).
                i.version = src.version;
                i.currency = src.currency;
                i.language = src.language;
                i.update = None;
                i.admin_mode = AdminModeState {
                    enabled: true,
                    background_operations: false,
                    message: None,
                };
            }
            Op::ResetInstance {
                instance,
                currency,
                language,
            } => {
                let iid = self.id(instance)?;
                let i = self.inst(instance)?;
                if i.kind != InstanceType::Sandbox {
                    return refuse("I9", "reset of production");
                }
                i.currency = currency.clone();
                i.language = *language;
                i.admin_mode = AdminModeState::default();
                for u in self.t.users.values_mut() {
                    u.roles.remove(&iid);
                }
            }
            Op::DeleteInstance { instance } => {
                let iid = self.id(instance)?;
                if self.inst(instance)?.kind != InstanceType::Sandbox {
                    return refuse("I8", "delete of production");
                }
                self.t.instances.remove(&iid);
                for u in self.t.users.values_mut() {
                    u.roles.remove(&iid);
                }
                self.s.resources.remove(address);
            }
            Op::Adopt { kind, id, from } => {
                if let Some(from) = from {
                    if self.s.id_of(from) == Some(id.as_str()) {
                        self.s.resources.remove(from);
                    }
                }
                self.record(address, *kind, id)
            }
        }
        // T3: never more licenses assigned than purchased.
        for (p, n) in &self.t.licenses.clone() {
            if self.t.assigned(*p) > *n {
                return refuse(
                    "T3",
                    format!(
                        "{} {} licenses assigned, {n} purchased",
                        self.t.assigned(*p),
                        p.as_str()
                    ),
                );
            }
        }
        Ok(())
    }
}

/// Tenant ids of `BTreeMap` kind, for building observed tenants in tests.
pub fn map<T>(items: Vec<(String, T)>) -> BTreeMap<String, T> {
    items.into_iter().collect()
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
    let mut st = state.clone();
    let opts = crmctl::apply::ApplyOptions {
        allow_destroy: true,
        ..crmctl::apply::ApplyOptions::default()
    };
    let report = crmctl::apply::apply(
        &plan,
        &provider,
        &mut st,
        &mut |_, _| Ok(()),
        &opts,
        &|_| {},
    )
    .map_err(|e| e.to_string())?;
    if !report.success() {
        let failed: Vec<String> = report
            .failed()
            .iter()
            .map(|id| {
                format!(
                    "{} {}: {:?}",
                    plan.actions[*id].kind.as_str(),
                    plan.actions[*id].address,
                    report.outcomes[id]
                )
            })
            .collect();
        return Err(format!(
            "the local provider refused: {failed:#?}\nplan: {:#?}",
            steps(&plan)
        ));
    }
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
