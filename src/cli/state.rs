//! `crmctl state list | show | mv | rm` (issue 14 item 3).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::common;
use crate::domain::escape::escape;
use crate::ops::state::{self, Edit};

/// `crmctl state` subcommands: read or edit what crmctl manages, without touching the
/// tenant.
#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// List every managed address with its kind and remote id.
    List(StateArgs),
    /// Print what the state holds for one address (JSON).
    Show {
        /// The address, e.g. `instances.sales`.
        address: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Manage the object at FROM under TO (a key renamed in the file) instead of deleting
    /// and creating it. Under the lock; the previous state is kept as STATE.backup.
    Mv {
        /// The address it is managed under now.
        from: String,
        /// The address the file names it by now.
        to: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Stop managing ADDRESS: the object stays in the tenant, untouched. Under the lock;
    /// the previous state is kept as STATE.backup.
    Rm {
        /// The address.
        address: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Where the state is.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// State file. Default: `.crmctl/state.json`.
    #[arg(long, env = "CRMCTL_STATE")]
    pub state: Option<PathBuf>,
}

/// `crmctl state ...`.
pub fn run_state(cmd: &StateCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StateCommand::List(a) => {
            let path = common::state_path(a.state.as_deref());
            for (address, r) in state::list(&path, &mut common::warn)? {
                println!(
                    "{}\t{}\t{}",
                    escape(&address),
                    format!("{:?}", r.kind).to_lowercase(),
                    escape(&r.id)
                );
            }
        }
        StateCommand::Show { address, state: a } => {
            let path = common::state_path(a.state.as_deref());
            let r = state::show(&path, address, &mut common::warn)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        StateCommand::Mv { from, to, state: a } => {
            let path = common::state_path(a.state.as_deref());
            let edit = Edit::Move {
                from: from.clone(),
                to: to.clone(),
            };
            let serial = state::edit(&path, &edit, &mut common::warn)?;
            println!(
                "Moved {} to {} (state serial {serial}; the previous state is in {}).",
                escape(from),
                escape(to),
                state::backup_path(&path).display()
            );
        }
        StateCommand::Rm { address, state: a } => {
            let path = common::state_path(a.state.as_deref());
            let edit = Edit::Remove {
                address: address.clone(),
            };
            let serial = state::edit(&path, &edit, &mut common::warn)?;
            println!(
                "Removed {} from the state; the object stays in the tenant (state serial {serial}; the previous state is in {}).",
                escape(address),
                state::backup_path(&path).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
