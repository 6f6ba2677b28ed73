//! Table-driven tests of the planner's semantics, one row per rule of domain.md that the
//! plan must get right. Rows without expected errors are also applied to an in-memory
//! tenant that enforces the rules with the local provider's code (`MemoryProvider`, see
//! tests/it/common.rs), and re-planned: the re-plan must be empty.

use crate::common;

use common::*;
use crmctl::domain::op::{ActionKind, ObjKind};
use crmctl::observed::Tenant;
use crmctl::plan::Plan;
use crmctl::state::State;

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
            // issue 10: the local provider (which enforces domain.md on its own) accepts
            // the plan in one pass, and the next plan shows no changes.
            if let Err(e) = converge_local(&d, &t, &s) {
                panic!("case {}: {e}", c.name);
            }
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
                // issue 10 item 10: what really happens to each URL (I5): the other
                // instance takes the old one at once (no 24-hour grace), and the
                // temporary name stops at once when the second change runs.
                assert_eq!(warning_rules(p), vec!["I5", "I5", "I5"]);
                let msgs: Vec<&str> = p.diagnostics.iter().map(|d| d.message.as_str()).collect();
                assert!(msgs.iter().all(|m| !m.contains("keeps working for up to 24 hours")), "{msgs:#?}");
                assert!(msgs.iter().any(|m| m.contains("`x` goes to `instances.b` at once") && m.contains("Outlook")), "{msgs:#?}");
                assert!(msgs.iter().any(|m| m.contains("`y` goes to `instances.a` at once")), "{msgs:#?}");
                assert!(msgs.iter().any(|m| m.contains("`x-tmp-1`") && m.contains("stops `x-tmp-1` at once")), "{msgs:#?}");
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
                // issue 10 item 10: `z` is free, so `y` (taken by a at once) has no grace,
                // while `x` (taken by nobody) keeps working for up to 24 hours (I5).
                let msgs: Vec<&str> = p.diagnostics.iter().map(|d| d.message.as_str()).collect();
                assert!(msgs.iter().any(|m| m.contains("`y` goes to `instances.a` at once")), "{msgs:#?}");
                assert!(msgs.iter().any(|m| m.contains("`x` keeps working for up to 24 hours")), "{msgs:#?}");
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
                    crmctl::domain::op::Op::RemoveGroupMembers { users, .. } => assert_eq!(&*users[0].address, "u2"),
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
                crmctl::domain::op::Op::SetAdminMode { enabled, background_operations, .. } => {
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
                    crmctl::domain::op::Op::SetAdminMode { enabled, background_operations, message, .. } => {
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

/// Users of the tenant, `id: (upn, admin roles)`, read-write and licensed professional.
fn admins(users: &[(&str, &str, &str)]) -> String {
    let mut s = "licenses: {professional: 10}\nusers:\n".to_string();
    for (id, upn, roles) in users {
        s.push_str(&format!("  {id}: {{id: {id}, upn: {upn}, license: professional, access_mode: read-write, admin_roles: [{roles}]}}\n"));
    }
    s
}

/// The diagnostics at `address` citing `rule` (errors when `error`).
fn diag_at(p: &Plan, address: &str, rule: &str, error: bool) -> bool {
    p.diagnostics.iter().any(|d| {
        d.address.as_deref() == Some(address)
            && d.rule.as_deref() == Some(rule)
            && d.is_error() == error
    })
}

/// Issue 10 (fidelity): every plan without errors is accepted by the local provider in
/// one pass (`run` applies it there), and what it would refuse is a plan error.
#[test]
fn fidelity_tenant_admins() {
    let ga3 = || {
        admins(&[
            ("u1", "a@coho.com", "global_admin"),
            ("u2", "b@coho.com", "global_admin"),
            ("u3", "c@coho.com", ""),
        ])
    };
    let st3 = || {
        vec![
            ("users.a@coho.com", ObjKind::User, "u1", false),
            ("users.b@coho.com", ObjKind::User, "u2", false),
            ("users.c@coho.com", ObjKind::User, "u3", false),
        ]
    };
    run(vec![
        Case {
            // issue 10 item 1
            name: "P6 order: promote one global admin and demote another: the promotion runs first",
            desired: "users:\n  a@coho.com: {admin_roles: [global_admin]}\n  b@coho.com: {admin_roles: []}\n  c@coho.com: {admin_roles: [global_admin]}\n".into(),
            tenant: ga3(),
            state: st3(),
            valid: true,
            check: |p| {
                depends(p, "update_user users.b@coho.com", "update_user users.c@coho.com");
                assert!(!p.has_errors());
            },
        },
        Case {
            // issue 10 item 1
            name: "P6 order: delete a global admin and promote another: the promotion runs first",
            desired: "users:\n  a@coho.com: {admin_roles: [global_admin]}\n  c@coho.com: {admin_roles: [global_admin]}\n".into(),
            tenant: ga3(),
            state: st3(),
            valid: true,
            check: |p| depends(p, "delete_user users.b@coho.com", "update_user users.c@coho.com"),
        },
        Case {
            // issue 10 item 2
            name: "P6 floor: demoting one of two global admins is an error at its admin_roles",
            desired: "users:\n  a@coho.com: {admin_roles: [global_admin]}\n  b@coho.com: {admin_roles: [billing_admin]}\n".into(),
            tenant: ga3(),
            state: st3(),
            valid: false,
            check: |p| {
                assert_eq!(error_rules(p), vec!["P6"]);
                assert!(diag_at(p, "users.b@coho.com.admin_roles", "P6", true), "{:#?}", p.diagnostics);
            },
        },
        Case {
            // issue 10 item 2
            name: "P6 floor: deleting one of two global admins is an error at the user",
            desired: "users:\n  a@coho.com: {admin_roles: [global_admin]}\n  c@coho.com: {}\n".into(),
            tenant: ga3(),
            state: st3(),
            valid: false,
            check: |p| assert!(diag_at(p, "users.b@coho.com", "P6", true), "{:#?}", p.diagnostics),
        },
        Case {
            // issue 10 item 2
            name: "P6 floor: a tenant with one global admin that the file keeps is a warning, not an error",
            desired: "users:\n  a@coho.com: {admin_roles: [global_admin]}\n".into(),
            tenant: admins(&[("u1", "a@coho.com", "global_admin")]),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false)],
            valid: true,
            check: |p| assert!(diag_at(p, "users", "P6", false), "{:#?}", p.diagnostics),
        },
        Case {
            // issue 10 item 2: the service refuses to end the last global admin too
            name: "P6 floor: swapping the only global admin for another is an error (one of one)",
            desired: "users:\n  a@coho.com: {admin_roles: []}\n  c@coho.com: {admin_roles: [global_admin]}\n".into(),
            tenant: admins(&[("u1", "a@coho.com", "global_admin"), ("u3", "c@coho.com", "")]),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false), ("users.c@coho.com", ObjKind::User, "u3", false)],
            valid: false,
            check: |p| assert!(diag_at(p, "users.a@coho.com.admin_roles", "P6", true), "{:#?}", p.diagnostics),
        },
        Case {
            // issue 10 item 2
            name: "P6 floor: three global admins, one demoted: valid",
            desired: "users:\n  a@coho.com: {admin_roles: [global_admin]}\n  b@coho.com: {admin_roles: [global_admin]}\n  c@coho.com: {admin_roles: []}\n".into(),
            tenant: admins(&[("u1", "a@coho.com", "global_admin"), ("u2", "b@coho.com", "global_admin"), ("u3", "c@coho.com", "global_admin")]),
            state: st3(),
            valid: true,
            check: |p| assert!(!p.has_errors()),
        },
        Case {
            // issue 10 item 3
            name: "P6 licence: a new global admin with roles and no license gets them (System Administrator without a license)",
            desired: "instances:\n  p: {name: p, url: p, type: production}\nusers:\n  a@coho.com: {admin_roles: [global_admin]}\n  g@coho.com: {admin_roles: [global_admin], roles: {p: [System Administrator]}}\n  s@coho.com: {admin_roles: [service_admin], roles: {p: [System Customizer]}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", PROD)),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                depends(p, "assign_roles users.g@coho.com", "update_user users.g@coho.com");
                depends(p, "assign_roles users.s@coho.com", "update_user users.s@coho.com");
            },
        },
        Case {
            // issue 10 item 3
            name: "P6 licence: a read-write user with roles, no license and no admin role is still an error (P2)",
            desired: "instances:\n  p: {name: p, url: p, type: production}\nusers:\n  n@coho.com: {admin_roles: [billing_admin], roles: {p: [Salesperson]}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", PROD)),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: |p| assert!(error_rules(p).contains(&"P2".to_string())),
        },
    ]);
}

/// issue 10 item 4: every action on a provisioning or disabled instance is a plan error
/// (I4), not only plain edits; a plan with errors applies nothing (no purchase either).
#[test]
fn fidelity_instance_status() {
    let prov = || PROD.replace("ready", "provisioning");
    let dis = || PROD.replace("ready", "disabled");
    let sprov = || SANDBOX.replace("ready", "provisioning");
    let sdis = || SANDBOX.replace("ready", "disabled");
    let only_i4 = |p: &Plan| {
        assert_eq!(error_rules(p), vec!["I4"], "{:#?}", p.diagnostics);
        // At the instance, or at the first of its fields the file changes (issue 9 item 8).
        assert!(
            p.diagnostics.iter().any(|d| d.is_error()
                && d.rule.as_deref() == Some("I4")
                && d.address
                    .as_deref()
                    .is_some_and(|a| a == "instances.p" || a.starts_with("instances.p."))),
            "{:#?}",
            p.diagnostics
        );
    };
    run(vec![
        Case {
            name: "I4: notification recipients of a provisioning instance (and a billable purchase in the same plan)",
            desired: "licenses: {professional: 5}\ninstances:\n  p: {name: p, url: p, type: production, notification_recipients: [ops@coho.com]}\n  q: {name: q, url: q, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 5}}\ninstances:\n{}", inst("i1", "p", &prov())),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: |p| {
                assert_eq!(error_rules(p), vec!["I4"]);
                assert!(p.actions.iter().any(|a| a.kind == ActionKind::PurchaseInstance));
            },
        },
        Case {
            name: "I4: administration mode of a disabled sandbox",
            desired: "licenses: {professional: 30}\ninstances:\n  p: {name: p, url: p, type: sandbox, admin_mode: {enabled: true, background_operations: true}}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}", inst("i1", "p", &sdis())),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: only_i4,
        },
        Case {
            name: "I4: switching a disabled instance",
            desired: "licenses: {professional: 30}\ninstances:\n  p: {name: p, url: p, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}", inst("i1", "p", &dis())),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: only_i4,
        },
        Case {
            name: "I4: an update approval for a provisioning instance",
            desired: "instances:\n  p: {name: p, url: p, type: production, update: {target_version: 8.1.0, preferred: '2030-01-01T00:00:00Z', alternate: '2030-01-02T00:00:00Z'}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", &prov().replace("8.1.0", "8.0.0"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: only_i4,
        },
        Case {
            name: "I4: security roles in a disabled instance",
            desired: "licenses: {professional: 1}\ninstances:\n  p: {name: p, url: p, type: production}\nusers:\n  a@coho.com: {license: professional, roles: {p: [Salesperson]}}\n".into(),
            tenant: format!("licenses: {{professional: 1}}\ninstances:\n{}", inst("i1", "p", &dis())),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: only_i4,
        },
        Case {
            name: "I4: deleting a provisioning sandbox removed from the file",
            desired: "instances:\n  k: {name: k, url: k, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}{}", inst("i0", "k", PROD), inst("i1", "p", &sprov())),
            state: vec![("instances.k", ObjKind::Instance, "i0", false), ("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: only_i4,
        },
        Case {
            name: "I4: a disabled sandbox removed from the file can be deleted",
            desired: "instances:\n  k: {name: k, url: k, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}{}", inst("i0", "k", PROD), inst("i1", "p", &sdis())),
            state: vec![("instances.k", ObjKind::Instance, "i0", false), ("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["delete_instance instances.p"]),
        },
        Case {
            name: "I4: a copy from a provisioning source",
            desired: "licenses: {professional: 30}\ninstances:\n  p: {name: p, url: p, type: production}\n  s: {name: s, url: s, type: sandbox, copy_from: {instance: p, kind: full}}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}", inst("i1", "p", &prov())),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: only_i4,
        },
        Case {
            name: "I4: a provisioning instance the file does not change plans nothing, and no error",
            desired: "instances:\n  p: {name: p, url: p, type: production}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", &prov())),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| assert!(p.actions.is_empty()),
        },
    ]);
}

/// The `from` of the re-keying adopt at `address` (panics when there is none).
fn rekeyed_from(p: &Plan, address: &str) -> String {
    let a = &p.actions[pos(p, &format!("adopt {address}"))];
    match &*a.op {
        crmctl::domain::op::Op::Adopt { from: Some(f), .. } => f.clone(),
        other => panic!("`adopt {address}` does not re-key: {other:?}"),
    }
}

fn no_destruction(p: &Plan) {
    let destructive: Vec<&str> = p
        .actions
        .iter()
        .filter(|a| a.destructive)
        .map(|a| a.address.as_str())
        .collect();
    assert!(destructive.is_empty(), "destructive: {destructive:?}");
    assert_eq!(
        count(p, ActionKind::CreateUser)
            + count(p, ActionKind::CreateGroup)
            + count(p, ActionKind::ConfigureInstance),
        0,
        "nothing is created"
    );
}

// issue 9 item 2: identities the service compares without regard to case (P1 UPNs, I12
// group display names, I5 URL names) are compared that way by the planner too; a key whose
// case changed is the same object (re-keyed, never deleted and created again), and a
// replacement's delete waits for its create.
#[test]
fn identity_without_regard_to_case() {
    run(vec![
        Case {
            // issue 9 item 2, P1: was delete users.ana + create users.Ana (refused by the
            // service after the delete ran: the user was gone).
            name: "P1 a key whose case changed is the same user: re-keyed, UPN spelled as the file says",
            desired: "users:\n  Ana@coho.com: {name: Ana}\n".into(),
            tenant: "users:\n  u1: {id: u1, upn: ana@coho.com, name: Ana, access_mode: read-write}\n".into(),
            state: vec![("users.ana@coho.com", ObjKind::User, "u1", false)],
            valid: true,
            check: |p| {
                no_destruction(p);
                assert_eq!(steps(p), vec!["adopt users.Ana@coho.com", "update_user users.Ana@coho.com"]);
                assert_eq!(rekeyed_from(p, "users.Ana@coho.com"), "users.ana@coho.com");
                let upd = &p.actions[1];
                assert!(matches!(&*upd.op, crmctl::domain::op::Op::UpdateUser { upn: Some(u), name: None, .. } if u == "Ana@coho.com"), "{:?}", upd.op);
                depends(p, "update_user users.Ana@coho.com", "adopt users.Ana@coho.com");
            },
        },
        Case {
            // issue 9 item 2, P1: adoption by UPN ignores case and shows the file's spelling.
            name: "P1 adopt `Ana@coho.com` when the tenant has `ana@coho.com`",
            desired: "users:\n  Ana@coho.com: {}\n".into(),
            tenant: "users:\n  u1: {id: u1, upn: ana@coho.com, access_mode: read-write}\n".into(),
            state: vec![],
            valid: true,
            check: |p| {
                no_destruction(p);
                assert_eq!(steps(p), vec!["adopt users.Ana@coho.com", "update_user users.Ana@coho.com"]);
                assert!(matches!(&*p.actions[0].op, crmctl::domain::op::Op::Adopt { from: None, id, .. } if id == "u1"));
            },
        },
        Case {
            // issue 9 item 2, P1: a user renamed outside crmctl whose new UPN is now the key.
            name: "P1 a managed user whose UPN is a new key of the file is re-keyed, not replaced",
            desired: "users:\n  new@coho.com: {}\n".into(),
            tenant: "users:\n  u1: {id: u1, upn: NEW@coho.com, access_mode: read-write}\n".into(),
            state: vec![("users.old@coho.com", ObjKind::User, "u1", false)],
            valid: true,
            check: |p| {
                no_destruction(p);
                assert_eq!(rekeyed_from(p, "users.new@coho.com"), "users.old@coho.com");
            },
        },
        Case {
            // issue 9 item 2, I12: a group key whose case changed (the display name follows
            // the key) is the same group: re-keyed and renamed, members and bindings kept.
            name: "I12 a group key whose case changed is the same group",
            desired: "security_groups:\n  sales: {}\n".into(),
            tenant: "groups:\n  g1: {id: g1, name: Sales}\n".into(),
            state: vec![("security_groups.Sales", ObjKind::Group, "g1", false)],
            valid: true,
            check: |p| {
                no_destruction(p);
                assert_eq!(steps(p), vec!["adopt security_groups.sales", "update_group security_groups.sales"]);
                assert_eq!(rekeyed_from(p, "security_groups.sales"), "security_groups.Sales");
            },
        },
        Case {
            // issue 9 item 2, I12: adoption by display name ignores case.
            name: "I12 adopt a group whose display name differs only in case",
            desired: "security_groups:\n  g: {name: Sales}\n".into(),
            tenant: "groups:\n  g1: {id: g1, name: SALES}\n".into(),
            state: vec![],
            valid: true,
            check: |p| {
                no_destruction(p);
                assert_eq!(steps(p), vec!["adopt security_groups.g", "update_group security_groups.g"]);
            },
        },
        Case {
            // issue 9 item 2, I12: a replacement (delete + create of one display name): the
            // delete waits for the create, so a failed create leaves the old group.
            name: "I12 a replaced group is deleted only after its successor is created",
            desired: "security_groups:\n  new: {name: sales}\n".into(),
            tenant: "groups:\n  g1: {id: g1, name: Sales}\n".into(),
            state: vec![("security_groups.old", ObjKind::Group, "g1", false)],
            valid: true,
            check: |p| depends(p, "delete_group security_groups.old", "create_group security_groups.new"),
        },
        Case {
            // issue 9 item 2, I5: an instance key whose case changed is the same instance.
            name: "I5 an instance key whose case changed is the same instance",
            desired: "licenses: {professional: 25}\ninstances:\n  dev: {name: dev, url: dev, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 25}}\ninstances:\n{}", inst("i1", "dev", SANDBOX)),
            state: vec![("instances.Dev", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                no_destruction(p);
                assert_eq!(steps(p), vec!["adopt instances.dev"]);
                assert_eq!(rekeyed_from(p, "instances.dev"), "instances.Dev");
            },
        },
        Case {
            // issue 9 item 2, I5: a new key with a managed instance's URL name: the URL
            // names one instance, so it is re-keyed (a delete would have to run first).
            name: "I5 a new key wanting a managed instance's URL name re-keys it",
            desired: "licenses: {professional: 25}\ninstances:\n  test: {name: dev, url: dev, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 25}}\ninstances:\n{}", inst("i1", "dev", SANDBOX)),
            state: vec![("instances.dev", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                no_destruction(p);
                assert_eq!(rekeyed_from(p, "instances.test"), "instances.dev");
            },
        },
        Case {
            // issue 9 item 2, I5: a URL name held in another case is released first (the
            // service would refuse the configure while `Dev` holds `dev`).
            name: "I5 configure waits for the rename that frees its URL name in another case",
            desired: "licenses: {professional: 25}\ninstances:\n  a: {name: a, url: other, type: sandbox}\n  b: {name: b, url: dev, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 25}}\nslots: {{production: 0, sandbox: 1}}\ninstances:\n{}", inst("i1", "Dev", SANDBOX)),
            state: vec![("instances.a", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| depends(p, "configure_instance instances.b", "update_instance instances.a"),
        },
        Case {
            // issue 9 item 2, I5: adoption by URL name ignores case.
            name: "I5 adopt an instance whose URL name differs only in case",
            desired: "instances:\n  p: {name: p, url: p, type: production}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "P", PROD)),
            state: vec![],
            valid: true,
            check: |p| {
                no_destruction(p);
                assert_eq!(steps(p)[0], "adopt instances.p");
            },
        },
    ]);
}

/// issue 10 item 6 (T6): dropping below 25 Professional + Enterprise licenses loses the
/// included sandbox slot; a kept sandbox needs a bought slot, bought before the reduction.
#[test]
fn fidelity_included_sandbox() {
    run(vec![
        Case {
            name: "T6: a kept sandbox on the included slot: purchase_instance before reduce_licenses",
            desired: "licenses: {professional: 6}\ninstances:\n  keep: {name: keep, url: keep, type: production}\n  s: {name: s, url: s, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}{}", inst("i1", "keep", PROD), inst("i2", "s", SANDBOX)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false), ("instances.s", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                assert_eq!(count(p, ActionKind::PurchaseInstance), 1);
                depends(p, "reduce_licenses licenses.professional", "purchase_instance instances.s");
            },
        },
        Case {
            name: "T6: a kept sandbox and a new one: two slots bought, both before the reduction",
            desired: "licenses: {professional: 6}\ninstances:\n  keep: {name: keep, url: keep, type: production}\n  s: {name: s, url: s, type: sandbox}\n  t: {name: t, url: t, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}{}", inst("i1", "keep", PROD), inst("i2", "s", SANDBOX)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false), ("instances.s", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                assert_eq!(count(p, ActionKind::PurchaseInstance), 2);
                let reduce = pos(p, "reduce_licenses licenses.professional");
                assert!(p.actions.iter().filter(|a| a.kind == ActionKind::PurchaseInstance).all(|a| a.id < reduce));
            },
        },
        Case {
            name: "T6: the sandbox on the included slot is deleted: nothing to buy",
            desired: "licenses: {professional: 6}\ninstances:\n  keep: {name: keep, url: keep, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}{}", inst("i1", "keep", PROD), inst("i2", "s", SANDBOX)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false), ("instances.s", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                assert_eq!(count(p, ActionKind::PurchaseInstance), 0);
                depends(p, "reduce_licenses licenses.professional", "delete_instance instances.s");
            },
        },
    ]);
}

/// issue 10 item 7 (T3 after drift): a user given an un-bought license out of band while
/// the file wants one with free seats: the conflicting license goes, the wanted one comes.
#[test]
fn fidelity_license_conflict() {
    run(vec![
        Case {
            name: "T3: an out-of-band enterprise license (none bought) is replaced by the wanted professional one",
            desired: "licenses: {professional: 5}\nusers:\n  a@coho.com: {license: professional}\n".into(),
            tenant: "licenses: {professional: 5}\nusers:\n  u1: {id: u1, upn: a@coho.com, license: enterprise, access_mode: read-write}\n".into(),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false)],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["assign_license users.a@coho.com"]),
        },
        Case {
            name: "T3: two users over the enterprise count out of band, the file moves one to professional and licenses say enterprise: 1",
            desired: "licenses: {professional: 5, enterprise: 1}\nusers:\n  a@coho.com: {license: professional}\n  b@coho.com: {license: enterprise}\n".into(),
            tenant: "licenses: {professional: 5, enterprise: 1}\nusers:\n  u1: {id: u1, upn: a@coho.com, license: enterprise, access_mode: read-write}\n  u2: {id: u2, upn: b@coho.com, license: enterprise, access_mode: read-write}\n".into(),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false), ("users.b@coho.com", ObjKind::User, "u2", false)],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["assign_license users.a@coho.com"]),
        },
        Case {
            // issue 10 item 7: a conflict the plan does not touch is a warning, not an error
            name: "T3: an unmanaged user holding an un-bought enterprise license does not block the plan",
            desired: "licenses: {professional: 5}\nusers:\n  a@coho.com: {license: professional}\n".into(),
            tenant: "licenses: {professional: 5}\nusers:\n  u9: {id: u9, upn: z@coho.com, license: enterprise, access_mode: read-write}\n".into(),
            state: vec![],
            valid: true,
            check: |p| {
                assert!(diag_at(p, "licenses.enterprise", "T3", false), "{:#?}", p.diagnostics);
                assert_eq!(steps(p), vec!["create_user users.a@coho.com", "assign_license users.a@coho.com"]);
            },
        },
        Case {
            // issue 10 item 7: found by the agreement property test
            name: "T3: with a conflict kept by an unmanaged user, a new assignment of that plan has no free license: error",
            desired: "licenses: {basic: 1}\nusers:\n  a@coho.com: {}\n  c@coho.com: {license: basic}\n".into(),
            tenant: "users:\n  u1: {id: u1, upn: a@coho.com, license: basic, access_mode: read-write}\n  u2: {id: u2, upn: b@coho.com, license: basic, access_mode: read-write}\n".into(),
            state: vec![("users.a@coho.com", ObjKind::User, "u1", false)],
            valid: false,
            check: |p| assert!(diag_at(p, "licenses.basic", "T3", true), "{:#?}", p.diagnostics),
        },
    ]);
}

/// issue 10 items 5 and 9: copies and a sandbox becoming production.
#[test]
fn fidelity_copy_and_admin_mode() {
    run(vec![
        Case {
            // issue 10 item 5: the source (observed EUR) is not in the file's terms
            name: "I3/I11: a new sandbox copied from an EUR source cannot ask for USD",
            desired: "licenses: {professional: 30}\ninstances:\n  p: {name: p, url: p, type: production}\n  s: {name: s, url: s, type: sandbox, currency: USD, copy_from: {instance: p, kind: full}}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}", inst("i1", "p", &PROD.replace("USD", "EUR"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: |p| {
                assert_eq!(error_rules(p), vec!["I11"]);
                assert!(diag_at(p, "instances.s.currency", "I11", true), "{:#?}", p.diagnostics);
            },
        },
        Case {
            // issue 10 item 5
            name: "I3/I11: a new sandbox copied from a source with language 1036 cannot ask for 1033",
            desired: "licenses: {professional: 30}\ninstances:\n  p: {name: p, url: p, type: production}\n  s: {name: s, url: s, type: sandbox, language: 1033, copy_from: {instance: p, kind: full}}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}", inst("i1", "p", &PROD.replace("1033", "1036"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: false,
            check: |p| assert!(diag_at(p, "instances.s.language", "I11", true), "{:#?}", p.diagnostics),
        },
        Case {
            // issue 10 item 5: without currency the copy converges (no reset wanted later)
            name: "I3/I11: a new sandbox copied from an EUR source, currency omitted: converges",
            desired: "licenses: {professional: 30}\ninstances:\n  p: {name: p, url: p, type: production}\n  s: {name: s, url: s, type: sandbox, copy_from: {instance: p, kind: full}}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}", inst("i1", "p", &PROD.replace("USD", "EUR"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| assert!(!p.has_errors()),
        },
        Case {
            // issue 10 item 9
            name: "I10: a sandbox becoming production with the production default admin_mode",
            desired: "licenses: {professional: 30}\ninstances:\n  k: {name: k, url: k, type: production}\n  s: {name: s, url: s, type: production, admin_mode: {enabled: false, background_operations: true}}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\nslots: {{production: 1}}\ninstances:\n{}{}", inst("i0", "k", PROD), inst("i1", "s", &SANDBOX.replace("version", "admin_mode: {enabled: true, background_operations: false}, version"))),
            state: vec![("instances.k", ObjKind::Instance, "i0", false), ("instances.s", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| depends(p, "switch_instance instances.s", "set_admin_mode instances.s"),
        },
    ]);
}

/// issue 9 item 5: a state entry whose object no longer exists in the tenant and whose
/// address the file no longer declares is forgotten (a plan item apply records, plus a
/// warning); an entry the file still declares is created again instead, and an entry
/// whose object exists is deleted as before. The planner stays pure: same input, same
/// forget list.
#[test]
fn state_entries_of_vanished_undeclared_objects_are_forgotten() {
    let d = desired("users:\n  ana@coho.com: {}\n");
    let t = tenant("users:\n  u3: {id: u3, upn: bob@coho.com, access_mode: read-write}\n");
    let s = state(&[
        ("users.ana@coho.com", ObjKind::User, "u1", false),
        ("users.gus@coho.com", ObjKind::User, "u2", false),
        ("users.bob@coho.com", ObjKind::User, "u3", false),
        ("security_groups.old", ObjKind::Group, "g9", false),
        ("instances.old", ObjKind::Instance, "i9", false),
    ]);
    let plan = crmctl::plan::plan(&d, &t, &s);
    let forgotten: Vec<(&str, ObjKind, &str)> = plan
        .forget
        .iter()
        .map(|f| (f.address.as_str(), f.kind, f.id.as_str()))
        .collect();
    assert_eq!(
        forgotten,
        vec![
            ("instances.old", ObjKind::Instance, "i9"),
            ("security_groups.old", ObjKind::Group, "g9"),
            ("users.gus@coho.com", ObjKind::User, "u2"),
        ]
    );
    for f in &plan.forget {
        assert!(
            plan.diagnostics.iter().any(|x| !x.is_error()
                && x.address.as_deref() == Some(f.address.as_str())
                && x.message.contains("apply forgets it from the state")),
            "no warning for {}: {:#?}",
            f.address,
            plan.diagnostics
        );
    }
    assert!(!plan.has_errors(), "{:#?}", plan.diagnostics);
    let steps = steps(&plan);
    assert!(
        steps.contains(&"create_user users.ana@coho.com".to_string()),
        "{steps:?}"
    );
    assert!(
        steps.contains(&"delete_user users.bob@coho.com".to_string()),
        "{steps:?}"
    );
    assert_eq!(crmctl::plan::plan(&d, &t, &s), plan, "deterministic");
}

/// issue 10 item 8 (U2): an instance at n-2 or older must take the update.
#[test]
fn fidelity_mandatory_update() {
    fn warned(p: &Plan) {
        let d = p
            .diagnostics
            .iter()
            .find(|d| d.rule.as_deref() == Some("U2"))
            .unwrap_or_else(|| panic!("{:#?}", p.diagnostics));
        assert!(!d.is_error());
        assert_eq!(d.address.as_deref(), Some("instances.p"));
        assert!(d.message.contains("8.0.0"), "{}", d.message);
    }
    run(vec![
        Case {
            name: "U2: an instance at n-2 without update in the file: a warning with the version it will take",
            desired: "instances:\n  p: {name: p, url: p, type: production}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", &PROD.replace("8.1.0", "7.1.0"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                assert!(p.actions.is_empty());
                warned(p);
            },
        },
        Case {
            name: "U2: an instance at n-2 whose file approves n-2+1 or later: schedule_update, no warning",
            desired: "instances:\n  p: {name: p, url: p, type: production, update: {target_version: 8.0.0, preferred: '2030-01-01T00:00:00Z', alternate: '2030-01-02T00:00:00Z'}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", &PROD.replace("8.1.0", "7.0.0"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                assert_eq!(steps(p), vec!["schedule_update instances.p"]);
                assert!(!warning_rules(p).contains(&"U2".to_string()));
            },
        },
        Case {
            name: "U2: an instance at n-2 whose file approves only 7.1.0: warned that the service takes 8.0.0 at least",
            desired: "instances:\n  p: {name: p, url: p, type: production, update: {target_version: 7.1.0, preferred: '2030-01-01T00:00:00Z', alternate: '2030-01-02T00:00:00Z'}}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", &PROD.replace("8.1.0", "7.0.0"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: warned,
        },
        Case {
            // found by the agreement property test (issue 10)
            name: "U2/I11: a new sandbox copied from a 7.0.0 source runs 7.0.0: its approval to 7.1.0 runs after the copy",
            desired: "licenses: {professional: 30}\ninstances:\n  p: {name: p, url: p, type: production}\n  s: {name: s, url: s, type: sandbox, copy_from: {instance: p, kind: minimal}, update: {target_version: 7.1.0, preferred: '2030-01-01T00:00:00Z', alternate: '2030-01-02T00:00:00Z'}}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}", inst("i1", "p", &PROD.replace("8.1.0", "7.0.0"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| depends(p, "schedule_update instances.s", "copy_instance instances.s"),
        },
        Case {
            // issue 10 item 8, acceptance: a reset re-provisions at the newest version (I9)
            name: "U2/I9: a sandbox at n-2 that the plan resets runs the newest version after it: no U2 warning",
            desired: "licenses: {professional: 30}\ninstances:\n  s: {name: s, url: s, type: sandbox, currency: EUR}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}", inst("i1", "s", &SANDBOX.replace("8.1.0", "7.0.0"))),
            state: vec![("instances.s", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                assert_eq!(steps(p), vec!["reset_instance instances.s"]);
                assert!(!warning_rules(p).contains(&"U2".to_string()), "{:#?}", p.diagnostics);
            },
        },
        Case {
            // issue 10 item 8, acceptance: the copy runs its source's version (I11)
            name: "U2/I11: a new sandbox copied from a 7.0.0 source is forced to take 8.0.0: warned in the plan that makes it",
            desired: "licenses: {professional: 30}\ninstances:\n  p: {name: p, url: p, type: production, update: {target_version: 8.0.0, preferred: '2030-01-01T00:00:00Z', alternate: '2030-01-02T00:00:00Z'}}\n  s: {name: s, url: s, type: sandbox, copy_from: {instance: p, kind: minimal}}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}", inst("i1", "p", &PROD.replace("8.1.0", "7.0.0"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                let d: Vec<_> = p.diagnostics.iter().filter(|d| d.rule.as_deref() == Some("U2")).collect();
                assert_eq!(d.len(), 1, "{d:#?}");
                assert_eq!(d[0].address.as_deref(), Some("instances.s"));
                assert!(d[0].message.contains("runs 7.0.0") && d[0].message.contains("8.0.0"), "{}", d[0].message);
            },
        },
        Case {
            // issue 10 item 8, acceptance: an update in progress can no longer be
            // rescheduled (U4), so the warning does not tell to add one
            name: "U2/U4: an instance at n-2 whose forced update is in progress: warned, without a hint to choose dates",
            desired: "instances:\n  p: {name: p, url: p, type: production}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", &PROD.replace("version: 8.1.0", "version: 7.1.0, update: {target_version: 8.1.0, preferred: '', alternate: '', state: in_progress}"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                let d = p.diagnostics.iter().find(|d| d.rule.as_deref() == Some("U2")).expect("a U2 warning");
                assert!(!d.is_error());
                assert!(d.message.contains("in progress"), "{}", d.message);
                assert!(!d.message.contains("add `update"), "{}", d.message);
                assert!(!d.message.contains("for  ("), "{}", d.message);
            },
        },
        Case {
            name: "U2: an instance at n-1 is not forced",
            desired: "instances:\n  p: {name: p, url: p, type: production}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", &PROD.replace("8.1.0", "8.0.0"))),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| assert!(p.diagnostics.is_empty(), "{:#?}", p.diagnostics),
        },
    ]);
}

/// issue 10 item 11 (I12): binding a group to an instance that had none disables every
/// licensed user of the tenant who is not a member, roles or not; the warning lists the
/// first ten and counts them all.
#[test]
fn fidelity_binding_warning() {
    run(vec![
        Case {
            name: "I12: binding a group disables licensed non-members without roles too (first ten and a count)",
            desired: "instances:\n  p: {name: p, url: p, type: production, security_group: g}\nsecurity_groups:\n  g: {members: [a@coho.com]}\nusers:\n  a@coho.com: {license: basic}\n".into(),
            tenant: format!(
                "licenses: {{basic: 20}}\nusers:\n  u1: {{id: u1, upn: a@coho.com, license: basic, access_mode: read-write}}\n{}  nolic: {{id: nolic, upn: nolic@coho.com, access_mode: read-write}}\ninstances:\n{}",
                (0..12).map(|i| format!("  x{i:02}: {{id: x{i:02}, upn: x{i:02}@coho.com, license: basic, access_mode: read-write}}\n")).collect::<String>(),
                inst("i1", "p", PROD)
            ),
            state: vec![("instances.p", ObjKind::Instance, "i1", false), ("users.a@coho.com", ObjKind::User, "u1", false)],
            valid: true,
            check: |p| {
                let w = p.diagnostics.iter().find(|d| d.rule.as_deref() == Some("I12")).unwrap_or_else(|| panic!("{:#?}", p.diagnostics));
                assert!(w.message.contains("disables 12 licensed user(s)"), "{}", w.message);
                assert!(w.message.contains("x00@coho.com") && w.message.contains("x09@coho.com"), "{}", w.message);
                assert!(!w.message.contains("x10@coho.com"), "{}", w.message);
                assert!(w.message.contains("and 2 more"), "{}", w.message);
                assert!(!w.message.contains("nolic@") && !w.message.contains("a@coho.com,"), "{}", w.message);
            },
        },
        Case {
            name: "I12: rebinding from one group to another disables the old group's licensed members who are not in the new one",
            desired: "instances:\n  p: {name: p, url: p, type: production, security_group: g2}\nsecurity_groups:\n  g1: {}\n  g2: {members: [a@coho.com]}\nusers:\n  a@coho.com: {}\n".into(),
            tenant: format!(
                "licenses: {{basic: 5}}\ngroups:\n  g1: {{id: g1, name: g1, members: [u1, u2]}}\n  g2: {{id: g2, name: g2, members: [u1]}}\nusers:\n  u1: {{id: u1, upn: a@coho.com, license: basic, access_mode: read-write}}\n  u2: {{id: u2, upn: b@coho.com, license: basic, access_mode: read-write}}\n  u3: {{id: u3, upn: c@coho.com, license: basic, access_mode: read-write}}\ninstances:\n{}",
                inst("i1", "p", &PROD.replace("status", "security_group: g1, status"))
            ),
            state: vec![("instances.p", ObjKind::Instance, "i1", false), ("users.a@coho.com", ObjKind::User, "u1", false), ("security_groups.g1", ObjKind::Group, "g1", false), ("security_groups.g2", ObjKind::Group, "g2", false)],
            valid: true,
            check: |p| {
                let w = p.diagnostics.iter().find(|d| d.rule.as_deref() == Some("I12")).unwrap_or_else(|| panic!("{:#?}", p.diagnostics));
                assert!(w.message.contains("disables 1 licensed user(s)") && w.message.contains("b@coho.com"), "{}", w.message);
                assert!(!w.message.contains("c@coho.com"), "{}", w.message);
            },
        },
    ]);
}

/// issue 10 item 12: the smaller ones.
#[test]
fn fidelity_smaller() {
    run(vec![
        Case {
            // issue 10 item 12
            name: "I7: an instance switched to sandbox out of band keeps its production slot: switching back buys nothing",
            desired: "licenses: {professional: 5}\ninstances:\n  p: {name: p, url: p, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 5}}\ninstances:\n{}", inst("i1", "p", "type: sandbox, slot: production, region: NA, currency: USD, language: 1033, status: ready, version: 8.1.0")),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["switch_instance instances.p"]),
        },
        Case {
            // issue 10 item 12, acceptance: the other direction
            name: "I7: an instance switched to production out of band keeps its sandbox slot: switching back buys nothing",
            desired: "licenses: {professional: 5}\ninstances:\n  p: {name: p, url: p, type: production}\n  s: {name: s, url: s, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 5}}\nslots: {{sandbox: 1}}\ninstances:\n{}{}", inst("i1", "p", PROD), inst("i2", "s", "type: production, slot: sandbox, region: NA, currency: USD, language: 1033, status: ready, version: 8.1.0")),
            state: vec![("instances.p", ObjKind::Instance, "i1", false), ("instances.s", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["switch_instance instances.s"]),
        },
        Case {
            // issue 10 items 6 and 12, acceptance: it holds the included sandbox slot, which
            // the reduction loses (T6): one slot bought, not a second for the switch
            name: "I7/T6: an instance switched to production out of band in the included sandbox slot, licenses 30 -> 20: one sandbox slot bought",
            desired: "licenses: {professional: 20}\ninstances:\n  p: {name: p, url: p, type: production}\n  s: {name: s, url: s, type: sandbox}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}{}", inst("i1", "p", PROD), inst("i2", "s", "type: production, slot: sandbox, region: NA, currency: USD, language: 1033, status: ready, version: 8.1.0")),
            state: vec![("instances.p", ObjKind::Instance, "i1", false), ("instances.s", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                assert_eq!(count(p, ActionKind::PurchaseInstance), 1, "{:?}", steps(p));
                depends(p, "reduce_licenses licenses.professional", "purchase_instance instances.s");
            },
        },
        Case {
            // issue 10 item 12, acceptance: deleting it switches it back into that slot
            name: "I8/I7: deleting an instance switched to production out of band in a sandbox slot buys nothing",
            desired: "licenses: {professional: 5}\ninstances:\n  p: {name: p, url: p, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 5}}\nslots: {{sandbox: 1}}\ninstances:\n{}{}", inst("i1", "p", PROD), inst("i2", "s", "type: production, slot: sandbox, region: NA, currency: USD, language: 1033, status: ready, version: 8.1.0")),
            state: vec![("instances.p", ObjKind::Instance, "i1", false), ("instances.s", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| assert_eq!(steps(p), vec!["switch_instance instances.s", "delete_instance instances.s"]),
        },
        Case {
            // issue 10 item 12
            name: "I8/T6: deleting a production instance uses the free included sandbox slot (no purchase)",
            desired: "licenses: {professional: 30}\ninstances:\n  keep: {name: keep, url: keep, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\nslots: {{production: 1}}\ninstances:\n{}{}", inst("i1", "keep", PROD), inst("i2", "gone", PROD)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false), ("instances.gone", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| assert_eq!(count(p, ActionKind::PurchaseInstance), 0),
        },
        Case {
            // issue 10 item 12 with item 6, acceptance: the included sandbox slot is free
            // until the reduction loses it (T6); the switch before the delete uses it
            name: "I8/T6: deleting two production instances while licenses go 30 -> 20: both pass through the free included sandbox slot, nothing bought, the reduction after the deletes",
            desired: "licenses: {professional: 20}\ninstances:\n  keep: {name: keep, url: keep, type: production}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\nslots: {{production: 2}}\ninstances:\n{}{}{}", inst("i1", "keep", PROD), inst("i2", "gone", PROD), inst("i3", "gone2", PROD)),
            state: vec![("instances.keep", ObjKind::Instance, "i1", false), ("instances.gone", ObjKind::Instance, "i2", false), ("instances.gone2", ObjKind::Instance, "i3", false)],
            valid: true,
            check: |p| {
                assert_eq!(count(p, ActionKind::PurchaseInstance), 0, "{:?}", steps(p));
                depends(p, "reduce_licenses licenses.professional", "delete_instance instances.gone");
                depends(p, "reduce_licenses licenses.professional", "delete_instance instances.gone2");
            },
        },
        Case {
            // issue 10 item 12
            name: "I12: removing a member of a bound group warns, naming the instances",
            desired: "instances:\n  p: {name: p, url: p, type: production, security_group: g}\nsecurity_groups:\n  g: {members: [a@coho.com]}\nusers:\n  a@coho.com: {}\n".into(),
            tenant: format!(
                "licenses: {{basic: 5}}\ngroups:\n  g1: {{id: g1, name: g, members: [u1, u2]}}\nusers:\n  u1: {{id: u1, upn: a@coho.com, license: basic, access_mode: read-write}}\n  u2: {{id: u2, upn: b@coho.com, license: basic, access_mode: read-write}}\ninstances:\n{}",
                inst("i1", "p", &PROD.replace("status", "security_group: g1, status"))
            ),
            state: vec![("instances.p", ObjKind::Instance, "i1", false), ("users.a@coho.com", ObjKind::User, "u1", false), ("security_groups.g", ObjKind::Group, "g1", false)],
            valid: true,
            check: |p| {
                let w = p.diagnostics.iter().find(|d| d.rule.as_deref() == Some("I12")).unwrap_or_else(|| panic!("{:#?}", p.diagnostics));
                assert_eq!(w.address.as_deref(), Some("security_groups.g"));
                assert!(w.message.contains("instances.p") && w.message.contains("b@coho.com"), "{}", w.message);
            },
        },
        Case {
            // issue 10 item 12
            name: "I11: copy_from on an existing sandbox is not silently ignored",
            desired: "licenses: {professional: 30}\ninstances:\n  p: {name: p, url: p, type: production}\n  s: {name: s, url: s, type: sandbox, copy_from: {instance: p, kind: full}}\n".into(),
            tenant: format!("licenses: {{professional: 30}}\ninstances:\n{}{}", inst("i1", "p", PROD), inst("i2", "s", SANDBOX)),
            state: vec![("instances.p", ObjKind::Instance, "i1", false), ("instances.s", ObjKind::Instance, "i2", false)],
            valid: true,
            check: |p| {
                assert!(p.actions.is_empty());
                let w = p.diagnostics.iter().find(|d| d.rule.as_deref() == Some("I11")).unwrap_or_else(|| panic!("{:#?}", p.diagnostics));
                assert_eq!(w.address.as_deref(), Some("instances.s.copy_from"));
                assert!(w.message.contains("To refresh it"), "{}", w.message);
            },
        },
        Case {
            // issue 10 item 12
            name: "I13: recipients differing only in case are set once",
            desired: "instances:\n  p: {name: p, url: p, type: production, notification_recipients: [ops@coho.com, OPS@coho.com]}\n".into(),
            tenant: format!("instances:\n{}", inst("i1", "p", PROD)),
            state: vec![("instances.p", ObjKind::Instance, "i1", false)],
            valid: true,
            check: |p| {
                let a = &p.actions[pos(p, "set_notification_recipients instances.p")];
                assert_eq!(a.changes[0].after, serde_json::json!(["ops@coho.com"]));
            },
        },
        Case {
            // issue 10 item 12
            name: "T4: reducing below the assigned count (users outside the file) cites T4",
            desired: "licenses: {professional: 1}\n".into(),
            tenant: "licenses: {professional: 3}\nusers:\n  u1: {id: u1, upn: a@coho.com, license: professional, access_mode: read-write}\n  u2: {id: u2, upn: b@coho.com, license: professional, access_mode: read-write}\n".into(),
            state: vec![],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["T4"]),
        },
        Case {
            // issue 10 item 12
            name: "T4: reducing below the assigned count while moving a license in cites T4",
            desired: "licenses: {professional: 1}\nusers:\n  c@coho.com: {license: professional}\n".into(),
            tenant: "licenses: {professional: 3}\nusers:\n  u1: {id: u1, upn: a@coho.com, license: professional, access_mode: read-write}\n  u2: {id: u2, upn: b@coho.com, license: professional, access_mode: read-write}\n  u3: {id: u3, upn: c@coho.com, access_mode: read-write}\n".into(),
            state: vec![("users.c@coho.com", ObjKind::User, "u3", false)],
            valid: false,
            check: |p| assert_eq!(error_rules(p), vec!["T4"]),
        },
    ]);
}

/// issue 9 item 1 (P1): a state address `users.<upn>` bound to a user whose UPN is another
/// one (a state left by two writers before the fix, or edited by hand) is a plan error at
/// that address, naming both. Before, the plan changed that other user to match the
/// entry: renamed `admin@` to Bob and took its license away. A UPN differing only in case
/// is the same user (an update of the displayed value).
#[test]
fn a_state_address_bound_to_another_users_object_is_an_error() {
    let d = desired(
        "licenses: {professional: 5}\nusers:\n  admin@coho.com: {name: Admin, license: professional}\n  bob@coho.com: {name: Bob}\n",
    );
    let t = tenant(
        "licenses: {professional: 5}\nusers:\n  u1: {id: u1, upn: admin@coho.com, name: Admin, license: professional, access_mode: read-write}\n",
    );
    let s = state(&[
        ("users.admin@coho.com", ObjKind::User, "u1", false),
        ("users.bob@coho.com", ObjKind::User, "u1", false),
    ]);
    let plan = crmctl::plan::plan(&d, &t, &s);
    assert!(
        diag_at(&plan, "users.bob@coho.com", "P1", true),
        "{:#?}",
        plan.diagnostics
    );
    let d0 = plan
        .diagnostics
        .iter()
        .find(|x| x.address.as_deref() == Some("users.bob@coho.com"))
        .unwrap();
    assert!(
        d0.message.contains("admin@coho.com") && d0.message.contains("u1"),
        "{}",
        d0.message
    );
    assert!(d0.hint.is_some());
    // The same UPN in another case is the same user: no error, the displayed value updated.
    let t2 = tenant(
        "licenses: {professional: 5}\nusers:\n  u1: {id: u1, upn: admin@coho.com, name: Admin, license: professional, access_mode: read-write}\n  u2: {id: u2, upn: BOB@coho.com, name: Bob, access_mode: read-write}\n",
    );
    let s2 = state(&[
        ("users.admin@coho.com", ObjKind::User, "u1", false),
        ("users.bob@coho.com", ObjKind::User, "u2", false),
    ]);
    let plan = crmctl::plan::plan(&d, &t2, &s2);
    assert!(!plan.has_errors(), "{:#?}", plan.diagnostics);
    assert_eq!(
        steps(&plan),
        vec!["update_user users.bob@coho.com".to_string()]
    );
}

/// issue 9 item 2 (I13): email addresses compare without regard to case. A recipient
/// listed twice in two spellings is notified once (validation warns so): the plan sends it
/// once, in its first spelling. Before, both spellings were sent and stored.
#[test]
fn recipients_listed_twice_in_two_cases_are_sent_once() {
    let d = desired(
        "instances:\n  p:\n    name: p\n    url: p\n    type: production\n    notification_recipients: [OPS@coho.com, ops@coho.com, ext@fabrikam.com]\n",
    );
    let with = |recipients: &str| {
        tenant(&format!(
            "instances:\n  i1: {{id: i1, name: p, url: p, {PROD}, notification_recipients: [{recipients}]}}\n"
        ))
    };
    let s = state(&[("instances.p", ObjKind::Instance, "i1", false)]);
    let plan = crmctl::plan::plan(&d, &with(""), &s);
    let sent: Vec<Vec<String>> = plan
        .actions
        .iter()
        .filter_map(|a| match &*a.op {
            crmctl::domain::op::Op::SetNotificationRecipients { recipients, .. } => {
                Some(recipients.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![vec![
            "OPS@coho.com".to_string(),
            "ext@fabrikam.com".to_string()
        ]]
    );
    // Once the tenant holds them, nothing to do.
    let plan = crmctl::plan::plan(&d, &with("OPS@coho.com, ext@fabrikam.com"), &s);
    assert!(plan.actions.is_empty(), "{:?}", steps(&plan));
}

/// T1 (issue 9 items 1 and 2): a tenant's domain is a DNS name, compared without regard to
/// case, as the state's binding already did; another domain is still an error.
#[test]
fn the_tenant_domain_compares_without_regard_to_case() {
    let d = desired("users:\n  ana@coho.com: {}\n");
    let mut t = fresh();
    t.domain = DOMAIN.to_uppercase();
    let plan = crmctl::plan::plan(&d, &t, &State::empty("l"));
    assert!(!plan.has_errors(), "{:#?}", plan.diagnostics);
    t.domain = "contoso.onmicrosoft.com".into();
    let plan = crmctl::plan::plan(&d, &t, &State::empty("l"));
    assert!(
        diag_at(&plan, "tenant", "T1", true),
        "{:#?}",
        plan.diagnostics
    );
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
        let src = crmctl::desired::load::Source {
            path: "t.yaml".into(),
            text,
        };
        crmctl::desired::load::locate_diagnostics(&src, &mut diags);
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

// issue 11 item 6: `simulate` applies plans on the in-memory provider, i.e. with the local
// provider's own rules; the test suite's former rule engine (`Sim`) accepted each of these
// plans (it checked neither P6, nor I5 without regard to case, nor U2), so planner tests
// could pass on plans the service refuses. A plan action that changes nothing is still
// refused, as before.
#[test]
fn simulate_refuses_what_the_service_refuses() {
    use crmctl::domain::kinds::LicensePlan;
    use crmctl::domain::op::Op;
    let tenant_yaml = format!(
        "{}instances:\n{}{}",
        admins(&[
            ("u1", "a@coho.com", "global_admin"),
            ("u2", "b@coho.com", "global_admin")
        ]),
        inst("i1", "sales", PROD),
        inst("i2", "other", SANDBOX)
    );
    let cases: Vec<(&str, ActionKind, &str, Op)> = vec![
        (
            "(P6)",
            ActionKind::DeleteUser,
            "users.a@coho.com",
            Op::DeleteUser { user: by_id("u1") },
        ),
        (
            "(I5)",
            ActionKind::UpdateInstance,
            "instances.other",
            Op::UpdateInstance {
                instance: by_id("i2"),
                name: None,
                url: Some("SALES".into()),
                purpose: None,
                security_group: None,
            },
        ),
        (
            "(U2)",
            ActionKind::ScheduleUpdate,
            "instances.sales",
            Op::ScheduleUpdate {
                instance: by_id("i1"),
                target_version: "8.1.0".into(),
                preferred: "2030-01-01T00:00:00Z".into(),
                alternate: "2030-01-02T00:00:00Z".into(),
            },
        ),
        (
            "changes nothing",
            ActionKind::PurchaseLicenses,
            "licenses.professional",
            Op::PurchaseLicenses {
                plan: LicensePlan::Professional,
                to: 10,
            },
        ),
    ];
    let t = tenant(&tenant_yaml);
    for (want, kind, address, op) in cases {
        let plan = plan_of(vec![action(0, kind, address, &[], op)]);
        let err = simulate(&plan, &t, &state(&[]))
            .err()
            .unwrap_or_else(|| panic!("{want}: the plan was accepted"));
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// A tenant with user u1 (`a@coho.com`, named A, located in the US), synchronised from
/// on-premises when `synced`, and 2 professional licences.
fn located(synced: bool) -> String {
    format!("licenses: {{professional: 2}}\nusers:\n  u1: {{id: u1, upn: a@coho.com, name: A, access_mode: read-write, usage_location: US, synced: {synced}}}\n")
}

fn user_op(p: &Plan, step: &str) -> crmctl::domain::op::Op {
    (*p.actions[pos(p, step)].op).clone()
}

/// issue 12 item 4: `usage_location` (Graph `usageLocation`) is created, updated when the
/// file gives another, and left alone when the file gives none; on a user synchronised
/// from on-premises (P1) name and principal name changes are warnings at the file's line and
/// a delete is an error, while usage location, licences and memberships are still planned.
#[test]
fn usage_location_and_synced_users() {
    use crmctl::domain::op::Op;
    let a = || vec![("users.a@coho.com", ObjKind::User, "u1", false)];
    run(vec![
        Case {
            name: "issue 12 item 4: a new user is created in the file's usage location",
            desired: "users:\n  b@coho.com: {usage_location: DE}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| {
                assert!(matches!(user_op(p, "create_user users.b@coho.com"), Op::CreateUser { usage_location: Some(l), .. } if l == "DE"));
                let c = &p.actions[0].changes;
                assert!(c.iter().any(|c| c.path == "usage_location" && c.after == "DE"), "{c:?}");
            },
        },
        Case {
            name: "issue 12 item 4: a new user without the field gets the backend's default",
            desired: "users:\n  b@coho.com: {}\n".into(),
            tenant: String::new(),
            state: vec![],
            valid: true,
            check: |p| assert!(matches!(user_op(p, "create_user users.b@coho.com"), Op::CreateUser { usage_location: None, .. })),
        },
        Case {
            name: "issue 12 item 4: another usage location is an update of that field only",
            desired: "users:\n  a@coho.com: {name: A, usage_location: DE}\n".into(),
            tenant: located(false),
            state: a(),
            valid: true,
            check: |p| {
                assert_eq!(steps(p), vec!["update_user users.a@coho.com"]);
                assert!(matches!(user_op(p, "update_user users.a@coho.com"), Op::UpdateUser { usage_location: Some(l), name: None, upn: None, admin_roles: None, .. } if l == "DE"));
                let c = &p.actions[0].changes;
                assert_eq!((c[0].path.as_ref(), &c[0].before, &c[0].after), ("usage_location", &serde_json::json!("US"), &serde_json::json!("DE")));
            },
        },
        Case {
            name: "issue 12 item 4: the same usage location is no change",
            desired: "users:\n  a@coho.com: {usage_location: US}\n".into(),
            tenant: located(false),
            state: a(),
            valid: true,
            check: |p| assert!(steps(p).is_empty() && p.diagnostics.is_empty()),
        },
        Case {
            name: "issue 12 item 4: a file without the field manages nothing there",
            desired: "users:\n  a@coho.com: {name: A}\n".into(),
            tenant: located(false),
            state: a(),
            valid: true,
            check: |p| assert!(steps(p).is_empty()),
        },
        Case {
            name: "P1 synced: another name is a warning at `name`, nothing planned",
            desired: "users:\n  a@coho.com: {name: Ana}\n".into(),
            tenant: located(true),
            state: a(),
            valid: true,
            check: |p| {
                assert!(steps(p).is_empty(), "{:?}", steps(p));
                assert!(diag_at(p, "users.a@coho.com.name", "P1", false));
                let d = &p.diagnostics[0];
                assert!(d.message.contains("synchronised from an on-premises directory: its name is managed there; crmctl leaves it"), "{d:?}");
                assert!(d.hint.is_some());
            },
        },
        Case {
            name: "P1 synced: the principal name spelled otherwise is a warning at the key, re-keyed only",
            desired: "users:\n  A@coho.com: {name: A}\n".into(),
            tenant: located(true),
            state: a(),
            valid: true,
            check: |p| {
                assert_eq!(steps(p), vec!["adopt users.A@coho.com"]);
                assert!(diag_at(p, "users.A@coho.com", "P1", false));
            },
        },
        Case {
            name: "P1 synced: usage location, licence and membership are cloud-managed: planned",
            desired: "licenses: {professional: 2}\nsecurity_groups:\n  sales: {members: [a@coho.com]}\nusers:\n  a@coho.com: {name: Ana, usage_location: DE, license: professional}\n".into(),
            tenant: located(true),
            state: a(),
            valid: true,
            check: |p| {
                assert!(matches!(user_op(p, "update_user users.a@coho.com"), Op::UpdateUser { usage_location: Some(l), name: None, .. } if l == "DE"));
                pos(p, "assign_license users.a@coho.com");
                pos(p, "add_group_members security_groups.sales");
                assert_eq!(warning_rules(p), vec!["P1"]);
            },
        },
        Case {
            name: "P1 synced: removing the user from the file is an error, no delete",
            desired: "users: {}\n".into(),
            tenant: located(true),
            state: a(),
            valid: false,
            check: |p| {
                assert_eq!(count(p, ActionKind::DeleteUser), 0);
                assert!(diag_at(p, "users.a@coho.com", "P1", true));
                let d = p.diagnostics.iter().find(|d| d.is_error()).unwrap();
                assert!(d.hint.as_deref().unwrap().contains("on-premises directory, or keep it in the file"), "{d:?}");
            },
        },
        Case {
            name: "P1 not synced: the same edits and the delete are planned",
            desired: "users:\n  A@coho.com: {name: Ana}\n".into(),
            tenant: located(false),
            state: a(),
            valid: true,
            check: |p| {
                assert!(matches!(user_op(p, "update_user users.A@coho.com"), Op::UpdateUser { name: Some(_), upn: Some(_), .. }));
                assert!(p.diagnostics.is_empty());
            },
        },
    ]);
}
