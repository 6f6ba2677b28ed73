//! The provider boundary: observe a tenant, execute operations (issue 11 item 4, v2).
//!
//! Every backend (the embedded local tenant, and later Microsoft Graph / Power Platform
//! admin API / Dataverse) implements [`Provider`]. The trait knows nothing of files, state
//! or plans: it takes [`Op`]s whose references carry remote ids.
//!
//! Shaped for HTTP services:
//! - **async**: every request returns a boxed future ([`BoxFuture`]), so that the trait
//!   stays dyn-compatible (`Box<dyn Provider>`) and apply keeps a bounded number of
//!   requests in flight without a thread each;
//! - **error classes** ([`ProviderError::class`]): refused (rule id), not found, invalid,
//!   conflict (wait and retry), throttled (retry after the server's delay), transient,
//!   outcome unknown (the request may have happened: re-observe before retrying), and
//!   permanent backend failures; a list op may be partly done ([`ProviderError::Partial`]);
//! - **long-running operations**: executing may return [`Executed::Accepted`] with an
//!   [`OperationHandle`], which apply records in the state before it waits and then
//!   [`Provider::poll`]s (a later run resumes polling instead of starting it again);
//! - **batching per request family** ([`Provider::family`]): which ops one request may
//!   carry together, and how many; each op gets its own result;
//! - **several remote ids per object** ([`Outcome::ids`]);
//! - **observe with a [`Scope`]**: the kinds and instances the caller needs.

pub mod dataverse;
pub mod graph;
pub mod http;
pub mod local;
pub mod memory;
pub mod powerplatform;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::op::{ObjKind, Op};
use crate::observed::Tenant;

/// Run `fut` to its end on the process's tokio runtime, for callers without one (the
/// CLI's workflows, tests). One runtime serves the whole process (two worker threads,
/// built on first use), so that an HTTP client's pooled connections outlive one call: a
/// connection opened while observing is still good when apply sends its first write. Must
/// not be called from inside a runtime.
pub fn block_on<F: Future>(fut: F) -> std::io::Result<F::Output> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let runtime = match RUNTIME.get() {
        Some(r) => r,
        None => {
            let built = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("crmctl-io")
                .enable_all()
                .build()?;
            // Another thread may have won the race: its runtime is used, this one dropped.
            let _ = RUNTIME.set(built);
            RUNTIME.get().expect("set above")
        }
    };
    Ok(runtime.block_on(fut))
}

/// A boxed, sendable future: what every provider request returns (dyn-compatible async).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a provider refused or failed an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ProviderError {
    /// The service refuses the request because it breaks a rule of domain.md.
    #[error("refused by the service ({rule}): {message}")]
    Refused {
        /// Rule id, e.g. `I8`.
        rule: String,
        /// What was wrong.
        message: String,
    },
    /// An object the op refers to does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The op was malformed (e.g. a reference without an id).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Another operation on the object is in progress (HTTP 409 / 423): wait and retry.
    #[error("conflict: {message} (another operation is in progress)")]
    Conflict {
        /// What the service said.
        message: String,
        /// How long to wait, when the service said.
        retry_after: Option<Duration>,
    },
    /// Too many requests (HTTP 429 / 503 with `Retry-After`): retry after the delay.
    #[error("throttled by the service: {message}")]
    Throttled {
        /// What the service said.
        message: String,
        /// The server's `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// A failure that did not carry out the request and may pass (a 5xx before the
    /// service acted, a refused connection): retry with backoff.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The request may or may not have been carried out (a timeout or a connection lost
    /// after it was sent): re-observe before retrying; never replay a non-idempotent start.
    #[error("outcome unknown: {0} (the request may have been carried out)")]
    OutcomeUnknown(String),
    /// Storage or transport failure; the op was not done and retrying will not help.
    #[error("backend failure: {0}")]
    Backend(String),
    /// A list op (members, roles) partly done: `done` of `total` items, the others failed.
    #[error("partly done: {done} of {total} items{}", first_failure(.failed))]
    Partial {
        /// Items done.
        done: usize,
        /// Items in the op.
        total: usize,
        /// The items that failed, with why.
        failed: Vec<ItemFailure>,
    },
}

/// One item of a list op that failed ([`ProviderError::Partial`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFailure {
    /// The item (a member's or role's address or id).
    pub item: String,
    /// Why it failed.
    pub error: ProviderError,
}

fn first_failure(failed: &[ItemFailure]) -> String {
    match failed.first() {
        Some(f) => format!("; {}: {}", f.item, f.error),
        None => String::new(),
    }
}

/// How apply treats an error ([`ProviderError::class`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorClass {
    /// Wait and retry (another operation in progress).
    Conflict,
    /// Retry after the server's delay.
    Throttled,
    /// Retry with backoff.
    Transient,
    /// Re-observe, then decide whether the op took effect.
    OutcomeUnknown,
    /// Retrying does not help (refused, not found, invalid, backend).
    Permanent,
}

impl ErrorClass {
    /// Whether a plain retry (after a delay) may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Conflict | ErrorClass::Throttled | ErrorClass::Transient
        )
    }
}

impl ProviderError {
    /// A refusal citing `rule`.
    pub fn refused(rule: &str, message: impl Into<String>) -> Self {
        ProviderError::Refused {
            rule: rule.to_string(),
            message: message.into(),
        }
    }

    /// How apply treats the error. A partly done op is as bad as its worst item.
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::Conflict { .. } => ErrorClass::Conflict,
            ProviderError::Throttled { .. } => ErrorClass::Throttled,
            ProviderError::Transient(_) => ErrorClass::Transient,
            ProviderError::OutcomeUnknown(_) => ErrorClass::OutcomeUnknown,
            ProviderError::Partial { failed, .. } => failed
                .iter()
                .map(|f| f.error.class())
                .max()
                .unwrap_or(ErrorClass::Permanent),
            ProviderError::Refused { .. }
            | ProviderError::NotFound(_)
            | ProviderError::Invalid(_)
            | ProviderError::Backend(_) => ErrorClass::Permanent,
        }
    }

    /// The server's delay before a retry, when it gave one (the longest of a partly done
    /// op's items).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Conflict { retry_after, .. }
            | ProviderError::Throttled { retry_after, .. } => *retry_after,
            ProviderError::Partial { failed, .. } => {
                failed.iter().filter_map(|f| f.error.retry_after()).max()
            }
            _ => None,
        }
    }
}

/// What a completed op produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The remote id of the object the op created, if it created one (its primary id,
    /// recorded as the state entry's `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_id: Option<String>,
    /// Further remote ids of the object, by name: e.g. `directory` (a user's directory
    /// id), `instance:<instance id>` (its id inside an instance), `environment` and
    /// `org_url` (an instance's environment id and organization URL). Apply records them
    /// in the state entry (`ids`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ids: BTreeMap<String, String>,
}

impl Outcome {
    /// The outcome of a create: the new object's id.
    pub fn created(id: impl Into<String>) -> Outcome {
        Outcome {
            created_id: Some(id.into()),
            ids: BTreeMap::new(),
        }
    }

    /// With one more named id.
    pub fn with_id(mut self, name: impl Into<String>, id: impl Into<String>) -> Outcome {
        self.ids.insert(name.into(), id.into());
        self
    }
}

/// A long-running operation the service accepted (HTTP 202 + `Location` / operation id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationHandle {
    /// Opaque to apply: what [`Provider::poll`] needs to find the operation again, also in
    /// another process (it is recorded in the state).
    pub id: String,
    /// When to poll first, when the service said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Duration>,
}

/// What executing an op did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// Done, durably.
    Done(Outcome),
    /// Accepted as a long-running operation: poll the handle until it ends.
    Accepted(OperationHandle),
}

/// What polling a long-running operation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// Still running; poll again after the delay (when given).
    Running {
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Finished: the op is done.
    Done(Outcome),
    /// Finished: the op failed (nothing done).
    Failed(ProviderError),
}

/// A request family: ops that one request of the service may carry together (e.g. a
/// Graph `$batch` of directory writes), and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestFamily {
    /// Name of the family (ops of different families never share a request).
    pub name: &'static str,
    /// Ops one request carries at most (1: one op per request).
    pub max_ops: usize,
}

impl RequestFamily {
    /// One op per request.
    pub const SINGLE: RequestFamily = RequestFamily {
        name: "single",
        max_ops: 1,
    };
}

/// What part of the tenant to observe. Tenant-level fields (licenses, storage, slots,
/// versions) are always read; a provider may return more than asked when that costs no
/// more, never less.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Kinds of object to read; `None`: every kind.
    pub kinds: Option<BTreeSet<ObjKind>>,
    /// Instances (remote ids) whose objects and roles to read; `None`: every instance.
    pub instances: Option<BTreeSet<String>>,
}

impl Scope {
    /// The whole tenant.
    pub fn all() -> Scope {
        Scope::default()
    }

    /// Only these kinds (every instance of them).
    pub fn kinds(kinds: impl IntoIterator<Item = ObjKind>) -> Scope {
        Scope {
            kinds: Some(kinds.into_iter().collect()),
            instances: None,
        }
    }

    /// Whether objects of `kind` are read.
    pub fn has_kind(&self, kind: ObjKind) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }

    /// Whether the instance with remote id `id` (its row and the roles held in it) is read.
    pub fn has_instance(&self, id: &str) -> bool {
        self.instances.as_ref().is_none_or(|i| i.contains(id))
    }

    /// What to read to see whether `op` took effect (after an unknown outcome): the kind
    /// it creates, deletes or changes.
    pub fn for_op(op: &Op) -> Scope {
        use crate::domain::op::ActionKind as K;
        let kind = match op.kind() {
            K::CreateGroup
            | K::UpdateGroup
            | K::DeleteGroup
            | K::AddGroupMembers
            | K::RemoveGroupMembers => Some(ObjKind::Group),
            K::CreateUser
            | K::UpdateUser
            | K::DeleteUser
            | K::AssignLicense
            | K::RemoveLicense
            | K::SetAccessMode
            | K::AssignRoles
            | K::RemoveRoles => Some(ObjKind::User),
            K::PurchaseLicenses
            | K::ReduceLicenses
            | K::PurchaseStorage
            | K::ReduceStorage
            | K::PurchaseInstance => None,
            _ => Some(ObjKind::Instance),
        };
        if let Op::Adopt { kind, .. } = op {
            return Scope::kinds([*kind]);
        }
        Scope::kinds(kind)
    }

    /// The part of `t` in the scope (for providers that read everything anyway).
    pub fn trim(&self, t: &Tenant) -> Tenant {
        let mut out = Tenant {
            domain: t.domain.clone(),
            trial: t.trial,
            licenses: t.licenses.clone(),
            storage: t.storage.clone(),
            slots: t.slots.clone(),
            versions: t.versions.clone(),
            unreadable: t.unreadable.clone(),
            ..Tenant::default()
        };
        out.changed.tenant = t.changed.tenant.clone();
        if self.has_kind(ObjKind::Group) {
            out.groups = t.groups.clone();
            out.changed.groups = t.changed.groups.clone();
        }
        if self.has_kind(ObjKind::Instance) {
            out.instances = t
                .instances
                .iter()
                .filter(|(id, _)| self.has_instance(id))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            out.changed.instances = t
                .changed
                .instances
                .iter()
                .filter(|(id, _)| self.has_instance(id))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        if self.has_kind(ObjKind::User) {
            out.users = t.users.clone();
            out.changed.users = t.changed.users.clone();
            if self.instances.is_some() {
                for u in out.users.values_mut() {
                    u.roles.retain(|iid, _| self.has_instance(iid));
                }
            }
        }
        out
    }
}

/// Whether repeating `op` after it succeeded is harmless (it sets a value, or a set union
/// or difference): such ops are retried after an unknown outcome without looking. The
/// others (creates, purchases of a slot, copies, resets, deletes) are re-observed first,
/// and never replayed when that cannot tell (see the local provider's idempotency table).
pub fn replay_safe(op: &Op) -> bool {
    !matches!(
        op,
        Op::PurchaseInstance { .. }
            | Op::CreateGroup { .. }
            | Op::CreateUser { .. }
            | Op::ConfigureInstance { .. }
            | Op::CopyInstance { .. }
            | Op::ResetInstance { .. }
            | Op::DeleteGroup { .. }
            | Op::DeleteUser { .. }
            | Op::DeleteInstance { .. }
    )
}

/// What a provider needs to read only the changes since an earlier observe (issue 12 item
/// 4: for Graph, the delta links and the directory they apply to). Opaque bytes to the
/// caller, who keeps them (beside the state) and gives them back to the same backend
/// ([`Provider::observe_since`]). A provider checks that a cursor is its own (format,
/// service, tenant) and reads everything when it is not: a cursor never makes an observe
/// wrong, at worst slower. It holds no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ObserveCursor(pub Vec<u8>);

impl std::fmt::Debug for ObserveCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObserveCursor({} bytes)", self.0.len())
    }
}

/// A tenant backend.
///
/// Contract: an op that ends `Ok(Executed::Done)` is done, atomically and durably; one that
/// ends with an error of any class but [`ErrorClass::OutcomeUnknown`] (and
/// [`ProviderError::Partial`]) was not done at all. A provider checks every rule of
/// domain.md itself and never trusts the caller's ordering. Every method takes `&self`:
/// apply keeps several requests in flight; a provider that cannot serve them in parallel
/// serializes them internally. Futures may need a tokio runtime (timers, blocking pool).
pub trait Provider: Send + Sync {
    /// Read the tenant: at least the part in `scope`.
    fn observe<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Tenant, ProviderError>>;

    /// Read the tenant like [`Provider::observe`], reading only what changed since the
    /// observe that returned `cursor` where the backend can (issue 12 item 4); also returns
    /// the cursor for the next call. The tenant returned is the same as `observe`'s; a
    /// cursor the provider cannot use (another tenant, expired) is ignored. Default:
    /// `observe`, and no cursor.
    fn observe_since<'a>(
        &'a self,
        scope: &'a Scope,
        cursor: Option<ObserveCursor>,
    ) -> BoxFuture<'a, Result<(Tenant, Option<ObserveCursor>), ProviderError>> {
        let _ = cursor;
        Box::pin(async move { Ok((self.observe(scope).await?, None)) })
    }

    /// Execute one operation. References in `op` carry remote ids.
    fn execute<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Result<Executed, ProviderError>>;

    /// Execute several ops of one request family (none waits on another) as one request;
    /// each op succeeds or fails on its own; the results are in the order of `ops`. The
    /// default executes them one by one.
    fn execute_batch<'a>(
        &'a self,
        ops: &'a [Op],
    ) -> BoxFuture<'a, Vec<Result<Executed, ProviderError>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                out.push(self.execute(op).await);
            }
            out
        })
    }

    /// The request family of `op`: apply sends up to `max_ops` ready ops of one family in
    /// one [`Provider::execute_batch`]. Default: one op per request.
    fn family(&self, op: &Op) -> RequestFamily {
        let _ = op;
        RequestFamily::SINGLE
    }

    /// Poll a long-running operation this provider accepted (in this process or another).
    fn poll<'a>(
        &'a self,
        handle: &'a OperationHandle,
    ) -> BoxFuture<'a, Result<Polled, ProviderError>> {
        Box::pin(async move {
            Err(ProviderError::Invalid(format!(
                "this backend has no long-running operations (operation `{}`)",
                handle.id
            )))
        })
    }

    /// Whether `op` may be repeated blindly after an unknown outcome ([`replay_safe`]).
    fn replay_safe(&self, op: &Op) -> bool {
        replay_safe(op)
    }

    /// Where a person does `op` when this backend cannot (no public API: buying licences,
    /// slots or storage, approving updates, notification recipients; issue 13 item 4): the
    /// place and the path to the setting, e.g. "Microsoft 365 admin center > Billing > ...".
    /// `None` (the default): the backend executes `op` itself. Contract: only the kinds
    /// `plan::manual` can check on the observed tenant (purchases and reductions of
    /// licences, storage and slots; update approvals; notification recipients) may be
    /// manual, and apply never calls [`Provider::execute`] with a manual op.
    fn manual(&self, op: &Op) -> Option<String> {
        let _ = op;
        None
    }
}
