//! The async driver of apply (issue 11 item 4): requests, retries, re-observations and
//! long-running operations as futures on one task; the state is changed only here,
//! between them.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use super::retry::{caught, Notice, Track};
use super::settle::{settle, Settled};
use super::{
    check_protected, dependents, finish, preflight, record, record_protect, resolve, ActionOutcome,
    ApplyError, ApplyOptions, ApplyReport, ProgressEvent, SaveState,
};
use crate::domain::op::{ActionKind, ObjKind, Op};
use crate::observed::Tenant;
use crate::plan::action::Plan;
use crate::provider::{
    ErrorClass, Executed, OperationHandle, Outcome, Polled, Provider, ProviderError, Scope,
};
use crate::state::store::StateChange;
use crate::state::{PendingOperation, State};

/// What one in-flight future ended with.
enum Step {
    /// A request ended: each of its actions' results.
    Executed(Vec<(usize, Result<Executed, ProviderError>)>),
    /// An action's scope was observed again after an unknown outcome (`error`); `delay`
    /// is the wait before a replay.
    Observed {
        id: usize,
        error: ProviderError,
        delay: Duration,
        observed: Result<Tenant, ProviderError>,
    },
    /// A long-running operation ended, or apply stopped waiting for it.
    Polled(usize, PollEnd),
    /// The tenant was observed for the manual step of action `id` (issue 13 item 4).
    Manual {
        id: usize,
        observed: Result<Tenant, ProviderError>,
    },
}

enum PollEnd {
    Done(Outcome),
    Failed(ProviderError),
    /// Still running when apply stopped waiting (the handle stays in the state).
    StillRunning(ProviderError),
}

type Fut<'a> = Pin<Box<dyn Future<Output = Step> + 'a>>;

const PANICKED: &str = "the provider panicked";

/// One request of `batch` (action id, resolved op), after `delay`.
fn request<'a>(provider: &'a dyn Provider, batch: Vec<(usize, Op)>, delay: Duration) -> Fut<'a> {
    Box::pin(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (ids, ops): (Vec<usize>, Vec<Op>) = batch.into_iter().unzip();
        let results = match ops.as_slice() {
            [op] => caught(|| provider.execute(op)).await.map(|r| vec![r]),
            ops => caught(|| provider.execute_batch(ops)).await,
        };
        let mut results = results.unwrap_or_default();
        let missing = if results.is_empty() {
            PANICKED
        } else {
            "the provider returned no result for this op"
        };
        results.resize_with(ids.len(), || Err(ProviderError::Backend(missing.into())));
        Step::Executed(ids.into_iter().zip(results).collect())
    })
}

/// Observe the scope of action `id`'s op again after `error` (an unknown outcome). A
/// throttled, conflicting or transient answer to that read is retried as a request is
/// (bounded by `policy`): a busy service must not turn a settleable op into a failure.
fn reobserve<'a>(
    provider: &'a dyn Provider,
    plan: &'a Plan,
    policy: &'a super::RetryPolicy,
    id: usize,
    error: ProviderError,
    delay: Duration,
) -> Fut<'a> {
    Box::pin(async move {
        let scope = Scope::for_op(&plan.actions[id].op);
        let mut track = Track::new(policy);
        let observed = loop {
            let read = caught(|| provider.observe(&scope))
                .await
                .unwrap_or_else(|| Err(ProviderError::Backend(PANICKED.into())));
            match read {
                Err(e) if e.class().retryable() => match track.next(&e, policy) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => break Err(e),
                },
                other => break other,
            }
        };
        Step::Observed {
            id,
            error,
            delay,
            observed,
        }
    })
}

/// Observe the scope of the manual step of action `id` after `delay` (issue 13 item 4).
fn manual_check<'a>(
    provider: &'a dyn Provider,
    plan: &'a Plan,
    id: usize,
    delay: Duration,
) -> Fut<'a> {
    Box::pin(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let scope = Scope::for_op(&plan.actions[id].op);
        let observed = caught(|| provider.observe(&scope))
            .await
            .unwrap_or_else(|| Err(ProviderError::Backend(PANICKED.into())));
        Step::Manual { id, observed }
    })
}

/// Poll the long-running operation of action `id` until it ends, retrying retryable poll
/// errors, for at most [`super::RetryPolicy::wait_for`] its kind; a [`Notice::Running`]
/// after each poll that finds it still running.
fn poller<'a>(
    provider: &'a dyn Provider,
    plan: &'a Plan,
    opts: &'a ApplyOptions,
    id: usize,
    handle: OperationHandle,
) -> Fut<'a> {
    Box::pin(async move {
        let policy = &opts.retry;
        let start = tokio::time::Instant::now();
        let mut wait = handle.retry_after.unwrap_or(policy.poll_interval);
        let mut track: Option<Track> = None;
        let mut attempt = 1;
        let action = &plan.actions[id];
        let limit = policy.wait_for(action.kind);
        loop {
            if start.elapsed() + wait > limit {
                return Step::Polled(
                    id,
                    PollEnd::StillRunning(ProviderError::OutcomeUnknown(format!(
                        "operation {} still running after {} (the wait for {} is {}; `apply --timeout {}=DURATION` sets it); its handle stays in the state and the next apply polls it",
                        handle.id,
                        super::retry::short_duration(start.elapsed()),
                        action.kind.as_str(),
                        super::retry::short_duration(limit),
                        action.kind.as_str(),
                    ))),
                );
            }
            tokio::time::sleep(wait).await;
            let polled = caught(|| provider.poll(&handle))
                .await
                .unwrap_or_else(|| Err(ProviderError::Backend(PANICKED.into())));
            let e = match polled {
                Ok(Polled::Running { retry_after }) => {
                    track = None;
                    wait = retry_after.unwrap_or(policy.poll_interval);
                    if let Some(hook) = &opts.notice {
                        hook(&Notice::Running {
                            action,
                            handle: &handle,
                            elapsed: start.elapsed(),
                            limit,
                        });
                    }
                    continue;
                }
                Ok(Polled::Done(o)) => return Step::Polled(id, PollEnd::Done(o)),
                Ok(Polled::Failed(e)) => return Step::Polled(id, PollEnd::Failed(e)),
                Err(e) => e,
            };
            // A poll only reads: any error but a permanent one is worth another poll.
            if e.class() == ErrorClass::Permanent {
                return Step::Polled(id, PollEnd::Failed(e));
            }
            match track
                .get_or_insert_with(|| Track::new(policy))
                .next(&e, policy)
            {
                Some(d) => {
                    attempt += 1;
                    if let Some(hook) = &opts.notice {
                        hook(&Notice::Retry {
                            action,
                            attempt,
                            delay: d,
                            error: &e,
                        });
                    }
                    wait = d;
                }
                None => return Step::Polled(id, PollEnd::StillRunning(e)),
            }
        }
    })
}

/// Wait until at least one future ends; return every one that has.
async fn next_steps(lists: [&mut Vec<Fut<'_>>; 2]) -> Vec<Step> {
    let mut lists = lists;
    std::future::poll_fn(|cx| {
        let mut out = Vec::new();
        for list in lists.iter_mut() {
            let mut i = 0;
            while i < list.len() {
                if let Poll::Ready(step) = list[i].as_mut().poll(cx) {
                    out.push(step);
                    drop(list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        if out.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(out)
        }
    })
    .await
}

/// The walk of the action graph: what waits, what is ready, what ended.
struct Walk<'p> {
    plan: &'p Plan,
    progress: &'p dyn Fn(&ProgressEvent<'_>),
    dependents: Vec<Vec<usize>>,
    waiting: Vec<usize>,
    ready: BTreeSet<usize>,
    report: ApplyReport,
    finished: usize,
}

impl<'p> Walk<'p> {
    fn new(plan: &'p Plan, progress: &'p dyn Fn(&ProgressEvent<'_>)) -> Walk<'p> {
        let waiting: Vec<usize> = plan
            .actions
            .iter()
            .map(|a| a.depends_on.iter().collect::<BTreeSet<_>>().len())
            .collect();
        Walk {
            plan,
            progress,
            dependents: dependents(plan),
            ready: (0..waiting.len()).filter(|i| waiting[*i] == 0).collect(),
            waiting,
            report: ApplyReport::default(),
            finished: 0,
        }
    }

    /// Action `id` ended: report it, release or skip its dependents.
    fn end(&mut self, id: usize, outcome: ActionOutcome) {
        self.finished += 1;
        finish(
            self.plan,
            id,
            outcome,
            &self.dependents,
            &mut self.waiting,
            &mut self.ready,
            &mut self.report,
            &mut self.finished,
            self.progress,
        );
    }

    /// The ops of `ids` with their references' ids from the state; an action whose op
    /// cannot be resolved fails at once.
    fn resolved(
        &mut self,
        ids: impl IntoIterator<Item = usize>,
        state: &State,
    ) -> Vec<(usize, Op)> {
        let mut batch = Vec::new();
        for id in ids {
            match resolve(&self.plan.actions[id].op, state) {
                Ok(op) => batch.push((id, op)),
                Err(e) => self.end(id, ActionOutcome::Failed(e)),
            }
        }
        batch
    }
}

/// Apply `plan` with `provider` (see [`super::apply`] for the arguments and the module
/// docs for the behaviour). Needs a tokio runtime with time enabled.
pub async fn apply_async(
    plan: &Plan,
    provider: &dyn Provider,
    state: &mut State,
    save: &mut SaveState<'_>,
    opts: &ApplyOptions,
    progress: &dyn Fn(&ProgressEvent<'_>),
) -> Result<ApplyReport, ApplyError> {
    preflight(plan, opts.allow_destroy, &state.pending)?;
    check_protected(plan, state, &opts.protect)?;
    let n = plan.actions.len();
    let mut walk = Walk::new(plan, progress);
    let mut pending: Vec<StateChange> = Vec::new();
    let mut save_error: Option<String> = None;
    let notice = |n: Notice<'_>| {
        if let Some(hook) = &opts.notice {
            hook(&n);
        }
    };
    if !plan.tenant.is_empty() && n > 0 {
        state.tenant = plan.tenant.clone();
    }
    // Entries whose object is gone (issue 9 item 5), saved with the first batch; only
    // while the state still holds the id the plan saw.
    for f in &plan.forget {
        if state
            .resources
            .get(&f.address)
            .is_some_and(|r| r.id == f.id && r.kind == f.kind)
        {
            let change = StateChange::Remove {
                address: f.address.clone(),
            };
            change.apply_to(state);
            pending.push(change);
            walk.report.forgotten.push(f.address.clone());
        }
    }

    let mut flush =
        |state: &mut State, pending: &mut Vec<StateChange>, report: &mut ApplyReport| {
            if pending.is_empty() {
                return Ok(());
            }
            state.serial += 1;
            match save(state, pending) {
                Ok(()) => {
                    report.state_saves += 1;
                    pending.clear();
                    Ok(())
                }
                Err(e) => {
                    state.serial -= 1;
                    Err(e)
                }
            }
        };

    let workers = opts.parallelism.clamp(1, n.max(1));
    let families: Vec<_> = plan
        .actions
        .iter()
        .map(|a| provider.family(&a.op))
        .collect();
    let mut requests: Vec<Fut<'_>> = Vec::new();
    let mut polls: Vec<Fut<'_>> = Vec::new();
    let mut tracks: HashMap<usize, Track> = HashMap::new();
    // Manual steps (issue 13 item 4): never executed; the tenant is observed until each
    // shows done, for at most `wait_manual` from when the step became ready.
    let manual: HashMap<usize, &crate::plan::manual::ManualStep> = opts
        .manual
        .iter()
        .filter(|m| m.action < n)
        .map(|m| (m.action, m))
        .collect();
    let mut manual_since: HashMap<usize, tokio::time::Instant> = HashMap::new();

    // Operations an earlier run started: polled again, never started twice; those the
    // plan has no action of that kind for are dropped (the plan sees the tenant as it is).
    let mut resumed = vec![false; n];
    // The addresses a copy lands on (a create there records its intent first).
    let copy_targets: std::collections::HashSet<&str> = plan
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::CopyInstance)
        .map(|a| a.address.as_str())
        .collect();
    if !state.pending.is_empty() {
        let by_address: HashMap<(&str, _), usize> = plan
            .actions
            .iter()
            .map(|a| ((a.address.as_str(), a.kind), a.id))
            .collect();
        for (address, op) in state.pending.clone() {
            // A create whose instance the plan adopts (found by URL name: the killed run's
            // create made it) is waited for as that adoption: the instance is recorded
            // once it is ready, and what depends on it waits (issue 13 item 2).
            let found = by_address.get(&(address.as_str(), op.kind)).or_else(|| {
                (op.kind == ActionKind::ConfigureInstance)
                    .then(|| by_address.get(&(address.as_str(), ActionKind::Adopt)))
                    .flatten()
            });
            match found {
                Some(&id) => {
                    resumed[id] = true;
                    walk.ready.remove(&id);
                    walk.report.resumed.push(id);
                    notice(Notice::Resumed {
                        action: &plan.actions[id],
                        handle: &op.handle,
                    });
                    polls.push(poller(provider, plan, opts, id, op.handle));
                }
                None => {
                    notice(Notice::Dropped {
                        address: &address,
                        handle: &op.handle,
                    });
                    let change = StateChange::Settled { address };
                    change.apply_to(state);
                    pending.push(change);
                }
            }
        }
    }

    loop {
        // Start what is ready (lowest id first, with the ready ops of its request family),
        // unless a state save failed.
        while save_error.is_none() && requests.len() < workers && !walk.ready.is_empty() {
            if let Some(check) = &opts.before_batch {
                if let Err(e) = check() {
                    save_error = Some(e);
                    break;
                }
            }
            let Some(first) = walk.ready.pop_first() else {
                break;
            };
            if resumed[first] {
                continue;
            }
            if let Some(m) = manual.get(&first) {
                notice(Notice::Manual {
                    action: &plan.actions[first],
                    instructions: &m.instructions,
                    wait: opts.wait_manual,
                });
                manual_since.insert(first, tokio::time::Instant::now());
                polls.push(manual_check(provider, plan, first, Duration::ZERO));
                continue;
            }
            let family = families[first];
            let mut ids = vec![first];
            if family.max_ops > 1 {
                // Look a bounded way ahead: O(max_ops) per request, however mixed the
                // ready set is.
                let more: Vec<usize> = walk
                    .ready
                    .iter()
                    .copied()
                    .take(4 * family.max_ops)
                    .filter(|i| !resumed[*i] && families[*i] == family)
                    .take(family.max_ops - 1)
                    .collect();
                for i in &more {
                    walk.ready.remove(i);
                }
                ids.extend(more);
            }
            let batch = walk.resolved(ids, state);
            // Write-ahead intent (I11, issue 13 item 2): an instance create with a copy to
            // follow is recorded as being created, durably, before it is sent; a run killed
            // before its handle or id is saved leaves the intent, and the next plan copies
            // onto the instance it finds by URL name instead of only adopting it.
            for (id, _) in &batch {
                let action = &plan.actions[*id];
                if action.op.creates() == Some(ObjKind::Instance)
                    && copy_targets.contains(action.address.as_str())
                    && !state.creating.contains(&action.address)
                {
                    let change = StateChange::Creating {
                        address: action.address.clone(),
                    };
                    change.apply_to(state);
                    pending.push(change);
                }
            }
            if let Err(e) = flush(state, &mut pending, &mut walk.report) {
                for (id, _) in batch {
                    let e = ProviderError::Backend(format!(
                        "not sent: the state could not record that it was being created ({e})"
                    ));
                    walk.end(id, ActionOutcome::Failed(e));
                }
                save_error = Some(e);
                break;
            }
            if !batch.is_empty() {
                requests.push(request(provider, batch, Duration::ZERO));
            }
        }
        if requests.is_empty() && polls.is_empty() {
            break;
        }

        // Wait for one future, then take every other one already done: one state write.
        let steps = next_steps([&mut requests, &mut polls]).await;
        let mut ended: Vec<(usize, ActionOutcome)> = Vec::new();
        let mut accepted: Vec<(usize, OperationHandle)> = Vec::new();
        let mut retry: Vec<(usize, Duration)> = Vec::new();
        for step in steps {
            match step {
                Step::Executed(results) => {
                    for (id, result) in results {
                        let action = &plan.actions[id];
                        let e = match result {
                            Ok(Executed::Done(out)) => {
                                pending.extend(noted(
                                    &mut walk.report,
                                    id,
                                    record(state, action, &out, opts),
                                ));
                                ended.push((id, ActionOutcome::Done));
                                continue;
                            }
                            Ok(Executed::Accepted(handle)) => {
                                // Recorded (saved below) before anything waits for it.
                                let change = StateChange::Pending {
                                    address: action.address.clone(),
                                    operation: PendingOperation {
                                        kind: action.kind,
                                        handle: handle.clone(),
                                    },
                                };
                                change.apply_to(state);
                                pending.push(change);
                                notice(Notice::Accepted {
                                    action,
                                    handle: &handle,
                                });
                                accepted.push((id, handle));
                                continue;
                            }
                            Err(e) => e,
                        };
                        let class = e.class();
                        // A partly done op is sent again whole: only when that is harmless.
                        let whole_again = !matches!(e, ProviderError::Partial { .. })
                            || provider.replay_safe(&action.op);
                        let delay = (class.retryable() && whole_again
                            || class == ErrorClass::OutcomeUnknown)
                            .then(|| {
                                tracks
                                    .entry(id)
                                    .or_insert_with(|| Track::new(&opts.retry))
                                    .next(&e, &opts.retry)
                            })
                            .flatten();
                        match (class, delay) {
                            (ErrorClass::OutcomeUnknown, Some(d)) => {
                                requests.push(reobserve(provider, plan, &opts.retry, id, e, d));
                            }
                            (_, Some(d)) => {
                                walk.report.retries += 1;
                                notice(Notice::Retry {
                                    action,
                                    attempt: attempt_of(&tracks, id),
                                    delay: d,
                                    error: &e,
                                });
                                retry.push((id, d));
                            }
                            (_, None) => ended.push((id, ActionOutcome::Failed(e))),
                        }
                    }
                }
                Step::Observed {
                    id,
                    error,
                    delay,
                    observed,
                } => {
                    let action = &plan.actions[id];
                    let op = match resolve(&action.op, state) {
                        Ok(op) => op,
                        Err(e) => {
                            ended.push((id, ActionOutcome::Failed(e)));
                            continue;
                        }
                    };
                    let settled = match &observed {
                        Ok(t) => settle(&op, t, state),
                        Err(_) => Settled::Unknown,
                    };
                    notice(Notice::Reobserved {
                        action,
                        found: match settled {
                            Settled::Done(_) => "done",
                            Settled::Replay => "replay",
                            Settled::Unknown => "unknown",
                        },
                    });
                    match settled {
                        Settled::Done(out) => {
                            pending.extend(noted(
                                &mut walk.report,
                                id,
                                record(state, action, &out, opts),
                            ));
                            ended.push((id, ActionOutcome::Done));
                        }
                        Settled::Replay
                            if provider.replay_safe(&op)
                                || op.creates().is_some()
                                || op.deletes() =>
                        {
                            walk.report.retries += 1;
                            notice(Notice::Retry {
                                action,
                                attempt: attempt_of(&tracks, id),
                                delay,
                                error: &error,
                            });
                            retry.push((id, delay));
                        }
                        _ => {
                            let why = match observed {
                                Ok(_) => "observed again, the tenant cannot tell whether it took effect, and the op is not safe to repeat: not repeated".to_string(),
                                Err(e) => format!("observing the tenant again failed ({e}): not repeated"),
                            };
                            let e = ProviderError::OutcomeUnknown(format!(
                                "{error}; {why}; check the tenant, then plan again"
                            ));
                            ended.push((id, ActionOutcome::Failed(e)));
                        }
                    }
                }
                Step::Manual { id, observed } => {
                    let step = manual[&id];
                    let done = observed
                        .as_ref()
                        .is_ok_and(|t| step.done_when.met(t, state));
                    let waited = manual_since[&id].elapsed();
                    if done {
                        ended.push((id, ActionOutcome::Done));
                    } else if waited + opts.retry.poll_interval > opts.wait_manual {
                        ended.push((
                            id,
                            ActionOutcome::Manual {
                                instructions: format!(
                                    "{}; then run apply again (it goes on once {})",
                                    step.instructions,
                                    step.done_when.describe()
                                ),
                            },
                        ));
                    } else {
                        // A failed read is only a missed look: the next one may succeed.
                        polls.push(manual_check(provider, plan, id, opts.retry.poll_interval));
                    }
                }
                Step::Polled(id, end) => {
                    let action = &plan.actions[id];
                    let outcome = match end {
                        PollEnd::StillRunning(e) => ActionOutcome::Failed(e),
                        PollEnd::Done(out) => {
                            pending.extend(settled(state, &action.address));
                            pending.extend(noted(
                                &mut walk.report,
                                id,
                                record(state, action, &out, opts),
                            ));
                            ActionOutcome::Done
                        }
                        PollEnd::Failed(e) => {
                            pending.extend(settled(state, &action.address));
                            ActionOutcome::Failed(e)
                        }
                    };
                    match walk.report.outcomes.get_mut(&id) {
                        // Skipped meanwhile (a dependency failed): the op ran anyway.
                        Some(skipped) => *skipped = outcome,
                        None => ended.push((id, outcome)),
                    }
                }
            }
        }
        for (id, outcome) in ended {
            walk.end(id, outcome);
        }
        // Retries of one step go out together, after the longest of their delays.
        if let Some(delay) = retry.iter().map(|(_, d)| *d).max() {
            let batch = walk.resolved(retry.into_iter().map(|(id, _)| id), state);
            if !batch.is_empty() {
                requests.push(request(provider, batch, delay));
            }
        }
        if let Err(e) = flush(state, &mut pending, &mut walk.report) {
            save_error.get_or_insert(e);
        }
        if save_error.is_none() {
            for (id, handle) in accepted {
                polls.push(poller(provider, plan, opts, id, handle));
            }
        } else {
            // The handles could not be recorded: not waited for (nothing more is recorded).
            polls.clear();
            for (id, handle) in accepted {
                let e = ProviderError::OutcomeUnknown(format!(
                    "accepted as operation {}, which the state could not record",
                    handle.id
                ));
                walk.end(id, ActionOutcome::Failed(e));
            }
        }
    }

    if save_error.is_none() {
        pending.extend(record_protect(state, opts));
        if let Err(e) = flush(state, &mut pending, &mut walk.report) {
            save_error = Some(e);
        }
    }
    if let Some(message) = save_error {
        return Err(ApplyError::StateSave {
            message,
            report: Box::new(walk.report),
        });
    }
    Ok(walk.report)
}

/// `changes` of action `id`, with the backups among them noted in `report` (issue 13
/// item 3: the summary names each backup's id).
fn noted(report: &mut ApplyReport, id: usize, changes: Vec<StateChange>) -> Vec<StateChange> {
    for c in &changes {
        if let StateChange::Backup(b) = c {
            report.backups.push((id, b.id.clone()));
        }
    }
    changes
}

/// The attempt a retry of action `id` is about to make (2 = the first retry).
fn attempt_of(tracks: &HashMap<usize, Track>, id: usize) -> u32 {
    tracks.get(&id).map_or(2, Track::attempts)
}

/// Clear the pending operation of `address`, when the state has one.
fn settled(state: &mut State, address: &str) -> Option<StateChange> {
    state.pending.contains_key(address).then(|| {
        let change = StateChange::Settled {
            address: address.to_string(),
        };
        change.apply_to(state);
        change
    })
}
