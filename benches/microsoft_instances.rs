//! Benchmark (issue 13 done-when): 125 instances (50 production + 75 sandbox, T7) with
//! their users' security roles, served by the emulator in-process (admin API, Dataverse
//! per instance, Graph) with 20 ms of latency per request, read and changed by the composed
//! `--backend microsoft` provider over crmctl's own transport. Prints requests (the
//! emulator's counts: Graph, admin API, Dataverse) and seconds for:
//! (a) observe + plan of the unchanged file;
//! (b) apply of a rename of every instance (125 lifecycle operations, polled to the end);
//! (c) observe + plan after it (no actions expected).
//!
//! `cargo bench --bench microsoft_instances` runs 2,000 users; `CRMCTL_BENCH_USERS=N` sets
//! the users (100,000 is the issues' reference size), `CRMCTL_BENCH_LATENCY_MS=N` the
//! latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

// The allocator of the `crmctl` binary, so that the figures are the command's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crmctl::apply::{self, ApplyOptions};
use crmctl::emulator::{Emulator, EmulatorConfig, EmulatorHandle, Faults};
use crmctl::provider::http::cloud::Cloud;
use crmctl::provider::memory::MemoryProvider;
use crmctl::provider::{block_on, Provider, Scope};
use crmctl::synth::{applied, generate, with_directory_ids, SynthParams};

const CLIENT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const SECRET: &str = "bench-secret~value";

fn env_usize(k: &str) -> Option<usize> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}

fn requests(emu: &EmulatorHandle) -> [u64; 3] {
    [
        emu.graph_requests(),
        emu.bap_requests(),
        emu.dataverse_requests(),
    ]
}

struct Row {
    step: &'static str,
    requests: [u64; 3],
    secs: f64,
    note: String,
}

fn main() {
    crmctl::alloc::keep_freed_memory(); // as the binary does
    let mut params = SynthParams::reference();
    params.users = env_usize("CRMCTL_BENCH_USERS").unwrap_or(2_000);
    params.memberships = params.users * 10;
    params.groups = (params.users / 50).max(1);
    let latency = Duration::from_millis(env_usize("CRMCTL_BENCH_LATENCY_MS").unwrap_or(20) as u64);
    let mut desired = generate(&params);
    // Notification recipients have no public API (manual steps, never observed): not
    // managed here, so that the unchanged file plans no action.
    for i in desired.instances.iter_mut().flat_map(|m| m.values_mut()) {
        i.notification_recipients = None;
    }
    let (tenant, state) = with_directory_ids(applied(&desired));
    let domain = desired.tenant.clone();
    let roles: usize = tenant
        .users
        .values()
        .map(|u| u.roles.values().map(|r| r.len()).sum::<usize>())
        .sum();
    println!(
        "tenant: {} instances, {} users, {roles} role assignments; {} ms latency per request",
        tenant.instances.len(),
        tenant.users.len(),
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
    let transport =
        crmctl::provider::http::connect(Cloud::Public, &domain, get, None).expect("transport");
    let template = transport.endpoints().dataverse_template.clone();
    let backend = crmctl::ops::microsoft::compose(
        Arc::new(transport),
        emu.graph_url(),
        &template,
        &domain,
        Cloud::Public,
    );
    let mut rows = vec![];
    // Each row is also printed when measured, so that a long run (100,000 users) shows its
    // first figures before the last step ends.
    let progress = |r: &Row| {
        println!(
            "measured: {}: Graph {}, admin API {}, Dataverse {} requests; {:.2} s; {}",
            r.step, r.requests[0], r.requests[1], r.requests[2], r.secs, r.note
        );
    };

    let observe_plan = |rows: &mut Vec<Row>,
                        step: &'static str,
                        d: &crmctl::desired::model::Desired,
                        st: &crmctl::state::State| {
        let before = requests(&emu);
        let t = Instant::now();
        let observed = block_on(backend.observe(&Scope::all()))
            .expect("runtime")
            .expect("observe");
        let observe_secs = t.elapsed().as_secs_f64();
        let plan = crmctl::plan::plan(d, &observed, st);
        assert!(!plan.has_errors(), "{:?}", plan.diagnostics.first());
        let after = requests(&emu);
        let row = Row {
            step,
            requests: [0, 1, 2].map(|i| after[i] - before[i]),
            secs: t.elapsed().as_secs_f64(),
            note: format!(
                "{} instances observed in {observe_secs:.2} s; {} actions",
                observed.instances.len(),
                plan.actions.len()
            ),
        };
        progress(&row);
        rows.push(row);
        plan
    };

    let unchanged = observe_plan(&mut rows, "(a) observe + plan, unchanged", &desired, &state);
    if let Some(a) = unchanged.actions.first() {
        println!(
            "note: the unchanged plan has {} actions, e.g. {} {}: {}",
            unchanged.actions.len(),
            a.kind.as_str(),
            a.address,
            a.reason
        );
    }

    // (b) rename every instance: 125 update_instance lifecycle operations.
    let mut renamed = desired.clone();
    for i in renamed.instances.iter_mut().flat_map(|m| m.values_mut()) {
        i.name = format!("{} (renamed)", i.name);
    }
    let plan = observe_plan(
        &mut rows,
        "(b) observe + plan of the rename",
        &renamed,
        &state,
    );
    let before = requests(&emu);
    let t = Instant::now();
    let mut st = state.clone();
    let opts = ApplyOptions {
        parallelism: apply::DEFAULT_PARALLELISM,
        ..ApplyOptions::default()
    };
    let report =
        apply::apply(&plan, &backend, &mut st, &mut |_, _| Ok(()), &opts, &|_| {}).expect("apply");
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
    let after = requests(&emu);
    let row = Row {
        step: "(b) apply of the rename",
        requests: [0, 1, 2].map(|i| after[i] - before[i]),
        secs: t.elapsed().as_secs_f64(),
        note: format!(
            "{} actions, parallelism {}",
            plan.actions.len(),
            apply::DEFAULT_PARALLELISM
        ),
    };
    progress(&row);
    rows.push(row);
    let after = observe_plan(
        &mut rows,
        "(c) observe + plan after the apply",
        &renamed,
        &st,
    );
    assert!(
        after.actions.is_empty(),
        "the rename converges: {:?}",
        after.actions.first().map(|a| (&a.address, &a.reason))
    );

    println!("\n| step | Graph | admin API | Dataverse | seconds | |\n| --- | ---: | ---: | ---: | ---: | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.2} | {} |",
            r.step, r.requests[0], r.requests[1], r.requests[2], r.secs, r.note
        );
    }
}
