//! Apply: execute a [`Plan`] against a [`Provider`], keeping the state file up to date.
//!
//! The engine ([`apply_async`], async on tokio) walks the action graph: an action starts
//! only when every action it depends on succeeded; independent actions run concurrently,
//! with up to `parallelism` requests in flight (futures, not threads). A request carries up
//! to [`RequestFamily::max_ops`] ready actions of one request family
//! ([`Provider::family`]) through [`Provider::execute_batch`]; each action still succeeds
//! or fails on its own. Object references without a remote id are filled in from the state
//! (objects created earlier in the same apply are recorded there as soon as they
//! complete). After each batch of completed actions the state is updated (created and
//! adopted ids recorded, with the further ids the provider reports, deleted addresses
//! removed, `protect` flags recorded, the entries the plan forgets dropped) and handed to
//! the caller's `save` (an atomic write for the state file), so a crash never loses track
//! of a created object.
//!
//! Issue 11 item 4: errors the provider classes as conflict, throttled or transient are
//! retried with backoff (backon's exponential policy, never sooner than the server's
//! `Retry-After`), bounded by [`RetryPolicy`] (attempts and total time); each retry is
//! reported ([`Notice`]). After an *outcome unknown*, apply re-observes the op's scope and
//! decides with [`settle`] (pure) whether it took effect (a create whose natural key now
//! exists is done, with its id); ops that are not safe to repeat are never replayed
//! blindly. An op the service accepts as a long-running operation has its handle recorded
//! in the state ([`crate::state::State::pending`]) *before* apply waits for it; apply then
//! polls it, records the result and clears the entry. A run that finds a pending handle
//! for an action of the same kind at the same address polls it instead of starting the
//! op again (create, copy and reset are not idempotent). An instance create with a copy
//! to follow is preceded by a write-ahead intent ([`crate::state::State::creating`],
//! saved before the request is sent, cleared when the create is recorded): a run killed
//! in between leaves it, and the next plan copies onto the instance it adopts (I11).
//!
//! On a failure the engine finishes what is running, skips every action that depends on
//! the failed one (transitively), continues with the rest, and reports done / failed /
//! skipped. Destructive actions need `allow_destroy`; without it nothing is done. Which
//! actions are destructive, and whether one deletes or overwrites a protected instance, is
//! derived from the plan's ops and the state ([`preflight`], [`check_protected`]), never
//! from flags stored in the plan.
//!
//! This module knows no CLI and no file: the caller provides the state sink and progress.

mod engine;
mod retry;
mod settle;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::domain::op::{ObjKind, Op};
use crate::plan::action::{Action, Plan};
#[cfg(doc)]
use crate::provider::RequestFamily;
use crate::provider::{Outcome, Provider, ProviderError};

use crate::state::store::StateChange;
use crate::state::{Resource, State};
pub use engine::apply_async;
pub use retry::{Notice, NoticeHook, RetryPolicy};
pub use settle::{settle, Settled};

/// Default number of actions run at once.
pub const DEFAULT_PARALLELISM: usize = 10;

/// Checked before each request is started: an error stops the apply like a failed state
/// save (the CLI checks that the run still holds the state lock; issue 9 item 1).
pub type BeforeBatch = std::sync::Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// How to apply.
#[derive(Clone)]
pub struct ApplyOptions {
    /// Actions run at once (at least 1).
    pub parallelism: usize,
    /// Whether destructive actions may run.
    pub allow_destroy: bool,
    /// `protect` flag per instance address of the desired file, recorded in the state.
    pub protect: BTreeMap<String, bool>,
    /// Where the desired file declares `protect: true` (`FILE:LINE`), by instance address,
    /// recorded in the state with the flag (issue 9 item 8). Missing entries keep what the
    /// state has (a saved plan carries no source text).
    pub protect_at: BTreeMap<String, String>,
    /// See [`BeforeBatch`]; none: nothing is checked.
    pub before_batch: Option<BeforeBatch>,
    /// Retries and waits for long-running operations (issue 11 item 4).
    pub retry: RetryPolicy,
    /// Sees each retry, re-observation and long-running operation; none: not reported.
    pub notice: Option<NoticeHook>,
    /// The plan's manual steps (issue 13 item 4), computed from the tenant by `ops`, never
    /// read from a saved plan: these actions are never executed; apply observes the tenant
    /// until each shows done.
    pub manual: Vec<crate::plan::manual::ManualStep>,
    /// How long apply waits for a manual step to show done (0: it stops before it at once,
    /// after doing everything that does not depend on it). Checked every
    /// [`RetryPolicy::poll_interval`].
    pub wait_manual: std::time::Duration,
}

impl std::fmt::Debug for ApplyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("parallelism", &self.parallelism)
            .field("allow_destroy", &self.allow_destroy)
            .field("protect", &self.protect)
            .field("protect_at", &self.protect_at)
            .field("before_batch", &self.before_batch.is_some())
            .field("retry", &self.retry)
            .field("notice", &self.notice.is_some())
            .field("manual", &self.manual.len())
            .field("wait_manual", &self.wait_manual)
            .finish()
    }
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: DEFAULT_PARALLELISM,
            allow_destroy: false,
            protect: BTreeMap::new(),
            protect_at: BTreeMap::new(),
            before_batch: None,
            retry: RetryPolicy::default(),
            notice: None,
            manual: Vec::new(),
            wait_manual: std::time::Duration::ZERO,
        }
    }
}

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// Done.
    Done,
    /// Refused or failed.
    Failed(ProviderError),
    /// A manual step the tenant did not show done within the wait (issue 13 item 4):
    /// nothing was sent; the next apply checks it again.
    Manual {
        /// What a person must do, where.
        instructions: String,
    },
    /// Not started because an action it depends on (directly or not) failed: the id of
    /// that failed action.
    Skipped {
        /// The failed action that caused the skip.
        because_of: usize,
    },
}

/// One progress event: an action finished (or was skipped).
#[derive(Debug, Clone)]
pub struct ProgressEvent<'a> {
    /// Actions finished so far, this one included.
    pub finished: usize,
    /// Actions in the plan.
    pub total: usize,
    /// The action.
    pub action: &'a Action,
    /// How it ended.
    pub outcome: &'a ActionOutcome,
}

impl ProgressEvent<'_> {
    /// A plain progress line: `[12/340] create_user users.ana@x.com ... done`. Addresses and
    /// errors are escaped for the terminal (issue 9 item 6).
    pub fn line(&self) -> String {
        use crate::domain::escape::escape;
        let end = match self.outcome {
            ActionOutcome::Done => "done".to_string(),
            ActionOutcome::Failed(e) => format!("FAILED: {}", escape(&e.to_string())),
            ActionOutcome::Manual { instructions } => {
                format!("WAITING for a manual step: {}", escape(instructions))
            }
            ActionOutcome::Skipped { because_of } => {
                format!("skipped (depends on failed action {because_of})")
            }
        };
        format!(
            "[{}/{}] {} {} ... {end}",
            self.finished,
            self.total,
            self.action.kind.as_str(),
            escape(&self.action.address)
        )
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Outcome per action id (every action of the plan).
    pub outcomes: BTreeMap<usize, ActionOutcome>,
    /// Times the state was saved (each save bumped the serial by one).
    pub state_saves: usize,
    /// State addresses dropped because their object no longer exists ([`Plan::forget`]).
    pub forgotten: Vec<String>,
    /// Requests sent again after a retryable error or an unknown outcome.
    pub retries: usize,
    /// Long-running operations of an earlier run that this run polled instead of starting
    /// the op again, by action id.
    pub resumed: Vec<usize>,
    /// Backups taken (action id, backup id; issue 13 item 3), also recorded in the state.
    pub backups: Vec<(usize, String)>,
}

impl ApplyReport {
    /// Ids of the actions done.
    pub fn done(&self) -> Vec<usize> {
        self.ids(|o| matches!(o, ActionOutcome::Done))
    }
    /// Ids of the actions that failed.
    pub fn failed(&self) -> Vec<usize> {
        self.ids(|o| matches!(o, ActionOutcome::Failed(_)))
    }
    /// Ids of the manual steps not done (issue 13 item 4).
    pub fn manual(&self) -> Vec<usize> {
        self.ids(|o| matches!(o, ActionOutcome::Manual { .. }))
    }
    /// Ids of the actions skipped.
    pub fn skipped(&self) -> Vec<usize> {
        self.ids(|o| matches!(o, ActionOutcome::Skipped { .. }))
    }
    /// Whether every action was done.
    pub fn success(&self) -> bool {
        self.outcomes
            .values()
            .all(|o| matches!(o, ActionOutcome::Done))
    }
    fn ids(&self, f: impl Fn(&ActionOutcome) -> bool) -> Vec<usize> {
        self.outcomes
            .iter()
            .filter(|(_, o)| f(o))
            .map(|(i, _)| *i)
            .collect()
    }
}

/// A destructive action held back by the missing `allow_destroy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// Action id.
    pub id: usize,
    /// Kind, e.g. `delete_instance`.
    pub kind: String,
    /// Address.
    pub address: String,
    /// Why the action is needed.
    pub reason: String,
}

/// Why an apply did not run (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The plan has error diagnostics.
    #[error("the plan has {0} error(s); nothing was done")]
    PlanHasErrors(usize),
    /// The plan is malformed (bad ids, a dependency cycle).
    #[error("the plan is malformed: {0}; nothing was done")]
    InvalidPlan(String),
    /// Destructive actions without `allow_destroy`.
    #[error("the plan has {} destructive action(s) and --allow-destroy was not given; nothing was done:\n{}",
        .0.len(),
        .0.iter().map(|h| format!("  ! {} {} ({})", h.kind, h.address, h.reason)).collect::<Vec<_>>().join("\n"))]
    DestroyNotAllowed(Vec<HeldBack>),
    /// Actions that would delete, reset or overwrite a protected instance (I8, I9, I11).
    #[error("the plan would delete, reset or overwrite {} protected instance(s); nothing was done:\n{}\nSet `protect: false` for the instance and apply that first, then plan again.",
        .0.len(),
        .0.iter().map(|h| format!("  ! {} {} ({})", h.kind, h.address, h.reason)).collect::<Vec<_>>().join("\n"))]
    Protected(Vec<HeldBack>),
    /// A plan that deletes or changes a large share of the managed objects of a kind,
    /// without `--force` (issue 14 item 5).
    #[error("{}; nothing was done. Check that the desired file is complete; run again with --force to apply it anyway (or raise `safety` in the file)", .0.join("; "))]
    LargePlan(Vec<String>),
    /// No async runtime could be started (blocking [`apply`]).
    #[error("cannot start the async runtime: {0}; nothing was done")]
    Runtime(String),
    /// The state could not be saved; the apply stopped after the running actions.
    #[error("cannot save the state: {message}; the apply stopped (objects created since the last save are adopted by natural key on the next plan)")]
    StateSave {
        /// The error.
        message: String,
        /// What was done before the stop.
        report: Box<ApplyReport>,
    },
}

/// Persists the state after a batch: the new state (serial bumped) and the batch's
/// changes; an error stops the apply.
pub type SaveState<'a> = dyn FnMut(&State, &[StateChange]) -> Result<(), String> + 'a;

/// Check a plan before running it: no error diagnostics, well-formed ids and dependencies,
/// no destructive action without `allow_destroy`.
pub fn preflight(
    plan: &Plan,
    allow_destroy: bool,
    pending: &BTreeMap<String, crate::state::PendingOperation>,
) -> Result<(), ApplyError> {
    let errors = plan.diagnostics.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        return Err(ApplyError::PlanHasErrors(errors));
    }
    let n = plan.actions.len();
    for (i, a) in plan.actions.iter().enumerate() {
        if a.id != i {
            return Err(ApplyError::InvalidPlan(format!(
                "action at position {i} has id {}",
                a.id
            )));
        }
        if a.op.kind() != a.kind {
            return Err(ApplyError::InvalidPlan(format!(
                "action {i} is a {} of {} but its operation is a {}",
                a.kind.as_str(),
                a.address,
                a.op.kind().as_str()
            )));
        }
        if let Some(d) = a.depends_on.iter().find(|d| **d >= n || **d == i) {
            return Err(ApplyError::InvalidPlan(format!(
                "action {i} ({} {}) depends on {d}, which is not another action of the plan",
                a.kind.as_str(),
                a.address
            )));
        }
    }
    // Every action must become ready eventually (the planner's Kahn's algorithm).
    if !crate::plan::graph::is_acyclic(&plan.actions) {
        return Err(ApplyError::InvalidPlan(
            "its dependencies form a cycle".into(),
        ));
    }
    if !allow_destroy {
        // Derived from each op, never from the stored `destructive` flag (issue 9 item 3);
        // an action the state holds as pending is polled, not sent (issue 13 item 2).
        let destructive = plan.destructive_flags_resuming(pending);
        let held: Vec<HeldBack> = plan
            .actions
            .iter()
            .filter(|a| destructive[a.id])
            .map(|a| HeldBack {
                id: a.id,
                kind: a.kind.as_str().to_string(),
                address: a.address.clone(),
                reason: a.reason.to_string(),
            })
            .collect();
        if !held.is_empty() {
            return Err(ApplyError::DestroyNotAllowed(held));
        }
    }
    Ok(())
}

/// Refuse a plan that deletes, resets or overwrites a protected instance (I8, I9, I11):
/// one whose address is protected in the state or in `protect` (the desired file's flags),
/// or whose remote id is that of an instance the state protects. The planner already
/// reports these as plan errors; this check holds for any plan, a saved one included,
/// whatever its stored flags and diagnostics say (issue 9 item 3).
pub fn check_protected(
    plan: &Plan,
    state: &State,
    protect: &BTreeMap<String, bool>,
) -> Result<(), ApplyError> {
    let mut protected_ids: Vec<&str> = state
        .resources
        .values()
        .filter(|r| r.kind == ObjKind::Instance && r.protect)
        .map(|r| r.id.as_str())
        .collect();
    protected_ids.sort_unstable();
    let destructive = plan.destructive_flags_resuming(&state.pending);
    let held: Vec<HeldBack> = plan
        .actions
        .iter()
        .filter(|a| destructive[a.id])
        .filter_map(|a| {
            let inst = a.op.destroyed_instance()?;
            let address: &str = &inst.address;
            let why = if let Some(r) = state.resources.get(address).filter(|r| r.protect) {
                // Where it was declared, when apply recorded it (issue 9 item 8).
                match &r.protected_at {
                    Some(at) => format!("the state remembers `protect: true`, declared at {at}"),
                    None => "the state remembers `protect: true`".to_string(),
                }
            } else if protect.get(address).copied().unwrap_or(false) {
                "the file says `protect: true`".to_string()
            } else if inst
                .id
                .as_deref()
                .or_else(|| state.id_of(address))
                .is_some_and(|id| protected_ids.binary_search(&id).is_ok())
            {
                "its id is a protected instance's in the state".to_string()
            } else {
                return None;
            };
            Some(HeldBack {
                id: a.id,
                kind: a.kind.as_str().to_string(),
                address: address.to_string(),
                reason: why,
            })
        })
        .collect();
    if held.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::Protected(held))
    }
}

fn dependents(plan: &Plan) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); plan.actions.len()];
    for a in &plan.actions {
        let mut deps: Vec<usize> = a.depends_on.clone();
        deps.sort_unstable();
        deps.dedup();
        for d in deps {
            out[d].push(a.id);
        }
    }
    out
}

/// Fill the missing remote ids of an op's references from the state.
fn resolve(op: &Op, state: &State) -> Result<Op, ProviderError> {
    let mut op = op.clone();
    for r in op.refs_mut() {
        if r.id.is_none() {
            match state.id_of(&r.address) {
                Some(id) => r.id = Some(id.to_string()),
                None => {
                    return Err(ProviderError::Invalid(format!(
                        "`{}` has no remote id: it is neither in the state nor created by an earlier action",
                        r.address
                    )))
                }
            }
        }
    }
    Ok(op)
}

/// Record a completed action in the state; returns the changes made (none, one, or two
/// for a re-keying adopt).
fn record(
    state: &mut State,
    action: &Action,
    outcome: &Outcome,
    opts: &ApplyOptions,
) -> Vec<StateChange> {
    let mut out: Vec<StateChange> = record_one(state, action, outcome, opts)
        .into_iter()
        .collect();
    // Issue 9 item 2: a re-keyed object leaves its old address (when the state still
    // holds it there), in the same batch as it gets the new one: never two addresses for
    // one object, never none.
    if let Op::Adopt {
        kind,
        id,
        from: Some(from),
    } = &*action.op
    {
        if *from != action.address
            && state
                .resources
                .get(from)
                .is_some_and(|r| r.kind == *kind && r.id == *id)
        {
            let change = StateChange::Remove {
                address: from.clone(),
            };
            change.apply_to(state);
            out.push(change);
        }
    }
    out
}

fn record_one(
    state: &mut State,
    action: &Action,
    outcome: &Outcome,
    opts: &ApplyOptions,
) -> Option<StateChange> {
    let protect = opts.protect.get(&action.address).copied().unwrap_or(false);
    let at = protected_at(state, opts, &action.address, protect);
    // What the object was copied from, and its further ids, stay with it (also when it is
    // re-keyed); the ids the provider reports now are added (issue 11 item 4).
    let kept = |id: &str, from: Option<&String>| {
        let prior = [Some(&action.address), from]
            .into_iter()
            .flatten()
            .filter_map(|a| state.resources.get(a))
            .find(|r| r.id == id);
        let mut ids = prior.map(|r| r.ids.clone()).unwrap_or_default();
        ids.extend(outcome.ids.clone());
        (prior.and_then(|r| r.copied_from.clone()), ids)
    };
    // The entry at the action's address with its ids brought up to date.
    let updated = |r: &Resource, copied_from: Option<String>| StateChange::Set {
        address: action.address.clone(),
        resource: Resource {
            copied_from,
            ids: kept(&r.id, None).1,
            ..r.clone()
        },
    };
    let change = if let Op::BackupInstance { instance, label } = &*action.op {
        // Issue 13 item 3: where to restore from, kept after the instance is gone.
        outcome.ids.get("backup").map(|id| {
            StateChange::Backup(crate::state::Backup {
                address: action.address.clone(),
                instance: instance
                    .id
                    .clone()
                    .or_else(|| state.resources.get(&action.address).map(|r| r.id.clone()))
                    .unwrap_or_default(),
                id: id.clone(),
                label: label.clone(),
            })
        })
    } else if let Op::Adopt { kind, id, from } = &*action.op {
        Some(set(
            action,
            *kind,
            id.clone(),
            protect,
            at,
            kept(id, from.as_ref()),
        ))
    } else if let Some(kind) = action.op.creates() {
        outcome
            .created_id
            .as_ref()
            .map(|id| set(action, kind, id.clone(), protect, at, kept(id, None)))
    } else if let Op::CopyInstance { source, .. } = &*action.op {
        // I11: remember what the instance was copied from (the plan's `copy_from` has acted).
        let key = source
            .address
            .strip_prefix("instances.")
            .unwrap_or(&source.address);
        state
            .resources
            .get(&action.address)
            .map(|r| updated(r, Some(key.to_string())))
    } else if action.op.deletes() && state.resources.contains_key(&action.address) {
        Some(StateChange::Remove {
            address: action.address.clone(),
        })
    } else if !outcome.ids.is_empty() {
        // An op on a managed object that reports further ids (e.g. the user's id inside
        // an instance it was given roles in).
        state
            .resources
            .get(&action.address)
            .map(|r| updated(r, r.copied_from.clone()))
    } else {
        None
    };
    let change = change.filter(|c| match c {
        StateChange::Set { address, resource } => state.resources.get(address) != Some(resource),
        StateChange::Remove { .. }
        | StateChange::Pending { .. }
        | StateChange::Settled { .. }
        | StateChange::Creating { .. }
        | StateChange::Backup(_) => true,
    })?;
    change.apply_to(state);
    Some(change)
}

fn set(
    action: &Action,
    kind: ObjKind,
    id: String,
    protect: bool,
    protected_at: Option<String>,
    (copied_from, ids): (Option<String>, BTreeMap<String, String>),
) -> StateChange {
    let protect = protect && kind == ObjKind::Instance;
    StateChange::Set {
        address: action.address.clone(),
        resource: Resource {
            kind,
            id,
            protect,
            protected_at: protected_at.filter(|_| protect),
            copied_from,
            ids,
        },
    }
}

/// Where `protect: true` of `address` is declared: the desired file's place, else the one
/// the state remembers; none when not protected (issue 9 item 8).
fn protected_at(
    state: &State,
    opts: &ApplyOptions,
    address: &str,
    protect: bool,
) -> Option<String> {
    if !protect {
        return None;
    }
    opts.protect_at.get(address).cloned().or_else(|| {
        state
            .resources
            .get(address)
            .and_then(|r| r.protected_at.clone())
    })
}

/// Record the `protect` flags of the desired file for instances the state manages.
fn record_protect(state: &mut State, opts: &ApplyOptions) -> Vec<StateChange> {
    let mut changes = Vec::new();
    for (addr, flag) in &opts.protect {
        if let Some(r) = state.resources.get(addr) {
            let at = protected_at(state, opts, addr, *flag);
            if r.kind == ObjKind::Instance && (r.protect != *flag || r.protected_at != at) {
                let mut resource = r.clone();
                resource.protect = *flag;
                resource.protected_at = at;
                changes.push(StateChange::Set {
                    address: addr.clone(),
                    resource,
                });
            }
        }
    }
    for c in &changes {
        c.apply_to(state);
    }
    changes
}

/// Apply `plan` with `provider`, blocking: [`apply_async`] on a current-thread tokio
/// runtime of its own (for callers without one; must not be called from inside a runtime).
/// `state` is updated in place; `save` is called after each batch of completed actions that
/// changed it, with the new state (serial already bumped by one) and the batch's changes,
/// and must persist them (e.g. [`crate::state::store::StateWriter::write`]). `progress`
/// sees every finished or skipped action.
pub fn apply(
    plan: &Plan,
    provider: &dyn Provider,
    state: &mut State,
    save: &mut SaveState<'_>,
    opts: &ApplyOptions,
    progress: &dyn Fn(&ProgressEvent<'_>),
) -> Result<ApplyReport, ApplyError> {
    crate::provider::block_on(apply_async(plan, provider, state, save, opts, progress))
        .map_err(|e| ApplyError::Runtime(e.to_string()))?
}

/// Record an action's outcome, release its dependents or skip them (transitively).
#[allow(clippy::too_many_arguments)]
fn finish(
    plan: &Plan,
    id: usize,
    outcome: ActionOutcome,
    dependents: &[Vec<usize>],
    waiting: &mut [usize],
    ready: &mut BTreeSet<usize>,
    report: &mut ApplyReport,
    finished: &mut usize,
    progress: &dyn Fn(&ProgressEvent<'_>),
) {
    let total = plan.actions.len();
    let ok = matches!(outcome, ActionOutcome::Done);
    progress(&ProgressEvent {
        finished: *finished,
        total,
        action: &plan.actions[id],
        outcome: &outcome,
    });
    report.outcomes.insert(id, outcome);
    if ok {
        for &d in &dependents[id] {
            waiting[d] -= 1;
            if waiting[d] == 0 && !report.outcomes.contains_key(&d) {
                ready.insert(d);
            }
        }
        return;
    }
    // Skip every action that depends on the failed one, directly or not.
    let mut queue: VecDeque<usize> = dependents[id].iter().copied().collect();
    while let Some(d) = queue.pop_front() {
        if report.outcomes.contains_key(&d) {
            continue;
        }
        ready.remove(&d);
        let skipped = ActionOutcome::Skipped { because_of: id };
        *finished += 1;
        progress(&ProgressEvent {
            finished: *finished,
            total,
            action: &plan.actions[d],
            outcome: &skipped,
        });
        report.outcomes.insert(d, skipped);
        queue.extend(dependents[d].iter().copied());
    }
}
