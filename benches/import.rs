//! Benchmark of `crmctl import` (issue 14 item 1) from the local tenant at the issues'
//! reference size: 100,000 users, 2,000 groups holding 1,000,000 memberships, 125
//! instances (`crmctl::synth`).
//!
//! Builds the applied reference tenant in a local tenant file, then times the import
//! workflow (`ops::import::run`: lock, observe, convert, render, write the file and the
//! state) to YAML and to JSON, and checks that the imported file, loaded and validated,
//! plans no changes against the tenant and the imported state. `cargo bench --bench
//! import` (`CRMCTL_BENCH_USERS=N` scales users down, 10 memberships each).

// The allocator of the `crmctl` binary, so that the figures are the command's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use crmctl::ops::import::{self, ImportOptions};
use crmctl::ops::BackendSpec;
use crmctl::provider::local::LocalProvider;
use crmctl::synth::{applied, generate, SynthParams};

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
    let t = Instant::now();
    let (tenant, _) = applied(&generate(&params));
    LocalProvider::open(&db)
        .expect("open")
        .admin_replace(tenant)
        .expect("write the tenant");
    println!(
        "reference tenant ({} users, {} groups, {} memberships, {} instances) written in {:.2} s",
        params.users,
        params.groups,
        params.memberships,
        params.instances,
        t.elapsed().as_secs_f64()
    );
    let spec = BackendSpec::parse(Some(&format!("local:{}", db.display()))).expect("spec");
    for ext in ["yaml", "json"] {
        let out = dir.path().join(format!("imported.{ext}"));
        let state_path = dir.path().join(format!("state-{ext}.json"));
        let opts = ImportOptions {
            output: Some(out.clone()),
            ..ImportOptions::default()
        };
        let render = |i: &import::Imported| -> Result<String, String> {
            if ext == "json" {
                Ok(import::to_json(i))
            } else {
                import::to_yaml(i)
            }
        };
        let t = Instant::now();
        let report = import::run(&spec, &state_path, &opts, &render, &mut |_| {}).expect("import");
        let took = t.elapsed().as_secs_f64();
        let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        println!(
            "import to {ext}: {} objects, {:.1} MB, {took:.2} s",
            report.imported.resources.len(),
            bytes as f64 / 1e6
        );
        // Done-when: the imported file plans no changes.
        let t = Instant::now();
        let loaded = crmctl::desired::load::load_file(&out).expect("the imported file loads");
        let observed = LocalProvider::open(&db)
            .expect("open")
            .observe()
            .expect("observe");
        let state = crmctl::state::store::load(&state_path)
            .expect("state")
            .expect("state");
        let plan = crmctl::plan::plan(&loaded.desired, &observed, &state);
        assert!(
            plan.actions.is_empty(),
            "{} actions after import, first: {:?}",
            plan.actions.len(),
            plan.actions.first()
        );
        println!(
            "  load + validate + observe + plan of the imported {ext}: no changes ({:.2} s)",
            t.elapsed().as_secs_f64()
        );
    }
}
