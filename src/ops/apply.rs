//! `apply`: a plan made now from a desired file ([`prepare_file`]) or saved earlier
//! ([`prepare_saved`], refused when it does not fit the backend, the state or the tenant
//! any more), checked before approval ([`Prepared::check`]) and run ([`Prepared::run`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::apply::{self, ApplyError, ApplyOptions, ApplyReport, ProgressEvent};
use crate::desired::load::Loaded;
use crate::ops::backend::{file_identity, BackendSpec, OpenBackend};
use crate::ops::session::{Operation, Session, StateSource, Warn};
use crate::ops::{FoldError, OpsError};
use crate::plan::saved::{Digests, SavedPlan};
use crate::plan::Plan;
use crate::provider::http::cloud::Cloud;
use crate::state::{store, State};

/// A plan ready to be applied in its session (the state lock held).
#[derive(Debug)]
pub struct Prepared {
    /// The locked state and the backend.
    pub session: Session,
    /// The plan.
    pub plan: Plan,
    /// `protect` flags of the desired file by instance address, recorded in the state.
    pub protect: BTreeMap<String, bool>,
    /// Where the desired file declares `protect: true` (`FILE:LINE`), by address.
    pub protect_at: BTreeMap<String, String>,
    /// The file's large-plan thresholds (issue 14 item 5).
    pub safety: Option<crate::desired::model::Safety>,
    /// The tenant domain the plan is for (a fresh tenant takes it; see
    /// [`crate::ops::Backend::expect_domain`]).
    pub domain: String,
    /// For a saved refresh-only plan: the tenant it was checked against (same managed
    /// fields as when it was made), for [`Prepared::accept_drift`].
    pub observed: Option<crate::observed::Tenant>,
}

/// How to run a prepared plan.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Actions run at once.
    pub parallelism: usize,
    /// Whether destructive actions may run.
    pub allow_destroy: bool,
    /// Where retries and long-running operations are reported (issue 11 item 4).
    pub notice: Option<crate::apply::NoticeHook>,
    /// How long to wait for each manual step to show done (issue 13 item 4); zero: stop
    /// before it once everything else is done.
    pub wait_manual: std::time::Duration,
    /// How long to wait for long-running operations (issue 13 item 1): `(None, d)` sets
    /// every kind, `(Some(kind), d)` one kind; later entries win. Empty: the defaults of
    /// [`crate::apply::RetryPolicy`].
    pub timeouts: Vec<(Option<crate::domain::op::ActionKind>, std::time::Duration)>,
}

/// Plan the desired file `loaded` against the backend (a [`BackendSpec`] or a backend
/// opened already) and the state, in a session that holds the state lock until the plan
/// is applied.
pub fn prepare_file(
    loaded: &Loaded,
    backend: impl OpenBackend,
    state_path: &Path,
    options: crate::ops::plan::PlanOptions,
    warn: Warn<'_>,
) -> Result<Prepared, OpsError> {
    prepare_file_targeted(
        loaded,
        backend,
        state_path,
        options,
        &crate::plan::target::Targeting::default(),
        warn,
    )
}

/// [`prepare_file`] with `--target` / `--exclude` / `--replace` (issue 14 item 4; see
/// [`crate::ops::plan::plan_targeted`]).
pub fn prepare_file_targeted(
    loaded: &Loaded,
    backend: impl OpenBackend,
    state_path: &Path,
    options: crate::ops::plan::PlanOptions,
    targeting: &crate::plan::target::Targeting,
    warn: Warn<'_>,
) -> Result<Prepared, OpsError> {
    let planned = crate::ops::plan::plan_targeted(
        loaded,
        backend,
        state_path,
        Operation::Apply,
        options,
        targeting,
        warn,
    )?;
    Ok(Prepared {
        session: planned.session,
        plan: planned.plan,
        protect: loaded.desired.protect_flags(),
        protect_at: crate::ops::plan::protect_locations(loaded),
        safety: loaded.desired.safety.clone(),
        domain: loaded.desired.tenant.clone(),
        observed: None,
    })
}

/// [`prepare_file`] for `apply --refresh-only` (issue 14 item 2): the plan is its drift
/// only ([`crate::plan::drift::refresh_only`]); the tenant observed for it is returned for
/// [`Prepared::accept_drift`].
pub fn prepare_refresh_only(
    loaded: &Loaded,
    backend: impl OpenBackend,
    state_path: &Path,
    warn: Warn<'_>,
) -> Result<(Prepared, crate::observed::Tenant), OpsError> {
    let planned = crate::ops::plan::plan(
        loaded,
        backend,
        state_path,
        Operation::Apply,
        crate::ops::plan::PlanOptions { backups: false },
        warn,
    )?;
    Ok((
        Prepared {
            session: planned.session,
            plan: crate::plan::drift::refresh_only(planned.plan),
            protect: loaded.desired.protect_flags(),
            protect_at: crate::ops::plan::protect_locations(loaded),
            safety: loaded.desired.safety.clone(),
            domain: loaded.desired.tenant.clone(),
            observed: None,
        },
        planned.observed,
    ))
}

/// Read the plan saved in `planfile` and open its session: the backend and the state it
/// was made with (`backend` and `state_path` may name them another way, not other ones;
/// issue 9 items 1 and 3). Refused when the file is not a saved plan, was edited (checksum),
/// or is stale: the state's lineage or serial, or the tenant's managed fields changed since
/// (the message names the objects that changed; issue 11 item 4).
pub fn prepare_saved(
    planfile: &Path,
    backend: Option<&str>,
    cloud: Option<Cloud>,
    state_path: Option<&Path>,
    warn: Warn<'_>,
) -> Result<Prepared, OpsError> {
    let shown = planfile.display().to_string();
    let text = std::fs::read_to_string(planfile).map_err(|source| OpsError::ReadPlan {
        path: planfile.to_path_buf(),
        source,
    })?;
    let saved = SavedPlan::from_json(&text, &shown)?;
    drop(text);
    fn refuse<T>(message: String) -> Result<T, OpsError> {
        Err(OpsError::SavedPlanDoesNotFit(message))
    }
    // The cloud the plan was made in (a `microsoft` backend's `--cloud`; public when not
    // recorded): apply reaches that cloud's endpoints, and refuses another `--cloud`.
    let saved_cloud = match &saved.cloud {
        Some(name) => name
            .parse::<Cloud>()
            .map_err(|e| OpsError::SavedPlanDoesNotFit(format!("{shown}: {e}")))?,
        None => Cloud::Public,
    };
    if let Some(given) = cloud.filter(|c| *c != saved_cloud) {
        return refuse(format!(
            "the saved plan {shown} was made in the `{}` cloud, not `{}`: apply it without --cloud (or with --cloud {}), or plan again in that cloud",
            saved_cloud.name(),
            given.name(),
            saved_cloud.name()
        ));
    }
    // Two fresh tenants, or two new states, look alike to the checks below.
    let spec = match backend {
        Some(given) => {
            let spec = BackendSpec::parse_in(Some(given), saved_cloud)?;
            if !spec.same_tenant(&BackendSpec::parse_in(Some(&saved.backend), saved_cloud)?) {
                return refuse(format!(
                    "the saved plan {shown} was made against the backend `{}`, not `{given}`: a plan is applied to the tenant it was made for; run `crmctl plan --backend {given} --out PLANFILE` to plan for that one",
                    saved.backend
                ));
            }
            spec
        }
        None => BackendSpec::parse_in(Some(&saved.backend), saved_cloud)?,
    }
    // The file's SKU overrides recorded under the checksum (issue 12 item 4, T2): the
    // licence assigned is the SKU the plan was made with, not the built-in one.
    .with_skus(Some(&saved.skus));
    if let Some(given) = state_path {
        if file_identity(given) != file_identity(Path::new(&saved.state_path)) {
            return refuse(format!(
                "the saved plan {shown} was made with the state {}, not {}: run `crmctl plan --state {} --out PLANFILE` to plan with that one",
                saved.state_path,
                given.display(),
                given.display()
            ));
        }
    }
    let state_path: PathBuf = state_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(&saved.state_path));
    let mut check_state = |state: Option<State>| -> Result<State, OpsError> {
        let state = match state {
            Some(s) => s,
            // The plan was made without a state file and none was written since.
            None if saved.state_serial == 0 => State::empty(saved.state_lineage.clone()),
            None => {
                return refuse(format!(
                    "the saved plan {shown} is stale: it was made with state serial {} but the state {} no longer exists; run `crmctl plan` again",
                    saved.state_serial,
                    state_path.display()
                ))
            }
        };
        if state.lineage != saved.state_lineage {
            return refuse(format!(
                "the saved plan {shown} is stale: it was made for state lineage {} but {} has lineage {}; run `crmctl plan` again",
                saved.state_lineage,
                state_path.display(),
                state.lineage
            ));
        }
        if state.serial != saved.state_serial {
            return refuse(format!(
                "the saved plan {shown} is stale: the state {} changed since it was made (serial {} -> {}); run `crmctl plan` again",
                state_path.display(),
                saved.state_serial,
                state.serial
            ));
        }
        Ok(state)
    };
    let (session, observed) = Session::open_with(
        &spec,
        &state_path,
        Operation::Apply,
        StateSource::Checked(&mut check_state),
        warn,
    )?;
    // Over the managed fields only: a volatile one (storage used) never makes a plan
    // stale (issue 11 item 4).
    let now = Digests::of(&observed);
    if now.fingerprint() != saved.plan.fingerprint {
        let what = match &saved.digests {
            Some(then) => then.describe_changes(&now, &observed, &session.state),
            None => String::new(),
        };
        return refuse(format!(
            "the saved plan {shown} is stale: the tenant {} changed since it was made ({what}fingerprint {} -> {}); run `crmctl plan` again",
            spec.as_str(),
            short(&saved.plan.fingerprint),
            short(now.fingerprint())
        ));
    }
    // Never read from the file: what a person must do is decided by this backend, now.
    let manual = crate::ops::plan::manual_steps(&saved.plan, &observed, &*session.backend);
    // A saved refresh-only plan accepts the drift of this tenant (issue 14 item 2).
    let observed = saved.plan.refresh_only.then_some(observed);
    let SavedPlan {
        mut plan,
        protect,
        protect_at,
        safety,
        ..
    } = saved;
    plan.manual = manual;
    // What the plan shows as destructive is derived from its ops, like the gate.
    let destructive = plan.destructive_flags();
    for (a, d) in plan.actions.iter_mut().zip(destructive) {
        a.destructive = d;
    }
    let domain = plan.tenant.clone();
    Ok(Prepared {
        session,
        plan,
        protect,
        protect_at,
        safety,
        domain,
        observed,
    })
}

fn short(fp: &str) -> &str {
    &fp[..fp.len().min(12)]
}

impl Prepared {
    /// The checks before approval: no plan errors, a well-formed plan, no destructive
    /// action without `allow_destroy`, nothing that deletes, resets or overwrites a
    /// protected instance (I8, I9, I11). [`Prepared::run`] checks them again.
    pub fn check(&self, allow_destroy: bool, force: bool) -> Result<(), ApplyError> {
        apply::preflight(&self.plan, allow_destroy, &self.session.state.pending)?;
        apply::check_protected(&self.plan, &self.session.state, &self.protect)?;
        // Issue 14 item 5: computed again here, never read from the plan's warnings.
        let over = crate::plan::safety::over_threshold(
            &self.plan,
            &self.session.state,
            self.safety.as_ref(),
        );
        if !over.is_empty() && !force {
            return Err(ApplyError::LargePlan(
                over.iter().map(ToString::to_string).collect(),
            ));
        }
        Ok(())
    }

    /// Accept the drift into the state without touching the tenant (`apply --refresh-only`,
    /// issue 14 item 2): the state records `observed` (the tenant the plan was made
    /// against) as what the last apply left, and drops managed objects gone from it. No
    /// provider call. Returns how many state entries were dropped.
    pub fn accept_drift(&mut self, observed: &crate::observed::Tenant) -> Result<usize, OpsError> {
        let Session {
            state,
            state_path,
            lock,
            ..
        } = &mut self.session;
        let before = state.clone();
        let dropped = crate::plan::drift::accept(state, observed);
        if *state != before {
            state.serial += 1;
            let fold = |e| OpsError::FoldState {
                path: state_path.clone(),
                source: Box::new(e),
            };
            lock.check(state_path)
                .map_err(|e| fold(FoldError::from(e)))?;
            store::StateWriter::new(state_path)
                .compact(state)
                .map_err(|e| fold(FoldError::from(e)))?;
        }
        Ok(dropped)
    }

    /// Apply the plan, writing the state after each batch (journal) and folding the
    /// journal into the state file at the end (also after a failure), while the run still
    /// holds its lock (issue 9 item 1: before each state write and each request the lock
    /// is checked; a lost lock stops writing the state and starting actions). `progress`
    /// sees every finished or skipped action. An empty plan still records changed
    /// `protect` flags.
    pub fn run(
        &mut self,
        opts: RunOptions,
        progress: &dyn Fn(&ProgressEvent<'_>),
    ) -> Result<ApplyReport, OpsError> {
        let Session {
            backend,
            state,
            state_path,
            lock,
        } = &mut self.session;
        let lock = &*lock;
        backend.expect_domain(&self.domain)?;
        let lost = Arc::new(AtomicBool::new(false));
        let check_lock = {
            let lost = lost.clone();
            let lock_path = crate::state::lock::lock_path(state_path);
            let state_path = state_path.clone();
            let id = lock.info().id.clone();
            move || -> Result<(), String> {
                crate::state::lock::check_held(&lock_path, &id, &state_path).map_err(|e| {
                    lost.store(true, Ordering::Relaxed);
                    format!(
                        "{e}; the actions reported done are done in the tenant, the last of them possibly not recorded in the state; when no other run is active, run `crmctl plan` (objects this run made are found by natural key and adopted)"
                    )
                })
            }
        };
        let check_lock = Arc::new(check_lock);
        let apply_opts = ApplyOptions {
            parallelism: opts.parallelism,
            allow_destroy: opts.allow_destroy,
            protect: self.protect.clone(),
            protect_at: self.protect_at.clone(),
            before_batch: Some(check_lock.clone()),
            notice: opts.notice.clone(),
            manual: self.plan.manual.clone(),
            wait_manual: opts.wait_manual,
            retry: {
                let mut retry = crate::apply::RetryPolicy::default();
                for (kind, wait) in &opts.timeouts {
                    retry.set_wait(*kind, *wait);
                }
                retry
            },
        };
        let mut writer = store::StateWriter::new(state_path);
        let mut save = |s: &State, changes: &[store::StateChange]| {
            check_lock()?;
            writer.write(s, changes).map_err(|e| e.to_string())
        };
        // The one call of the workflows into the apply engine.
        let result = apply::apply(
            &self.plan,
            &**backend,
            state,
            &mut save,
            &apply_opts,
            progress,
        );
        // Fold the journal into the state file (also after a failed apply), unless the
        // lock was lost: the state then belongs to whoever holds it now.
        let folded = match lock.check(state_path) {
            Ok(()) if !lost.load(Ordering::Relaxed) => {
                // Issue 14 item 2: what this apply left, for the next plan's drift. One
                // read of the tenant after a successful apply; a failed read costs only
                // the drift report of objects changed by this run.
                let recorded = result.is_ok()
                    && match crate::ops::session::observe(&**backend) {
                        // A targeted apply records only what it touched: the drift of
                        // the objects outside its targets stays reported (issue 14 item 4).
                        Ok(now) => match &self.plan.targeting {
                            Some(_) => {
                                let touched = touched_addresses(&self.plan);
                                crate::plan::drift::record_only(state, &now, |a| {
                                    touched.contains(a)
                                })
                            }
                            None => crate::plan::drift::record(state, &now),
                        },
                        Err(e) => {
                            tracing::warn!("the tenant could not be read after apply: {e}");
                            false
                        }
                    };
                if recorded {
                    state.serial += 1;
                    writer.compact(state).map_err(FoldError::from)
                } else {
                    writer.finish(state).map_err(FoldError::from)
                }
            }
            Ok(()) => Ok(()),
            Err(e) => Err(FoldError::from(e)),
        };
        match result {
            Ok(report) => {
                folded.map_err(|source| OpsError::FoldState {
                    path: state_path.clone(),
                    source: Box::new(source),
                })?;
                Ok(report)
            }
            Err(ApplyError::StateSave { message, report }) => Err(OpsError::StateSave {
                path: state_path.clone(),
                message,
                report,
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// The addresses a (targeted) plan acts on: its actions', the instances of its role
/// changes, and the old addresses its re-keyings drop.
fn touched_addresses(plan: &Plan) -> std::collections::BTreeSet<String> {
    use crate::domain::op::Op;
    let mut out = std::collections::BTreeSet::new();
    for a in &plan.actions {
        out.insert(a.address.clone());
        match &*a.op {
            Op::AssignRoles { instance, .. } | Op::RemoveRoles { instance, .. } => {
                out.insert(instance.address.to_string());
            }
            Op::Adopt {
                from: Some(from), ..
            } => {
                out.insert(from.clone());
            }
            _ => {}
        }
    }
    out
}
