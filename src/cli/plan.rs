//! `crmctl plan` and `crmctl graph`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::common;
use crate::desired::load::{self, Loaded};
use crate::plan::saved::SavedPlan;
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

/// What `plan` and `graph` share: the loaded file, the state and the plan.
struct Planned {
    loaded: Loaded,
    state: State,
    plan: Plan,
}

/// Load the file (printing its problems), observe the tenant, read the state, plan.
/// `Ok(None)` means the file had errors (already printed).
fn make_plan(
    file: &Path,
    backend: Option<&str>,
    state_path: &Path,
    color: bool,
) -> anyhow::Result<Option<Planned>> {
    let Some(loaded) = common::load_desired(file, color) else {
        return Ok(None);
    };
    // Like Terraform, plan holds the state lock while it reads the state and the tenant,
    // so that it never plans against a state that a concurrent apply is rewriting.
    let _lock = common::lock_state(state_path, "plan")?;
    let provider = common::open_local(backend)?;
    let observed = provider.observe().context("cannot read the tenant")?;
    let mut state = common::read_state(state_path)?;
    common::check_state_fits_tenant(&provider, &observed, &mut state, state_path)?;
    let mut plan = crate::plan::plan_resolved(&loaded.desired, &loaded.members, &observed, &state);
    load::locate_diagnostics(&loaded.src, &mut plan.diagnostics);
    Ok(Some(Planned {
        loaded,
        state,
        plan,
    }))
}

fn state_path(state: &Option<PathBuf>) -> PathBuf {
    state
        .clone()
        .unwrap_or_else(|| PathBuf::from(common::DEFAULT_STATE))
}

/// `crmctl plan`.
pub fn run_plan(args: &PlanArgs, color: bool) -> anyhow::Result<ExitCode> {
    let state_path = state_path(&args.state);
    if let Some(out) = &args.out {
        check_out(out, args, &state_path)?;
    }
    let Some(Planned {
        loaded,
        state,
        plan,
    }) = make_plan(&args.file, args.backend.as_deref(), &state_path, color)?
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
    if let Some(out) = &args.out {
        let protect = loaded.desired.protect_flags();
        let changes = !plan.is_empty();
        // With the checksum of its content: `apply PLANFILE` refuses an edited file.
        let saved = SavedPlan::new(
            args.backend
                .clone()
                .unwrap_or_else(|| common::DEFAULT_BACKEND.to_string()),
            state_path.display().to_string(),
            state.lineage.clone(),
            state.serial,
            plan,
            protect,
        )
        .with_protect_at(crate::cli::apply::protect_locations(&loaded));
        write_atomically(out, &serde_json::to_vec_pretty(&saved)?)
            .with_context(|| format!("cannot write the plan file {}", out.display()))?;
        eprintln!(
            "Saved the plan to {}; apply it with `crmctl apply {}`.",
            out.display(),
            out.display()
        );
        common::free_at_exit((loaded, state, saved));
        return Ok(exit(args.detailed_exitcode, changes));
    }
    let changes = !plan.is_empty();
    common::free_at_exit((loaded, state, plan));
    Ok(exit(args.detailed_exitcode, changes))
}

/// Refuse a `--out` that names a file this run reads or manages: the desired file, the
/// state (its journal, its lock) or the local tenant (its WAL files). A typo there used to
/// replace the state, or the whole tenant database, by the plan (issue 9: no run may lose
/// what it manages).
fn check_out(out: &Path, args: &PlanArgs, state_path: &Path) -> anyhow::Result<()> {
    use crate::state::{lock, store};
    let tenant = common::local_path(args.backend.as_deref())?;
    let with_suffix = |p: &Path, suffix: &str| {
        let mut s = p.as_os_str().to_os_string();
        s.push(suffix);
        PathBuf::from(s)
    };
    let taken: [(&str, PathBuf); 7] = [
        ("the desired file", args.file.clone()),
        ("the state", state_path.to_path_buf()),
        ("the state's journal", store::journal_path(state_path)),
        ("the state's lock", lock::lock_path(state_path)),
        ("the local tenant", tenant.clone()),
        ("the local tenant's WAL", with_suffix(&tenant, "-wal")),
        ("the local tenant's WAL index", with_suffix(&tenant, "-shm")),
    ];
    let target = common::file_identity(out);
    if let Some((what, path)) = taken
        .iter()
        .find(|(_, p)| common::file_identity(p) == target)
    {
        anyhow::bail!(
            "--out {} is {what} ({}): the plan would replace it; save the plan to a file of its own, e.g. --out plan.json",
            out.display(),
            path.display()
        );
    }
    Ok(())
}

fn exit(detailed: bool, changes: bool) -> ExitCode {
    if detailed && changes {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Write to a temporary file next to `path`, flush it to disk, then rename it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)?;
    Ok(())
}

/// `crmctl graph`.
pub fn run_graph(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let state_path = state_path(&args.state);
    let Some(Planned { loaded, plan, .. }) =
        make_plan(&args.file, args.backend.as_deref(), &state_path, false)?
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
