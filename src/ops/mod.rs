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
//! - [`local`]: the `local` commands' changes to the embedded local tenant.
//! - [`state`]: `state list | show | mv | rm` (edits under the lock, with a backup).
//! - [`import`]: `crmctl import` and the desired-format `show` (issue 14 item 1).
//! - [`show`] and [`force_unlock`].
//! - [`json`]: the JSON documents of validate, a failed plan and apply (issue 15 item 2).
//! - [`init`]: `crmctl init`, a starter desired file with the schema modeline.

pub mod apply;
pub mod backend;
mod error;
pub mod import;
pub mod init;
pub mod json;
pub mod local;
pub mod microsoft;
pub mod plan;
pub mod session;
pub mod state;

pub use backend::{
    check_state_fits_tenant, open_backend, open_existing, Backend, BackendSpec, OpenBackend,
    Presence, DEFAULT_BACKEND, DEFAULT_STATE,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::local::LocalProvider;

    // issue 11 item 3: the workflows run as library functions, without the CLI, with a
    // backend opened by the caller (here the local tenant; an in-memory one alike).
    #[test]
    fn plan_apply_and_show_run_without_the_cli() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.yaml");
        std::fs::write(
            &file,
            "tenant: fabrikam.onmicrosoft.com\nlicenses:\n  professional: 5\nusers:\n  a@fabrikam.com:\n    name: Ann\n",
        )
        .unwrap();
        let loaded = crate::desired::load::load_file(&file).unwrap();
        let db = dir.path().join("t.db");
        let state_path = dir.path().join("s.json");
        let backend: Box<dyn Backend> = Box::new(LocalProvider::open(&db).unwrap());
        let mut warnings = 0;
        let mut prepared = apply::prepare_file(
            &loaded,
            backend,
            &state_path,
            plan::PlanOptions::default(),
            &mut |_| warnings += 1,
        )
        .unwrap();
        assert!(!prepared.plan.actions.is_empty());
        prepared.check(false, false).unwrap();
        let opts = apply::RunOptions {
            parallelism: 4,
            allow_destroy: false,
            notice: None,
            wait_manual: std::time::Duration::ZERO,
            timeouts: Vec::new(),
        };
        let report = prepared.run(opts, &|_| {}).unwrap();
        assert!(report.success(), "{report:?}");
        // The session held the lock until here.
        assert!(crate::state::lock::read_lock(&state_path)
            .unwrap()
            .is_some());
        drop(prepared);
        assert!(crate::state::lock::read_lock(&state_path)
            .unwrap()
            .is_none());
        let spec = BackendSpec::parse(Some(&format!("local:{}", db.display()))).unwrap();
        let tenant = show(&spec).unwrap();
        assert_eq!(tenant.domain, "fabrikam.onmicrosoft.com", "the domain hint");
        assert!(tenant.users.values().any(|u| u.upn == "a@fabrikam.com"));
        let planned = plan::plan(
            &loaded,
            &spec,
            &state_path,
            session::Operation::Plan,
            plan::PlanOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        assert!(planned.plan.is_empty(), "{:?}", planned.plan.actions);
        assert_eq!(warnings, 0);
    }
}
