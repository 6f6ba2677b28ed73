//! The workflows behind the commands, as library functions: open the backend, lock and
//! read the state, observe, plan, check a saved plan, apply.
//!
//! The CLI parses arguments, prompts, draws progress and maps the results of these
//! functions to exit codes and messages; everything else a command does is here, once.
//! Nothing in this module knows clap, anyhow or the terminal: results are typed, errors
//! are [`OpsError`], and what a run has to tell the user along the way (journal warnings)
//! goes through a callback.
//!
//! - [`backend`]: `--backend` parsed ([`BackendSpec`]) and opened into a boxed provider
//!   ([`open_backend`]), the one place that knows the kinds of backend; the check that a
//!   state belongs to the tenant ([`check_state_fits_tenant`]).
//! - [`session`]: a locked state with its backend ([`Session`]): lock -> open -> read
//!   state -> observe -> check, written once.
//! - [`plan`]: `plan` and `graph` ([`plan::plan`]), saving a plan ([`plan::save`]).
//! - [`apply`]: applying a desired file ([`apply::prepare_file`]) or a saved plan
//!   ([`apply::prepare_saved`], with its staleness checks), the gate before approval
//!   ([`apply::Prepared::check`]) and the run ([`apply::Prepared::run`]).
//! - [`show`] and [`force_unlock`].

pub mod apply;
pub mod backend;
mod error;
pub mod plan;
pub mod session;

pub use backend::{
    check_state_fits_tenant, open_backend, open_existing, Backend, BackendSpec, Presence,
    DEFAULT_BACKEND, DEFAULT_STATE,
};
pub use error::{FoldError, OpsError};
pub use session::Session;

use crate::observed::Tenant;
use crate::state::lock::LockInfo;

/// `crmctl show`: the tenant of a backend that must hold one (a missing or empty local
/// tenant is an error, never shown as an empty tenant; issue 9 item 4).
pub fn show(spec: &BackendSpec) -> Result<Tenant, OpsError> {
    let backend = open_existing(spec)?;
    session::observe(&*backend)
}

/// `crmctl force-unlock ID`: remove the lock `id` of the state at `state_path`; returns
/// what the removed lock said of its holder.
pub fn force_unlock(state_path: &std::path::Path, id: &str) -> Result<LockInfo, OpsError> {
    Ok(crate::state::lock::force_unlock(state_path, id)?)
}
