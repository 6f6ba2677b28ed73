//! Why a workflow could not run.

use std::path::PathBuf;

use crate::apply::{ApplyError, ApplyReport};
use crate::plan::saved::SavedPlanError;
use crate::provider::ProviderError;
use crate::state::lock::LockError;
use crate::state::store::StateError;

/// Why a workflow of [`crate::ops`] could not run (or stopped). The texts are the
/// messages the CLI prints after `error: `; a `source` is printed after them.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// `--backend` names no backend crmctl knows.
    #[error("backend `{spec}`: {problem}")]
    BadBackend {
        /// The spec as given.
        spec: String,
        /// What is wrong and what to write instead.
        problem: String,
    },
    /// The local tenant file could not be opened.
    #[error("cannot open the local tenant {path}")]
    OpenLocal {
        /// The tenant file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ProviderError,
    },
    /// A command that needs a tenant found none (issue 9 item 4).
    #[error("the local tenant {path} {what}; check --backend (or CRMCTL_BACKEND); a tenant is created by the first `crmctl apply` or `crmctl local import`")]
    NoTenant {
        /// The tenant file.
        path: PathBuf,
        /// What is there instead (`does not exist`, `is empty (...)`).
        what: &'static str,
    },
    /// Observing the tenant failed.
    #[error("cannot read the tenant")]
    Observe(#[source] ProviderError),
    /// The state lock could not be taken or removed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The state could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// A `state` command was refused (the message says why and what to do).
    #[error("{0}")]
    StateEdit(String),
    /// `import` was refused or could not write its file (the message says why and what
    /// to do).
    #[error("{0}")]
    Import(String),
    /// An argument of a command was refused (the message says which and why).
    #[error("{0}")]
    Invalid(String),
    /// The state does not belong to this backend or tenant, or would overwrite it (issue 9
    /// items 1 and 4); the message says which and what to do.
    #[error("{0}")]
    StateDoesNotFit(String),
    /// `plan --out` names a file the run reads or manages.
    #[error("--out {out} is {what} ({path}): the plan would replace it; save the plan to a file of its own, e.g. --out plan.json")]
    OutIsTaken {
        /// The `--out` path.
        out: PathBuf,
        /// What the file is (`the state`, `the local tenant`, ...).
        what: &'static str,
        /// The file as this run names it.
        path: PathBuf,
    },
    /// The plan file could not be written.
    #[error("cannot write the plan file {path}")]
    WritePlan {
        /// The plan file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The plan file could not be read.
    #[error("cannot read the plan file {path}")]
    ReadPlan {
        /// The plan file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The plan file is not a usable saved plan (not one, another version, edited).
    #[error(transparent)]
    SavedPlan(#[from] SavedPlanError),
    /// `--target`, `--exclude` or `--replace` was refused (issue 14 item 4).
    #[error(transparent)]
    Targeting(#[from] crate::plan::target::TargetError),
    /// A saved plan is applied to another backend or state than it was made with, or the
    /// state or tenant changed since (issue 9 items 1 and 3; issue 11 item 4); the message
    /// says what changed and what to do.
    #[error("{0}")]
    SavedPlanDoesNotFit(String),
    /// The apply stopped because the state could not be saved; `report` has what was done.
    #[error("cannot save the state {path}: {message}")]
    StateSave {
        /// The state file.
        path: PathBuf,
        /// Why.
        message: String,
        /// What was done before the stop.
        report: Box<ApplyReport>,
    },
    /// The journal could not be folded into the state file after the apply.
    #[error("cannot save the state {path}")]
    FoldState {
        /// The state file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<FoldError>,
    },
    /// The backend refused to prepare for the changes.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The apply refused the plan.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Why the journal could not be folded into the state file.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// Writing the state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The run no longer holds the lock.
    #[error(transparent)]
    Lock(#[from] LockError),
}
