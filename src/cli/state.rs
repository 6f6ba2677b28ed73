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
    /// List every managed address with its kind and remote id; with --history, the
    /// serials of the past states a remote state keeps.
    List {
        /// List the kept past states (remote states: azblob://, s3://, gs://) instead.
        #[arg(long)]
        history: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Put back the past state SERIAL of a remote state (see `state list --history`),
    /// under the lock, as a new serial.
    Restore {
        /// The serial to restore.
        serial: u64,
        #[command(flatten)]
        state: StateArgs,
    },
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
    /// State file, or a remote state (azblob://ACCOUNT/CONTAINER/KEY, s3://BUCKET/KEY,
    /// gs://BUCKET/KEY). Default: `.crmctl/state.json`.
    #[arg(long, env = "CRMCTL_STATE")]
    pub state: Option<PathBuf>,
}

/// `crmctl state ...`.
pub fn run_state(cmd: &StateCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StateCommand::List {
            history: true,
            state: a,
        } => {
            let path = common::state_path(a.state.as_deref());
            for serial in state::history(&path)? {
                println!("{serial}");
            }
        }
        StateCommand::Restore { serial, state: a } => {
            let path = common::state_path(a.state.as_deref());
            let new = state::restore(&path, *serial, &mut common::warn)?;
            println!("Restored the state of serial {serial} as serial {new}.");
        }
        StateCommand::List {
            history: false,
            state: a,
        } => {
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
