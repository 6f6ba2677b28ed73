//! `crmctl apply` and `crmctl force-unlock`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;

use crate::apply::{self, ActionOutcome, ApplyError, ApplyReport};
use crate::cli::common;
use crate::desired::load::{self, Source};
use crate::domain::escape::escape;
use crate::domain::op::ActionKind;
use crate::ops::apply::{Prepared, RunOptions};
use crate::ops::{self, OpsError};
use crate::plan::Plan;

/// `println!` and `eprintln!` that never panic: once an apply has started, a closed
/// standard output or error (`crmctl apply ... 2>&1 | head -1`, a log pipe that went away)
/// must not stop it halfway, with objects created and no state recording them (issue 9
/// item 5). What cannot be printed is dropped.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if JSON.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = writeln!(std::io::stderr().lock(), $($arg)*);
        } else {
            let _ = writeln!(std::io::stdout().lock(), $($arg)*);
        }
    }};
}

/// `apply --format json`: standard output holds only the summary document, so what apply
/// prints for people (the plan, "Apply complete!", backups) goes to standard error.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
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
    /// How long to wait for each manual step (an action the backend has no API for, e.g.
    /// buying licences on a Microsoft tenant) to show done in the tenant, e.g. `30m`, `2h`.
    /// Default 0: apply does everything that does not depend on it, prints what to do and
    /// stops (exit code 3); the next apply goes on from there.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_wait)]
    pub wait_manual: std::time::Duration,
    /// Take no backup before deleting, resetting or copying onto an instance (a saved plan
    /// says itself whether it takes them: plan it with --no-backup).
    #[arg(long, conflicts_with = "planfile")]
    pub no_backup: bool,
    /// Apply a plan that deletes or strips (licences, roles, members) more than the file's
    /// `safety` share (default 30%) of the managed objects of a kind.
    #[arg(long)]
    pub force: bool,
    /// How long to wait for a long-running operation (create, copy, reset, delete, switch,
    /// backup, update of an instance) before leaving it running: `DURATION` for every kind,
    /// `KIND=DURATION` for one (`copy_instance=12h`); repeatable, later ones win. Defaults:
    /// configure/reset 3h, copy 8h, backup/delete/switch 2h, other instance changes 1h. An
    /// operation still running then stays in the state; the next apply polls it again.
    #[arg(long, value_name = "[KIND=]DURATION", value_parser = parse_timeout)]
    pub timeout: Vec<(Option<ActionKind>, std::time::Duration)>,
    /// Output: `human`, or `json`: the summary (done, failed, skipped with reasons) as one
    /// document on stdout, also when nothing could run (schemas/apply.schema.json); the plan
    /// and the progress go to stderr.
    #[arg(long, value_enum, default_value = "human")]
    pub format: ApplyFormat,
    /// Accept what changed outside crmctl since the last apply (the drift of `plan
    /// --refresh-only`) into the state, without changing the tenant.
    #[arg(long, conflicts_with_all = ["planfile", "target", "exclude", "replace"])]
    pub refresh_only: bool,
    /// `--target`, `--exclude`, `--replace` (a saved plan carries its own).
    #[command(flatten)]
    pub targeting: crate::cli::plan::TargetArgs,
}

/// Output format of `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApplyFormat {
    /// Messages for people.
    Human,
    /// The summary as JSON on stdout (issue 15 item 2).
    Json,
}

/// The JSON summary of this run, once known (`apply --format json`).
#[derive(Default)]
struct Doc(Option<String>);

impl Doc {
    fn set(&mut self, text: String) {
        if JSON.load(std::sync::atomic::Ordering::Relaxed) {
            self.0 = Some(text);
        }
    }
    fn refused(&mut self, error: &str, diagnostics: &[crate::diag::Diagnostic]) {
        self.set(ops::json::to_pretty(&ops::json::apply_refused(
            error,
            diagnostics,
        )));
    }
    fn report(
        &mut self,
        plan: &Plan,
        report: &ApplyReport,
        error: Option<&str>,
        file_diagnostics: &[crate::diag::Diagnostic],
    ) {
        self.set(ops::json::to_pretty(&ops::json::apply_doc(
            plan,
            report,
            error,
            file_diagnostics,
        )));
    }
}

/// `DURATION` or `KIND=DURATION` of `apply --timeout` (issue 13 item 1).
fn parse_timeout(s: &str) -> Result<(Option<ActionKind>, std::time::Duration), String> {
    match s.split_once('=') {
        None => Ok((None, parse_wait(s)?)),
        Some((kind, wait)) => {
            let k = ActionKind::ALL
                .into_iter()
                .find(|k| k.as_str() == kind.trim())
                .ok_or_else(|| {
                    let names: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
                    format!(
                        "`{kind}` is not an action kind; write one of the plan's kinds, e.g. `copy_instance=12h` (kinds: {})",
                        names.join(", ")
                    )
                })?;
            Ok((Some(k), parse_wait(wait)?))
        }
    }
}

fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}): write e.g. `90s`, `30m` or `2h`"))
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
    let json = args.format == ApplyFormat::Json;
    JSON.store(json, std::sync::atomic::Ordering::Relaxed);
    // Colours never go into the JSON mode's stderr copy of the plan.
    let color = color && !json;
    let mut doc = Doc::default();
    let result = match (&args.planfile, &args.file) {
        (Some(planfile), _) => apply_saved(args, planfile, color, &mut doc),
        (None, Some(file)) => apply_file(args, file, color, &mut doc),
        (None, None) => Err(anyhow::anyhow!(
            "give a desired-state file with -f FILE, or a saved PLANFILE"
        )),
    };
    if json {
        if let (Err(e), None) = (&result, &doc.0) {
            doc.refused(&crate::cli::describe(e), &[]);
        }
        if let Some(text) = &doc.0 {
            // Like every line of apply: a closed stdout must not turn the run into a failure.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }
    result
}

fn apply_file(
    args: &ApplyArgs,
    file: &Path,
    color: bool,
    doc: &mut Doc,
) -> anyhow::Result<ExitCode> {
    let loaded = match common::load_desired_or_failure(file, color) {
        Ok(l) => l,
        Err(f) => {
            doc.refused(&f.to_string(), &f.diagnostics);
            return Ok(ExitCode::from(1));
        }
    };
    let spec = common::backend_for(args.backend.as_deref(), &loaded)?;
    let state_path = common::state_path(args.state.as_deref());
    if args.refresh_only {
        return apply_refresh_only(args, &loaded, &spec, &state_path, color, doc);
    }
    let mut prepared = ops::apply::prepare_file_targeted(
        &loaded,
        &spec,
        &state_path,
        ops::plan::PlanOptions {
            backups: !args.no_backup,
        },
        &args.targeting.targeting(),
        &mut common::warn,
    )?;
    print_plan(&prepared.plan, &loaded.src, color);
    if let Err(why) = passes_checks(&prepared, args) {
        let mut diags = loaded.diagnostics.clone();
        diags.extend(prepared.plan.diagnostics.iter().cloned());
        doc.refused(&why, &diags);
        return Ok(ExitCode::from(1));
    }
    if prepared.plan.actions.is_empty() {
        // Still record changed protect flags (a real state change), without a serial bump
        // when nothing changes.
        let report = run(&mut prepared, args, doc, &loaded.diagnostics)?;
        outln!("No changes. The tenant matches {}.", file.display());
        doc.report(&prepared.plan, &report, None, &loaded.diagnostics);
        return Ok(ExitCode::SUCCESS);
    }
    if !args.auto_approve && !approve()? {
        eprintln!("Apply cancelled; nothing was done.");
        doc.refused("apply cancelled; nothing was done", &[]);
        return Ok(ExitCode::from(1));
    }
    let report = run(&mut prepared, args, doc, &loaded.diagnostics)?;
    doc.report(&prepared.plan, &report, None, &loaded.diagnostics);
    Ok(summarize(&prepared.plan, &report))
}

/// `apply --refresh-only` (issue 14 item 2): show the drift, approve, record it in the
/// state; no request reaches the tenant.
fn apply_refresh_only(
    args: &ApplyArgs,
    loaded: &load::Loaded,
    spec: &ops::backend::BackendSpec,
    state_path: &Path,
    color: bool,
    doc: &mut Doc,
) -> anyhow::Result<ExitCode> {
    let (mut prepared, observed) =
        ops::apply::prepare_refresh_only(loaded, spec, state_path, &mut common::warn)?;
    print_plan(&prepared.plan, &loaded.src, color);
    if prepared.plan.has_errors() {
        doc.refused("the plan has errors", &prepared.plan.diagnostics);
        return Ok(ExitCode::from(1));
    }
    if prepared.plan.drift.is_empty() {
        outln!("No changes outside crmctl since the last apply; the state is up to date.");
    } else if !args.auto_approve && !approve()? {
        eprintln!("Apply cancelled; nothing was done.");
        doc.refused("apply cancelled; nothing was done", &[]);
        return Ok(ExitCode::from(1));
    }
    let dropped = prepared.accept_drift(&observed)?;
    if !prepared.plan.drift.is_empty() {
        outln!(
            "Refresh complete! The state accepts {} change(s) made outside crmctl ({} object(s) gone from the tenant forgotten); the tenant was not changed.",
            prepared.plan.drift.len(),
            dropped
        );
    }
    doc.report(
        &prepared.plan,
        &ApplyReport::default(),
        None,
        &loaded.diagnostics,
    );
    Ok(ExitCode::SUCCESS)
}

fn apply_saved(
    args: &ApplyArgs,
    planfile: &Path,
    color: bool,
    doc: &mut Doc,
) -> anyhow::Result<ExitCode> {
    // A saved plan carries its targeting (under its checksum): flags would contradict it.
    let t = &args.targeting;
    if !(t.target.is_empty() && t.exclude.is_empty() && t.replace.is_empty()) {
        bail!("--target, --exclude and --replace are given when planning: a saved plan applies exactly the targeting it was made with; run `crmctl plan --target ... --out PLANFILE` again");
    }
    // Refused when it is not a saved plan, of another version, edited since it was written
    // (checksum; issue 9 item 3), made for another backend or state, or stale.
    let mut prepared = ops::apply::prepare_saved(
        planfile,
        args.backend.as_deref(),
        common::CLOUD.get().copied(),
        args.state.as_deref(),
        &mut common::warn,
    )?;
    let src = Source {
        path: planfile.display().to_string(),
        text: String::new(),
    };
    print_plan(&prepared.plan, &src, color);
    if let Err(why) = passes_checks(&prepared, args) {
        doc.refused(&why, &prepared.plan.diagnostics);
        return Ok(ExitCode::from(1));
    }
    if let Some(observed) = prepared.observed.take() {
        // `plan --refresh-only --out`: accept the drift it shows, as `apply --refresh-only`
        // does; the tenant is the one the plan was made against (checked above).
        let dropped = prepared.accept_drift(&observed)?;
        outln!(
            "Refresh complete! The state accepts {} change(s) made outside crmctl ({} object(s) gone from the tenant forgotten); the tenant was not changed.",
            prepared.plan.drift.len(),
            dropped
        );
        doc.report(&prepared.plan, &ApplyReport::default(), None, &[]);
        return Ok(ExitCode::SUCCESS);
    }
    let report = run(&mut prepared, args, doc, &[])?;
    doc.report(&prepared.plan, &report, None, &[]);
    Ok(summarize(&prepared.plan, &report))
}

/// The refusal of a targeted plan with errors (issue 14 item 4).
pub(crate) const TARGETED_ERRORS: &str = "the plan has errors; nothing was done: a plan with errors applies nothing, also when --target/--exclude leave the objects with the errors out (fix the file, then apply the targets)";

/// The checks before approval ([`Prepared::check`]), their refusal printed and returned.
fn passes_checks(prepared: &Prepared, args: &ApplyArgs) -> Result<(), String> {
    if prepared.plan.has_errors() {
        // A plan with errors applies nothing, a targeted one included: the errors may be
        // outside its targets (docs/workflows.md).
        let why = if prepared.plan.targeting.is_some() {
            TARGETED_ERRORS
        } else {
            "the plan has errors; nothing was done"
        };
        eprintln!("{}{}.", why[..1].to_uppercase(), &why[1..]);
        return Err(why.into());
    }
    match prepared.check(args.allow_destroy, args.force) {
        Ok(()) => Ok(()),
        Err(e @ ApplyError::Protected(_)) => {
            eprintln!("error: {e}");
            Err(e.to_string())
        }
        Err(e) => {
            eprintln!("error: {}", escape_lines(&e.to_string()));
            let mut why = e.to_string();
            if matches!(e, ApplyError::DestroyNotAllowed(_)) {
                eprintln!("Run again with --allow-destroy to allow them.");
                why.push_str("\nRun again with --allow-destroy to allow them.");
            }
            Err(why)
        }
    }
}

/// [`escape`] line by line: a message of several lines (the held-back actions) keeps
/// its line breaks, every other control character is shown escaped.
fn escape_lines(s: &str) -> String {
    s.split('\n')
        .map(|l| escape(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
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

/// Run the plan ([`Prepared::run`]) with a progress bar on a terminal (failures printed
/// above it), plain lines otherwise, so that logs of pipelines show every action.
fn run(
    prepared: &mut Prepared,
    args: &ApplyArgs,
    doc: &mut Doc,
    file_diagnostics: &[crate::diag::Diagnostic],
) -> anyhow::Result<ApplyReport> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(prepared.plan.actions.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .expect("the template is valid"),
        );
        bar
    });
    // Retries and long-running operations, in the log (issue 11 item 4).
    // A running operation is progress: on a terminal the bar's message, in a log one line
    // per operation every minute at most (issue 13 item 1).
    let last_running = std::sync::Mutex::new(std::collections::HashMap::<String, u64>::new());
    let notice: apply::NoticeHook = std::sync::Arc::new({
        let bar = bar.clone();
        move |n: &apply::Notice<'_>| match (&bar, n) {
            (Some(bar), apply::Notice::Running { .. }) => bar.set_message(n.line()),
            (
                None,
                apply::Notice::Running {
                    handle, elapsed, ..
                },
            ) => {
                let minute = elapsed.as_secs() / 60;
                let mut last = last_running.lock().unwrap_or_else(|e| e.into_inner());
                if last.get(&handle.id) != Some(&minute) {
                    last.insert(handle.id.clone(), minute);
                    errln!("{}", n.line());
                }
            }
            (Some(bar), _) => bar.println(n.line()),
            (None, _) => errln!("{}", n.line()),
        }
    });
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
    let opts = RunOptions {
        parallelism: args.parallelism,
        allow_destroy: args.allow_destroy,
        notice: Some(notice),
        wait_manual: args.wait_manual,
        timeouts: args.timeout.clone(),
    };
    let result = prepared.run(opts, &progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(report) => {
            for address in &report.forgotten {
                outln!("state: forgot {address} (the object no longer exists)");
            }
            Ok(report)
        }
        Err(e) => {
            if let OpsError::StateSave { report, .. } = &e {
                let plan = &prepared.plan;
                doc.report(plan, report, Some(&e.to_string()), file_diagnostics);
                if report.success() && report.outcomes.len() == plan.actions.len() {
                    // Not "Apply complete!": the state does not record the last batch.
                    errln!(
                        "Apply stopped: {} done, the last of them not recorded in the state.",
                        report.done().len()
                    );
                } else {
                    summarize(plan, report);
                }
            }
            Err(e.into())
        }
    }
}

fn summarize(plan: &Plan, report: &ApplyReport) -> ExitCode {
    let (done, failed, skipped) = (report.done().len(), report.failed(), report.skipped().len());
    // Issue 13 item 3: where to restore from (also in the state's `backups`).
    for (id, backup) in &report.backups {
        outln!(
            "backup: {} taken before the next action, id {} (recorded in the state)",
            escape(&plan.actions[*id].address),
            escape(backup)
        );
    }
    if report.success() && report.outcomes.len() == plan.actions.len() {
        outln!("Apply complete! {done} done.");
        return ExitCode::SUCCESS;
    }
    let not_started = plan.actions.len() - report.outcomes.len();
    let manual = report.manual();
    errln!();
    if failed.is_empty() && !manual.is_empty() {
        // Issue 13 item 4: not a failure; a person has something to do first.
        for id in &manual {
            let a = &plan.actions[*id];
            if let Some(ActionOutcome::Manual { instructions }) = report.outcomes.get(id) {
                errln!(
                    "manual step: {} {}: {}",
                    a.kind.as_str(),
                    escape(&a.address),
                    escape(instructions)
                );
            }
        }
        errln!(
            "Apply stopped at {} manual step(s): {done} done, {skipped} waiting on them. Do the steps above, then run apply again (or wait for them with --wait-manual DURATION).",
            manual.len()
        );
        return ExitCode::from(3);
    }
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
    // A closed standard output (`| head`) is not an apply failure: the plan was shown as
    // far as anyone reads it. With --format json it goes to stderr.
    let mut out: std::io::BufWriter<Box<dyn Write>> =
        std::io::BufWriter::new(if JSON.load(std::sync::atomic::Ordering::Relaxed) {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        });
    let _ = crate::render::write_human(plan, color, &mut out).and_then(|()| out.flush());
}

/// `crmctl force-unlock ID`.
pub fn run_force_unlock(args: &ForceUnlockArgs) -> anyhow::Result<ExitCode> {
    let info = ops::force_unlock(&args.state, &args.id)?;
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
