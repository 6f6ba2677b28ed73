//! `crmctl show` and `crmctl local ...`.

use std::process::ExitCode;

/// Arguments of `show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {}

/// `crmctl local` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LocalCommand {
    /// Replace the local tenant with a YAML/JSON file (as printed by `show`).
    Import {
        /// The file.
        file: std::path::PathBuf,
    },
}

pub fn run_show(_args: &ShowArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("show: not implemented yet")
}

pub fn run_local(_cmd: &LocalCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("local: not implemented yet")
}
