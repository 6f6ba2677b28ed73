//! A run's hold on a state and its backend: lock -> open -> read state -> observe ->
//! check that the state belongs to the tenant, written once for `plan`, `graph` and
//! `apply`.

use std::path::{Path, PathBuf};

use crate::observed::Tenant;
use crate::ops::backend::{check_state_fits_tenant, Backend, OpenBackend};
use crate::ops::OpsError;
use crate::provider::{ObserveCursor, ProviderError, Scope};
use crate::state::cache::{self, CacheKey};
use crate::state::lock::StateLock;
use crate::state::store::JournalWarning;
use crate::state::State;

/// What a run is (recorded in the lock, shown to a run that finds it taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `plan` or `graph`.
    Plan,
    /// `apply`.
    Apply,
    /// `import` (issue 14 item 1).
    Import,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Plan => "plan",
            Operation::Apply => "apply",
            Operation::Import => "import",
        }
    }
}

/// Where journal warnings go (issue 9 item 5: a damaged line is reported, never skipped
/// silently); the CLI prints them as `warning: ...`.
pub type Warn<'a> = &'a mut dyn FnMut(&JournalWarning);

/// A locked state and the backend it is used against. The lock is held until the
/// session is dropped (or [`Session::release`]d).
pub struct Session {
    /// The backend.
    pub backend: Box<dyn Backend>,
    /// The state, bound to the backend ([`check_state_fits_tenant`]).
    pub state: State,
    /// The state file.
    pub state_path: PathBuf,
    pub(crate) lock: StateLock,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("backend", &self.backend.identity())
            .field("state_path", &self.state_path)
            .field("lock", &self.lock.info().id)
            .finish_non_exhaustive()
    }
}

/// How to read the state a session starts from.
pub(crate) enum StateSource<'a> {
    /// The state file; a missing one is an empty state (new lineage, serial 0).
    FileOrNew,
    /// The state a saved plan was made with: the closure gets the state read (`None`:
    /// missing) and returns the state to use or refuses it.
    Checked(&'a mut dyn FnMut(Option<State>) -> Result<State, OpsError>),
}

impl Session {
    /// Take the lock of `state_path` (like Terraform, for the whole run: a plan never
    /// reads a state that a concurrent apply is rewriting), open the backend, read the
    /// state, observe the tenant and check that the state belongs to it.
    pub fn open(
        backend: impl OpenBackend,
        state_path: &Path,
        operation: Operation,
        warn: Warn<'_>,
    ) -> Result<(Session, Tenant), OpsError> {
        Session::open_with(backend, state_path, operation, StateSource::FileOrNew, warn)
    }

    pub(crate) fn open_with(
        backend: impl OpenBackend,
        state_path: &Path,
        operation: Operation,
        source: StateSource<'_>,
        warn: Warn<'_>,
    ) -> Result<(Session, Tenant), OpsError> {
        let lock = StateLock::acquire(state_path, operation.as_str())?;
        let backend = backend.open()?;
        let (state, warnings) = crate::state::store::load_reporting(state_path)?;
        for w in &warnings {
            warn(w);
        }
        let existed = state.is_some();
        let mut state = match source {
            StateSource::FileOrNew => {
                state.unwrap_or_else(|| State::empty(crate::state::store::new_lineage()))
            }
            StateSource::Checked(check) => check(state)?,
        };
        // issue 12 item 4: the backend reads only what changed since the cursor cached
        // beside this state (for this backend, state and tenant), and gives the next one.
        let mut key = CacheKey {
            backend: backend.identity(),
            lineage: if existed {
                state.lineage.clone()
            } else {
                String::new()
            },
            domain: state.tenant.clone(),
        };
        let cursor = cache::read(state_path, &key);
        let (observed, next) = observe_since(&*backend, cursor)?;
        check_state_fits_tenant(&*backend, &observed, &mut state, state_path)?;
        if let Some(next) = next {
            key.domain = observed.domain.clone();
            // A cache that cannot be written costs the next run a full read, nothing more.
            if let Err(e) = cache::write(state_path, &key, &next) {
                tracing::debug!("observe cache not written: {e}");
            }
        }
        Ok((
            Session {
                backend,
                state,
                state_path: state_path.to_path_buf(),
                lock,
            },
            observed,
        ))
    }

    /// The lock held by this session.
    pub fn lock(&self) -> &StateLock {
        &self.lock
    }

    /// Release the lock (and the backend), keeping the state read.
    pub fn release(self) -> State {
        self.state
    }
}

/// Observe the whole tenant, reading only what changed since `cursor` where the backend
/// can (`Provider::observe_since`); the cursor for the next run.
fn observe_since(
    backend: &dyn Backend,
    cursor: Option<ObserveCursor>,
) -> Result<(Tenant, Option<ObserveCursor>), OpsError> {
    crate::provider::block_on(backend.observe_since(&Scope::all(), cursor))
        .map_err(|e| {
            OpsError::Observe(ProviderError::Backend(format!(
                "cannot start the runtime: {e}"
            )))
        })?
        .map_err(OpsError::Observe)
}

/// Observe the tenant: the one call of the workflows into `Provider::observe`.
pub(crate) fn observe(backend: &dyn Backend) -> Result<Tenant, OpsError> {
    // The whole tenant: the planner adopts by natural key and checks capacity across every
    // kind, so a plan needs all of them (apply's re-observes after an unknown outcome are
    // the scoped reads, `Scope::for_op`).
    crate::provider::block_on(backend.observe(&Scope::all()))
        .map_err(|e| {
            OpsError::Observe(ProviderError::Backend(format!(
                "cannot start the runtime: {e}"
            )))
        })?
        .map_err(OpsError::Observe)
}
