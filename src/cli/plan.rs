//! `crmctl plan` and `crmctl graph`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Desired-state file.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

/// Arguments of `graph`.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// Desired-state file.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

pub fn run_plan(_args: &PlanArgs, _color: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("plan: not implemented yet")
}

pub fn run_graph(_args: &GraphArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("graph: not implemented yet")
}
