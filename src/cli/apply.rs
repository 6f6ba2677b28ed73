//! `crmctl apply` and `crmctl force-unlock`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::apply::{self, ActionOutcome, ApplyError, ApplyOptions, ApplyReport};
use crate::cli::common;
use crate::desired::load::{self, Source};
use crate::plan::saved::SavedPlan;
use crate::plan::Plan;
use crate::provider::Provider;
use crate::render::escape;
use crate::state::{store, State};

/// `println!` and `eprintln!` that never panic: once an apply has started, a closed
/// standard output or error (`crmctl apply ... 2>&1 | head -1`, a log pipe that went away)
/// must not stop it halfway, with objects created and no state recording them (issue 9
/// item 5). What cannot be printed is dropped.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Arguments of `apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// A plan saved with `crmctl plan --out PLANFILE` (counts as approved).
    #[arg(value_name = "PLANFILE", conflicts_with = "file")]
    pub planfile: Option<PathBuf>,
    /// Desired-state file: plan now, show the plan, ask for approval, apply.
    #[arg(short = 'f', long = "file", required_unless_present = "planfile")]
    pub file: Option<PathBuf>,
    /// Backend (`local:PATH`). Default: the saved plan's (another one is refused), else
    /// `local:.crmctl/tenant.db`.
    #[arg(long, env = "CRMCTL_BACKEND")]
    pub backend: Option<String>,
    /// State file. Default: the saved plan's (another one is refused), else
    /// `.crmctl/state.json`.
    #[arg(long, env = "CRMCTL_STATE")]
    pub state: Option<PathBuf>,
    /// Do not ask for approval (required without a TTY, unless a PLANFILE is given).
    #[arg(long)]
    pub auto_approve: bool,
    /// Allow destructive actions (delete_instance, reset_instance, copy_instance onto an
    /// existing instance, delete_user, delete_group).
    #[arg(long)]
    pub allow_destroy: bool,
    /// Actions run at once.
    #[arg(long, default_value_t = apply::DEFAULT_PARALLELISM, value_parser = parse_parallelism)]
    pub parallelism: usize,
}

fn parse_parallelism(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a number from 1 to 256")),
    }
}

/// Arguments of `force-unlock`.
#[derive(Debug, clap::Args)]
pub struct ForceUnlockArgs {
    /// The lock id printed by the run that holds the lock.
    pub id: String,
    /// State file whose lock to remove.
    #[arg(long, env = "CRMCTL_STATE", default_value = common::DEFAULT_STATE)]
    pub state: PathBuf,
}

/// `crmctl apply`.
pub fn run_apply(args: &ApplyArgs, color: bool) -> anyhow::Result<ExitCode> {
    match (&args.planfile, &args.file) {
        (Some(planfile), _) => apply_saved(args, planfile, color),
        (None, Some(file)) => apply_file(args, file, color),
        (None, None) => bail!("give a desired-state file with -f FILE, or a saved PLANFILE"),
    }
}

fn apply_file(args: &ApplyArgs, file: &Path, color: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = common::load_desired(file, color) else {
        return Ok(ExitCode::from(1));
    };
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| PathBuf::from(common::DEFAULT_STATE));
    let _lock = common::lock_state(&state_path, "apply")?;
    let backend = common::open_local(args.backend.as_deref())?;
    let mut state = common::read_state(&state_path)?;
    let observed = backend.observe().context("cannot read the tenant")?;
    common::check_state_fits_tenant(&backend, &observed, &mut state, &state_path)?;
    let mut plan = crate::plan::plan_resolved(&loaded.desired, &loaded.members, &observed, &state);
    load::locate_diagnostics(&loaded.src, &mut plan.diagnostics);
    print_plan(&plan, &loaded.src, color);
    if plan.has_errors() {
        eprintln!("The plan has errors; nothing was done.");
        return Ok(ExitCode::from(1));
    }
    let protect = loaded.desired.protect_flags();
    let protect_at = protect_locations(&loaded);
    if let Err(e) = apply::preflight(&plan, args.allow_destroy) {
        eprintln!("error: {}", escape_lines(&e.to_string()));
        if matches!(e, ApplyError::DestroyNotAllowed(_)) {
            eprintln!("Run again with --allow-destroy to allow them.");
        }
        return Ok(ExitCode::from(1));
    }
    if let Err(e) = apply::check_protected(&plan, &state, &protect) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(1));
    }
    if plan.actions.is_empty() {
        // Still record changed protect flags (a real state change), without a serial bump
        // when nothing changes.
        run(
            &plan,
            &backend,
            &mut state,
            &state_path,
            &_lock,
            args,
            protect,
            protect_at,
        )?;
        outln!("No changes. The tenant matches {}.", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    if !args.auto_approve && !approve()? {
        eprintln!("Apply cancelled; nothing was done.");
        return Ok(ExitCode::from(1));
    }
    backend.set_domain_hint(&loaded.desired.tenant)?;
    let report = run(
        &plan,
        &backend,
        &mut state,
        &state_path,
        &_lock,
        args,
        protect,
        protect_at,
    )?;
    Ok(summarize(&plan, &report))
}

fn apply_saved(args: &ApplyArgs, planfile: &Path, color: bool) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(planfile)
        .with_context(|| format!("cannot read the plan file {}", planfile.display()))?;
    // Refused when it is not a saved plan, of another version, or edited since it was
    // written (checksum; issue 9 item 3).
    let saved = SavedPlan::from_json(&text, &planfile.display().to_string())?;
    // A saved plan is applied to the tenant and the state it was made against (issue 9
    // items 1 and 3): --backend and --state may name them another way, not other files
    // (two fresh tenants, or two new states, look alike to the checks below).
    if let Some(given) = &args.backend {
        if !common::same_backend(given, &saved.backend)? {
            bail!(
                "the saved plan {} was made against the backend `{}`, not `{given}`: a plan is applied to the tenant it was made for; run `crmctl plan --backend {given} --out PLANFILE` to plan for that one",
                planfile.display(),
                saved.backend
            );
        }
    }
    if let Some(given) = &args.state {
        if common::file_identity(given) != common::file_identity(Path::new(&saved.state_path)) {
            bail!(
                "the saved plan {} was made with the state {}, not {}: run `crmctl plan --state {} --out PLANFILE` to plan with that one",
                planfile.display(),
                saved.state_path,
                given.display(),
                given.display()
            );
        }
    }
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| PathBuf::from(&saved.state_path));
    let backend_spec = args
        .backend
        .clone()
        .unwrap_or_else(|| saved.backend.clone());
    let _lock = common::lock_state(&state_path, "apply")?;
    let backend = common::open_local(Some(&backend_spec))?;
    let mut state = match common::load_state(&state_path)? {
        Some(s) => s,
        // The plan was made without a state file and none was written since.
        None if saved.state_serial == 0 => State::empty(saved.state_lineage.clone()),
        None => bail!(
            "the saved plan {} is stale: it was made with state serial {} but the state {} no longer exists; run `crmctl plan` again",
            planfile.display(),
            saved.state_serial,
            state_path.display()
        ),
    };
    if state.lineage != saved.state_lineage {
        bail!(
            "the saved plan {} is stale: it was made for state lineage {} but {} has lineage {}; run `crmctl plan` again",
            planfile.display(),
            saved.state_lineage,
            state_path.display(),
            state.lineage
        );
    }
    if state.serial != saved.state_serial {
        bail!(
            "the saved plan {} is stale: the state {} changed since it was made (serial {} -> {}); run `crmctl plan` again",
            planfile.display(),
            state_path.display(),
            saved.state_serial,
            state.serial
        );
    }
    let observed = backend.observe().context("cannot read the tenant")?;
    common::check_state_fits_tenant(&backend, &observed, &mut state, &state_path)?;
    let fingerprint = crate::plan::fingerprint(&observed);
    if fingerprint != saved.plan.fingerprint {
        bail!(
            "the saved plan {} is stale: the tenant {} changed since it was made (fingerprint {} -> {}); run `crmctl plan` again",
            planfile.display(),
            backend_spec,
            short(&saved.plan.fingerprint),
            short(&fingerprint)
        );
    }
    let protect = saved.protect;
    let protect_at = saved.protect_at;
    let mut plan = saved.plan;
    // What the plan shows as destructive is derived from its ops, like the gate.
    let destructive = plan.destructive_flags();
    for (a, d) in plan.actions.iter_mut().zip(destructive) {
        a.destructive = d;
    }
    let src = Source {
        path: planfile.display().to_string(),
        text: String::new(),
    };
    print_plan(&plan, &src, color);
    if plan.has_errors() {
        eprintln!("The plan has errors; nothing was done.");
        return Ok(ExitCode::from(1));
    }
    if let Err(e) = apply::preflight(&plan, args.allow_destroy) {
        eprintln!("error: {}", escape_lines(&e.to_string()));
        if matches!(e, ApplyError::DestroyNotAllowed(_)) {
            eprintln!("Run again with --allow-destroy to allow them.");
        }
        return Ok(ExitCode::from(1));
    }
    if let Err(e) = apply::check_protected(&plan, &state, &protect) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(1));
    }
    backend.set_domain_hint(&plan.tenant)?;
    let report = run(
        &plan,
        &backend,
        &mut state,
        &state_path,
        &_lock,
        args,
        protect,
        protect_at,
    )?;
    Ok(summarize(&plan, &report))
}

/// Where the file declares `protect: true`, as `FILE:LINE` by instance address (recorded
/// in the state so that the plan error of a protected instance's removal says where it
/// was declared; issue 9 item 8). One pass over the text, only for protected instances.
pub(crate) fn protect_locations(loaded: &load::Loaded) -> BTreeMap<String, String> {
    let paths: Vec<String> = loaded
        .desired
        .protect_flags()
        .iter()
        .filter(|(_, p)| **p)
        .map(|(a, _)| format!("{a}.protect"))
        .collect();
    load::Locator::new(&loaded.src)
        .locate_many(paths)
        .into_iter()
        .map(|(path, l)| {
            let address = path.strip_suffix(".protect").unwrap_or(&path).to_string();
            (address, format!("{}:{}", l.file, l.line))
        })
        .collect()
}

/// [`escape`] line by line: a message of several lines (the held-back actions) keeps
/// its line breaks, every other control character is shown escaped.
fn escape_lines(s: &str) -> String {
    s.split('\n')
        .map(|l| escape(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn short(fp: &str) -> &str {
    &fp[..fp.len().min(12)]
}

/// Ask for `yes` on a TTY; without one, --auto-approve is required.
fn approve() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for approval: review the plan and run again with --auto-approve (or apply a saved plan)");
    }
    eprint!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

// The run's inputs, each from its own source (plan, provider, state and its lock, flags,
// the file's protect flags and their places); a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn run(
    plan: &Plan,
    backend: &dyn Provider,
    state: &mut State,
    state_path: &Path,
    lock: &crate::state::lock::StateLock,
    args: &ApplyArgs,
    protect: BTreeMap<String, bool>,
    protect_at: BTreeMap<String, String>,
) -> anyhow::Result<ApplyReport> {
    // issue 9 item 1: before each state write and before each request, the run checks
    // that its lock is still there (not removed by `force-unlock`, not replaced by another
    // run's); otherwise it stops writing the state and starting actions.
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let check_lock = {
        let lost = lost.clone();
        let lock_path = crate::state::lock::lock_path(state_path);
        let state_path = state_path.to_path_buf();
        let id = lock.info().id.clone();
        move || -> Result<(), String> {
            match crate::state::lock::check_held(&lock_path, &id, &state_path) {
                Ok(()) => Ok(()),
                Err(e) => {
                    lost.store(true, std::sync::atomic::Ordering::Relaxed);
                    Err(format!(
                        "{e}; the actions reported done are done in the tenant, the last of them possibly not recorded in the state; when no other run is active, run `crmctl plan` (objects this run made are found by natural key and adopted)"
                    ))
                }
            }
        }
    };
    let check_lock = std::sync::Arc::new(check_lock);
    let mut opts = ApplyOptions {
        parallelism: args.parallelism,
        allow_destroy: args.allow_destroy,
        protect,
        protect_at,
        before_batch: Some(check_lock.clone()),
        ..ApplyOptions::default()
    };
    let mut writer = store::StateWriter::new(state_path);
    let mut save = |s: &State, changes: &[store::StateChange]| {
        check_lock()?;
        writer.write(s, changes).map_err(|e| e.to_string())
    };
    // A progress bar on a terminal (failures printed above it); plain lines otherwise, so
    // that logs of pipelines show every action.
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(plan.actions.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .expect("the template is valid"),
        );
        bar
    });
    // Retries and long-running operations, in the log (issue 11 item 4).
    opts.notice = Some(std::sync::Arc::new({
        let bar = bar.clone();
        move |n: &apply::Notice<'_>| match &bar {
            Some(bar) => bar.println(n.line()),
            None => errln!("{}", n.line()),
        }
    }));
    let progress = |e: &apply::ProgressEvent<'_>| match &bar {
        Some(bar) => {
            bar.set_position(e.finished as u64);
            bar.set_message(format!(
                "{} {}",
                e.action.kind.as_str(),
                escape(&e.action.address)
            ));
            if !matches!(e.outcome, ActionOutcome::Done) {
                bar.println(e.line());
            }
        }
        None => errln!("{}", e.line()),
    };
    let result = apply::apply(plan, backend, state, &mut save, &opts, &progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    // Fold the journal into the state file (also after a failed apply), unless the lock
    // was lost: the state then belongs to whoever holds it now.
    let finished = match lock.check(state_path) {
        Ok(()) if !lost.load(std::sync::atomic::Ordering::Relaxed) => {
            writer.finish(state).map_err(anyhow::Error::from)
        }
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow::Error::from(e)),
    };
    match result {
        Ok(report) => {
            finished.with_context(|| format!("cannot save the state {}", state_path.display()))?;
            for address in &report.forgotten {
                outln!("state: forgot {address} (the object no longer exists)");
            }
            Ok(report)
        }
        Err(ApplyError::StateSave { message, report }) => {
            if report.success() && report.outcomes.len() == plan.actions.len() {
                // Not "Apply complete!": the state does not record the last batch.
                errln!(
                    "Apply stopped: {} done, the last of them not recorded in the state.",
                    report.done().len()
                );
            } else {
                summarize(plan, &report);
            }
            bail!("cannot save the state {}: {message}", state_path.display())
        }
        Err(e) => Err(e.into()),
    }
}

fn summarize(plan: &Plan, report: &ApplyReport) -> ExitCode {
    let (done, failed, skipped) = (report.done().len(), report.failed(), report.skipped().len());
    if report.success() && report.outcomes.len() == plan.actions.len() {
        outln!("Apply complete! {done} done.");
        return ExitCode::SUCCESS;
    }
    let not_started = plan.actions.len() - report.outcomes.len();
    errln!();
    for id in &failed {
        let a = &plan.actions[*id];
        if let Some(ActionOutcome::Failed(e)) = report.outcomes.get(id) {
            errln!(
                "error: {} {}: {}",
                a.kind.as_str(),
                escape(&a.address),
                escape(&e.to_string())
            );
        }
    }
    let mut line = format!(
        "Apply failed: {done} done, {} failed, {skipped} skipped",
        failed.len()
    );
    if not_started > 0 {
        line.push_str(&format!(", {not_started} not started"));
    }
    errln!("{line}. Fix the cause and run plan and apply again to finish the job.");
    ExitCode::from(1)
}

/// Print the plan for review: errors with their source lines (stderr), then the plan as
/// `crmctl plan` shows it (stdout; it includes the warnings).
fn print_plan(plan: &Plan, src: &Source, color: bool) {
    if plan.has_errors() {
        eprint!(
            "{}",
            load::render_diagnostics(&plan.diagnostics, src, color)
        );
        return;
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // A closed standard output (`| head`) is not an apply failure: the plan was shown as
    // far as anyone reads it.
    let _ = crate::render::write_human(plan, color, &mut out).and_then(|()| {
        use std::io::Write as _;
        out.flush()
    });
}

/// `crmctl force-unlock ID`.
pub fn run_force_unlock(args: &ForceUnlockArgs) -> anyhow::Result<ExitCode> {
    let info = crate::state::lock::force_unlock(&args.state, &args.id)?;
    if info.id.starts_with("unreadable-") {
        println!(
            "Removed the unreadable lock {} on {}.",
            info.id,
            args.state.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Removed the lock {} on {} (held by {}, pid {}, operation `{}`).",
        info.id,
        args.state.display(),
        info.owner,
        info.pid,
        info.operation
    );
    Ok(ExitCode::SUCCESS)
}
