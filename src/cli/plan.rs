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
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan no backup before deleting, resetting or copying onto an instance.
    #[arg(long)]
    pub no_backup: bool,
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
/// lock is released once planned. `Ok(None)` means the file had errors (already printed).
fn make_plan(
    file: &Path,
    backend: Option<&str>,
    state_path: &Path,
    options: ops::plan::PlanOptions,
    color: bool,
) -> anyhow::Result<Option<Planned>> {
    let Some(loaded) = common::load_desired(file, color) else {
        return Ok(None);
    };
    let spec = common::backend_for(backend, &loaded)?;
    let planned = ops::plan::plan(
        &loaded,
        &spec,
        state_path,
        Operation::Plan,
        options,
        &mut common::warn,
    )?;
    Ok(Some(Planned {
        loaded,
        state: planned.session.release(),
        plan: planned.plan,
        observed: planned.observed,
    }))
}

/// `crmctl plan`.
pub fn run_plan(args: &PlanArgs, color: bool) -> anyhow::Result<ExitCode> {
    let state_path = common::state_path(args.state.as_deref());
    if let Some(out) = &args.out {
        let spec = common::backend_spec(args.backend.as_deref())?;
        ops::plan::check_out(out, &args.file, &spec, &state_path)?;
    }
    let Some(Planned {
        loaded,
        state,
        plan,
        observed,
    }) = make_plan(
        &args.file,
        args.backend.as_deref(),
        &state_path,
        ops::plan::PlanOptions {
            backups: !args.no_backup,
        },
        color,
    )?
    else {
        return Ok(ExitCode::from(1));
    };
    let errors = plan.has_errors();
    if errors {
        eprint!(
            "{}",
            load::render_diagnostics(&plan.diagnostics, &loaded.src, color)
        );
    }
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match args.format {
        PlanFormat::Human if errors => {}
        // Streamed: the text of a large plan is never held whole.
        PlanFormat::Human => crate::render::write_human(&plan, color, &mut stdout)?,
        PlanFormat::Json => crate::render::write_json(&plan, &mut stdout)?,
        PlanFormat::Markdown => {
            stdout.write_all(crate::render::render_markdown(&plan).as_bytes())?
        }
    }
    stdout.flush()?;
    drop(stdout);
    if errors {
        eprintln!("The plan has errors: fix them and plan again.");
        return Ok(ExitCode::from(1));
    }
    let changes = !plan.is_empty();
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

fn exit(detailed: bool, changes: bool) -> ExitCode {
    if detailed && changes {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// `crmctl graph`.
pub fn run_graph(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let state_path = common::state_path(args.state.as_deref());
    let Some(Planned { loaded, plan, .. }) = make_plan(
        &args.file,
        args.backend.as_deref(),
        &state_path,
        ops::plan::PlanOptions::default(),
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
