//! The command line: the only module that knows clap, anyhow and exit codes.
//!
//! Exit codes: 0 success (and, for `plan --detailed-exitcode`, no changes); 1 error,
//! usage errors included (a bad flag or value must never read as "changes present");
//! 2 changes present (`plan --detailed-exitcode` only); 3 `apply` stopped at a manual
//! step (everything else done; a person must act, then apply again).

mod apply;
mod common;
mod emulate;
mod import;
mod local;
mod plan;
mod setup;
mod state;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Manage a Dynamics CRM Online (Dynamics 365) tenant as code.
#[derive(Debug, Parser)]
#[command(name = "crmctl", version, about, long_about = None)]
pub struct Cli {
    /// Never use colors (also honoured: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Log each HTTP request of the Microsoft backends to stderr (method, path, status,
    /// duration, request id; never a secret). `-vv` logs more. `CRMCTL_LOG` takes a
    /// tracing filter instead (e.g. `crmctl::http=debug`).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The Microsoft cloud of `--backend microsoft`: public, usgov, usgovhigh, dod or china.
    #[arg(long, global = true, env = "CRMCTL_CLOUD", value_name = "CLOUD")]
    pub cloud: Option<crate::provider::http::cloud::Cloud>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a desired-state file (YAML or JSON) against the format and the service's rules.
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of the desired-state file.
    Schema(validate::SchemaArgs),
    /// Show what apply would change in the tenant.
    Plan(plan::PlanArgs),
    /// Print the plan's action graph as Graphviz DOT.
    Graph(plan::GraphArgs),
    /// Apply a plan (computed now from -f FILE, or saved with `plan --out`).
    Apply(apply::ApplyArgs),
    /// Print the observed tenant as a desired file (YAML or JSON); `--raw`: keyed by ids.
    Show(local::ShowArgs),
    /// Write the tenant as a desired file and a state that manages it (bring an existing
    /// tenant under management).
    Import(import::ImportArgs),
    /// Change the embedded local tenant behind crmctl's back (simulates the admin center).
    #[command(subcommand)]
    Local(local::LocalCommand),
    /// Remove a stale lock from the state file.
    ForceUnlock(apply::ForceUnlockArgs),
    /// Read or edit the state: list, show, mv (a renamed key), rm (stop managing).
    #[command(subcommand)]
    State(state::StateCommand),
    /// Serve the token endpoint and Microsoft Graph on loopback HTTPS (an emulator).
    Emulate(emulate::EmulateArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell).
    Completions(setup::CompletionsArgs),
    /// Print the manual page (roff), or write every command's page into a folder.
    Man(setup::ManArgs),
    /// Write a starter desired-state file with the schema modeline.
    Init(setup::InitArgs),
}

/// Parse the command line, run, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_exit(&e),
    };
    if let Err(e) = init_logs(cli.verbose) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    if let Some(cloud) = cli.cloud {
        let _ = common::CLOUD.set(cloud);
    }
    let color = common::use_color(cli.no_color);
    let result = match &cli.command {
        Command::Validate(a) => validate::run_validate(a, common::use_color_stderr(cli.no_color)),
        Command::Schema(a) => validate::run_schema(a),
        Command::Plan(a) => plan::run_plan(a, color),
        Command::Graph(a) => plan::run_graph(a),
        Command::Apply(a) => apply::run_apply(a, color),
        Command::Show(a) => local::run_show(a),
        Command::Import(a) => import::run_import(a),
        Command::Local(c) => local::run_local(c),
        Command::ForceUnlock(a) => apply::run_force_unlock(a),
        Command::State(c) => state::run_state(c),
        Command::Emulate(a) => emulate::run_emulate(a),
        Command::Completions(a) => setup::run_completions(a),
        Command::Man(a) => setup::run_man(a),
        Command::Init(a) => setup::run_init(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            ExitCode::from(1)
        }
    }
}

/// Debug logs on stderr (issue 12 item 3): `CRMCTL_LOG` (a tracing filter) wins over
/// `-v` (crmctl's debug lines) and `-vv` (crmctl's trace lines and other crates' debug).
fn init_logs(verbose: u8) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("CRMCTL_LOG") {
        Ok(f) if !f.trim().is_empty() => EnvFilter::try_new(&f).map_err(|e| {
            anyhow::anyhow!(
                "CRMCTL_LOG=`{f}` is not a log filter ({e}); e.g. CRMCTL_LOG=crmctl=debug"
            )
        })?,
        _ => match verbose {
            0 => return Ok(()),
            1 => EnvFilter::new("crmctl=debug"),
            _ => EnvFilter::new("crmctl=trace,debug"),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    Ok(())
}

/// The error and its causes, `: `-separated like `{:#}`, without a cause whose text the
/// message before it already shows (library errors such as `{path}: {source}` include
/// their source, which anyhow would print a second time).
pub(crate) fn describe(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// Print clap's message and map it to an exit code: `--help` and `--version` print to
/// stdout and exit 0; every usage error prints to stderr and exits 1 (clap's own exit
/// code, 2, is what `plan --detailed-exitcode` means by "changes present"; issue 9 item 9).
fn usage_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    // A closed stdout/stderr leaves nothing else to report.
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
