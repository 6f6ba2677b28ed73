//! Plan benchmark at the issues' reference size: 100,000 users, 2,000 groups holding
//! 1,000,000 memberships, 125 instances.
//!
//! Measures, for (a) a plan from a fresh tenant, (b) a no-change plan against the applied
//! tenant and (c) a 1% drift plan: parsing the file (YAML and JSON; load + validate) and
//! the plan step (diff + graph + ordering + rendering, the slower of human and JSON: the
//! command renders one). Each figure is the best of `--runs N` child processes (default
//! 3); prints peak memory (VmHWM, the largest of the runs). Each child reads the file
//! the parent wrote, as `crmctl plan -f` does. Run: `cargo bench --bench scale`
//! (`-- --small` for a quick check, `-- --div N` for the reference shape divided by N,
//! `-- --json` to skip the YAML runs, `-- --dump DIR` to write the renderings, `-- --files
//! DIR --runs 0` to only write the files). The last column is the fingerprint alone, for information: the
//! plan step computes it on a second thread while it diffs.

// The allocator of the `crmctl` binary, so that the figures are the command's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use crmctl::observed::Tenant;
use crmctl::state::State;
use crmctl::synth::{generate, SynthParams};

/// Change 1% of the users (name) and drop 1% of each group's members, as an admin would.
fn drift(t: &mut Tenant) {
    for (n, u) in t.users.values_mut().enumerate() {
        if n % 100 == 0 {
            u.name.push_str(" (edited)");
        }
    }
    for g in t.groups.values_mut() {
        let drop: Vec<String> = g.members.iter().step_by(100).cloned().collect();
        for m in drop {
            g.members.remove(&m);
        }
    }
}

/// More drift: extra members (known and unknown users), roles added and removed, licenses
/// and access modes changed.
fn mixed_drift(t: &mut Tenant) {
    let ids: Vec<String> = t.users.keys().cloned().collect();
    for (n, g) in t.groups.values_mut().enumerate() {
        g.members.insert(ids[(n * 7919) % ids.len()].clone());
        g.members.insert(format!("u-stranger{n}"));
    }
    let inst: Vec<String> = t.instances.keys().cloned().collect();
    for (n, u) in t.users.values_mut().enumerate() {
        match n % 97 {
            0 => {
                u.roles.clear();
            }
            1 => {
                u.roles
                    .entry(inst[n % inst.len()].clone())
                    .or_default()
                    .insert("Extra Role".into());
            }
            2 => u.license = None,
            3 => u.access_mode = crmctl::domain::kinds::AccessMode::Administrative,
            _ => {}
        }
    }
}

/// A writer that only counts bytes (stands for standard output).
#[derive(Default)]
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn vm_hwm_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The file of the reference tenant in `format`, written once by the parent (children
/// read it as `crmctl plan -f` does, so that their heap holds no generated model).
fn file_text(desired: &crmctl::desired::model::Desired, format: &str) -> String {
    if format == "yaml" {
        crmctl::desired::load::to_yaml(desired).expect("yaml")
    } else {
        serde_json::to_string(desired).expect("json")
    }
}

/// Figures of one scenario, measured in a child process (so that VmHWM is its own), in
/// the order of `crmctl plan`: read and parse the file, read the tenant and the state,
/// plan, render.
fn child(scenario: &str, format: &str, file: &str) {
    crmctl::alloc::keep_freed_memory(); // as the binary does
    let text = std::fs::read_to_string(file).expect("the parent wrote the file");
    let t = Instant::now();
    let loaded =
        crmctl::desired::load::load_str(&format!("bench.{format}"), text).expect("valid file");
    let parse = t.elapsed();
    let hwm_parse = vm_hwm_mib();
    // Stands for reading the tenant and the state (not timed): the tenant the file
    // describes, applied or not.
    let (observed, state) = match scenario {
        "a" => (Tenant::fresh(&loaded.desired.tenant), State::empty("bench")),
        _ => {
            // The file's model is the generated one (it was written from it).
            let (mut t, s) = crmctl::synth::applied(&loaded.desired);
            match scenario {
                "b" => {}
                // Not in the table: a mixed drift (members and roles added and removed,
                // users unknown to the file) to compare renderings across versions.
                "d" => {
                    drift(&mut t);
                    mixed_drift(&mut t);
                }
                _ => drift(&mut t),
            }
            (t, s)
        }
    };
    let t = Instant::now();
    let plan = crmctl::plan::plan_resolved(&loaded.desired, &loaded.members, &observed, &state);
    let planned = t.elapsed();
    let hwm_plan = vm_hwm_mib();
    let t = Instant::now();
    // Like `crmctl plan`: written to standard output piece by piece.
    let mut human_out = Counter::default();
    crmctl::render::write_human(&plan, false, &mut human_out).expect("human");
    let human_t = t.elapsed();
    let hwm_human = vm_hwm_mib();
    // Like `crmctl plan --format json`: streamed, never held whole (kept only for --dump).
    let dump = std::env::args().position(|a| a == "--dump");
    let t = Instant::now();
    let mut counter = Counter::default();
    crmctl::render::write_json(&plan, &mut counter).expect("json");
    let json_t = t.elapsed();
    let json = match dump {
        Some(_) => crmctl::render::render_json(&plan),
        None => String::new(),
    };
    assert!(
        !plan.has_errors(),
        "{:?}",
        &plan.diagnostics[..plan.diagnostics.len().min(3)]
    );
    std::hint::black_box((human_out.0, counter.0));
    if std::env::args().any(|a| a == "--memory") {
        eprintln!(
            "VmHWM MiB: after parse {hwm_parse:.0}, plan {hwm_plan:.0}, human {hwm_human:.0}, json {:.0}; human {} MB, json {} MB",
            vm_hwm_mib(),
            human_out.0 / 1_000_000,
            counter.0 / 1_000_000
        );
    }
    if let Some(i) = dump {
        let dir = std::env::args().nth(i + 1).expect("--dump DIR");
        let human = crmctl::render::render_human(&plan, false);
        std::fs::write(format!("{dir}/{scenario}.{format}.human"), &human).expect("dump");
        std::fs::write(format!("{dir}/{scenario}.{format}.json"), &json).expect("dump");
    }
    // For information: the fingerprint alone (part of the plan step, on a second thread).
    let t = Instant::now();
    std::hint::black_box(crmctl::plan::fingerprint(&observed));
    let fp_t = t.elapsed();
    println!(
        "{} {} {} {} {} {} {} {}",
        plan.actions.len(),
        secs(parse),
        secs(planned),
        secs(human_t),
        secs(json_t),
        vm_hwm_mib(),
        plan.summary.create,
        secs(fp_t)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let small = args.iter().any(|a| a == "--small");
    let mut params = if small {
        SynthParams::small()
    } else {
        SynthParams::reference()
    };
    // `--div N`: the reference shape divided by N (for profiling, e.g. under callgrind).
    if let Some(i) = args.iter().position(|a| a == "--div") {
        let n: usize = args[i + 1].parse().expect("--div N");
        params.users /= n;
        params.groups /= n;
        params.memberships /= n;
    }
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], &args[i + 2], &args[i + 3]);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    // `--json`: skip the (slow) YAML runs.
    let formats: &[&str] = if args.iter().any(|a| a == "--json") {
        &["json"]
    } else {
        &["yaml", "json"]
    };
    // `--files DIR`: write the files there and keep them (e.g. to time `crmctl plan -f`
    // on them; with `--runs 0` nothing else is done).
    let keep = args
        .iter()
        .position(|a| a == "--files")
        .map(|i| &args[i + 1]);
    let dir = match keep {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("crmctl-scale-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).expect("temporary directory");
    // One model, written in each format.
    let desired = generate(&params);
    let files: Vec<String> = formats
        .iter()
        .map(|format| {
            let path = dir.join(format!("tenant.{format}"));
            std::fs::write(&path, file_text(&desired, format)).expect("write the file");
            path.to_string_lossy().into_owned()
        })
        .collect();
    drop(desired);
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .map_or(3, |i| args[i + 1].parse().expect("--runs N"));
    if runs == 0 {
        return;
    }
    println!(
        "tenant: {} users, {} groups, {} memberships, {} instances",
        params.users, params.groups, params.memberships, params.instances
    );
    println!(
        "{:<24} {:<5} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>8} {:>6} {:>6} {:>9} {:>7}",
        "scenario",
        "file",
        "actions",
        "parse",
        "diff+ord",
        "human",
        "json",
        "plan step",
        "total",
        "step%",
        "xparse",
        "peak MiB",
        "(fp)"
    );
    for (scenario, name) in [
        ("a", "(a) from a fresh tenant"),
        ("b", "(b) no change"),
        ("c", "(c) 1% drift"),
    ] {
        for (&format, file) in formats.iter().zip(&files) {
            // Each figure is the best of `runs` child processes (the machine is shared:
            // the minimum is the least disturbed run); the peak is the largest.
            let mut best = vec![f64::INFINITY; 8];
            let mut peak: f64 = 0.0;
            for _ in 0..runs {
                let mut cmd = std::process::Command::new(&exe);
                cmd.args(["--child", scenario, format, file.as_str()]);
                cmd.args(args.iter().skip(1).filter(|a| *a != "--child").cloned());
                let out = cmd.output().expect("run child");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8_lossy(&out.stdout);
                let f: Vec<f64> = text
                    .split_whitespace()
                    .map(|x| x.parse().expect("number"))
                    .collect();
                for (b, x) in best.iter_mut().zip(&f) {
                    *b = b.min(*x);
                }
                peak = peak.max(f[5]);
            }
            let f = best;
            let (actions, parse, planned, human, json, fp) = (f[0], f[1], f[2], f[3], f[4], f[7]);
            // The command renders one format: the slower of human and JSON counts.
            let step = planned + human.max(json);
            let total = parse + step;
            println!(
                "{:<24} {:<5} {:>8} {:>7.3}s {:>7.3}s {:>6.3}s {:>6.3}s {:>8.3}s {:>7.3}s {:>5.1}% {:>5.2}x {:>9.0} {:>6.3}s",
                name,
                format,
                actions,
                parse,
                planned,
                human,
                json,
                step,
                total,
                100.0 * step / total,
                total / parse,
                peak,
                fp
            );
        }
    }
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
