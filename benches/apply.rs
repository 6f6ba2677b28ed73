//! Benchmark: apply of a generated tenant on the embedded local provider, then the no-op
//! plan against the applied tenant.
//!
//! `cargo bench --bench apply` uses the reference size (100,000 users, 2,000 groups with
//! 1,000,000 memberships, 125 instances). `CRMCTL_BENCH_USERS=N` scales the users (and
//! memberships, 10 per user) down for a quick run. `CRMCTL_BENCH_DIRECT=1` measures the
//! provider alone instead: the plan's ops executed one by one in plan order (no engine, no
//! batching, no state file), with the time per op kind.

use std::time::Instant;

// The allocator of the `crmctl` binary, so that the figures are the command's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crmctl::apply::{self, ApplyOptions};
use crmctl::provider::local::LocalProvider;
use crmctl::state::store::{StateChange, StateWriter};
use crmctl::state::State;
use crmctl::synth::{generate, SynthParams};

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn main() {
    crmctl::alloc::keep_freed_memory(); // as the binary does
    let mut params = SynthParams::reference();
    if let Some(n) = std::env::var("CRMCTL_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        params.users = n;
        params.memberships = n * 10;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("tenant.db");
    let state_path = dir.path().join("state.json");

    let t = Instant::now();
    let desired = generate(&params);
    println!(
        "generate desired ({} users, {} groups, {} memberships, {} instances): {:.2} s",
        params.users,
        params.groups,
        params.memberships,
        params.instances,
        secs(t)
    );

    let provider = LocalProvider::open(&db).expect("open");
    provider.set_domain_hint(&desired.tenant).expect("hint");
    let mut state = State::empty("bench");
    let t = Instant::now();
    let observed = provider.observe().expect("observe");
    let plan = crmctl::plan::plan(&desired, &observed, &state);
    println!(
        "plan from an empty tenant: {} actions in {:.2} s",
        plan.actions.len(),
        secs(t)
    );
    assert!(!plan.has_errors(), "{:?}", plan.diagnostics);

    if std::env::var_os("CRMCTL_BENCH_DIRECT").is_some() {
        // Provider alone, sequentially, in plan order (no engine, no state file).
        let t = Instant::now();
        let mut ids = std::collections::HashMap::new();
        let mut per_kind = std::collections::BTreeMap::new();
        for a in &plan.actions {
            let mut op = a.op.clone();
            for r in op.refs_mut() {
                if r.id.is_none() {
                    r.id = ids.get(&*r.address).cloned();
                }
            }
            let t1 = Instant::now();
            let out = provider.execute(&op).expect("execute");
            let e = per_kind.entry(a.kind.as_str()).or_insert((0usize, 0f64));
            e.0 += 1;
            e.1 += t1.elapsed().as_secs_f64();
            if let Some(id) = out.created_id {
                ids.insert(a.address.clone(), id);
            }
        }
        println!(
            "provider alone: {} ops in {:.2} s",
            plan.actions.len(),
            secs(t)
        );
        for (k, (n, s)) in per_kind {
            println!(
                "  {k:<28} {n:>7} ops {s:>7.2} s ({:.0} us/op)",
                s / n as f64 * 1e6
            );
        }
        return;
    }
    let t = Instant::now();
    let mut writer = StateWriter::new(&state_path);
    let mut save = |s: &State, c: &[StateChange]| writer.write(s, c).map_err(|e| e.to_string());
    let opts = ApplyOptions {
        parallelism: apply::DEFAULT_PARALLELISM,
        ..ApplyOptions::default()
    };
    let report =
        apply::apply(&plan, &provider, &mut state, &mut save, &opts, &|_| {}).expect("apply");
    writer.finish(&state).expect("final state write");
    let apply_s = secs(t);
    assert!(
        report.success(),
        "failed: {:?}",
        report
            .failed()
            .iter()
            .take(5)
            .map(|i| &report.outcomes[i])
            .collect::<Vec<_>>()
    );
    println!(
        "apply: {} actions in {apply_s:.2} s ({:.0} actions/s), {} SQLite transactions, {} state writes, tenant file {:.1} MB",
        plan.actions.len(),
        plan.actions.len() as f64 / apply_s,
        provider.transactions(),
        report.state_saves,
        std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
    );
    drop(provider);

    let t = Instant::now();
    let provider = LocalProvider::open(&db).expect("reopen");
    let open_s = secs(t);
    let t = Instant::now();
    let state = crmctl::state::store::load(&state_path)
        .expect("state")
        .expect("state exists");
    let state_s = secs(t);
    let t = Instant::now();
    let observed = provider.observe().expect("observe");
    let observe_s = secs(t);
    let t = Instant::now();
    let again = crmctl::plan::plan(&desired, &observed, &state);
    let plan_s = secs(t);
    assert!(
        again.actions.is_empty(),
        "not converged: {} actions, first {:?}",
        again.actions.len(),
        again.actions.first().map(|a| (&a.kind, &a.address))
    );
    println!(
        "no-op plan after apply: open tenant {open_s:.2} s + read state {state_s:.2} s + observe {observe_s:.2} s + plan {plan_s:.2} s = {:.2} s",
        open_s + state_s + observe_s + plan_s
    );
}
