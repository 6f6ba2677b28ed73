//! `crmctl plan` and `crmctl graph`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::common;
use crate::desired::load::{self, Loaded};
use crate::observed::Tenant;
use crate::ops::{self, session::Operation};
use crate::plan::Plan;
use crate::state::State;

/// Output format of `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// Terraform-like text (default).
    Human,
    /// Machine-readable JSON (format_version 1).
    Json,
    /// Summary and table for a pull-request comment.
    Markdown,
}

/// Arguments of `plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Desired-state file (YAML, or JSON by its `.json` extension).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Backend (`local:PATH`). Default: `local:.crmctl/tenant.db`.
    #[arg(long, env = "CRMCTL_BACKEND")]
    pub backend: Option<String>,
    /// State file. Default: `.crmctl/state.json`.
    #[arg(long, env = "CRMCTL_STATE")]
    pub state: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: PlanFormat,
    /// Save the plan (with the tenant's fingerprint and the state serial) for
    /// `crmctl apply PLANFILE`.
    #[arg(long, value_name = "PLANFILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when the file has changes (whatever the drift),
    /// 4 when the only changes were made outside crmctl since the last apply (drift), 1 on
    /// error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Show only what changed outside crmctl since the last apply (the drift), nothing to
    /// do in the tenant; `crmctl apply --refresh-only` accepts it into the state, and so
    /// does `crmctl apply PLANFILE` of a plan saved with `--out`.
    #[arg(long, conflicts_with_all = ["target", "exclude", "replace"])]
    pub refresh_only: bool,
    /// Plan no backup before deleting, resetting or copying onto an instance.
    #[arg(long)]
    pub no_backup: bool,
    #[command(flatten)]
    pub targeting: TargetArgs,
}

/// `--target`, `--exclude`, `--replace` of `plan` and `apply` (issue 14 item 4).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TargetArgs {
    /// Plan only the actions at ADDR (`instances.test`, `users.ana@coho.com`, or a whole
    /// collection: `users`, `security_groups`, `instances`, `licenses`, `slots`,
    /// `storage`) and, transitively, the actions they depend on. An instance covers the
    /// security roles in it. Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub target: Vec<String>,
    /// Leave out the actions at ADDR and, transitively, those that depend on them; a
    /// --target that depends on one is an error. Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub exclude: Vec<String>,
    /// Re-create the instance ADDR on purpose: a sandbox with `copy_from` is copied again
    /// from its source (I11), another sandbox is reset (I9). Destructive: apply needs
    /// --allow-destroy (and takes a backup first unless --no-backup). Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub replace: Vec<String>,
}

impl TargetArgs {
    /// What the planner is asked for.
    pub fn targeting(&self) -> crate::plan::target::Targeting {
        crate::plan::target::Targeting {
            targets: self.target.clone(),
            excludes: self.exclude.clone(),
            replaces: self.replace.clone(),
            ..Default::default()
        }
    }
}

/// Arguments of `graph`.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// Desired-state file (YAML, or JSON by its `.json` extension).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Backend (`local:PATH`). Default: `local:.crmctl/tenant.db`.
    #[arg(long, env = "CRMCTL_BACKEND")]
    pub backend: Option<String>,
    /// State file. Default: `.crmctl/state.json`.
    #[arg(long, env = "CRMCTL_STATE")]
    pub state: Option<PathBuf>,
    /// `--target`, `--exclude`, `--replace`: the graph of the plan they select, as `plan`
    /// shows it.
    #[command(flatten)]
    pub targeting: TargetArgs,
}

/// What `plan` and `graph` share: the loaded file, the state, the plan and the tenant
/// it was made against.
struct Planned {
    loaded: Loaded,
    state: State,
    plan: Plan,
    observed: Tenant,
}

/// Load the file (printing its problems), then plan it ([`ops::plan::plan`]); the state
/// lock is released once planned. `Ok(Err(_))` means the file had errors (already printed).
fn make_plan(
    file: &Path,
    backend: Option<&str>,
    state_path: &Path,
    options: ops::plan::PlanOptions,
    targeting: &crate::plan::target::Targeting,
    color: bool,
) -> anyhow::Result<Result<Planned, load::LoadFailure>> {
    let loaded = match common::load_desired_or_failure(file, color) {
        Ok(l) => l,
        Err(f) => return Ok(Err(f)),
    };
    let spec = common::backend_for(backend, &loaded)?;
    let planned = ops::plan::plan_targeted(
        &loaded,
        &spec,
        state_path,
        Operation::Plan,
        options,
        targeting,
        &mut common::warn,
    )?;
    Ok(Ok(Planned {
        loaded,
        state: planned.session.release(),
        plan: planned.plan,
        observed: planned.observed,
    }))
}

/// `crmctl plan`. With `--format json` or `markdown`, standard output always gets one
/// document, also when no plan could be made (issue 15 item 2): the errors, as
/// [`crate::ops::json::failure_doc`] or [`crate::render::render_markdown_failure`].
pub fn run_plan(args: &PlanArgs, color: bool) -> anyhow::Result<ExitCode> {
    let mut written = false;
    let result = plan_inner(args, color, &mut written);
    match (&result, args.format) {
        (Err(e), PlanFormat::Json | PlanFormat::Markdown) if !written => {
            write_failure(args.format, &crate::cli::describe(e), &[])?;
        }
        _ => {}
    }
    result
}

/// The document of a plan that could not be made, on standard output.
fn write_failure(
    format: PlanFormat,
    error: &str,
    diagnostics: &[crate::diag::Diagnostic],
) -> anyhow::Result<()> {
    let text = match format {
        PlanFormat::Human => return Ok(()),
        PlanFormat::Json => {
            crate::ops::json::to_pretty(&crate::ops::json::failure_doc("plan", error, diagnostics))
        }
        PlanFormat::Markdown => crate::render::render_markdown_failure(error, diagnostics),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

fn plan_inner(args: &PlanArgs, color: bool, written: &mut bool) -> anyhow::Result<ExitCode> {
    let state_path = common::state_path(args.state.as_deref());
    if let Some(out) = &args.out {
        let spec = common::backend_spec(args.backend.as_deref())?;
        ops::plan::check_out(out, &args.file, &spec, &state_path)?;
    }
    let Planned {
        loaded,
        state,
        mut plan,
        observed,
    } = match make_plan(
        &args.file,
        args.backend.as_deref(),
        &state_path,
        ops::plan::PlanOptions {
            backups: !args.no_backup,
        },
        &args.targeting.targeting(),
        color,
    )? {
        Ok(p) => p,
        Err(failure) => {
            let mut error = failure.to_string();
            if failure.omitted > 0 {
                error.push_str(&format!(" (and {} more not shown)", failure.omitted));
            }
            *written = true;
            write_failure(args.format, &error, &failure.diagnostics)?;
            return Ok(ExitCode::from(1));
        }
    };
    if args.refresh_only {
        plan = crate::plan::drift::refresh_only(plan);
    }
    let errors = plan.has_errors();
    if errors {
        eprint!(
            "{}",
            load::render_diagnostics(&plan.diagnostics, &loaded.src, color)
        );
    }
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    // The machine-readable formats carry the file's warnings too (issue 15 item 2).
    let file_diags = &loaded.diagnostics;
    *written = args.format != PlanFormat::Human;
    match args.format {
        PlanFormat::Human if errors => {}
        // Streamed: the text of a large plan is never held whole.
        PlanFormat::Human => crate::render::write_human(&plan, color, &mut stdout)?,
        PlanFormat::Json => crate::render::write_json_with(&plan, file_diags, &mut stdout)?,
        PlanFormat::Markdown => {
            stdout.write_all(crate::render::render_markdown_with(&plan, file_diags).as_bytes())?
        }
    }
    stdout.flush()?;
    drop(stdout);
    if errors {
        if plan.targeting.is_some() {
            // Errors outside the targets block a targeted apply too (docs/workflows.md).
            eprintln!("The plan has errors: fix them and plan again (a plan with errors applies nothing, also when --target/--exclude leave the objects with the errors out).");
        } else {
            eprintln!("The plan has errors: fix them and plan again.");
        }
        return Ok(ExitCode::from(1));
    }
    let changes = Changes::of(&plan);
    if let Some(out) = &args.out {
        let spec = common::backend_for(args.backend.as_deref(), &loaded)?;
        let saved = ops::plan::save(out, &loaded, &spec, &state_path, &state, plan, &observed)?;
        eprintln!(
            "Saved the plan to {}; apply it with `crmctl apply {}`.",
            out.display(),
            out.display()
        );
        common::free_at_exit((loaded, state, saved, observed));
        return Ok(exit(args.detailed_exitcode, changes));
    }
    common::free_at_exit((loaded, state, plan, observed));
    Ok(exit(args.detailed_exitcode, changes))
}

/// What `plan --detailed-exitcode` tells apart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Changes {
    None,
    /// Changes of the file (its actions, state entries to forget): exit 2.
    File,
    /// Only changes made outside crmctl (drift, and actions that put it back): exit 4.
    DriftOnly,
}

impl Changes {
    fn of(plan: &Plan) -> Changes {
        if plan.has_file_changes() {
            Changes::File
        } else if !plan.drift.is_empty() {
            Changes::DriftOnly
        } else {
            Changes::None
        }
    }
}

fn exit(detailed: bool, changes: Changes) -> ExitCode {
    match (detailed, changes) {
        (true, Changes::File) => ExitCode::from(2),
        (true, Changes::DriftOnly) => ExitCode::from(4),
        _ => ExitCode::SUCCESS,
    }
}

/// `crmctl graph`.
pub fn run_graph(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let state_path = common::state_path(args.state.as_deref());
    let Ok(Planned { loaded, plan, .. }) = make_plan(
        &args.file,
        args.backend.as_deref(),
        &state_path,
        ops::plan::PlanOptions::default(),
        &args.targeting.targeting(),
        false,
    )?
    else {
        return Ok(ExitCode::from(1));
    };
    if plan.has_errors() {
        eprint!(
            "{}",
            load::render_diagnostics(&plan.diagnostics, &loaded.src, false)
        );
    }
    print!("{}", crate::render::render_dot(&plan));
    Ok(if plan.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
