//! Property: random desired tenants applied in sequence to the local tenant each leave a
//! tenant whose next plan has no changes, and the provider never refuses an action of the
//! planner (it enforces every rule of domain.md on its own).

use std::collections::BTreeMap;

use proptest::prelude::*;

use crmctl::apply::{self, ApplyOptions};
use crmctl::desired::model::{AdminMode, Desired, Instance, SecurityGroup, User};
use crmctl::domain::kinds::{AccessMode, InstanceType, LicensePlan, Region};
use crmctl::provider::local::LocalProvider;
use crmctl::state::State;

use crate::common::{apply_on, local_seeded};

#[derive(Debug, Clone)]
struct UserGen {
    license: u8,
    mode: u8,
    roles: Vec<(u8, u8)>,
}

#[derive(Debug, Clone)]
struct InstGen {
    sandbox: bool,
    admin: u8,
    group: Option<u8>,
    name: u8,
    recipients: bool,
}

#[derive(Debug, Clone)]
struct TenantGen {
    pro: u32,
    basic: u32,
    users: Vec<Option<UserGen>>,
    groups: Vec<Option<Vec<u8>>>,
    instances: Vec<Option<InstGen>>,
}

fn user_gen() -> impl Strategy<Value = UserGen> {
    (
        0u8..3,
        0u8..8,
        prop::collection::vec((0u8..3, 0u8..2), 0..3),
    )
        .prop_map(|(license, mode, roles)| UserGen {
            license,
            mode,
            roles,
        })
}

fn inst_gen() -> impl Strategy<Value = InstGen> {
    (
        any::<bool>(),
        0u8..4,
        prop::option::of(0u8..3),
        0u8..2,
        any::<bool>(),
    )
        .prop_map(|(sandbox, admin, group, name, recipients)| InstGen {
            sandbox,
            admin,
            group,
            name,
            recipients,
        })
}

fn tenant_gen() -> impl Strategy<Value = TenantGen> {
    (
        // Professional crosses the T6 threshold of 25 both ways between steps, so the
        // included sandbox slot comes and goes under configured sandboxes.
        prop::sample::select(vec![6u32, 24, 25, 30, 40]),
        0u32..3,
        prop::collection::vec(prop::option::of(user_gen()), 0..7),
        prop::collection::vec(prop::option::of(prop::collection::vec(0u8..7, 0..4)), 0..3),
        prop::collection::vec(prop::option::of(inst_gen()), 1..4),
    )
        .prop_map(|(pro, basic, users, groups, instances)| TenantGen {
            pro,
            basic,
            users,
            groups,
            instances,
        })
}

const ROLES: [&str; 2] = ["Salesperson", "System Customizer"];

/// Turn the raw generation into a desired tenant that the file format accepts.
fn build(g: &TenantGen) -> Desired {
    let mut instances = BTreeMap::new();
    for (i, ig) in g.instances.iter().enumerate() {
        let Some(ig) = ig else { continue };
        // i0 is always the included production instance; i1 always a sandbox (with any
        // administration mode); i2 switches type freely, with any administration mode while
        // it is a sandbox (I10 before I7 when it becomes production).
        let kind = match i {
            0 => InstanceType::Production,
            1 => InstanceType::Sandbox,
            _ if ig.sandbox => InstanceType::Sandbox,
            _ => InstanceType::Production,
        };
        let admin = if i == 0 { 0 } else { ig.admin };
        let group = ig
            .group
            .filter(|k| g.groups.get(*k as usize).is_some_and(Option::is_some))
            .map(|k| format!("g{k}"));
        let admin_mode = match (kind, admin) {
            (InstanceType::Sandbox, 1) => Some(AdminMode {
                enabled: true,
                background_operations: true,
                message: None,
            }),
            (InstanceType::Sandbox, 2) => Some(AdminMode {
                enabled: true,
                background_operations: false,
                message: Some("maintenance".into()),
            }),
            (InstanceType::Sandbox, 3) => Some(AdminMode {
                enabled: false,
                background_operations: true,
                message: None,
            }),
            _ => None,
        };
        instances.insert(
            format!("i{i}"),
            Instance {
                name: format!(
                    "Instance {i}{}",
                    if ig.name == 1 { " (renamed)" } else { "" }
                ),
                url: format!("prop-i{i}"),
                kind,
                purpose: None,
                region: Some(Region::NA),
                currency: Some("USD".into()),
                language: Some(1033),
                security_group: group,
                notification_recipients: ig.recipients.then(|| vec![format!("ops{i}@prop.com")]),
                update: None,
                protect: false,
                admin_mode,
                copy_from: None,
            },
        );
    }
    let inst_keys: Vec<String> = instances.keys().cloned().collect();
    let mut users = BTreeMap::new();
    let mut non_interactive = 0;
    let (mut pro_used, mut basic_used) = (0u32, 0u32);
    for (i, ug) in g.users.iter().enumerate() {
        let Some(ug) = ug else { continue };
        // Application users are created as such and never change (P3): user 6 always is one.
        let mut mode = match ug.mode {
            _ if i == 6 => AccessMode::Application,
            5 => AccessMode::Administrative,
            6 | 7 => AccessMode::NonInteractive,
            _ => AccessMode::ReadWrite,
        };
        if mode == AccessMode::NonInteractive {
            non_interactive += 1;
            if non_interactive > 5 {
                mode = AccessMode::ReadWrite;
            }
        }
        let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (inst, role) in &ug.roles {
            if let Some(k) = inst_keys.get(*inst as usize) {
                let list = roles.entry(k.clone()).or_default();
                let r = ROLES[*role as usize].to_string();
                if !list.contains(&r) {
                    list.push(r);
                }
            }
        }
        let mut license = match (mode, ug.license) {
            (AccessMode::Application, _) => None, // P3
            (_, 1) => Some(LicensePlan::Professional),
            (_, 2) => Some(LicensePlan::Basic),
            _ => None,
        };
        if mode == AccessMode::ReadWrite && !roles.is_empty() && license.is_none() {
            license = Some(LicensePlan::Professional); // P2
        }
        match license {
            Some(LicensePlan::Professional) => pro_used += 1,
            Some(LicensePlan::Basic) => basic_used += 1,
            _ => {}
        }
        users.insert(
            format!("u{i}@prop.com"),
            User {
                name: Some(format!("User {i}")),
                license,
                access_mode: Some(mode),
                roles: Some(roles.into()),
                admin_roles: None,
                usage_location: None,
                application_id: None,
            },
        );
    }
    let mut groups = BTreeMap::new();
    for (i, gg) in g.groups.iter().enumerate() {
        let Some(members) = gg else { continue };
        let mut m: Vec<String> = members
            .iter()
            .map(|u| format!("u{u}@prop.com"))
            .filter(|u| users.contains_key(u))
            .collect();
        m.sort();
        m.dedup();
        groups.insert(
            format!("g{i}"),
            SecurityGroup {
                name: Some(format!("Group {i}")),
                description: Some(String::new()),
                members: Some(m),
            },
        );
    }
    // P4 needs a license while the access mode is set; the planner buys what the file says.
    let mut licenses = BTreeMap::new();
    licenses.insert(LicensePlan::Professional, g.pro.max(pro_used + 6));
    licenses.insert(LicensePlan::Basic, g.basic.max(basic_used));
    Desired {
        schema: None,
        tenant: "prop.onmicrosoft.com".into(),
        licenses: Some(licenses),
        storage: None,
        security_groups: Some(groups),
        users: Some(users),
        instances: Some(instances),
        ..Desired::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_tenants_applied_in_sequence_converge(seq in prop::collection::vec(tenant_gen(), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let provider = LocalProvider::open(&dir.path().join("tenant.db")).unwrap();
        let mut state = State::empty("prop");
        for (step, g) in seq.iter().enumerate() {
            let desired = build(g);
            // The file must be valid as a file (what a user could write).
            let text = crmctl::desired::load::to_yaml(&desired).unwrap();
            let loaded = crmctl::desired::load::load_str("prop.yaml", text.clone());
            prop_assert!(loaded.is_ok(), "step {step}: generated an invalid file:\n{text}\n{:?}", loaded.err().map(|f| f.diagnostics));
            let desired = loaded.unwrap().desired;

            provider.set_domain_hint(&desired.tenant).unwrap();
            let observed = provider.observe().unwrap();
            let plan = crmctl::plan::plan(&desired, &observed, &state);
            prop_assert!(!plan.has_errors(), "step {step}: plan errors {:?}\n{text}", plan.diagnostics);
            state = apply_on(&plan, &provider, &state, 4)
                .map_err(|e| TestCaseError::fail(format!("step {step}: the provider refused: {e}\n{text}")))?;

            let again = crmctl::plan::plan(&desired, &provider.observe().unwrap(), &state);
            let left: Vec<String> = again.actions.iter().map(|a| format!("{} {} {:?}", a.kind.as_str(), a.address, a.changes)).collect();
            prop_assert!(again.actions.is_empty() && !again.has_errors(), "step {step}: not converged: {left:#?}\n{:?}\n{text}", again.diagnostics);
        }
    }
}

/// A sandbox in administration mode whose file turns it into production (with admin_mode
/// omitted): administration mode exists only for sandboxes (I10), so the plan must turn it
/// off before the switch (the provider refuses the switch otherwise).
#[test]
fn sandbox_in_admin_mode_switched_to_production() {
    let dir = tempfile::tempdir().unwrap();
    let provider = LocalProvider::open(&dir.path().join("tenant.db")).unwrap();
    let mut state = State::empty("prop");
    let mut g = TenantGen {
        pro: 30,
        basic: 0,
        users: vec![],
        groups: vec![],
        instances: vec![
            Some(InstGen {
                sandbox: false,
                admin: 0,
                group: None,
                name: 0,
                recipients: false,
            }),
            None,
            Some(InstGen {
                sandbox: true,
                admin: 0,
                group: None,
                name: 0,
                recipients: false,
            }),
        ],
    };
    for step in 0..2 {
        let mut desired = build(&g);
        let i2 = desired.instances.as_mut().unwrap().get_mut("i2").unwrap();
        if step == 0 {
            i2.admin_mode = Some(AdminMode {
                enabled: true,
                background_operations: false,
                message: None,
            });
        }
        let plan = crmctl::plan::plan(&desired, &provider.observe().unwrap(), &state);
        assert!(!plan.has_errors(), "{:?}", plan.diagnostics);
        state = apply_on(&plan, &provider, &state, apply::DEFAULT_PARALLELISM)
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
        g.instances[2].as_mut().unwrap().sandbox = false;
    }
}

/// Professional licenses drop below 25 while the included sandbox slot (T6) is in use;
/// later that sandbox is deleted and another configured: the deleted instance's slot no
/// longer exists (the tenant is over capacity), so the plan must buy a sandbox slot (I2).
#[test]
fn included_sandbox_lost_then_slot_reused() {
    let dir = tempfile::tempdir().unwrap();
    let provider = LocalProvider::open(&dir.path().join("tenant.db")).unwrap();
    let mut state = State::empty("prop");
    let sandbox = |on: bool| {
        on.then_some(InstGen {
            sandbox: true,
            admin: 0,
            group: None,
            name: 0,
            recipients: false,
        })
    };
    let steps = [
        (30, vec![None, None, sandbox(true)]),
        (6, vec![None, None, sandbox(true)]),
        (6, vec![None, sandbox(true), None]),
    ];
    for (step, (pro, instances)) in steps.into_iter().enumerate() {
        let g = TenantGen {
            pro,
            basic: 0,
            users: vec![],
            groups: vec![],
            instances,
        };
        let mut desired = build(&g);
        desired
            .licenses
            .as_mut()
            .unwrap()
            .insert(LicensePlan::Professional, pro);
        let plan = crmctl::plan::plan(&desired, &provider.observe().unwrap(), &state);
        assert!(!plan.has_errors(), "{:?}", plan.diagnostics);
        state = apply_on(&plan, &provider, &state, apply::DEFAULT_PARALLELISM)
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
    }
}

/// issue 10 item 4 (I4, T5): a plan that buys a slot and also changes a provisioning
/// instance has an I4 error, and apply runs none of it: no billable purchase is made.
#[test]
fn plan_with_errors_buys_nothing() {
    let yaml = "domain: prop.onmicrosoft.com\nlicenses: {professional: 5}\nversions: [7.0.0, 7.1.0, 8.0.0, 8.1.0]\ninstances:\n  i1: {id: i1, name: p, url: prop-i0, type: production, slot: production, region: NA, currency: USD, language: 1033, status: provisioning, version: 8.1.0}\n";
    let (_dir, provider) = local_seeded(crmctl::desired::load::from_yaml(yaml).unwrap());
    let before = provider.observe().unwrap();
    let mut desired = build(&TenantGen {
        pro: 5,
        basic: 0,
        users: vec![],
        groups: vec![],
        instances: vec![
            Some(InstGen {
                sandbox: false,
                admin: 0,
                group: None,
                name: 0,
                recipients: true,
            }),
            None,
            Some(InstGen {
                sandbox: false,
                admin: 0,
                group: None,
                name: 0,
                recipients: false,
            }),
        ],
    });
    desired
        .licenses
        .as_mut()
        .unwrap()
        .insert(LicensePlan::Professional, 5);
    let mut state = State::empty("prop");
    state.resources.insert(
        "instances.i0".into(),
        crmctl::state::Resource {
            kind: crmctl::domain::op::ObjKind::Instance,
            id: "i1".into(),
            protect: false,
            protected_at: None,
            copied_from: None,
            ids: Default::default(),
        },
    );
    let plan = crmctl::plan::plan(&desired, &before, &state);
    assert!(plan
        .actions
        .iter()
        .any(|a| a.kind == crmctl::domain::op::ActionKind::PurchaseInstance));
    assert!(
        plan.diagnostics
            .iter()
            .any(|d| d.is_error() && d.rule.as_deref() == Some("I4")),
        "{:#?}",
        plan.diagnostics
    );
    let opts = ApplyOptions {
        allow_destroy: true,
        ..ApplyOptions::default()
    };
    let r = apply::apply(
        &plan,
        &provider,
        &mut state,
        &mut |_, _| Ok(()),
        &opts,
        &|_| {},
    );
    assert!(
        matches!(r, Err(apply::ApplyError::PlanHasErrors(_))),
        "{r:?}"
    );
    assert_eq!(
        provider.observe().unwrap(),
        before,
        "nothing was bought or changed"
    );
}

// ----- issue 10: planner / provider agreement against out-of-band tenants -----

/// An observed instance, as the service may hold it after changes made outside crmctl.
#[derive(Debug, Clone)]
struct ObsInstGen {
    sandbox: bool,
    /// The type was switched out of band: the instance sits in a slot of the other kind.
    switched: bool,
    /// 0..6: ready (weighted), provisioning, disabled.
    status: u8,
    /// Index into KNOWN_VERSIONS: 0 and 1 are n-3 and n-2 (U2).
    version: u8,
    admin: u8,
    eur: bool,
    /// Bound to the observed group.
    grouped: bool,
    /// Managed (in the state) rather than found by URL name.
    managed: bool,
}

#[derive(Debug, Clone)]
struct ObsUserGen {
    /// 0 none, 1 professional, 2 basic, 3 enterprise (maybe none bought: a conflict, T3).
    license: u8,
    /// 0..3 read-write, 3 administrative, 4 non-interactive.
    mode: u8,
    global_admin: bool,
    /// Roles in observed instance k.
    roles: Vec<u8>,
    managed: bool,
}

#[derive(Debug, Clone)]
struct ObservedGen {
    pro: u32,
    enterprise: u32,
    basic: u32,
    slots_production: u32,
    slots_sandbox: u32,
    instances: Vec<Option<ObsInstGen>>,
    users: Vec<Option<ObsUserGen>>,
}

fn observed_gen() -> impl Strategy<Value = ObservedGen> {
    let inst = (
        any::<bool>(),
        prop::bool::weighted(0.15),
        0u8..6,
        0u8..4,
        0u8..3,
        prop::bool::weighted(0.2),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(sandbox, switched, status, version, admin, eur, grouped, managed)| ObsInstGen {
                sandbox,
                switched,
                status,
                version,
                admin,
                eur,
                grouped,
                managed,
            },
        );
    let user = (
        0u8..4,
        0u8..5,
        prop::bool::weighted(0.4),
        prop::collection::vec(0u8..4, 0..2),
        any::<bool>(),
    )
        .prop_map(|(license, mode, global_admin, roles, managed)| ObsUserGen {
            license,
            mode,
            global_admin,
            roles,
            managed,
        });
    (
        // Professional around the T6 threshold (the included sandbox comes and goes).
        prop::sample::select(vec![0u32, 6, 24, 25, 30]),
        0u32..2,
        0u32..3,
        0u32..2,
        0u32..2,
        prop::collection::vec(prop::option::of(inst), 0..4),
        prop::collection::vec(prop::option::of(user), 0..7),
    )
        .prop_map(
            |(pro, enterprise, basic, slots_production, slots_sandbox, instances, users)| {
                ObservedGen {
                    pro,
                    enterprise,
                    basic,
                    slots_production,
                    slots_sandbox,
                    instances,
                    users,
                }
            },
        )
}

/// The observed tenant and the state that manages part of it. Instance k has URL name
/// `prop-ik` and user i the UPN `ui@prop.com`, like the desired files of [`build`], so
/// that the planner adopts, edits, switches or deletes them.
fn observed(g: &ObservedGen) -> (crmctl::observed::Tenant, State) {
    use crmctl::domain::kinds::AdminRole;
    use crmctl::observed::{AdminModeState, Group, Instance as TI, InstanceStatus, User as TU};
    let mut t = crmctl::observed::Tenant::fresh("prop.onmicrosoft.com");
    let mut state = State::empty("prop");
    let mut put = |address: String, kind: crmctl::domain::op::ObjKind, id: &str| {
        state.resources.insert(
            address,
            crmctl::state::Resource {
                kind,
                id: id.to_string(),
                protect: false,
                protected_at: None,
                copied_from: None,
                ids: Default::default(),
            },
        );
    };
    for (plan, n) in [
        (LicensePlan::Professional, g.pro),
        (LicensePlan::Enterprise, g.enterprise),
        (LicensePlan::Basic, g.basic),
    ] {
        if n > 0 {
            t.licenses.insert(plan, n);
        }
    }
    t.slots.production = g.slots_production;
    t.slots.sandbox = g.slots_sandbox;
    let group_id = "grp-obs";
    let mut any_grouped = false;
    for (k, ig) in g.instances.iter().enumerate() {
        let Some(ig) = ig else { continue };
        let kind = if ig.sandbox {
            InstanceType::Sandbox
        } else {
            InstanceType::Production
        };
        let slot = match (kind, ig.switched) {
            (InstanceType::Sandbox, true) => InstanceType::Production,
            // switched to production out of band, still in its sandbox slot (I7)
            (InstanceType::Production, true) => InstanceType::Sandbox,
            (k, false) => k,
        };
        let id = format!("obs-i{k}");
        let admin_mode = match (kind, ig.admin) {
            (InstanceType::Sandbox, 1) => AdminModeState {
                enabled: true,
                background_operations: false,
                message: None,
            },
            (InstanceType::Sandbox, 2) => AdminModeState {
                enabled: true,
                background_operations: true,
                message: Some("maintenance".into()),
            },
            _ => AdminModeState::default(),
        };
        any_grouped |= ig.grouped;
        t.instances.insert(
            id.clone(),
            TI {
                id: id.clone(),
                name: format!("Instance {k}"),
                url: format!("prop-i{k}"),
                kind,
                slot,
                purpose: String::new(),
                region: Region::NA,
                currency: if ig.eur { "EUR" } else { "USD" }.into(),
                language: 1033,
                security_group: ig.grouped.then(|| group_id.to_string()),
                status: match ig.status {
                    4 => InstanceStatus::Provisioning,
                    5 => InstanceStatus::Disabled,
                    _ => InstanceStatus::Ready,
                },
                version: crmctl::observed::KNOWN_VERSIONS[ig.version as usize].to_string(),
                admin_mode,
                notification_recipients: vec![],
                update: None,
            },
        );
        if ig.managed {
            put(
                format!("instances.i{k}"),
                crmctl::domain::op::ObjKind::Instance,
                &id,
            );
        }
    }
    let mut members = std::collections::BTreeSet::new();
    for (i, ug) in g.users.iter().enumerate() {
        let Some(ug) = ug else { continue };
        let id = format!("obs-u{i}");
        let mut roles = BTreeMap::new();
        for k in &ug.roles {
            let iid = format!("obs-i{k}");
            if t.instances.contains_key(&iid) {
                roles.insert(
                    iid,
                    std::collections::BTreeSet::from([ROLES[0].to_string()]),
                );
            }
        }
        let mode = match ug.mode {
            3 => AccessMode::Administrative,
            4 => AccessMode::NonInteractive,
            _ => AccessMode::ReadWrite,
        };
        if i % 2 == 0 {
            members.insert(id.clone());
        }
        t.users.insert(
            id.clone(),
            TU {
                id: id.clone(),
                upn: format!("u{i}@prop.com"),
                name: format!("User {i}"),
                license: match ug.license {
                    1 => Some(LicensePlan::Professional),
                    2 => Some(LicensePlan::Basic),
                    3 => Some(LicensePlan::Enterprise),
                    _ => None,
                },
                access_mode: mode,
                roles,
                admin_roles: if ug.global_admin {
                    std::collections::BTreeSet::from([AdminRole::GlobalAdmin])
                } else {
                    Default::default()
                },
                synced: false,
                application_id: None,
                usage_location: None,
            },
        );
        if ug.managed {
            put(
                format!("users.u{i}@prop.com"),
                crmctl::domain::op::ObjKind::User,
                &id,
            );
        }
    }
    if any_grouped {
        t.groups.insert(
            group_id.to_string(),
            Group {
                id: group_id.to_string(),
                name: "Group 0".into(),
                description: String::new(),
                members,
            },
        );
    }
    (t, state)
}

fn agreement_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: agreement_cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// issue 10: a random desired file against a random observed tenant with out-of-band
    /// states (provisioning and disabled instances, license conflicts, n-2 versions, 0-3
    /// global admins, lost included slots, switched types): either the plan has errors
    /// and applying it changes nothing, or the local provider accepts every action in one
    /// pass and the next plan shows no changes.
    #[test]
    fn planner_and_provider_agree_on_out_of_band_tenants(
        obs in observed_gen(),
        want in tenant_gen(),
        admins in prop::collection::vec(0u8..3, 7),
        extras in prop::collection::vec((0u8..6, prop::bool::weighted(0.2), prop::bool::weighted(0.3)), 4),
    ) {
        let (tenant, mut state) = observed(&obs);
        let (_dir, provider) = local_seeded(tenant);
        let mut desired = build(&want);
        // Tenant admin roles: managed as global admin, as none, or not managed.
        for (i, u) in desired.users.as_mut().unwrap().iter_mut() {
            let n: usize = i[1..i.find('@').unwrap()].parse().unwrap();
            u.admin_roles = match admins[n] {
                0 => Some(vec![crmctl::domain::kinds::AdminRole::GlobalAdmin]),
                1 => Some(vec![]),
                _ => None,
            };
            // P6: some global admins hold roles without a license.
            if admins[n] == 0 && n % 2 == 1 && u.access_mode == Some(AccessMode::ReadWrite) {
                u.license = None;
            }
        }
        // Per instance: an update approval (U2-U4; 7.0.0 .. 8.1.0 or none), EUR as the
        // currency (I3: a reset of a sandbox, an error for production), and a copy from
        // i0 onto a sandbox (I11, only when created) with recipients differing in case.
        let keys: Vec<String> = desired.instances.as_ref().unwrap().keys().cloned().collect();
        for (n, key) in keys.iter().enumerate() {
            let (update, eur, copy) = extras[n % extras.len()];
            let i = desired.instances.as_mut().unwrap().get_mut(key).unwrap();
            if let Some(v) = crmctl::observed::KNOWN_VERSIONS.get(update as usize) {
                i.update = Some(crmctl::desired::model::UpdateApproval {
                    target_version: v.to_string(),
                    preferred: "2030-01-01T00:00:00Z".into(),
                    alternate: "2030-01-02T00:00:00Z".into(),
                });
            }
            if eur {
                i.currency = Some("EUR".into());
            }
            if copy && key != "i0" && i.kind == InstanceType::Sandbox && keys.iter().any(|k| k == "i0") {
                i.copy_from = Some(crmctl::desired::model::CopyFrom {
                    instance: "i0".into(),
                    kind: crmctl::domain::kinds::CopyKind::Minimal,
                });
                i.currency = None;
                i.notification_recipients = Some(vec!["ops@prop.com".into(), "OPS@prop.com".into()]);
            }
        }
        let text = crmctl::desired::load::to_yaml(&desired).unwrap();
        let loaded = crmctl::desired::load::load_str("prop.yaml", text.clone());
        // A file the validator refuses never reaches the planner (e.g. I11: a copy with
        // another currency than its source's in the file).
        let Ok(loaded) = loaded else { return Ok(()) };
        let desired = loaded.desired;

        let before = provider.observe().unwrap();
        let plan = crmctl::plan::plan(&desired, &before, &state);
        if std::env::var("AGREE_STATS").is_ok() {
            let rules: Vec<String> = plan.diagnostics.iter().filter(|d| d.is_error()).map(|d| format!("{}:{}", d.rule.clone().unwrap_or_default(), d.message.chars().take(60).collect::<String>())).collect();
            eprintln!("STAT {} {:?}", plan.actions.len(), rules);
        }
        if plan.has_errors() {
            let opts = ApplyOptions { allow_destroy: true, ..ApplyOptions::default() };
            let mut save = |_: &State, _: &[crmctl::state::store::StateChange]| Ok(());
            let result = apply::apply(&plan, &provider, &mut state, &mut save, &opts, &|_| {});
            prop_assert!(matches!(result, Err(apply::ApplyError::PlanHasErrors(_))));
            prop_assert_eq!(provider.observe().unwrap(), before, "a plan with errors changed the tenant");
            return Ok(());
        }
        let shown: Vec<String> = plan.actions.iter().map(|a| format!("{} {} <- {:?}", a.kind.as_str(), a.address, a.depends_on)).collect();
        state = apply_on(&plan, &provider, &state, 4).map_err(|failures| TestCaseError::fail(format!("the provider refused what the planner accepted: {failures}\nplan: {shown:#?}\nobserved: {before:#?}\n{text}")))?;
        let again = crmctl::plan::plan(&desired, &provider.observe().unwrap(), &state);
        let left: Vec<String> = again.actions.iter().map(|a| format!("{} {} {:?}", a.kind.as_str(), a.address, a.changes)).collect();
        prop_assert!(again.actions.is_empty() && !again.has_errors(), "not converged: {left:#?}\n{:?}\nplan: {shown:#?}\nobserved: {before:#?}\n{text}", again.diagnostics);
    }
}
