//! `plan` and `graph`: plan a loaded desired file against the tenant and the state, and
//! save a plan for `apply PLANFILE`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::desired::load::{self, Loaded};
use crate::observed::Tenant;
use crate::ops::backend::{file_identity, BackendSpec, OpenBackend};
use crate::ops::session::{Operation, Session, Warn};
use crate::ops::OpsError;
use crate::plan::saved::{Digests, SavedPlan};
use crate::plan::target::Targeting;
use crate::plan::Plan;
use crate::provider::http::cloud::Cloud;
use crate::state::State;

/// A plan made in a [`Session`].
#[derive(Debug)]
pub struct Planned {
    /// The session (it holds the state lock): `apply` runs the plan in it; `plan`
    /// [`Session::release`]s it.
    pub session: Session,
    /// The plan, its diagnostics located in the desired file.
    pub plan: Plan,
    /// The tenant as observed for the plan ([`save`] records its digests).
    pub observed: Tenant,
}

/// What a plan includes besides the file's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// A backup of each instance before an action destroys its data (issue 13 item 3;
    /// `--no-backup` turns it off).
    pub backups: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { backups: true }
    }
}

/// Open a [`Session`] (lock, backend, state, observe, check) and plan `loaded` in it.
/// `backend`: a [`BackendSpec`] or a backend opened already.
pub fn plan(
    loaded: &Loaded,
    backend: impl OpenBackend,
    state_path: &Path,
    operation: Operation,
    options: PlanOptions,
    warn: Warn<'_>,
) -> Result<Planned, OpsError> {
    plan_targeted(
        loaded,
        backend,
        state_path,
        operation,
        options,
        &Targeting::default(),
        warn,
    )
}

/// [`plan`] with `--target` / `--exclude` / `--replace` (issue 14 item 4): the replaced
/// instances are planned for re-creation by the planner, then, after the backup pass (so
/// a replacement keeps its backup), the plan is reduced by [`crate::plan::target::select`].
/// The large-plan check and the manual steps are of the reduced plan. An address that
/// matches nothing in the file, the state or the plan is refused with a "did you mean".
pub fn plan_targeted(
    loaded: &Loaded,
    backend: impl OpenBackend,
    state_path: &Path,
    operation: Operation,
    options: PlanOptions,
    targeting: &Targeting,
    warn: Warn<'_>,
) -> Result<Planned, OpsError> {
    crate::plan::target::check_replaces(&targeting.replaces)?;
    let (session, observed) = Session::open(backend, state_path, operation, warn)?;
    let mut plan = crate::plan::plan_with(
        &loaded.desired,
        &loaded.members,
        &observed,
        &session.state,
        &targeting.replaces,
    );
    // What the backend cannot do although the file is valid (on a Microsoft tenant: an
    // application user without its app registration's id, P3).
    plan.diagnostics
        .extend(session.backend.check_plan(&loaded.desired, &plan));
    load::locate_diagnostics(&loaded.src, &mut plan.diagnostics);
    plan = if options.backups {
        crate::plan::backups::with_backups(plan, &session.state.pending)
    } else {
        crate::plan::backups::without_backups(plan, &session.state.pending)
    };
    // What the plan shows as destructive: an action apply resumes (polls) destroys nothing
    // more (issue 13 item 2).
    let flags = plan.destructive_flags_resuming(&session.state.pending);
    for (a, d) in plan.actions.iter_mut().zip(flags) {
        a.destructive = d;
    }
    if targeting.is_requested() {
        let known = known_addresses(loaded, &session.state, &plan);
        crate::plan::target::check_known(targeting, known.iter().map(String::as_str))?;
        plan = crate::plan::target::select(plan, targeting)?;
    }
    // Issue 14 item 5: said in the plan; enforced by `apply::Prepared::check`.
    for over in
        crate::plan::safety::over_threshold(&plan, &session.state, loaded.desired.safety.as_ref())
    {
        plan.diagnostics.push(
            crate::diag::Diagnostic::warning(over.collection.to_string(), over.to_string())
                .hint("apply needs --force besides --allow-destroy; check that the file is complete, or raise `safety` in the file"),
        );
    }
    plan.manual = manual_steps(&plan, &observed, &*session.backend);
    Ok(Planned {
        session,
        plan,
        observed,
    })
}

/// The manual steps of `plan` on `backend` (issue 13 item 4): what it cannot do itself.
pub fn manual_steps<P: crate::provider::Provider + ?Sized>(
    plan: &Plan,
    observed: &Tenant,
    backend: &P,
) -> Vec<crate::plan::manual::ManualStep> {
    crate::plan::manual::manual_steps(plan, observed, &|op| backend.manual(op))
}

/// Refuse a `--out` that names a file the run reads or manages: the desired file, the
/// state (its journal, its lock) or the backend's files (the local tenant, its WAL files).
/// A typo there used to replace the state, or the whole tenant database, by the plan
/// (issue 9: no run may lose what it manages).
pub fn check_out(
    out: &Path,
    file: &Path,
    spec: &BackendSpec,
    state_path: &Path,
) -> Result<(), OpsError> {
    use crate::state::{lock, store};
    let mut taken: Vec<(&'static str, PathBuf)> = vec![
        ("the desired file", file.to_path_buf()),
        ("the state", state_path.to_path_buf()),
        ("the state's journal", store::journal_path(state_path)),
        ("the state's lock", lock::lock_path(state_path)),
    ];
    taken.extend(spec.files());
    let target = file_identity(out);
    match taken.into_iter().find(|(_, p)| file_identity(p) == target) {
        Some((what, path)) => Err(OpsError::OutIsTaken {
            out: out.to_path_buf(),
            what,
            path,
        }),
        None => Ok(()),
    }
}

/// Save `plan` (made by [`plan`] from `loaded` with `state` against `spec`, the tenant
/// `observed`) to `out` atomically, with the checksum of its content (`apply PLANFILE`
/// refuses an edited file; issue 9 item 3) and the digests of the tenant's objects (a
/// stale plan says which object changed; issue 11 item 4). Returns what was written.
// Each input is what the plan was made from; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn save(
    out: &Path,
    loaded: &Loaded,
    spec: &BackendSpec,
    state_path: &Path,
    state: &State,
    plan: Plan,
    observed: &Tenant,
) -> Result<SavedPlan, OpsError> {
    let mut saved = SavedPlan {
        version: crate::plan::saved::SAVED_PLAN_VERSION,
        checksum: String::new(),
        backend: spec.as_str().to_string(),
        state_path: state_path.display().to_string(),
        state_lineage: state.lineage.clone(),
        state_serial: state.serial,
        plan,
        protect: loaded.desired.protect_flags(),
        protect_at: protect_locations(loaded),
        digests: Some(Digests::of(observed).sketch()),
        safety: loaded.desired.safety.clone(),
        // Issue 12 item 4: apply feeds them to the backend as the file path does.
        skus: loaded.desired.skus.clone().unwrap_or_default(),
        cloud: spec
            .cloud()
            .filter(|c| *c != Cloud::Public)
            .map(|c| c.name().to_string()),
    };
    // Once, over the whole content (a large plan is serialized for it).
    saved.seal();
    let json = serde_json::to_vec_pretty(&saved).expect("a plan always serializes");
    crate::state::store::write_atomically(out, &json).map_err(|source| OpsError::WritePlan {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(saved)
}

/// Where the file declares `protect: true`, as `FILE:LINE` by instance address (recorded
/// in the state so that the plan error of a protected instance's removal says where it
/// was declared; issue 9 item 8). One pass over the text, only for protected instances.
pub fn protect_locations(loaded: &Loaded) -> BTreeMap<String, String> {
    let paths: Vec<String> = loaded
        .desired
        .protect_flags()
        .iter()
        .filter(|(_, p)| **p)
        .map(|(a, _)| format!("{a}.protect"))
        .collect();
    load::Locator::new(&loaded.src)
        .locate_many(paths)
        .into_iter()
        .map(|(path, l)| {
            let address = path.strip_suffix(".protect").unwrap_or(&path).to_string();
            (address, format!("{}:{}", l.file, l.line))
        })
        .collect()
}

/// Every address the file declares, the state manages or the plan acts on (what a
/// `--target`, `--exclude` or `--replace` may name).
fn known_addresses(
    loaded: &Loaded,
    state: &State,
    plan: &Plan,
) -> std::collections::BTreeSet<String> {
    let d = &loaded.desired;
    let mut known: std::collections::BTreeSet<String> = state.resources.keys().cloned().collect();
    fn under<'m, V>(
        prefix: &'m str,
        map: &'m Option<BTreeMap<String, V>>,
    ) -> impl Iterator<Item = String> + 'm {
        map.iter()
            .flat_map(|m| m.keys())
            .map(move |k| format!("{prefix}.{k}"))
    }
    known.extend(under("users", &d.users));
    known.extend(under("security_groups", &d.security_groups));
    known.extend(under("instances", &d.instances));
    if let Some(m) = &d.licenses {
        known.extend(m.keys().map(|p| format!("licenses.{}", p.as_str())));
    }
    if d.storage.is_some() {
        known.insert("storage".into());
    }
    known.extend(plan.actions.iter().map(|a| a.address.clone()));
    known
}
