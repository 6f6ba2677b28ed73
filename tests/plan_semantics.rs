//! Table-driven tests of the planner's semantics, one row per rule of domain.md that the
//! plan must get right. Rows without expected errors are also applied to an in-memory
//! simulator that enforces the rules (tests/common), and re-planned: the re-plan must be
//! empty.

mod common;

use common::*;
use crmctl::plan::{ActionKind, ObjKind, Plan};
use crmctl::state::State;
use crmctl::tenant::Tenant;

const PROD: &str = "type: production, slot: production, region: NA, currency: USD, language: 1033, status: ready, version: 8.1.0";
const SANDBOX: &str = "type: sandbox, slot: sandbox, region: NA, currency: USD, language: 1033, status: ready, version: 8.1.0";

fn inst(id: &str, url: &str, rest: &str) -> String {
    format!("  {id}: {{id: {id}, name: {url}, url: {url}, {rest}}}\n")
}

struct Case {
    /// Test name, starting with the rule id.
    name: &'static str,
    desired: String,
    tenant: String,
    state: Vec<(&'static str, ObjKind, &'static str, bool)>,
    /// Whether the plan must be error-free (then it is simulated and re-planned).
    valid: bool,
    check: fn(&Plan),
}

fn run(cases: Vec<Case>) {
    for c in cases {
        let d = desired(&c.desired);
        let t: Tenant = tenant(&c.tenant);
        let s: State = state(&c.state);
        let plan = crmctl::plan::plan(&d, &t, &s);
        if !plan
            .diagnostics
            .iter()
            .any(|d| d.message.starts_with("dependency cycle"))
        {
            assert_order_respects_edges(&plan);
        }
        let result = std::panic::catch_unwind(|| (c.check)(&plan));
        if result.is_err() {
            panic!(
                "case {} failed; plan: {:#?}\ndiagnostics: {:#?}",
                c.name,
                steps(&plan),
                plan.diagnostics
            );
        }
        if c.valid {
            converge(&d, &t, &s);
        } else {
            assert!(plan.has_errors(), "case {}: expected an error", c.name);
        }
    }
}

fn depends(p: &Plan, a: &str, on: &str) {
    let (ia, ion) = (pos(p, a), pos(p, on));
    assert!(
        p.actions[ia].depends_on.contains(&ion),
        "`{a}` must depend on `{on}`"
    );
}

fn count(p: &Plan, kind: ActionKind) -> usize {
    p.actions.iter().filter(|a| a.kind == kind).count()
}

#[test]
fn slots_and_instances() {
    run(vec![
        Case {
            name: "I2: more instances than free slots -> purchase_instance before configure",
            desired: "licenses: {professional: 5}\ninstances:\n  a: {name: A, url: a, type: production}\n  b: {name: B, url: b, type: production}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| {
                assert_eq!(count(p, ActionKind::PurchaseInstance), 1);
                // T5: licenses first, then the slot, then the configure that uses it.
                depends(p, "purchase_instance instances.b", "purchase_licenses licenses.professional");
                depends(p, "configure_instance instances.b", "purchase_instance instances.b");
                assert!(p.actions[pos(p, "configure_instance instances.a")].depends_on.is_empty());
            },
        },
        Case {
            name: "T6: 25 Professional licenses include a sandbox slot (no purchase)",
            desired: "licenses: {professional: 25}\ninstances:\n  t: {name: T, url: t, type: sandbox}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| {
                assert_eq!(count(p, ActionKind::PurchaseInstance), 0);
                depends(p, "configure_instance instances.t", "purchase_licenses licenses.professional");
            },
        },
        Case {
            name: "I2: deleting frees a slot that a later configure reuses",
            desired: "instances:\n  keep: {name: keep, url: keep, type: production}\n  new: {name: new, url: new, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}{}", inst("i1", "keep", PROD), inst("i2", "old", SANDBOX)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false), ("instances.old", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                assert_eq!(count(p, ActionKind::PurchaseInstance), 0);
                depends(p, "configure_instance instances.new", "delete_instance instances.old");
                assert!(p.actions[pos(p, "delete_instance instances.old")].destructive);
            },
        },
        Case {
            name: "I8: deleting a production instance -> switch_instance then delete_instance (I7: buy a sandbox slot)",
            desired: "instances:\n  keep: {name: keep, url: keep, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 5}}\nslots: {{production: 1}}\ninstances:\n{}{}", inst("i1", "keep", PROD), inst("i2", "gone", PROD)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false), ("instances.gone", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                depends(p, "switch_instance instances.gone", "purchase_instance instances.gone");
                depends(p, "delete_instance instances.gone", "switch_instance instances.gone");
            },
        },
        Case {
            name: "I7: sandbox -> production needs a production slot, bought when none is free",
            desired: "instances:\n  keep: {name: keep, url: keep, type: production}\n  t: {name: t, url: t, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}{}", inst("i1", "keep", PROD), inst("i2", "t", SANDBOX)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false), ("instances.t", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| depends(p, "switch_instance instances.t", "purchase_instance instances.t"),
        },
        Case {
            name: "T6/I2: lowering Professional below 25 loses the included sandbox: a new sandbox buys a slot first",
            desired: "licenses: {professional: 6}\ninstances:\n  keep: {name: keep, url: keep, type: production}\n  new: {name: new, url: new, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}", inst("i1", "keep", PROD)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                // The included sandbox slot (T6) is free now but gone once the reduction
                // runs: the configure must not rely on it, whatever the order.
                assert_eq!(count(p, ActionKind::PurchaseInstance), 1);
                depends(p, "configure_instance instances.new", "purchase_instance instances.new");
                assert!(pos(p, "purchase_instance instances.new") < pos(p, "configure_instance instances.new"));
                // T5: the slot is bought while Professional licenses are still there.
                depends(p, "reduce_licenses licenses.professional", "purchase_instance instances.new");
                assert!(pos(p, "purchase_instance instances.new") < pos(p, "reduce_licenses licenses.professional"));
            },
        },
        Case {
            name: "T6/I2: a sandbox left in a lost included slot: its delete frees no slot, a new sandbox buys one",
            desired: "instances:\n  keep: {name: keep, url: keep, type: production}\n  new: {name: new, url: new, type: sandbox}\n".into(),
            // 6 licenses include no sandbox slot (T6), yet `old` occupies one (licenses
            // were lowered under it): the tenant is one sandbox slot short.
            tenant: format!("licenses: {{professional: 6}}\ninstances:\n{}{}", inst("i1", "keep", PROD), inst("i2", "old", SANDBOX)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false), ("instances.old", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                assert_eq!(count(p, ActionKind::PurchaseInstance), 1);
                depends(p, "configure_instance instances.new", "purchase_instance instances.new");
                depends(p, "configure_instance instances.new", "delete_instance instances.old");
                let c = pos(p, "configure_instance instances.new");
                assert!(pos(p, "purchase_instance instances.new") < c);
                assert!(pos(p, "delete_instance instances.old") < c);
            },
        },
        Case {
            name: "I7: production -> sandbox into another free production slot runs before a sandbox slot is bought",
            desired: "instances:\n  keep: {name: keep, url: keep, type: production}\n  sw: {name: sw, url: sw, type: sandbox}\n  new: {name: new, url: new, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 5}}\nslots: {{production: 2}}\ninstances:\n{}{}", inst("i1", "keep", PROD), inst("i2", "sw", PROD)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false), ("instances.sw", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                // No sandbox slot is free, so the switch keeps a production slot; had the
                // sandbox slot bought for `new` come first, the switch would take it (I7)
                // and the configure would find none (I2).
                assert_eq!(count(p, ActionKind::PurchaseInstance), 1);
                depends(p, "purchase_instance instances.new", "switch_instance instances.sw");
                depends(p, "configure_instance instances.new", "purchase_instance instances.new");
                assert!(pos(p, "switch_instance instances.sw") < pos(p, "purchase_instance instances.new"));
                assert!(pos(p, "purchase_instance instances.new") < pos(p, "configure_instance instances.new"));
            },
        },
        Case {
            name: "T7: no slot beyond 50 production instances",
            desired: {
                let mut s = "licenses: {professional: 5}\ninstances:\n".to_string();
                for i in 0..51 {
                    s.push_str(&format!("  p{i}: {{name: p{i}, url: p{i}, type: production}}\n"));
                }
                s
            },
            tenant: String::new(),
            state: vec![],
            valid: false,
            check: |p| assert!(error_rules(p).contains(&"T7".to_string())),
        },
        Case {
            name: "T5: buying an instance without Professional licenses is an error",
            desired: "instances:\n  a: {name: A, url: a, type: production}\n  b: {name: B, url: b, type: production}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["T5"]),
        },
    ]);
}

#[test]
fn currency_language_region() {
    run(vec![
        Case {
            name: "I3/I9: changing a sandbox's currency is a destructive reset",
            desired:
                "instances:\n  t: {name: t, url: t, type: sandbox, currency: EUR, language: 1031}\n"
                    .into(),
            tenant: format!("instances:\n{}", inst("i1", "t", SANDBOX)),
            state: vec![("instances.t", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                let a = &p.actions[pos(p, "reset_instance instances.t")];
                assert!(a.destructive);
                assert_eq!(p.summary.replace, 1);
            },
        },
        Case {
            name: "I3/I6: changing a production instance's currency is an error",
            desired: "instances:\n  p: {name: p, url: p, type: production, currency: EUR}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", PROD)),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: |p| {
                assert_eq!(error_rules(p), vec!["I3"]);
                assert!(p.diagnostics[0].message.contains("I3/I6"));
                assert_eq!(count(p, ActionKind::ResetInstance), 0);
            },
        },
        Case {
            name: "I6: a region never changes, not even for a sandbox",
            desired: "instances:\n  t: {name: t, url: t, type: sandbox, region: EMEA}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "t", SANDBOX)),
            state: vec![("instances.t", ObjKind::Instance, "i1", false)],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["I6"]),
        },
        Case {
            name: "protect: a reset of a protected sandbox is an error",
            desired:
                "instances:\n  t: {name: t, url: t, type: sandbox, currency: EUR, protect: true}\n"
                    .into(),
            tenant: format!("instances:\n{}", inst("i1", "t", SANDBOX)),
            state: vec![("instances.t", ObjKind::Instance, "i1", false)],
            valid: false,
            check: |p| assert_eq!(count(p, ActionKind::ResetInstance), 0),
        },
        Case {
            name: "protect (I8): deleting a protected instance removed from the file is an error",
            desired: "instances:\n  keep: {name: keep, url: keep, type: production}\n".into(),
            tenant: format!(
                "licenses: {{professional: 30}}\ninstances:\n{}{}",
                inst("i1", "keep", PROD),
                inst("i2", "t", SANDBOX)
            ),
            state: vec![
                ("instances.keep", ObjKind::Instance, "i1", false),
                ("instances.t", ObjKind::Instance, "i2", true),
            ],
            valid: false,
            check: |p| {
                let d = p.diagnostics.iter().find(|d| d.is_error()).unwrap();
                assert_eq!(d.address.as_deref(), Some("instances.t"));
                assert!(d.message.contains("protected"));
            },
        },
        Case {
            name: "I4: editing a provisioning instance is an error",
            desired: "instances:\n  p: {name: New name, url: p, type: production}\n".into(),
            tenant: format!(
                "instances:\n{}",
                inst("i1", "p", &PROD.replace("ready", "provisioning"))
            ),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["I4"]),
        },
    ]);
}

#[test]
fn url_names() {
    run(vec![
        Case {
            name: "I5: two instances swapping URL names go through a temporary name",
            desired: "licenses: {professional: 30}\ninstances:\n  a: {name: a, url: y, type: production}\n  b: {name: b, url: x, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}{}", inst("i1", "x", PROD), inst("i2", "y", SANDBOX)),
            state: vec![("instances.a", ObjKind::Instance, "i1", false), ("instances.b", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                assert!(!p.has_errors());
                assert_eq!(count(p, ActionKind::UpdateInstance), 3);
                let tmp = &p.actions[pos(p, "update_instance instances.a")];
                assert_eq!(tmp.changes[0].after, serde_json::json!("x-tmp-1"));
                assert_eq!(warning_rules(p), vec!["I5", "I5"]);
                assert!(p.diagnostics[0].message.contains("Outlook"));
                assert!(p.diagnostics[0].message.contains("24 hours"));
            },
        },
        Case {
            name: "I5: a rename chain runs from its free end",
            desired: "instances:\n  a: {name: a, url: y, type: production}\n  b: {name: b, url: z, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 5}}\nslots: {{production: 1}}\ninstances:\n{}{}", inst("i1", "x", PROD), inst("i2", "y", PROD)),
            state: vec![("instances.a", ObjKind::Instance, "i1", false), ("instances.b", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                depends(p, "update_instance instances.a", "update_instance instances.b");
                assert_eq!(count(p, ActionKind::UpdateInstance), 2);
            },
        },
        Case {
            name: "I5: a URL name kept by an unmanaged instance is an error",
            desired: "licenses: {professional: 5}\ninstances:\n  a: {name: a, url: x, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 5}}\ninstances:\n{}{}", inst("i1", "x", PROD), inst("i2", "a", SANDBOX)),
            state: vec![("instances.a", ObjKind::Instance, "i2", false)],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["I5"]),
        },
    ]);
}

#[test]
fn licenses_and_users() {
    run(vec![
        Case {
            name: "T5: buy licenses before assigning them",
            desired: "licenses: {professional: 1}\nusers:\n  ana@coho.com: {license: professional}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| {
                depends(p, "assign_license users.ana@coho.com", "purchase_licenses licenses.professional");
                depends(p, "assign_license users.ana@coho.com", "create_user users.ana@coho.com");
            },
        },
        Case {
            name: "T4: remove licenses from users before reducing the count",
            desired: "licenses: {professional: 1}\nusers:\n  a@coho.com: {license: professional}\n  b@coho.com: {}\n".into(),
            tenant: "licenses: {professional: 3}\nusers:\n  u1: {id: u1, upn: a@coho.com, license: professional, access_mode: read-write}\n  u2: {id: u2, upn: b@coho.com, license: professional, access_mode: read-write}\n  u3: {id: u3, upn: c@coho.com, license: professional, access_mode: read-write}\n".into(),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false), ("users.b@coho.com", ObjKind::User, "u2", false), ("users.c@coho.com", ObjKind::User, "u3", false)],
            valid: true,
            check: |p| {
                depends(p, "reduce_licenses licenses.professional", "remove_license users.b@coho.com");
                depends(p, "reduce_licenses licenses.professional", "delete_user users.c@coho.com");
            },
        },
        Case {
            name: "T4: reducing below what users in the file hold is an error",
            desired: "licenses: {professional: 0}\nusers:\n  a@coho.com: {license: professional}\n".into(),
            tenant: "licenses: {professional: 1}\nusers:\n  u1: {id: u1, upn: a@coho.com, license: professional, access_mode: read-write}\n".into(),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false)],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["T4"]),
        },
        Case {
            name: "T3: a license moves between users at capacity: remove before assign",
            desired: "users:\n  a@coho.com: {}\n  b@coho.com: {license: professional}\n".into(),
            tenant: "licenses: {professional: 1}\nusers:\n  u1: {id: u1, upn: a@coho.com, license: professional, access_mode: read-write}\n  u2: {id: u2, upn: b@coho.com, access_mode: read-write}\n".into(),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false), ("users.b@coho.com", ObjKind::User, "u2", false)],
            valid: true,
            check: |p| depends(p, "assign_license users.b@coho.com", "remove_license users.a@coho.com"),
        },
        Case {
            name: "P4: administrative user: license -> access mode -> remove license",
            desired: "licenses: {basic: 1}\nusers:\n  adm@coho.com: {access_mode: administrative}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| {
                assert_eq!(steps(p), vec![
                    "purchase_licenses licenses.basic",
                    "create_user users.adm@coho.com",
                    "assign_license users.adm@coho.com",
                    "set_access_mode users.adm@coho.com",
                    "remove_license users.adm@coho.com",
                ]);
            },
        },
        Case {
            name: "P4: two non-interactive users share one spare license in turn",
            desired: "licenses: {professional: 6}\nusers:\n  a@coho.com: {access_mode: non-interactive}\n  b@coho.com: {access_mode: non-interactive}\n".into(),
            tenant: "licenses: {professional: 6}\nusers:\n".to_string() + &(0..5).map(|i| format!("  x{i}: {{id: x{i}, upn: x{i}@coho.com, license: professional, access_mode: read-write}}\n")).collect::<String>(),
            state: vec![],
            valid: true,
            check: |p| {
                let second = p.actions.iter().filter(|a| a.kind == ActionKind::AssignLicense).nth(1).unwrap();
                let removes: Vec<usize> = p.actions.iter().filter(|a| a.kind == ActionKind::RemoveLicense).map(|a| a.id).collect();
                assert!(second.depends_on.iter().any(|d| removes.contains(d)));
            },
        },
        Case {
            name: "P3: application users are created as such and never licensed",
            desired: "users:\n  app@coho.com: {access_mode: application}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["create_user users.app@coho.com"]),
        },
        Case {
            name: "P3: a sixth non-interactive user with roles in one instance is an error",
            desired: "licenses: {professional: 1}\ninstances:\n  p: {name: p, url: p, type: production}\nusers:\n".to_string()
                + &(0..6).map(|i| format!("  n{i}@coho.com: {{access_mode: non-interactive, roles: {{p: [Integration]}}}}\n")).collect::<String>(),
            tenant: String::new(),
            state: vec![],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["P3"]),
        },
        Case {
            name: "P2: roles after the user, its license and the instance",
            desired: "licenses: {basic: 1}\ninstances:\n  p: {name: p, url: p, type: production}\nusers:\n  a@coho.com: {license: basic, roles: {p: [Salesperson]}}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| {
                depends(p, "assign_roles users.a@coho.com", "assign_license users.a@coho.com");
                depends(p, "assign_roles users.a@coho.com", "configure_instance instances.p");
                depends(p, "assign_roles users.a@coho.com", "create_user users.a@coho.com");
            },
        },
        Case {
            name: "cycle: swapping two plans' only licenses is reported as a path",
            desired: "users:\n  a@coho.com: {license: enterprise}\n  b@coho.com: {license: professional}\n".into(),
            tenant: "licenses: {professional: 1, enterprise: 1}\nusers:\n  u1: {id: u1, upn: a@coho.com, license: professional, access_mode: read-write}\n  u2: {id: u2, upn: b@coho.com, license: enterprise, access_mode: read-write}\n".into(),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false), ("users.b@coho.com", ObjKind::User, "u2", false)],
            valid: false,
            check: |p| {
                let d = p.diagnostics.iter().find(|d| d.message.starts_with("dependency cycle")).unwrap();
                assert!(d.message.contains("users.a@coho.com (assign_license) -> users.b@coho.com (assign_license) -> users.a@coho.com")
                    || d.message.contains("users.b@coho.com (assign_license) -> users.a@coho.com (assign_license) -> users.b@coho.com"), "{}", d.message);
            },
        },
    ]);
}

#[test]
fn groups() {
    run(vec![
        Case {
            name: "I12: create the group before binding it and adding members; members before binding",
            desired: "instances:\n  p: {name: p, url: p, type: production, security_group: g}\nsecurity_groups:\n  g: {members: [a@coho.com]}\nusers:\n  a@coho.com: {}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| {
                depends(p, "add_group_members security_groups.g", "create_group security_groups.g");
                depends(p, "add_group_members security_groups.g", "create_user users.a@coho.com");
                depends(p, "configure_instance instances.p", "add_group_members security_groups.g");
            },
        },
        Case {
            name: "I12: unbind before deleting the group",
            desired: "instances:\n  p: {name: p, url: p, type: production}\n".into(),
            tenant: format!("groups:\n  g1: {{id: g1, name: old}}\ninstances:\n{}", inst("i1", "p", &format!("{PROD}, security_group: g1"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false), ("security_groups.old", ObjKind::Group, "g1", false)],
            valid: true,
            check: |p| depends(p, "delete_group security_groups.old", "update_instance instances.p"),
        },
        Case {
            name: "I12: binding a group to an instance with users warns who will be disabled",
            desired: "instances:\n  p: {name: p, url: p, type: production, security_group: g}\nsecurity_groups:\n  g: {members: [a@coho.com]}\nusers:\n  a@coho.com: {license: basic}\n".into(),
            tenant: format!("licenses: {{basic: 2}}\nusers:\n  u1: {{id: u1, upn: a@coho.com, license: basic, access_mode: read-write, roles: {{i1: [Salesperson]}}}}\n  u2: {{id: u2, upn: zed@coho.com, license: basic, access_mode: read-write, roles: {{i1: [Salesperson]}}}}\ninstances:\n{}", inst("i1", "p", PROD)),
            state: vec![("instances.p", ObjKind::Instance, "i1", false), ("users.a@coho.com", ObjKind::User, "u1", false)],
            valid: true,
            check: |p| {
                let w = p.diagnostics.iter().find(|d| d.rule.as_deref() == Some("I12")).unwrap();
                assert!(w.message.contains("zed@coho.com"));
                assert!(!w.message.contains("a@coho.com,"));
            },
        },
        Case {
            name: "I12: a group still bound to an unmanaged instance cannot be deleted",
            desired: "instances: {}\n".into(),
            tenant: format!("groups:\n  g1: {{id: g1, name: old}}\ninstances:\n{}", inst("i1", "p", &format!("{PROD}, security_group: g1"))),
            state: vec![("security_groups.old", ObjKind::Group, "g1", false)],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["I12"]),
        },
        Case {
            name: "lists are exact: members not in the file are removed",
            desired: "security_groups:\n  g: {members: [a@coho.com]}\nusers:\n  a@coho.com: {}\n".into(),
            tenant: "groups:\n  g1: {id: g1, name: g, members: [u1, u2]}\nusers:\n  u1: {id: u1, upn: a@coho.com, access_mode: read-write}\n  u2: {id: u2, upn: b@coho.com, access_mode: read-write}\n".into(),
            state: vec![("security_groups.g", ObjKind::Group, "g1", false), ("users.a@coho.com", ObjKind::User, "u1", false)],
            valid: true,
            check: |p| {
                assert_eq!(steps(p), vec!["remove_group_members security_groups.g"]);
                // u2 is unmanaged: referenced by its remote id.
                match &*p.actions[0].op {
                    crmctl::plan::Op::RemoveGroupMembers { users, .. } => assert_eq!(&*users[0].address, "u2"),
                    other => panic!("{other:?}"),
                }
            },
        },
    ]);
}

#[test]
fn admin_mode_copy_updates() {
    run(vec![
        Case {
            name: "I10: admin mode on with background operations off is one valid op",
            desired: "instances:\n  t: {name: t, url: t, type: sandbox, admin_mode: {enabled: true, background_operations: false}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "t", SANDBOX)),
            state: vec![("instances.t", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["set_admin_mode instances.t"]),
        },
        Case {
            name: "I10: leaving admin mode turns background operations on in the same op",
            desired: "instances:\n  t: {name: t, url: t, type: sandbox, admin_mode: {enabled: false}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "t", &format!("{SANDBOX}, admin_mode: {{enabled: true, background_operations: false}}"))),
            state: vec![("instances.t", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| match &*p.actions[0].op {
                crmctl::plan::Op::SetAdminMode { enabled, background_operations, .. } => {
                    assert!(!enabled && *background_operations)
                }
                other => panic!("{other:?}"),
            },
        },
        Case {
            name: "I10/I7: a sandbox in admin mode that becomes production leaves admin mode first (admin_mode omitted)",
            desired: "instances:\n  t: {name: t, url: t, type: production}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "t", &format!("{SANDBOX}, admin_mode: {{enabled: true, background_operations: false, message: Maintenance}}"))),
            state: vec![("instances.t", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                assert_eq!(steps(p), vec!["set_admin_mode instances.t", "switch_instance instances.t"]);
                depends(p, "switch_instance instances.t", "set_admin_mode instances.t");
                match &*p.actions[pos(p, "set_admin_mode instances.t")].op {
                    crmctl::plan::Op::SetAdminMode { enabled, background_operations, message, .. } => {
                        assert!(!enabled && *background_operations && message.is_none())
                    }
                    other => panic!("{other:?}"),
                }
            },
        },
        Case {
            name: "I10/I7: a sandbox in admin mode that becomes production with admin_mode off: set_admin_mode, then the switch",
            desired: "instances:\n  t: {name: t, url: t, type: production, admin_mode: {enabled: false}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "t", &format!("{SANDBOX}, admin_mode: {{enabled: true, background_operations: true}}"))),
            state: vec![("instances.t", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                assert_eq!(steps(p), vec!["set_admin_mode instances.t", "switch_instance instances.t"]);
                depends(p, "switch_instance instances.t", "set_admin_mode instances.t");
            },
        },
        Case {
            name: "I10: admin mode on a production instance is an error",
            desired: "instances:\n  p: {name: p, url: p, type: production, admin_mode: {enabled: true}}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["I10"]),
        },
        Case {
            name: "I11: copy onto a new sandbox, then the wanted admin mode",
            desired: "licenses: {professional: 25}\ninstances:\n  p: {name: p, url: p, type: production}\n  t: {name: t, url: t, type: sandbox, copy_from: {instance: p, kind: full}, admin_mode: {enabled: false}}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| {
                depends(p, "copy_instance instances.t", "configure_instance instances.t");
                depends(p, "copy_instance instances.t", "configure_instance instances.p");
                depends(p, "set_admin_mode instances.t", "copy_instance instances.t");
            },
        },
        Case {
            name: "I11: without admin_mode the copy's admin mode is left as is (no change on re-plan)",
            desired: "licenses: {professional: 25}\ninstances:\n  p: {name: p, url: p, type: production}\n  t: {name: t, url: t, type: sandbox, copy_from: {instance: p, kind: minimal}}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| assert_eq!(count(p, ActionKind::SetAdminMode), 0),
        },
        Case {
            name: "I11: a copy never lands on a production instance",
            desired: "licenses: {professional: 5}\ninstances:\n  p: {name: p, url: p, type: production}\n  q: {name: q, url: q, type: production, copy_from: {instance: p, kind: full}}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: false,
            check: |p| assert!(error_rules(p).contains(&"I11".to_string())),
        },
        Case {
            name: "U2/U3: approve an update to a newer known version",
            desired: "instances:\n  p: {name: p, url: p, type: production, update: {target_version: 8.1.0, preferred: '2016-05-01T02:00:00Z', alternate: '2016-05-08T02:00:00Z'}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", &PROD.replace("8.1.0", "8.0.0"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["schedule_update instances.p"]),
        },
        Case {
            name: "U4: an update in progress cannot be rescheduled",
            desired: "instances:\n  p: {name: p, url: p, type: production, update: {target_version: 8.1.0, preferred: '2016-06-01T02:00:00Z', alternate: '2016-06-08T02:00:00Z'}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", &(PROD.replace("8.1.0", "8.0.0") + ", update: {target_version: 8.1.0, preferred: '2016-05-01T02:00:00Z', alternate: '2016-05-08T02:00:00Z', state: in_progress}"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["U4"]),
        },
        Case {
            name: "U3: an unknown target version is an error",
            desired: "instances:\n  p: {name: p, url: p, type: production, update: {target_version: 9.0.0, preferred: a, alternate: b}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", PROD)),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["U3"]),
        },
    ]);
}

#[test]
fn adoption_and_unmanaged() {
    run(vec![
        Case {
            name: "adopt: a user found by UPN is adopted, not created twice",
            desired: "users:\n  ana@coho.com: {name: Ana}\n".into(),
            tenant: "users:\n  u1: {id: u1, upn: ana@coho.com, name: Old, access_mode: read-write}\n".into(),
            state: vec![],
            valid: true,
            check: |p| {
                assert_eq!(steps(p), vec!["adopt users.ana@coho.com", "update_user users.ana@coho.com"]);
                // Counted as an adoption, not as a creation: nothing is created remotely.
                assert_eq!((p.summary.adopt, p.summary.create), (1, 0));
            },
        },
        Case {
            name: "adopt: an instance found by URL name and a group by display name",
            desired: "instances:\n  p: {name: p, url: p, type: production}\nsecurity_groups:\n  g: {name: Sales}\n".into(),
            tenant: format!("groups:\n  g1: {{id: g1, name: Sales}}\ninstances:\n{}", inst("i1", "p", PROD)),
            state: vec![],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["adopt instances.p", "adopt security_groups.g"]),
        },
        Case {
            name: "adopt: two groups with the same display name is an error naming both",
            desired: "security_groups:\n  g: {name: Sales}\n".into(),
            tenant: "groups:\n  g1: {id: g1, name: Sales}\n  g2: {id: g2, name: Sales}\n".into(),
            state: vec![],
            valid: false,
            check: |p| {
                let d = &p.diagnostics[0];
                assert!(d.message.contains("g1") && d.message.contains("g2"), "{}", d.message);
            },
        },
        Case {
            name: "unmanaged objects (not in state, not in file) are never touched",
            desired: "users:\n  a@coho.com: {}\n".into(),
            tenant: "users:\n  u9: {id: u9, upn: other@coho.com, access_mode: read-write}\n".into(),
            state: vec![],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["create_user users.a@coho.com"]),
        },
        Case {
            name: "omitted fields are not managed: no changes",
            desired: "users:\n  a@coho.com: {license: basic}\ninstances:\n  p: {name: p, url: p, type: production}\n".into(),
            tenant: format!("licenses: {{basic: 1}}\nusers:\n  u1: {{id: u1, upn: a@coho.com, name: Someone, license: basic, access_mode: administrative, roles: {{i1: [X]}}}}\ninstances:\n{}", inst("i1", "p", &format!("{PROD}, purpose: kept, notification_recipients: [x@y.com]"))),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false), ("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| assert!(p.actions.is_empty(), "{:?}", steps(p)),
        },
        Case {
            name: "license omitted means none; roles given are exact over the file's instances",
            desired: "instances:\n  p: {name: p, url: p, type: production}\nusers:\n  a@coho.com: {access_mode: administrative, roles: {}}\n".into(),
            tenant: format!("licenses: {{basic: 1}}\nusers:\n  u1: {{id: u1, upn: a@coho.com, license: basic, access_mode: administrative, roles: {{i1: [X], other: [Y]}}}}\ninstances:\n{}", inst("i1", "p", PROD)),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false), ("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["remove_license users.a@coho.com", "remove_roles users.a@coho.com"]),
        },
    ]);
}

/// issue 9 item 8: plan errors point at the offending field (currency, language, region,
/// protect, the field being edited on a provisioning instance), located on its line; the
/// error about a protected instance removed from the file names its address.
#[test]
fn plan_errors_point_at_the_offending_field() {
    struct C {
        name: &'static str,
        desired: &'static str,
        tenant: String,
        protect_in_state: bool,
        address: &'static str,
        line: u32,
    }
    let cases = [
        C { name: "I3 currency of a production instance", desired: "instances:\n  p:\n    name: p\n    url: p\n    type: production\n    currency: EUR\n", tenant: format!("instances:\n{}", inst("i1", "p", PROD)), protect_in_state: false, address: "instances.p.currency", line: 7 },
        C { name: "I3 language of a production instance", desired: "instances:\n  p:\n    name: p\n    url: p\n    type: production\n    language: 1031\n", tenant: format!("instances:\n{}", inst("i1", "p", PROD)), protect_in_state: false, address: "instances.p.language", line: 7 },
        C { name: "I6 region", desired: "instances:\n  p:\n    name: p\n    url: p\n    type: sandbox\n    region: EMEA\n", tenant: format!("instances:\n{}", inst("i1", "p", SANDBOX)), protect_in_state: false, address: "instances.p.region", line: 7 },
        C { name: "I9 protect", desired: "instances:\n  p:\n    name: p\n    url: p\n    type: sandbox\n    protect: true\n    currency: EUR\n", tenant: format!("instances:\n{}", inst("i1", "p", SANDBOX)), protect_in_state: false, address: "instances.p.protect", line: 7 },
        C { name: "I4 provisioning", desired: "instances:\n  p:\n    name: New name\n    url: p\n    type: production\n", tenant: format!("instances:\n{}", inst("i1", "p", &PROD.replace("ready", "provisioning"))), protect_in_state: false, address: "instances.p.name", line: 4 },
    ];
    for c in &cases {
        let text = format!("tenant: {DOMAIN}\n{}", c.desired);
        let d = desired(&text);
        let plan = crmctl::plan::plan(
            &d,
            &tenant(&c.tenant),
            &state(&[("instances.p", ObjKind::Instance, "i1", c.protect_in_state)]),
        );
        let mut diags: Vec<_> = plan
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .cloned()
            .collect();
        assert_eq!(diags.len(), 1, "{}: {diags:#?}", c.name);
        assert_eq!(diags[0].address.as_deref(), Some(c.address), "{}", c.name);
        let src = crmctl::spec::load::Source {
            path: "t.yaml".into(),
            text,
        };
        crmctl::spec::load::locate_diagnostics(&src, &mut diags);
        assert_eq!(
            diags[0].location.as_ref().map(|l| l.line),
            Some(c.line),
            "{}",
            c.name
        );
    }
    // Removed from the file: the message names the address and says it was removed.
    let d = desired("instances:\n  keep: {name: keep, url: keep, type: production}\n");
    let t = tenant(&format!(
        "licenses: {{professional: 30}}\ninstances:\n{}{}",
        inst("i1", "keep", PROD),
        inst("i2", "t", SANDBOX)
    ));
    let s = state(&[
        ("instances.keep", ObjKind::Instance, "i1", false),
        ("instances.t", ObjKind::Instance, "i2", true),
    ]);
    let plan = crmctl::plan::plan(&d, &t, &s);
    let e = plan.diagnostics.iter().find(|d| d.is_error()).unwrap();
    assert!(
        e.message.contains("`instances.t`") && e.message.contains("removed from the file"),
        "{e:?}"
    );
}
