//! Benchmark (issue 12 done-when): the reference tenant (100,000 users, 2,000 groups,
//! 1,000,000 memberships; directory only) served by the Graph emulator in-process with
//! 20 ms of latency per request, read and changed by the Graph provider over crmctl's own
//! transport. Prints Graph requests (the emulator's count) and seconds for:
//! (a) a first plan (no cursor: sync-from-now delta links, then a full read);
//! (b) a no-change plan with the cursor (delta rounds only);
//! (c) applying 1% drift of the memberships (half removed, half added);
//! (d) the plan after it, with the cursor (it sees the apply's changes: no actions).
//!
//! `cargo bench --bench graph` runs the reference size. `CRMCTL_BENCH_USERS=N` scales it
//! down (10 memberships per user, a group per 50 users), `CRMCTL_BENCH_LATENCY_MS=N` sets
//! the latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

// The allocator of the `crmctl` binary, so that the figures are the command's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crmctl::apply::{self, ApplyOptions};
use crmctl::emulator::{Emulator, EmulatorConfig, Faults};
use crmctl::provider::graph::GraphProvider;
use crmctl::provider::memory::MemoryProvider;
use crmctl::provider::{block_on, ObserveCursor, Provider, Scope};
use crmctl::synth::{applied, generate, with_directory_ids, SynthParams};

const CLIENT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const SECRET: &str = "bench-secret~value";

fn env_usize(k: &str) -> Option<usize> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}

struct Row {
    step: &'static str,
    requests: u64,
    secs: f64,
    note: String,
}

fn main() {
    crmctl::alloc::keep_freed_memory(); // as the binary does
    let mut params = SynthParams::reference();
    params.instances = 0; // the Graph backend serves the directory half
    if let Some(n) = env_usize("CRMCTL_BENCH_USERS") {
        params.users = n;
        params.memberships = n * 10;
        params.groups = (n / 50).max(1);
    }
    let latency = Duration::from_millis(env_usize("CRMCTL_BENCH_LATENCY_MS").unwrap_or(20) as u64);
    let desired = generate(&params);
    let (tenant, state) = with_directory_ids(applied(&desired));
    let domain = desired.tenant.clone();
    println!(
        "tenant: {} users, {} groups, {} memberships; {} ms latency per request",
        tenant.users.len(),
        tenant.groups.len(),
        tenant
            .groups
            .values()
            .map(|g| g.members.len())
            .sum::<usize>(),
        latency.as_millis()
    );
    let memory = Arc::new(MemoryProvider::new(tenant));
    let mut cfg = EmulatorConfig::with_provider(memory, domain.clone(), CLIENT, SECRET);
    cfg.faults = Faults {
        latency,
        ..Faults::default()
    };
    let emu = Emulator::start(cfg).expect("emulator starts");
    let mut env: Vec<(String, String)> = emu
        .env_lines()
        .iter()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    env.push(("AZURE_CLIENT_ID".into(), CLIENT.into()));
    env.push(("AZURE_CLIENT_SECRET".into(), SECRET.into()));
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let transport = crmctl::provider::http::connect(
        crmctl::provider::http::cloud::Cloud::Public,
        &domain,
        get,
        None,
    )
    .expect("transport");
    let graph = GraphProvider::new(Arc::new(transport)).with_graph_base(emu.graph_url());
    let mut rows = vec![];

    // Observe (with the cursor when given) and plan: one row of the table.
    let observe_plan = |rows: &mut Vec<Row>,
                        step: &'static str,
                        cursor: Option<ObserveCursor>,
                        d: &crmctl::desired::model::Desired| {
        let before = emu.graph_requests();
        let t = Instant::now();
        let (observed, cursor) = block_on(graph.observe_since(&Scope::all(), cursor))
            .expect("runtime")
            .expect("observe");
        let plan = crmctl::plan::plan(d, &observed, &state);
        assert!(!plan.has_errors(), "{:?}", plan.diagnostics.first());
        rows.push(Row {
            step,
            requests: emu.graph_requests() - before,
            secs: t.elapsed().as_secs_f64(),
            note: format!(
                "{} actions, cursor {:.1} MB",
                plan.actions.len(),
                cursor.as_ref().map_or(0, |c| c.0.len()) as f64 / 1e6
            ),
        });
        (plan, cursor)
    };

    let (_, cursor) = observe_plan(&mut rows, "(a) first plan", None, &desired);
    // The cursor through the cache file beside the state, as `crmctl plan` keeps it.
    let dir = tempfile::tempdir().expect("temp dir");
    let state_path = dir.path().join("state.json");
    let key = crmctl::state::cache::CacheKey {
        backend: "bench".into(),
        lineage: state.lineage.clone(),
        domain: domain.clone(),
    };
    let t = Instant::now();
    if let Some(c) = &cursor {
        crmctl::state::cache::write(&state_path, &key, c).expect("cache written");
    }
    let cursor = crmctl::state::cache::read(&state_path, &key);
    rows.push(Row {
        step: "cursor file written and read",
        requests: 0,
        secs: t.elapsed().as_secs_f64(),
        note: String::new(),
    });
    let (_, cursor) = observe_plan(&mut rows, "(b) no-change plan, cursor", cursor, &desired);

    // (c) 1% drift of the memberships: in each group, 2 or 3 (2.5 on average, 0.5% of 500)
    // members dropped at the start of its window and as many users past its end added.
    let mut drifted = desired.clone();
    let mut changes = 0usize;
    let users = params.users;
    for (g, sg) in drifted
        .security_groups
        .iter_mut()
        .flatten()
        .map(|(_, sg)| sg)
        .enumerate()
    {
        let Some(members) = sg.members.as_mut() else {
            continue;
        };
        let per = members.len();
        let k = (per * 2 + (g % 2) * per) / 800; // 2.5 per 500 on average
        let k = k.min(users.saturating_sub(per));
        if k == 0 {
            continue;
        }
        let first = members.first().cloned().unwrap_or_default();
        let start: usize = first
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        members.drain(..k);
        for j in 0..k {
            members.push(crmctl::synth::user_upn((start + per + j) % users));
        }
        changes += 2 * k;
    }
    let (plan, cursor) = observe_plan(&mut rows, "(c) plan of the drift", cursor, &drifted);
    if let Some(r) = rows.last_mut() {
        r.note.push_str(&format!(", {changes} membership changes"));
    }
    let before = emu.graph_requests();
    let t = Instant::now();
    let mut st = state.clone();
    let opts = ApplyOptions {
        parallelism: apply::DEFAULT_PARALLELISM,
        ..ApplyOptions::default()
    };
    let report =
        apply::apply(&plan, &graph, &mut st, &mut |_, _| Ok(()), &opts, &|_| {}).expect("apply");
    assert!(
        report.success(),
        "apply failed: {:?}",
        report
            .failed()
            .iter()
            .take(3)
            .map(|i| (&plan.actions[*i].address, &report.outcomes[i]))
            .collect::<Vec<_>>()
    );
    let requests = emu.graph_requests() - before;
    rows.push(Row {
        step: "(c) apply of the drift",
        requests,
        secs: t.elapsed().as_secs_f64(),
        note: format!(
            "{changes} membership changes: {:.1} per request",
            changes as f64 / requests.max(1) as f64
        ),
    });

    let (after, _) = observe_plan(
        &mut rows,
        "(d) plan after the apply, cursor",
        cursor,
        &drifted,
    );
    assert!(after.actions.is_empty(), "the drift applied converges");

    println!("\n| step | Graph requests | seconds | |\n| --- | ---: | ---: | --- |");
    for r in rows {
        println!(
            "| {} | {} | {:.2} | {} |",
            r.step, r.requests, r.secs, r.note
        );
    }
}
