//! `crmctl apply` and `crmctl force-unlock`.

use std::process::ExitCode;

/// Arguments of `apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {}

/// Arguments of `force-unlock`.
#[derive(Debug, clap::Args)]
pub struct ForceUnlockArgs {
    /// The lock id printed by the run that holds the lock.
    pub id: String,
}

pub fn run_apply(_args: &ApplyArgs, _color: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("apply: not implemented yet")
}

pub fn run_force_unlock(_args: &ForceUnlockArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("force-unlock: not implemented yet")
}
