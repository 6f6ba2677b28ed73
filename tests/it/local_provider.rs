//! The local provider enforces domain.md on its own: each refusal names its rule, and a
//! refused op changes nothing (neither the cache nor the file).

use std::collections::{BTreeMap, BTreeSet};

use crmctl::domain::kinds::{AccessMode, AdminRole, CopyKind, InstanceType, LicensePlan, Region};
use crmctl::domain::op::{ObjKind, ObjRef, Op};
use crmctl::observed::{Group, Instance, InstanceStatus, Tenant, UpdatePhase, UpdateState};
use crmctl::provider::local::LocalProvider;
use crmctl::provider::ProviderError;

use crate::common::{by_id as r, instance, local_seeded as open_with, user};

/// A tenant with every slot taken: 30 professional (included sandbox, T6) + 1 bought
/// sandbox slot; `prod` (production), `sbx` (sandbox, 5 non-interactive users with roles),
/// `prov` (provisioning sandbox); `dis` is a disabled production instance in a bought
/// production slot; group `g1` bound to `prod`; two global admins.
fn base() -> Tenant {
    let mut t = Tenant::fresh("coho.onmicrosoft.com");
    t.licenses.insert(LicensePlan::Professional, 30);
    t.licenses.insert(LicensePlan::Basic, 1);
    t.slots.sandbox = 1;
    t.slots.production = 1;
    let mut add_i = |i: Instance| {
        t.instances.insert(i.id.clone(), i);
    };
    let mut prod = instance("prod", InstanceType::Production, InstanceStatus::Ready);
    prod.security_group = Some("g1".into());
    add_i(prod);
    add_i(instance(
        "sbx",
        InstanceType::Sandbox,
        InstanceStatus::Ready,
    ));
    add_i(instance(
        "prov",
        InstanceType::Sandbox,
        InstanceStatus::Provisioning,
    ));
    add_i(instance(
        "dis",
        InstanceType::Production,
        InstanceStatus::Disabled,
    ));
    let mut users = vec![
        user(
            "ana",
            Some(LicensePlan::Professional),
            AccessMode::ReadWrite,
        ),
        user("bob", None, AccessMode::ReadWrite),
        user("cid", Some(LicensePlan::Basic), AccessMode::ReadWrite),
        user("app", None, AccessMode::Application),
        user(
            "ni6",
            Some(LicensePlan::Professional),
            AccessMode::NonInteractive,
        ),
    ];
    for n in 1..=5 {
        let mut u = user(&format!("ni{n}"), None, AccessMode::NonInteractive);
        u.roles
            .insert("sbx".into(), BTreeSet::from(["Integration".to_string()]));
        users.push(u);
    }
    for n in 1..=2 {
        let mut u = user(&format!("ga{n}"), None, AccessMode::ReadWrite);
        u.admin_roles.insert(AdminRole::GlobalAdmin);
        users.push(u);
    }
    for u in users {
        t.users.insert(u.id.clone(), u);
    }
    t.groups.insert(
        "g1".into(),
        Group {
            id: "g1".into(),
            name: "Sales".into(),
            description: String::new(),
            members: BTreeSet::from(["ana".to_string()]),
        },
    );
    t
}

fn configure(url: &str, kind: InstanceType) -> Op {
    Op::ConfigureInstance {
        name: url.to_string(),
        url: url.to_string(),
        kind,
        purpose: String::new(),
        region: Region::NA,
        currency: "USD".into(),
        language: 1033,
        security_group: None,
    }
}

struct Case {
    name: &'static str,
    rule: &'static str,
    tweak: fn(&mut Tenant),
    op: Op,
}

fn no_tweak(_: &mut Tenant) {}

#[test]
fn every_refusal_names_its_rule_and_changes_nothing() {
    let cases =
        vec![
        Case {
            name: "I8 delete a production instance",
            rule: "I8",
            tweak: no_tweak,
            op: Op::DeleteInstance {
                instance: r("prod"),
            },
        },
        Case {
            // issue 10 item 6
            name: "T6 a reduction below 25 Professional + Enterprise leaves a sandbox on no slot",
            rule: "T6",
            tweak: no_tweak,
            op: Op::ReduceLicenses {
                plan: LicensePlan::Professional,
                to: 10,
            },
        },
        Case {
            name: "P3 a sixth non-interactive user with roles in one instance",
            rule: "P3",
            tweak: no_tweak,
            op: Op::AssignRoles {
                user: r("ni6"),
                instance: r("sbx"),
                roles: vec!["Integration".into()],
            },
        },
        Case {
            name: "P3 a user with roles in a full instance switched to non-interactive",
            rule: "P3",
            tweak: |t| {
                t.users
                    .get_mut("ana")
                    .unwrap()
                    .roles
                    .insert("sbx".into(), BTreeSet::from(["Sales".to_string()]));
            },
            op: Op::SetAccessMode {
                user: r("ana"),
                mode: AccessMode::NonInteractive,
            },
        },
        Case {
            name: "P3 application users are never licensed",
            rule: "P3",
            tweak: no_tweak,
            op: Op::AssignLicense {
                user: r("app"),
                plan: LicensePlan::Professional,
            },
        },
        Case {
            name: "T4 reduce licenses below the assigned count",
            rule: "T4",
            tweak: no_tweak,
            op: Op::ReduceLicenses {
                plan: LicensePlan::Professional,
                to: 1,
            },
        },
        Case {
            name: "T3 assign a license beyond the purchased count",
            rule: "T3",
            tweak: no_tweak,
            op: Op::AssignLicense {
                user: r("bob"),
                plan: LicensePlan::Basic,
            },
        },
        Case {
            name: "I10 background operations off without administration mode",
            rule: "I10",
            tweak: no_tweak,
            op: Op::SetAdminMode {
                instance: r("sbx"),
                enabled: false,
                background_operations: false,
                message: None,
            },
        },
        Case {
            name: "I10 administration mode on a production instance",
            rule: "I10",
            tweak: no_tweak,
            op: Op::SetAdminMode {
                instance: r("prod"),
                enabled: true,
                background_operations: true,
                message: None,
            },
        },
        Case {
            name: "I10 switch a sandbox in administration mode to production",
            rule: "I10",
            tweak: |t| {
                t.instances.get_mut("sbx").unwrap().admin_mode.enabled = true;
                t.slots.production += 1;
            },
            op: Op::SwitchInstance {
                instance: r("sbx"),
                to: InstanceType::Production,
            },
        },
        Case {
            name: "I11 copy onto a production instance",
            rule: "I11",
            tweak: no_tweak,
            op: Op::CopyInstance {
                source: r("sbx"),
                target: r("prod"),
                kind: CopyKind::Full,
            },
        },
        Case {
            name: "I6 copy lands in the source's region",
            rule: "I6",
            tweak: |t| t.instances.get_mut("sbx").unwrap().region = Region::EMEA,
            op: Op::CopyInstance {
                source: r("prod"),
                target: r("sbx"),
                kind: CopyKind::Minimal,
            },
        },
        Case {
            name: "I2 configure a sandbox without a free sandbox slot",
            rule: "I2",
            tweak: no_tweak,
            op: configure("newsbx", InstanceType::Sandbox),
        },
        Case {
            name: "I2 configure a production instance without a free production slot",
            rule: "I2",
            tweak: no_tweak,
            op: configure("newprod", InstanceType::Production),
        },
        Case {
            name: "I4 edit a provisioning instance",
            rule: "I4",
            tweak: no_tweak,
            op: Op::UpdateInstance {
                instance: r("prov"),
                name: Some("New name".into()),
                url: None,
                purpose: None,
                security_group: None,
            },
        },
        Case {
            name: "I4 edit a disabled instance",
            rule: "I4",
            tweak: no_tweak,
            op: Op::UpdateInstance {
                instance: r("dis"),
                name: None,
                url: None,
                purpose: Some("x".into()),
                security_group: None,
            },
        },
        Case {
            name: "I9 (I3) currency changes only by resetting a sandbox: reset production",
            rule: "I9",
            tweak: no_tweak,
            op: Op::ResetInstance {
                instance: r("prod"),
                currency: "EUR".into(),
                language: 1036,
            },
        },
        Case {
            name: "T5 buy an instance on a trial",
            rule: "T5",
            tweak: |t| t.trial = true,
            op: Op::PurchaseInstance {
                kind: InstanceType::Sandbox,
            },
        },
        Case {
            name: "T5 buy storage without Professional or Enterprise licenses",
            rule: "T5",
            tweak: |t| {
                t.licenses.remove(&LicensePlan::Professional);
                for u in t.users.values_mut() {
                    u.license = None;
                }
            },
            op: Op::PurchaseStorage { to_gb: 10 },
        },
        Case {
            name: "T7 a 51st production slot",
            rule: "T7",
            tweak: |t| t.slots.production = 49,
            op: Op::PurchaseInstance {
                kind: InstanceType::Production,
            },
        },
        Case {
            name: "T7 a 76th sandbox slot",
            rule: "T7",
            tweak: |t| t.slots.sandbox = 74,
            op: Op::PurchaseInstance {
                kind: InstanceType::Sandbox,
            },
        },
        Case {
            name: "I5 URL name already used",
            rule: "I5",
            tweak: |t| t.slots.production += 1,
            op: configure("sbx", InstanceType::Production),
        },
        Case {
            // issue 9 item 2, I5: URL names are unique without regard to case (an instance
            // stored as `SBX` keeps `sbx` taken); was compared exactly and accepted.
            name: "I5 URL name used by another instance in another case",
            rule: "I5",
            tweak: |t| {
                t.slots.production += 1;
                t.instances.get_mut("sbx").unwrap().url = "SBX".into();
            },
            op: configure("sbx", InstanceType::Production),
        },
        Case {
            // issue 9 item 2, I5: the same for a rename.
            name: "I5 rename onto another instance's URL in another case",
            rule: "I5",
            tweak: |t| t.instances.get_mut("prod").unwrap().url = "Prod".into(),
            op: Op::UpdateInstance {
                instance: r("sbx"),
                name: None,
                url: Some("prod".into()),
                purpose: None,
                security_group: None,
            },
        },
        Case {
            name: "I5 invalid URL name",
            rule: "I5",
            tweak: |t| t.slots.production += 1,
            op: configure("Bad_Name", InstanceType::Production),
        },
        Case {
            name: "I5 rename onto another instance's URL",
            rule: "I5",
            tweak: no_tweak,
            op: Op::UpdateInstance {
                instance: r("sbx"),
                name: None,
                url: Some("prod".into()),
                purpose: None,
                security_group: None,
            },
        },
        Case {
            name: "I7 production -> sandbox without a free slot",
            rule: "I7",
            tweak: no_tweak,
            op: Op::SwitchInstance {
                instance: r("prod"),
                to: InstanceType::Sandbox,
            },
        },
        Case {
            name: "I7 sandbox -> production without a free production slot",
            rule: "I7",
            tweak: no_tweak,
            op: Op::SwitchInstance {
                instance: r("sbx"),
                to: InstanceType::Production,
            },
        },
        Case {
            name: "I9 reset a production instance",
            rule: "I9",
            tweak: no_tweak,
            op: Op::ResetInstance {
                instance: r("prod"),
                currency: "USD".into(),
                language: 1033,
            },
        },
        Case {
            name: "I12 delete a group bound to an instance",
            rule: "I12",
            tweak: no_tweak,
            op: Op::DeleteGroup { group: r("g1") },
        },
        Case {
            name: "I12 bind a group that does not exist",
            rule: "I12",
            tweak: no_tweak,
            op: Op::UpdateInstance {
                instance: r("sbx"),
                name: None,
                url: None,
                purpose: None,
                security_group: Some(Some(r("nogroup"))),
            },
        },
        Case {
            name: "P2 roles for a read-write user without a license",
            rule: "P2",
            tweak: no_tweak,
            op: Op::AssignRoles {
                user: r("bob"),
                instance: r("sbx"),
                roles: vec!["Salesperson".into()],
            },
        },
        Case {
            name:
                "I4 roles in an instance that is not ready (issue 10 item 4: as the planner says)",
            rule: "I4",
            tweak: no_tweak,
            op: Op::AssignRoles {
                user: r("ana"),
                instance: r("prov"),
                roles: vec!["Salesperson".into()],
            },
        },
        Case {
            name: "P4 administrative access mode without a license",
            rule: "P4",
            tweak: no_tweak,
            op: Op::SetAccessMode {
                user: r("bob"),
                mode: AccessMode::Administrative,
            },
        },
        Case {
            name: "P4 a user cannot be created non-interactive",
            rule: "P4",
            tweak: no_tweak,
            op: Op::CreateUser {
                upn: "svc@coho.com".into(),
                name: "svc".into(),
                access_mode: AccessMode::NonInteractive, usage_location: None,
                application_id: None,
            },
        },
        Case {
            name: "P1 duplicate user principal name",
            rule: "P1",
            tweak: no_tweak,
            op: Op::CreateUser {
                upn: "ANA@coho.com".into(),
                name: "Ana again".into(),
                access_mode: AccessMode::ReadWrite, usage_location: None,
                application_id: None,
            },
        },
        Case {
            // issue 9 item 2, P1: a UPN names one user without regard to case; respelling
            // a user's UPN as another user's is refused like a create would be.
            name: "P1 respell a UPN as another user's in another case",
            rule: "P1",
            tweak: no_tweak,
            op: Op::UpdateUser {
                user: r("bob"),
                name: None,
                admin_roles: None,
                upn: Some("ANA@coho.com".into()), usage_location: None,
            },
        },
        Case {
            // issue 12 item 4: the on-premises directory masters a synced user's name.
            name: "P1 rename a user synchronised from on-premises",
            rule: "P1",
            tweak: |t| t.users.get_mut("bob").unwrap().synced = true,
            op: Op::UpdateUser {
                user: r("bob"),
                name: Some("Robert".into()),
                admin_roles: None,
                upn: None,
                usage_location: None,
            },
        },
        Case {
            // issue 12 item 4: ... and whether it exists.
            name: "P1 delete a user synchronised from on-premises",
            rule: "P1",
            tweak: |t| t.users.get_mut("bob").unwrap().synced = true,
            op: Op::DeleteUser { user: r("bob") },
        },
        Case {
            name: "P6 keep two global admins",
            rule: "P6",
            tweak: no_tweak,
            op: Op::UpdateUser {
                user: r("ga1"),
                name: None,
                admin_roles: Some(vec![]),
                upn: None, usage_location: None,
            },
        },
        Case {
            name: "P6 delete one of two global admins",
            rule: "P6",
            tweak: no_tweak,
            op: Op::DeleteUser { user: r("ga2") },
        },
        Case {
            name: "U4 reschedule an update in progress",
            rule: "U4",
            tweak: |t| {
                t.instances.get_mut("sbx").unwrap().update = Some(UpdateState {
                    target_version: "8.1.0".into(),
                    preferred: "2016-05-01T22:00:00Z".into(),
                    alternate: "2016-05-08T22:00:00Z".into(),
                    state: UpdatePhase::InProgress,
                });
            },
            op: Op::ScheduleUpdate {
                instance: r("sbx"),
                target_version: "8.1.0".into(),
                preferred: "2016-06-01T22:00:00Z".into(),
                alternate: "2016-06-08T22:00:00Z".into(),
            },
        },
        Case {
            name: "U3 update to an unknown version",
            rule: "U3",
            tweak: no_tweak,
            op: Op::ScheduleUpdate {
                instance: r("sbx"),
                target_version: "9.0.0".into(),
                preferred: "2016-06-01T22:00:00Z".into(),
                alternate: "2016-06-08T22:00:00Z".into(),
            },
        },
        Case {
            name: "U2 update to an older version",
            rule: "U2",
            tweak: no_tweak,
            op: Op::ScheduleUpdate {
                instance: r("sbx"),
                target_version: "7.1.0".into(),
                preferred: "2016-06-01T22:00:00Z".into(),
                alternate: "2016-06-08T22:00:00Z".into(),
            },
        },
    ];
    for case in cases {
        let mut t = base();
        (case.tweak)(&mut t);
        let (dir, p) = open_with(t);
        let before = p.observe().unwrap();
        match p.execute(&case.op) {
            Err(ProviderError::Refused { rule, message }) => {
                assert_eq!(rule, case.rule, "{}: wrong rule ({message})", case.name);
                assert!(!message.is_empty());
            }
            other => panic!(
                "{}: expected a refusal citing {}, got {other:?}",
                case.name, case.rule
            ),
        }
        assert_eq!(
            p.observe().unwrap(),
            before,
            "{}: the cache changed",
            case.name
        );
        let reopened = LocalProvider::open(&dir.path().join("tenant.db")).unwrap();
        assert_eq!(
            reopened.observe().unwrap(),
            before,
            "{}: the file changed",
            case.name
        );
    }
}

#[test]
fn fresh_tenant_is_not_created_by_observe_and_ids_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/tenant.db");
    let p = LocalProvider::open(&path).unwrap();
    let t = p.observe().unwrap();
    assert_eq!(t, Tenant::fresh(""));
    assert_eq!(t.free_slots(InstanceType::Production), 1);
    assert!(!path.exists(), "observe must not create the tenant file");
    // A refused op does not create the file either.
    assert!(p
        .execute(&Op::ReduceLicenses {
            plan: LicensePlan::Basic,
            to: 1
        })
        .is_err());
    assert!(!path.exists());

    let u1 = p
        .execute(&Op::CreateUser {
            upn: "ana@coho.com".into(),
            name: "Ana".into(),
            access_mode: AccessMode::ReadWrite,
            usage_location: None,
            application_id: None,
        })
        .unwrap();
    assert_eq!(u1.created_id.as_deref(), Some("usr-000001"));
    assert!(path.exists(), "the first change creates the file");
    let g1 = p
        .execute(&Op::CreateGroup {
            name: "Sales".into(),
            description: String::new(),
        })
        .unwrap();
    assert_eq!(g1.created_id.as_deref(), Some("grp-000001"));
    let i1 = p
        .execute(&configure("coho", InstanceType::Production))
        .unwrap();
    assert_eq!(i1.created_id.as_deref(), Some("org-000001"));
    let inst = &p.observe().unwrap().instances["org-000001"];
    // A configured instance starts ready on the newest version.
    assert_eq!(inst.status, InstanceStatus::Ready);
    assert_eq!(inst.version, "8.1.0");

    // Counters survive a reopen: the next id continues.
    drop(p);
    let p = LocalProvider::open(&path).unwrap();
    let u2 = p
        .execute(&Op::CreateUser {
            upn: "bob@coho.com".into(),
            name: "Bob".into(),
            access_mode: AccessMode::ReadWrite,
            usage_location: None,
            application_id: None,
        })
        .unwrap();
    assert_eq!(u2.created_id.as_deref(), Some("usr-000002"));
}

#[test]
fn domain_hint_is_stored_with_the_first_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenant.db");
    let p = LocalProvider::open(&path).unwrap();
    p.set_domain_hint("coho.onmicrosoft.com").unwrap();
    assert!(!path.exists());
    p.execute(&Op::PurchaseLicenses {
        plan: LicensePlan::Basic,
        to: 2,
    })
    .unwrap();
    let p = LocalProvider::open(&path).unwrap();
    assert_eq!(p.observe().unwrap().domain, "coho.onmicrosoft.com");
    // A named tenant keeps its name.
    p.set_domain_hint("other.onmicrosoft.com").unwrap();
    assert_eq!(p.observe().unwrap().domain, "coho.onmicrosoft.com");
}

#[test]
fn the_file_matches_the_cache_after_every_kind_of_op() {
    let (dir, p) = open_with(base());
    let ops = vec![
        Op::PurchaseLicenses {
            plan: LicensePlan::Enterprise,
            to: 5,
        },
        Op::PurchaseStorage { to_gb: 10 },
        Op::ReduceStorage { to_gb: 5 },
        Op::PurchaseInstance {
            kind: InstanceType::Sandbox,
        },
        configure("extra", InstanceType::Sandbox),
        Op::CreateGroup {
            name: "Support".into(),
            description: "desk".into(),
        },
        Op::AddGroupMembers {
            group: r("grp-000001"),
            users: vec![r("ana"), r("cid")],
        },
        Op::RemoveGroupMembers {
            group: r("grp-000001"),
            users: vec![r("cid")],
        },
        Op::UpdateGroup {
            group: r("grp-000001"),
            name: Some("Helpdesk".into()),
            description: None,
        },
        Op::AssignRoles {
            user: r("ana"),
            instance: r("sbx"),
            roles: vec!["Salesperson".into(), "Manager".into()],
        },
        Op::RemoveRoles {
            user: r("ana"),
            instance: r("sbx"),
            roles: vec!["Manager".into()],
        },
        Op::UpdateUser {
            user: r("ana"),
            name: Some("Ana Trujillo".into()),
            admin_roles: Some(vec![AdminRole::BillingAdmin]),
            upn: None,
            // issue 12 item 4: stored in the file.
            usage_location: Some("DE".into()),
        },
        // issue 9 item 2 (P1): the user's own UPN in another case is accepted and stored.
        Op::UpdateUser {
            user: r("ana"),
            name: None,
            admin_roles: None,
            upn: Some("Ana@coho.com".into()),
            usage_location: None,
        },
        Op::SetAccessMode {
            user: r("ana"),
            mode: AccessMode::Administrative,
        },
        Op::RemoveLicense { user: r("ana") },
        Op::SetAdminMode {
            instance: r("sbx"),
            enabled: true,
            background_operations: false,
            message: Some("maintenance".into()),
        },
        Op::SetNotificationRecipients {
            instance: r("prod"),
            recipients: vec!["ops@coho.com".into()],
        },
        Op::ScheduleUpdate {
            instance: r("prod"),
            target_version: "8.1.0".into(),
            preferred: "2016-06-01T22:00:00Z".into(),
            alternate: "2016-06-08T22:00:00Z".into(),
        },
        Op::UpdateInstance {
            instance: r("org-000001"),
            name: Some("Extra".into()),
            url: Some("extra2".into()),
            purpose: Some("tests".into()),
            security_group: Some(Some(r("grp-000001"))),
        },
        Op::CopyInstance {
            source: r("prod"),
            target: r("org-000001"),
            kind: CopyKind::Full,
        },
        Op::ResetInstance {
            instance: r("sbx"),
            currency: "EUR".into(),
            language: 1036,
        },
        Op::DeleteUser { user: r("cid") },
        Op::PurchaseInstance {
            kind: InstanceType::Sandbox,
        },
        configure("gone", InstanceType::Sandbox),
        Op::DeleteInstance {
            instance: r("org-000002"),
        },
    ];
    for op in &ops {
        p.execute(op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
    let cached = p.observe().unwrap();
    let reopened = LocalProvider::open(&dir.path().join("tenant.db")).unwrap();
    assert_eq!(reopened.observe().unwrap(), cached);

    // Effects worth checking one by one.
    let copy = &cached.instances["org-000001"];
    assert!(
        copy.admin_mode.enabled && !copy.admin_mode.background_operations,
        "I11"
    );
    assert_eq!(copy.url, "extra2");
    assert_eq!(copy.security_group.as_deref(), Some("grp-000001"));
    let sbx = &cached.instances["sbx"];
    assert_eq!((sbx.currency.as_str(), sbx.language), ("EUR", 1036), "I9");
    assert_eq!(sbx.region, Region::NA, "I6: a reset stays in the region");
    assert!(!sbx.admin_mode.enabled);
    assert!(
        cached.users.values().all(|u| !u.roles.contains_key("sbx")),
        "reset wipes roles"
    );
    assert!(!cached.users.contains_key("cid"));
    assert_eq!(
        cached.users["ana"].upn, "Ana@coho.com",
        "issue 9 item 2: UPN respelled (P1)"
    );
    assert_eq!(
        cached.assigned(LicensePlan::Basic),
        0,
        "P5: deleting a user frees the license"
    );
    assert!(!cached.instances.contains_key("org-000002"));
    assert_eq!(
        cached.free_slots(InstanceType::Sandbox),
        1,
        "I2: the deleted sandbox's slot is free"
    );
    assert_eq!(cached.users["ana"].access_mode, AccessMode::Administrative);
    assert_eq!(cached.users["ana"].license, None);
    assert_eq!(
        cached.groups["grp-000001"].members,
        BTreeSet::from(["ana".to_string()])
    );
    assert_eq!(
        cached.instances["prod"].update.as_ref().unwrap().state,
        UpdatePhase::Approved
    );
}

#[test]
fn setting_ops_are_idempotent() {
    let (_dir, p) = open_with(base());
    let ops = vec![
        Op::PurchaseLicenses {
            plan: LicensePlan::Professional,
            to: 40,
        },
        Op::AssignLicense {
            user: r("bob"),
            plan: LicensePlan::Professional,
        },
        Op::AddGroupMembers {
            group: r("g1"),
            users: vec![r("bob")],
        },
        Op::AssignRoles {
            user: r("bob"),
            instance: r("sbx"),
            roles: vec!["Salesperson".into()],
        },
        Op::SetAdminMode {
            instance: r("sbx"),
            enabled: true,
            background_operations: false,
            message: None,
        },
        Op::SwitchInstance {
            instance: r("prod"),
            to: InstanceType::Production,
        },
        Op::Adopt {
            kind: ObjKind::User,
            id: "bob".into(),
            from: None,
        },
    ];
    for op in &ops {
        p.execute(op).unwrap();
        let once = p.observe().unwrap();
        p.execute(op)
            .unwrap_or_else(|e| panic!("repeating {op:?}: {e}"));
        assert_eq!(
            p.observe().unwrap(),
            once,
            "repeating {op:?} changed the tenant"
        );
    }
}

#[test]
fn i7_switch_uses_a_sandbox_slot_then_another_production_slot() {
    let mut t = base();
    t.instances.remove("prov");
    t.instances.remove("dis");
    t.slots.production = 1; // one free production slot besides prod's
    let (_dir, p) = open_with(t);
    // A sandbox slot is free (prov removed): prod moves into it, its production slot frees.
    p.execute(&Op::SwitchInstance {
        instance: r("prod"),
        to: InstanceType::Sandbox,
    })
    .unwrap();
    let t = p.observe().unwrap();
    assert_eq!(t.instances["prod"].slot, InstanceType::Sandbox);
    assert_eq!(t.free_slots(InstanceType::Production), 2);
    assert_eq!(t.free_slots(InstanceType::Sandbox), 0);
    // No sandbox slot left: sbx -> production takes a production slot and frees its sandbox slot.
    p.execute(&Op::SwitchInstance {
        instance: r("sbx"),
        to: InstanceType::Production,
    })
    .unwrap();
    let t = p.observe().unwrap();
    assert_eq!(t.instances["sbx"].slot, InstanceType::Production);
    assert_eq!(t.free_slots(InstanceType::Sandbox), 1);
    // Back again: the free sandbox slot is used.
    p.execute(&Op::SwitchInstance {
        instance: r("sbx"),
        to: InstanceType::Sandbox,
    })
    .unwrap();
    assert_eq!(
        p.observe().unwrap().instances["sbx"].slot,
        InstanceType::Sandbox
    );
    // Now no sandbox slot is free: production -> sandbox needs another free production slot.
    p.execute(&configure("p2", InstanceType::Production))
        .unwrap();
    p.execute(&Op::SwitchInstance {
        instance: r("org-000001"),
        to: InstanceType::Sandbox,
    })
    .unwrap();
    let t = p.observe().unwrap();
    assert_eq!(t.instances["org-000001"].kind, InstanceType::Sandbox);
    assert_eq!(t.instances["org-000001"].slot, InstanceType::Production);
    // I8: a sandbox can be deleted; its slot goes back to ready to configure (I2).
    let free = t.free_slots(InstanceType::Production);
    p.execute(&Op::DeleteInstance {
        instance: r("org-000001"),
    })
    .unwrap();
    assert_eq!(
        p.observe().unwrap().free_slots(InstanceType::Production),
        free + 1
    );
}

#[test]
fn p4_sequence_license_access_mode_remove_license() {
    let (_dir, p) = open_with(base());
    p.execute(&Op::AssignLicense {
        user: r("bob"),
        plan: LicensePlan::Professional,
    })
    .unwrap();
    p.execute(&Op::SetAccessMode {
        user: r("bob"),
        mode: AccessMode::Administrative,
    })
    .unwrap();
    p.execute(&Op::RemoveLicense { user: r("bob") }).unwrap();
    let bob = &p.observe().unwrap().users["bob"];
    assert_eq!(
        (bob.access_mode, bob.license),
        (AccessMode::Administrative, None)
    );
    // An administrative user needs no license for roles (P3).
    p.execute(&Op::AssignRoles {
        user: r("bob"),
        instance: r("sbx"),
        roles: vec!["System Customizer".into()],
    })
    .unwrap();
}

#[test]
fn unresolved_references_are_invalid_not_guessed() {
    let (_dir, p) = open_with(base());
    let op = Op::DeleteUser {
        user: ObjRef {
            address: "users.x@coho.com".into(),
            id: None,
        },
    };
    assert!(
        matches!(p.execute(&op), Err(ProviderError::Invalid(m)) if m.contains("users.x@coho.com"))
    );
    let op = Op::DeleteUser { user: r("nobody") };
    assert!(matches!(p.execute(&op), Err(ProviderError::NotFound(_))));
}

#[test]
fn import_checks_references() {
    let (_dir, p) = open_with(base());
    let mut bad = base();
    bad.groups
        .get_mut("g1")
        .unwrap()
        .members
        .insert("ghost".into());
    let err = p.admin_replace(bad).unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");
    // The tenant is unchanged (who changed what, issue 14 item 2, is the import's record).
    let mut now = p.observe().unwrap();
    now.changed = Default::default();
    assert_eq!(now, base());
}

fn create_user(p: &LocalProvider, upn: &str) -> Result<String, ProviderError> {
    p.execute(&Op::CreateUser {
        upn: upn.into(),
        name: upn.into(),
        access_mode: AccessMode::ReadWrite,
        usage_location: None,
        application_id: None,
    })
    .map(|o| o.created_id.expect("a created id"))
}

/// issue 9 item 1: several writers on one file (two applies with separate state files, a
/// run started after `force-unlock` of a live one, `crmctl local set` during an apply), as
/// on the service: ids come from the file's counters inside the write transaction, each
/// op is checked against the file's current content (P1, I5), and no writer reverts
/// another's change (a `used-gb` set, a license count).
#[test]
fn two_writers_on_one_file_never_reuse_ids_or_revert_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenant.db");
    // Both open the file before anything exists: both caches are the fresh tenant.
    let a = LocalProvider::open(&path).unwrap();
    let b = LocalProvider::open(&path).unwrap();
    let ana = create_user(&a, "ana@coho.com").unwrap();
    let bob = create_user(&b, "bob@coho.com").unwrap();
    assert_ne!(ana, bob, "b handed out an id from its stale counters");
    // P1 against the file, not against b's cache.
    match create_user(&b, "ANA@coho.com") {
        Err(ProviderError::Refused { rule, .. }) => assert_eq!(rule, "P1"),
        other => panic!("a second ana was created: {other:?}"),
    }
    // Instance ids and URL names (I5) too.
    let i1 = a
        .execute(&configure("coho", InstanceType::Production))
        .unwrap()
        .created_id
        .unwrap();
    b.execute(&Op::PurchaseLicenses {
        plan: LicensePlan::Professional,
        to: 30,
    })
    .unwrap();
    b.execute(&Op::PurchaseInstance {
        kind: InstanceType::Sandbox,
    })
    .unwrap();
    match b.execute(&configure("coho", InstanceType::Sandbox)) {
        Err(ProviderError::Refused { rule, .. }) => assert_eq!(rule, "I5"),
        other => panic!("a second `coho` was configured: {other:?}"),
    }
    let i2 = b
        .execute(&configure("coho-test", InstanceType::Sandbox))
        .unwrap()
        .created_id
        .unwrap();
    assert_ne!(i1, i2, "instance ids collide");

    // `crmctl local set storage used-gb` by a third writer, then an op of `a` that writes
    // the tenant-level row: the set survives.
    let c = LocalProvider::open(&path).unwrap();
    c.admin_update(|t| {
        t.storage.used_gb = 3.5;
        Ok(())
    })
    .unwrap();
    a.execute(&Op::PurchaseLicenses {
        plan: LicensePlan::Basic,
        to: 4,
    })
    .unwrap();
    // An admin set from a stale opener does not revert the licenses `a` bought.
    c.admin_update(|t| {
        t.storage.used_gb = 4.0;
        Ok(())
    })
    .unwrap();
    let t = LocalProvider::open(&path).unwrap().observe().unwrap();
    assert_eq!(t.storage.used_gb, 4.0);
    assert_eq!(t.purchased(LicensePlan::Basic), 4);
    assert_eq!(t.purchased(LicensePlan::Professional), 30);
    let upns: BTreeMap<&str, &str> = t
        .users
        .values()
        .map(|u| (u.id.as_str(), u.upn.as_str()))
        .collect();
    assert_eq!(
        upns,
        BTreeMap::from([
            (ana.as_str(), "ana@coho.com"),
            (bob.as_str(), "bob@coho.com")
        ])
    );
    assert_eq!(t.instances.len(), 2);
    // Every opener observes the file as it is now.
    assert_eq!(a.observe().unwrap(), t);
    assert_eq!(b.observe().unwrap(), t);
    assert_eq!(c.observe().unwrap(), t);

    // `local edit` from a snapshot that another writer changed meanwhile is refused.
    let before = c.observe().unwrap();
    let mut edited = before.clone();
    edited.storage.used_gb = 9.0;
    a.execute(&Op::PurchaseLicenses {
        plan: LicensePlan::Basic,
        to: 6,
    })
    .unwrap();
    let err = c.admin_replace_unchanged(&before, edited).unwrap_err();
    assert!(
        err.to_string()
            .contains("changed while it was being edited"),
        "{err}"
    );
    assert_eq!(c.observe().unwrap().purchased(LicensePlan::Basic), 6);
}

/// issue 9 item 1: two writers creating users at the same time on two threads (two
/// connections, like two processes): every id names the user its creator was told about.
#[test]
fn concurrent_writers_get_distinct_ids_that_name_their_objects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenant.db");
    let writers: Vec<LocalProvider> = (0..2)
        .map(|_| LocalProvider::open(&path).unwrap())
        .collect();
    let created: Vec<Vec<(String, String)>> = std::thread::scope(|s| {
        let handles: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(w, p)| {
                s.spawn(move || {
                    (0..150)
                        .map(|i| {
                            let upn = format!("w{w}-u{i}@coho.com");
                            (create_user(p, &upn).unwrap(), upn)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let t = LocalProvider::open(&path).unwrap().observe().unwrap();
    assert_eq!(t.users.len(), 300);
    for (id, upn) in created.iter().flatten() {
        assert_eq!(&t.users[id].upn, upn, "{id} names another user");
    }
}

/// issue 10 items 3 and 12 (P6, I7): the provider accepts what the planner now plans:
/// roles for a global or service admin without a license, and a sandbox still in a
/// production slot switched back to production with no free production slot.
#[test]
fn p6_license_free_admin_roles_and_i7_switch_back_into_own_slot() {
    let (_d, p) = open_with(base());
    let roles = |who: &str| Op::AssignRoles {
        user: r(who),
        instance: r("prod"),
        roles: vec!["System Administrator".into()],
    };
    // An unlicensed read-write user without an admin role: refused (P2).
    match p.execute(&roles("bob")) {
        Err(ProviderError::Refused { rule, .. }) => assert_eq!(rule, "P2"),
        other => panic!("expected a P2 refusal, got {other:?}"),
    }
    // A global admin, and the same user once service admin: accepted (P6).
    p.execute(&roles("ga1")).unwrap();
    p.execute(&Op::UpdateUser {
        user: r("bob"),
        name: None,
        upn: None,
        admin_roles: Some(vec![AdminRole::ServiceAdmin]),
        usage_location: None,
    })
    .unwrap();
    p.execute(&roles("bob")).unwrap();

    let mut t = base();
    let sbx = t.instances.get_mut("sbx").unwrap();
    sbx.slot = InstanceType::Production; // switched to sandbox out of band
    t.slots.production = 0;
    t.instances.remove("dis");
    let (_d, p) = open_with(t);
    assert_eq!(p.observe().unwrap().free_slots(InstanceType::Production), 0);
    p.execute(&Op::SwitchInstance {
        instance: r("sbx"),
        to: InstanceType::Production,
    })
    .unwrap();
}

// issue 12 item 4: a tenant file written before users had a usage location or a synced flag
// still opens (users are JSON rows; both fields default; no schema change), a changed user
// is written with them, and they are read back.
#[test]
fn a_tenant_file_from_before_usage_location_opens_and_stores_it() {
    let (dir, p) = open_with(base());
    drop(p);
    let path = dir.path().join("tenant.db");
    let old_row = r#"{"id":"bob","upn":"bob@coho.com","name":"Bob","license":null,"access_mode":"read-write","admin_roles":[]}"#;
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute("UPDATE users SET data = ?1 WHERE id = 'bob'", [old_row])
            .unwrap();
    }
    let p = LocalProvider::open(&path).unwrap();
    let bob = p.observe().unwrap().users["bob"].clone();
    assert_eq!((bob.usage_location, bob.synced), (None, false));
    p.execute(&Op::UpdateUser {
        user: r("bob"),
        name: Some("Bob B".into()),
        admin_roles: None,
        upn: None,
        usage_location: None,
    })
    .unwrap();
    let row: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT data FROM users WHERE id = 'bob'", [], |r| r.get(0))
        .unwrap();
    assert!(
        row.contains(r#""usage_location":null"#) && row.contains(r#""synced":false"#),
        "{row}"
    );
    p.execute(&Op::UpdateUser {
        user: r("bob"),
        name: None,
        admin_roles: None,
        upn: None,
        usage_location: Some("JP".into()),
    })
    .unwrap();
    let id = p
        .execute(&Op::CreateUser {
            upn: "new@coho.com".into(),
            name: "New".into(),
            access_mode: AccessMode::ReadWrite,
            usage_location: Some("GB".into()),
            application_id: None,
        })
        .unwrap()
        .created_id
        .unwrap();
    drop(p);
    let t = LocalProvider::open(&path).unwrap().observe().unwrap();
    assert_eq!(t.users["bob"].usage_location.as_deref(), Some("JP"));
    assert_eq!(t.users[&id].usage_location.as_deref(), Some("GB"));
    // A code that is not a country is refused, as Graph answers 400.
    let p = LocalProvider::open(&path).unwrap();
    for bad in ["UK", "us", "USA"] {
        let e = p
            .execute(&Op::UpdateUser {
                user: r("bob"),
                name: None,
                admin_roles: None,
                upn: None,
                usage_location: Some(bad.into()),
            })
            .unwrap_err();
        assert!(
            matches!(e, ProviderError::Invalid(ref m) if m.contains("ISO 3166-1")),
            "{bad}: {e:?}"
        );
    }
}
