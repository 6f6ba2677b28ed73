//! `crmctl validate` and `crmctl schema`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Desired-state file (YAML, or JSON by its `.json` extension).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

/// Arguments of `schema`.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {}

pub fn run_validate(_args: &ValidateArgs, _color: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("validate: not implemented yet")
}

pub fn run_schema(_args: &SchemaArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("schema: not implemented yet")
}
