//! Incremental reads through Graph delta queries (issue 12 items 4 and 5): the emulator's
//! `users/delta` and `groups/delta` on the wire, the Graph provider's `observe_since`
//! against it (same tenant as a full read, few requests, expired tokens), and `crmctl plan`
//! twice (the second reads only the changes).

use std::sync::Arc;

use crmctl::domain::kinds::AccessMode;
use crmctl::domain::op::{ObjRef, Op};
use crmctl::emulator::{Emulator, EmulatorConfig, EmulatorHandle, Faults};
use crmctl::observed::Tenant;
use crmctl::provider::graph::GraphProvider;
use crmctl::provider::memory::MemoryProvider;
use crmctl::provider::{block_on, ObserveCursor, Provider, Scope};
use serde_json::Value;

use crate::common::DOMAIN;
use crate::emulator::{client, get_json, tenant_with, token, CLIENT, SECRET};

/// An emulator of `t` (its tenant kept for out-of-band edits) with `page_size` pages.
fn start(t: Tenant, page_size: usize) -> (EmulatorHandle, Arc<MemoryProvider>) {
    start_with(
        t,
        Faults {
            page_size,
            ..Faults::default()
        },
    )
}

fn start_with(t: Tenant, faults: Faults) -> (EmulatorHandle, Arc<MemoryProvider>) {
    let memory = Arc::new(MemoryProvider::new(t));
    let mut cfg = EmulatorConfig::with_provider(memory.clone(), DOMAIN, CLIENT, SECRET);
    cfg.faults = faults;
    (Emulator::start(cfg).expect("emulator starts"), memory)
}

/// The Graph provider over crmctl's own transport, signed in at the emulator.
fn graph_on(emu: &EmulatorHandle) -> GraphProvider {
    let env: Vec<(String, String)> = crate::emulator::emulator_env(emu);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let transport = crmctl::provider::http::connect(
        crmctl::provider::http::cloud::Cloud::Public,
        DOMAIN,
        get,
        None,
    )
    .expect("transport");
    GraphProvider::new(Arc::new(transport)).with_graph_base(emu.graph_url())
}

fn obj(id: &str) -> ObjRef {
    ObjRef {
        address: id.into(),
        id: Some(id.into()),
    }
}

/// A tenant of `n` users and three groups with members.
fn directory(n: usize) -> Tenant {
    directory_with(n, 3)
}

/// A tenant of `n` users and `groups` groups with members.
fn directory_with(n: usize, groups: usize) -> Tenant {
    let mut t = tenant_with(n);
    t.domain = DOMAIN.to_string();
    let ids: Vec<String> = t.users.keys().cloned().collect();
    for g in 0..groups {
        let group = crmctl::observed::Group {
            id: format!("g{g}"),
            name: format!("Group {g}"),
            description: String::new(),
            members: ids.iter().skip(g % 7).step_by(g % 7 + 1).cloned().collect(),
        };
        t.groups.insert(group.id.clone(), group);
    }
    t
}

fn full(g: &GraphProvider) -> Tenant {
    block_on(g.observe(&Scope::all())).unwrap().unwrap()
}

fn since(g: &GraphProvider, c: Option<ObserveCursor>) -> (Tenant, ObserveCursor) {
    let (t, c) = block_on(g.observe_since(&Scope::all(), c))
        .unwrap()
        .unwrap();
    (t, c.expect("the Graph provider gives a cursor"))
}

/// Random out-of-band edits of the emulator's tenant: users created, renamed and
/// deleted, members added and removed, groups created and deleted.
fn edit(memory: &MemoryProvider, rng: &mut fastrand::Rng, round: usize) {
    let t = memory.observe_now().unwrap();
    let users: Vec<&String> = t.users.keys().filter(|id| *id != "u0000").collect();
    let groups: Vec<&String> = t.groups.keys().collect();
    let mut ops = vec![];
    for i in 0..rng.usize(1..4) {
        ops.push(Op::CreateUser {
            upn: format!("new{round}x{i}@coho.com"),
            name: format!("New {round} {i}"),
            access_mode: AccessMode::ReadWrite,
            usage_location: None,
            application_id: None,
        });
    }
    if let Some(u) = users.get(rng.usize(..users.len().max(1))) {
        ops.push(Op::UpdateUser {
            user: obj(u),
            name: Some(format!("Renamed {round}")),
            admin_roles: None,
            upn: None,
            usage_location: None,
        });
    }
    if let Some(g) = groups.get(rng.usize(..groups.len().max(1))) {
        let members = &t.groups[*g].members;
        let (ins, outs): (Vec<&&String>, Vec<&&String>) =
            users.iter().partition(|u| members.contains(**u));
        if let Some(u) = outs.get(rng.usize(..outs.len().max(1))) {
            ops.push(Op::AddGroupMembers {
                group: obj(g),
                users: vec![obj(u)],
            });
        }
        if let Some(u) = ins.get(rng.usize(..ins.len().max(1))) {
            ops.push(Op::RemoveGroupMembers {
                group: obj(g),
                users: vec![obj(u)],
            });
        }
    }
    if round % 2 == 0 {
        ops.push(Op::CreateGroup {
            name: format!("Made {round}"),
            description: "made out of band".into(),
        });
    } else if let Some(g) = groups.first() {
        ops.push(Op::DeleteGroup { group: obj(g) });
    }
    if let Some(u) = users.get(rng.usize(..users.len().max(1))) {
        ops.push(Op::DeleteUser { user: obj(u) });
    }
    for op in &ops {
        memory
            .execute_one(op)
            .unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
}

// issue 12 item 4: the tenant read through delta links equals a full read after each of
// several rounds of random out-of-band edits (users created, renamed, deleted; members
// added and removed; groups created and deleted), with small pages (several delta pages),
// also with throttling and server errors.
#[test]
fn delta_reads_equal_full_reads_after_random_edits() {
    for seed in [1u64, 2, 3] {
        // Seed 3 also meets 10% throttling and 10% 5xx on every request, delta ones
        // included (the transport retries them).
        let faults = Faults {
            seed,
            page_size: 3,
            throttle_rate: if seed == 3 { 0.1 } else { 0.0 },
            server_error_rate: if seed == 3 { 0.1 } else { 0.0 },
            retry_after_secs: 0,
            ..Faults::default()
        };
        let (emu, memory) = start_with(directory(12), faults);
        let g = graph_on(&emu);
        let (first, mut cursor) = since(&g, None);
        assert_eq!(first, full(&g), "seed {seed}: first read");
        let mut rng = fastrand::Rng::with_seed(seed);
        for round in 0..4 {
            edit(&memory, &mut rng, round);
            let (t, c) = since(&g, Some(cursor));
            assert_eq!(t, full(&g), "seed {seed} round {round}");
            cursor = c;
        }
    }
}

// issue 12 item 4: a second observe with nothing changed sends a handful of requests
// (organization, subscribedSkus, global admins, one users/delta and one groups/delta page),
// far fewer than the first.
#[test]
fn a_no_change_observe_with_the_cursor_makes_few_requests() {
    // 60 groups: their members take three `$batch` requests in a full read.
    let (emu, _memory) = start(directory_with(40, 60), 5);
    let g = graph_on(&emu);
    let before = emu.graph_requests();
    let (first, cursor) = since(&g, None);
    let first_requests = emu.graph_requests() - before;
    let before = emu.graph_requests();
    let (second, _) = since(&g, Some(cursor));
    let second_requests = emu.graph_requests() - before;
    assert_eq!(first, second);
    assert_eq!(second_requests, 5, "first read: {first_requests} requests");
    assert!(first_requests >= 2 * second_requests, "{first_requests}");
}

// issue 12 item 4: a cursor whose delta tokens the service no longer knows (answered 400
// syncStateNotFound) or that is not the provider's own (garbage, another Graph host)
// means a full read, and the tenant is still right.
#[test]
fn an_expired_or_foreign_cursor_means_a_correct_full_read() {
    let (emu, memory) = start(directory(10), 100);
    let g = graph_on(&emu);
    let (_, old) = since(&g, None);
    // Later rounds push the old tokens out of the emulator's few kept snapshots.
    let mut cursor = old.clone();
    for _ in 0..4 {
        cursor = since(&g, Some(cursor)).1;
    }
    memory
        .execute_one(&Op::UpdateUser {
            user: obj("u0003"),
            name: Some("Changed".into()),
            admin_roles: None,
            upn: None,
            usage_location: None,
        })
        .unwrap();
    // Out of band too: licences bought (read on every observe, not through delta).
    memory
        .execute_one(&Op::PurchaseLicenses {
            plan: crmctl::domain::kinds::LicensePlan::Professional,
            to: 7,
        })
        .unwrap();
    let before = emu.graph_requests();
    let (t, fresh) = since(&g, Some(old));
    let requests = emu.graph_requests() - before;
    assert_eq!(t, full(&g));
    assert_eq!(t.users["u0003"].name, "Changed");
    assert_eq!(
        t.licenses,
        memory.observe_now().unwrap().licenses,
        "licence counts are read every time"
    );
    assert!(requests > 5, "a full read followed: {requests} requests");
    // The cursor given back works.
    let before = emu.graph_requests();
    assert_eq!(since(&g, Some(fresh)).0, t);
    assert_eq!(emu.graph_requests() - before, 5);
    for foreign in [
        ObserveCursor(b"not a cursor".to_vec()),
        ObserveCursor(Vec::new()),
    ] {
        assert_eq!(since(&g, Some(foreign)).0, t);
    }
    // A cursor made against another Graph host is not used (its links are not this one's).
    let (_, here) = since(&g, None);
    let elsewhere = graph_on(&emu).with_graph_base("https://graph.example");
    let before = emu.graph_requests();
    assert_eq!(since(&elsewhere, Some(here)).0, t);
    assert!(emu.graph_requests() - before > 5, "a full read");
}

// issue 12 item 5: the emulator's delta rounds on the wire: pages of the knob's size with
// `@odata.nextLink` (`$skiptoken`), never with a deltaLink too; the last page's
// `@odata.deltaLink` (`$deltatoken`); a large group in several items; then the changes
// only: `@removed` users (reason changed), groups (reason deleted) and members; an unknown
// token answers 400 syncStateNotFound.
#[test]
fn emulator_delta_rounds_on_the_wire() {
    let mut t = directory(250);
    t.groups.get_mut("g0").unwrap().members = t.users.keys().cloned().collect();
    let (emu, memory) = start(t, 40);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let base = emu.graph_url().to_string();
        let read = |url: String| {
            let c = c.clone();
            let tok = tok.clone();
            async move {
                let mut items = vec![];
                let mut pages = 0;
                let mut next = url;
                loop {
                    let page = get_json(&c, &tok, next.as_str()).await;
                    pages += 1;
                    let v = page["value"].as_array().expect("value").clone();
                    assert!(v.len() <= 40, "page size knob");
                    items.extend(v);
                    match (
                        page["@odata.nextLink"].as_str(),
                        page["@odata.deltaLink"].as_str(),
                    ) {
                        (Some(n), None) => {
                            assert!(n.contains("$skiptoken="));
                            next = n.to_string();
                        }
                        (None, Some(d)) => {
                            assert!(d.contains("$deltatoken="));
                            return (items, d.to_string(), pages);
                        }
                        other => panic!("a page has one of the links: {other:?}"),
                    }
                }
            }
        };
        let (users, users_link, pages) = read(format!(
            "{base}/v1.0/users/delta?$select=displayName,userPrincipalName"
        ))
        .await;
        assert_eq!(users.len(), 250);
        assert!(pages >= 7);
        assert!(users[0]["displayName"].is_string() && users[0]["id"].is_string());
        assert!(users[0].get("mail").is_none(), "$select is kept");
        let (groups, groups_link, _) = read(format!(
            "{base}/v1.0/groups/delta?$select=displayName,securityEnabled,mailEnabled,members"
        ))
        .await;
        let g0: Vec<&Value> = groups.iter().filter(|g| g["id"] == "g0").collect();
        assert!(g0.len() >= 3, "250 members come in several items");
        let members: usize = g0
            .iter()
            .map(|g| g["members@delta"].as_array().unwrap().len())
            .sum();
        assert_eq!(members, 250);
        // Changes out of band, then the delta links.
        for op in [
            Op::DeleteUser { user: obj("u0005") },
            Op::RemoveGroupMembers {
                group: obj("g0"),
                users: vec![obj("u0007")],
            },
            Op::DeleteGroup { group: obj("g2") },
        ] {
            memory.execute_one(&op).unwrap();
        }
        let (users, users_link2, _) = read(users_link.clone()).await;
        assert_eq!(
            users,
            vec![serde_json::json!({"id": "u0005", "@removed": {"reason": "changed"}})]
        );
        let (groups, _, _) = read(groups_link).await;
        let removed_member = groups.iter().any(|g| {
            g["id"] == "g0"
                && g["members@delta"].as_array().is_some_and(|m| {
                    m.iter()
                        .any(|m| m["id"] == "u0007" && m["@removed"].is_object())
                })
        });
        assert!(removed_member, "{groups:?}");
        assert!(groups
            .iter()
            .any(|g| g["id"] == "g2" && g["@removed"]["reason"] == "deleted"));
        // Nothing changed since: an empty round.
        assert!(read(users_link2).await.0.is_empty());
        // "sync from now": a deltaLink and no data.
        let latest = get_json(
            &c,
            &tok,
            format!("{base}/v1.0/users/delta?$deltatoken=latest"),
        )
        .await;
        assert_eq!(latest["value"], serde_json::json!([]));
        assert!(latest["@odata.deltaLink"].is_string());
        let gone = get_json(
            &c,
            &tok,
            format!("{base}/v1.0/users/delta?$deltatoken=D999x0"),
        )
        .await;
        assert_eq!(gone["error"]["code"], "syncStateNotFound");
    });
}

// issue 12 item 4 (through the command line): after an apply, `crmctl plan` twice against
// the emulator: the second plan reads only the changes (far fewer requests) and still shows
// no changes; a change made in the tenant between plans is seen by the next one.
#[test]
fn crmctl_plans_twice_the_second_reads_only_changes() {
    use predicates::prelude::*;
    // 2,100 users and 80 groups: a full read takes three pages of users and four `$batch`
    // requests of members.
    let (emu, memory) = start(directory_with(2100, 80), 10);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("directory.yaml"),
        format!(
            "tenant: {DOMAIN}\nusers:\n  \
             u0000@coho.com: {{name: u0000, admin_roles: [global_admin]}}\n  \
             u0001@coho.com: {{name: u0001, admin_roles: [global_admin]}}\n  \
             ana@coho.com: {{name: Ana}}\n\
             security_groups:\n  sales: {{name: Sales_SG, members: [ana@coho.com, u0000@coho.com]}}\n"
        ),
    )
    .unwrap();
    let run = |cmd: &str, code: i32| {
        let mut args = vec![cmd, "--backend", "microsoft", "-f", "directory.yaml"];
        args.push(if cmd == "apply" {
            "--auto-approve"
        } else {
            "--detailed-exitcode"
        });
        let before = emu.graph_requests();
        let out = crate::emulator::crmctl_on(&emu, dir.path())
            .args(&args)
            .assert()
            .code(code);
        (emu.graph_requests() - before, out)
    };
    run("apply", 0);
    let (first, _) = run("plan", 0);
    assert!(
        dir.path()
            .join(".crmctl/state.json.observe-cache.json")
            .exists(),
        "the cursor is kept beside the state"
    );
    let (second, _) = run("plan", 0);
    assert!(
        second <= 6 && second * 2 < first,
        "first plan {first} requests, second {second}"
    );
    // Out of band: Ana renamed.
    let ana = memory
        .observe_now()
        .unwrap()
        .users
        .values()
        .find(|u| u.upn == "ana@coho.com")
        .unwrap()
        .id
        .clone();
    memory
        .execute_one(&Op::UpdateUser {
            user: obj(&ana),
            name: Some("Anna".into()),
            admin_roles: None,
            upn: None,
            usage_location: None,
        })
        .unwrap();
    // An out-of-band change only: drift, exit 4 (issue 14 item 2).
    let (third, out) = run("plan", 4);
    out.stdout(predicate::str::contains("ana@coho.com").and(predicate::str::contains("Anna")));
    assert!(third <= 6, "still incremental: {third} requests");
}
