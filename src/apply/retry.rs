//! Retries, their budget and their reports (issue 11 item 4).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use crate::domain::escape::escape;
use crate::domain::op::ActionKind;
use crate::plan::action::Action;
use crate::provider::{OperationHandle, ProviderError};

/// How apply retries and how long it waits for long-running operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests per action at most, the first one included (1: no retry).
    pub max_attempts: u32,
    /// Time from an action's first failure after which it is not retried again.
    pub max_total: Duration,
    /// First backoff delay (doubled each retry, with jitter), when the server gives none.
    pub min_delay: Duration,
    /// Longest backoff delay (a server's `Retry-After` may be longer: it is honoured).
    pub max_delay: Duration,
    /// Randomize the backoff delays (spreads the retries of concurrent requests).
    pub jitter: bool,
    /// Delay between polls of a long-running operation when the service gives none.
    pub poll_interval: Duration,
    /// How long apply waits for one long-running operation of a kind without an entry in
    /// `wait_by_kind`; after that the action fails and its handle stays in the state for the
    /// next run (which polls it again, never starts it twice).
    pub max_wait: Duration,
    /// How long apply waits for one long-running operation, per kind (issue 13 item 1:
    /// generous, per kind, configurable with `apply --timeout`). Defaults:
    /// [`default_waits`].
    pub wait_by_kind: std::collections::BTreeMap<ActionKind, Duration>,
}

/// The default waits per kind of long-running operation (issue 13 item 1). Generous on
/// purpose: the service's own operations take minutes to hours (a full copy of a large
/// instance, hours), and users of other tools complain about fixed 20-minute limits (see
/// shared/microsoft-apis.md, "fixed 20-minute timeouts"). A wait that runs out fails the
/// action only for this run: the operation's handle stays in the state and the next apply
/// polls it again.
pub fn default_waits() -> std::collections::BTreeMap<ActionKind, Duration> {
    const MIN: u64 = 60;
    [
        (ActionKind::ConfigureInstance, 3 * 60 * MIN),
        (ActionKind::CopyInstance, 8 * 60 * MIN),
        (ActionKind::ResetInstance, 3 * 60 * MIN),
        (ActionKind::BackupInstance, 2 * 60 * MIN),
        (ActionKind::DeleteInstance, 2 * 60 * MIN),
        (ActionKind::SwitchInstance, 2 * 60 * MIN),
        (ActionKind::UpdateInstance, 60 * MIN),
        (ActionKind::SetAdminMode, 60 * MIN),
    ]
    .into_iter()
    .map(|(k, secs)| (k, Duration::from_secs(secs)))
    .collect()
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            max_total: Duration::from_secs(600),
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            jitter: true,
            poll_interval: Duration::from_secs(5),
            max_wait: Duration::from_secs(3600),
            wait_by_kind: default_waits(),
        }
    }
}

impl RetryPolicy {
    /// How long apply waits for one long-running operation of `kind`.
    pub fn wait_for(&self, kind: ActionKind) -> Duration {
        self.wait_by_kind
            .get(&kind)
            .copied()
            .unwrap_or(self.max_wait)
    }

    /// Set the wait of `kind` (every kind when `None`: the default of kinds without an
    /// entry too), as `apply --timeout [KIND=]DURATION` does.
    pub fn set_wait(&mut self, kind: Option<ActionKind>, wait: Duration) {
        match kind {
            Some(k) => {
                self.wait_by_kind.insert(k, wait);
            }
            None => {
                self.max_wait = wait;
                for w in self.wait_by_kind.values_mut() {
                    *w = wait;
                }
            }
        }
    }

    /// The backoff delays of one action: backon's exponential policy.
    fn backoff(&self) -> ExponentialBackoff {
        let b = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize);
        if self.jitter {
            b.with_jitter().build()
        } else {
            b.build()
        }
    }
}

/// One action's retries so far.
pub(super) struct Track {
    since: Instant,
    backoff: ExponentialBackoff,
    attempts: u32,
}

impl Track {
    pub(super) fn new(policy: &RetryPolicy) -> Track {
        Track {
            since: Instant::now(),
            backoff: policy.backoff(),
            attempts: 1,
        }
    }

    /// Requests made or about to be made (2 after the first retry was granted).
    pub(super) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before the next attempt after `error`: the backoff's, or the server's
    /// when longer; `None` when the attempts or the total time are spent.
    pub(super) fn next(&mut self, error: &ProviderError, policy: &RetryPolicy) -> Option<Duration> {
        let delay = self
            .backoff
            .next()?
            .max(error.retry_after().unwrap_or_default());
        if self.since.elapsed() + delay > policy.max_total {
            return None;
        }
        self.attempts += 1;
        Some(delay)
    }
}

/// Something apply reports besides finished actions (issue 11 item 4).
#[derive(Debug, Clone)]
pub enum Notice<'a> {
    /// A request is sent again after `delay`.
    Retry {
        /// The action.
        action: &'a Action,
        /// The attempt about to be made (2 = first retry).
        attempt: u32,
        /// Wait before it.
        delay: Duration,
        /// Why.
        error: &'a ProviderError,
    },
    /// After an unknown outcome the action's scope was observed again.
    Reobserved {
        /// The action.
        action: &'a Action,
        /// What was found: `done`, `replay` or `unknown`.
        found: &'static str,
    },
    /// The service accepted the action as a long-running operation (recorded in the state).
    Accepted {
        /// The action.
        action: &'a Action,
        /// Its handle.
        handle: &'a OperationHandle,
    },
    /// An operation an earlier run started is polled instead of starting the action again.
    Resumed {
        /// The action.
        action: &'a Action,
        /// Its handle.
        handle: &'a OperationHandle,
    },
    /// A person must do the action (the backend has no API for it; issue 13 item 4): apply
    /// waits up to `wait` for the tenant to show it done, then stops before it.
    Manual {
        /// The action.
        action: &'a Action,
        /// What to do, where.
        instructions: &'a str,
        /// How long apply waits for it.
        wait: Duration,
    },
    /// A long-running operation is still running (sent after each poll that says so):
    /// progress for the terminal and the log.
    Running {
        /// The action.
        action: &'a Action,
        /// Its handle.
        handle: &'a OperationHandle,
        /// Time waited for it by this run so far.
        elapsed: Duration,
        /// How long this run waits for it at most (`apply --timeout`).
        limit: Duration,
    },
    /// A pending operation of the state whose address has no action of its kind in the
    /// plan: dropped from the state (the plan sees the tenant as it is).
    Dropped {
        /// The state address.
        address: &'a str,
        /// Its handle.
        handle: &'a OperationHandle,
    },
}

impl Notice<'_> {
    /// A plain line: `retry 2/6 of create_user users.ana@x.com in 1.2s: throttled ...`.
    pub fn line(&self) -> String {
        let what = |a: &Action| format!("{} {}", a.kind.as_str(), escape(&a.address));
        match self {
            Notice::Retry {
                action,
                attempt,
                delay,
                error,
            } => format!(
                "retry: attempt {attempt} of {} in {:.1}s after: {}",
                what(action),
                delay.as_secs_f64(),
                escape(&error.to_string())
            ),
            Notice::Reobserved { action, found } => {
                format!("outcome unknown: {} observed again: {found}", what(action))
            }
            Notice::Accepted { action, handle } => format!(
                "accepted: {} runs as operation {} (recorded in the state)",
                what(action),
                escape(&handle.id)
            ),
            Notice::Resumed { action, handle } => format!(
                "resuming: {} polls operation {} started by an earlier run",
                what(action),
                escape(&handle.id)
            ),
            Notice::Manual {
                action,
                instructions,
                wait,
            } => {
                let waits = if wait.is_zero() {
                    "not waited for (--wait-manual)".to_string()
                } else {
                    format!(
                        "waiting up to {}s for the tenant to show it",
                        wait.as_secs()
                    )
                };
                format!(
                    "manual step: {} has no API; {}; {waits}",
                    what(action),
                    escape(instructions)
                )
            }
            Notice::Running {
                action,
                handle,
                elapsed,
                limit,
            } => format!(
                "running: {} (operation {}) for {}, waiting up to {} (apply --timeout {}=DURATION)",
                what(action),
                escape(&handle.id),
                short_duration(*elapsed),
                short_duration(*limit),
                action.kind.as_str()
            ),
            Notice::Dropped { address, handle } => format!(
                "state: dropped operation {} of {} (no such action in the plan)",
                escape(&handle.id),
                escape(address)
            ),
        }
    }
}

/// `1h 5m`, `12m 3s`, `40s`: whole seconds, the two largest units.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) if s == 0 => format!("{m}m"),
        (0, _) => format!("{m}m {s}s"),
        _ if m == 0 => format!("{h}h"),
        _ => format!("{h}h {m}m"),
    }
}

/// Sees each [`Notice`].
pub type NoticeHook = Arc<dyn Fn(&Notice<'_>) + Send + Sync>;

/// Run `make()`'s future; `None` when making or polling it panicked (the provider's bug
/// fails its actions, not the apply).
pub(super) async fn caught<'a, T>(
    make: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>,
) -> Option<T> {
    let mut fut = std::panic::catch_unwind(AssertUnwindSafe(make)).ok()?;
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 13 item 1: generous waits per kind; `--timeout D` sets all, `KIND=D` one.
    #[test]
    fn waits_are_per_kind_and_settable() {
        let mut p = RetryPolicy::default();
        assert_eq!(
            p.wait_for(ActionKind::CopyInstance),
            Duration::from_secs(8 * 3600)
        );
        assert_eq!(
            p.wait_for(ActionKind::ConfigureInstance),
            Duration::from_secs(3 * 3600)
        );
        assert_eq!(p.wait_for(ActionKind::CreateUser), p.max_wait);
        p.set_wait(None, Duration::from_secs(60));
        assert!(ActionKind::ALL
            .iter()
            .all(|k| p.wait_for(*k) == Duration::from_secs(60)));
        p.set_wait(Some(ActionKind::CopyInstance), Duration::from_secs(5));
        assert_eq!(p.wait_for(ActionKind::CopyInstance), Duration::from_secs(5));
        assert_eq!(
            p.wait_for(ActionKind::ResetInstance),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn short_durations() {
        for (secs, text) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (61, "1m 1s"),
            (3600, "1h"),
            (3725, "1h 2m"),
            (8 * 3600, "8h"),
        ] {
            assert_eq!(short_duration(Duration::from_secs(secs)), text);
        }
    }
}
