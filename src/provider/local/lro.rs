//! Long-running operations of the local tenant (test knob `CRMCTL_LOCAL_LRO=1`; issue 11
//! item 4).
//!
//! In this mode `configure_instance`, `copy_instance` and `reset_instance` behave like the
//! service's 202 + polling: the request is checked against the tenant at once (a refusal
//! is immediate), then stored as an operation (`meta` row `operation:lro-NNNNNN`, so that
//! another process can poll it) and answered with its handle. The operation ends on its
//! Nth poll (`CRMCTL_LOCAL_LRO_POLLS`, default 2): its effect is then checked against the
//! tenant of that moment and written in the poll's transaction, and the result is kept in
//! the row, so that a poll repeated after a crash reads the same end. Each accept and each
//! poll is one IMMEDIATE transaction that counts as a write call for
//! `CRMCTL_LOCAL_EXIT_AT` / `_AFTER`; `CRMCTL_LOCAL_EXIT_AT_POLL=N` aborts on the Nth poll.

use rusqlite::Transaction;
use serde::{Deserialize, Serialize};

use super::delta::{self, Delta};
use super::{faults, rules, store, Cache, Core};
use crate::domain::op::Op;
use crate::provider::{Executed, OperationHandle, Outcome, Polled, ProviderError};

/// Whether the LRO mode is on (`CRMCTL_LOCAL_LRO=1`).
pub(super) fn enabled() -> bool {
    faults::plan().lro
}

/// The ops that are long-running operations in the LRO mode.
pub(super) fn long_running(op: &Op) -> bool {
    matches!(
        op,
        Op::ConfigureInstance { .. } | Op::CopyInstance { .. } | Op::ResetInstance { .. }
    )
}

/// An operation as stored in its `meta` row.
#[derive(Serialize, Deserialize)]
struct Stored {
    op: Op,
    polls_left: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Result<Outcome, ProviderError>>,
}

const COUNTER: &str = "operation_counter";

fn key(id: &str) -> String {
    format!("operation:{id}")
}

fn corrupt(path: &std::path::Path, e: serde_json::Error) -> ProviderError {
    ProviderError::Backend(format!("{}: corrupt operation row: {e}", path.display()))
}

impl Core {
    /// Accept `op` as a long-running operation: check it now, store it, return its handle.
    pub(super) fn accept(&self, op: &Op) -> Result<Executed, ProviderError> {
        let path = &self.path;
        let id = self.lro_write(|tx, cache| {
            // The service validates the request before it answers 202.
            rules::effect(&cache.tenant, &cache.index, cache.counters, op)?;
            let n = store::get_meta(tx, path, COUNTER)?
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            let id = format!("lro-{n:06}");
            let stored = Stored {
                op: op.clone(),
                polls_left: faults::plan().lro_polls,
                result: None,
            };
            store::put_meta(tx, path, COUNTER, &n.to_string())?;
            let row = serde_json::to_string(&stored).map_err(|e| corrupt(path, e))?;
            store::put_meta(tx, path, &key(&id), &row)?;
            Ok((Vec::new(), id))
        })?;
        Ok(Executed::Accepted(OperationHandle {
            id,
            retry_after: Some(faults::plan().lro_delay),
        }))
    }

    /// One poll of the operation `id`: running, or its end (done once, then read again).
    pub(super) fn poll_operation(&self, id: &str) -> Result<Polled, ProviderError> {
        faults::before_poll();
        let path = &self.path;
        self.lro_write(|tx, cache| {
            let raw = store::get_meta(tx, path, &key(id))?.ok_or_else(|| {
                ProviderError::NotFound(format!("no operation `{id}` in the local tenant"))
            })?;
            let mut stored: Stored = serde_json::from_str(&raw).map_err(|e| corrupt(path, e))?;
            if let Some(result) = &stored.result {
                return Ok((Vec::new(), ended(result.clone())));
            }
            stored.polls_left = stored.polls_left.saturating_sub(1);
            let (deltas, polled) = if stored.polls_left > 0 {
                let retry_after = Some(faults::plan().lro_delay);
                (Vec::new(), Polled::Running { retry_after })
            } else {
                match rules::effect(&cache.tenant, &cache.index, cache.counters, &stored.op) {
                    Ok(effect) => {
                        stored.result = Some(Ok(effect.outcome.clone()));
                        (effect.deltas, Polled::Done(effect.outcome))
                    }
                    Err(e) => {
                        stored.result = Some(Err(e.clone()));
                        (Vec::new(), Polled::Failed(e))
                    }
                }
            };
            let row = serde_json::to_string(&stored).map_err(|e| corrupt(path, e))?;
            store::put_meta(tx, path, &key(id), &row)?;
            Ok((deltas, polled))
        })
    }

    /// One write transaction for an operation: IMMEDIATE, the cache brought up to date
    /// inside it, `f` (which may write operation rows) returns the tenant deltas to write,
    /// then the tenant-level row when due, commit. On a failure the cache is read again.
    fn lro_write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &Cache) -> Result<(Vec<Delta>, T), ProviderError>,
    ) -> Result<T, ProviderError> {
        let mut guard = self.lock()?;
        let (tx, cache) = self.begin_write(&mut guard)?;
        let (mut deltas, out) = f(&tx, cache)?;
        if !deltas.is_empty() {
            let stamps = delta::stamps(&cache.tenant, &deltas, &self.who());
            deltas.extend(stamps);
        }
        delta::apply_to_cache(
            &mut cache.tenant,
            &mut cache.index,
            &mut cache.counters,
            &deltas,
        );
        let calls = [faults::next_write_call()];
        match self.commit(tx, cache, &deltas, &calls) {
            Ok(()) => Ok(out),
            Err(e) => {
                cache.synced = None;
                Err(e)
            }
        }
    }
}

fn ended(result: Result<Outcome, ProviderError>) -> Polled {
    match result {
        Ok(outcome) => Polled::Done(outcome),
        Err(e) => Polled::Failed(e),
    }
}
