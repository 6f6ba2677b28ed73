//! The embedded local tenant: a tenant kept in a SQLite file that enforces domain.md on its
//! own, independently of the planner (`--backend local:PATH`, the default).
//!
//! # Model
//!
//! - A missing file is a fresh tenant ([`Tenant::fresh`]): a new paid subscription with one
//!   production slot ready to configure, 5 GB storage, versions 7.0.0 to 8.1.0. `observe`
//!   never creates the file; the first `execute` that changes something does.
//! - Ids are deterministic: `usr-000001`, `grp-000001`, `org-000001`, from counters kept in
//!   the file, so runs and tests are reproducible.
//! - The whole tenant is cached in memory when the file is opened. Each op is checked
//!   against the cache (every rule of domain.md, refusals name the rule), written in one
//!   SQLite transaction touching only the rows it changes (see the `store` module), and applied to
//!   the cache only after the commit succeeded.
//!
//! # Durability
//!
//! WAL journal, `synchronous=NORMAL`, one transaction per op: a crash (`kill -9`) at any
//! point leaves the op either fully done or not at all.
//!
//! # Idempotency contract of each op (how a retry after an unknown outcome behaves)
//!
//! Like a Kubernetes finalizer, an op that *sets* a value converges: repeating it after it
//! succeeded is a no-op that succeeds. An op that *creates* or *counts* does not: repeating
//! it makes a second object or buys twice, which is why apply records created ids in the
//! state after each batch and the planner adopts objects found by natural key.
//!
//! | op | safe to repeat? |
//! |---|---|
//! | `purchase_licenses`, `reduce_licenses`, `purchase_storage`, `reduce_storage` | yes: they set an absolute target (`to`) |
//! | `purchase_instance` | **no**: buys one more slot each time |
//! | `create_group`, `create_user`, `configure_instance` | **no**: a second group (names need not be unique); for users and instances the repeat is refused (P1 duplicate UPN, I5 URL in use) - the object exists and must be adopted |
//! | `update_group`, `update_user`, `update_instance`, `set_access_mode`, `set_admin_mode`, `set_notification_recipients`, `schedule_update` | yes: they set values |
//! | `add_group_members`, `remove_group_members`, `assign_roles`, `remove_roles` | yes: set union / difference |
//! | `assign_license`, `remove_license` | yes: the user holds the plan (or none) afterwards |
//! | `switch_instance` | yes: switching to the type it already has is a no-op |
//! | `delete_group`, `delete_user`, `delete_instance` | no: the repeat finds nothing (`NotFound`); the end state is the same |
//! | `copy_instance`, `reset_instance` | no: each run destroys the target's data again (same settings afterwards) |
//! | `adopt` | yes: checks the object exists, writes nothing |
//!
//! # Readings of domain.md made here
//!
//! - I7: production -> sandbox takes a free sandbox slot when there is one, else needs
//!   another free production slot (and keeps occupying a production slot), else is refused;
//!   sandbox -> production needs a free production slot and frees its sandbox slot.
//! - I5: the old URL of a renamed instance is not reserved (so URL swaps through a
//!   temporary name work).
//! - I11: copy needs the target in the source's region (I6), and brings the source's
//!   version, currency and language; the target ends in administration mode with background
//!   operations off. Security roles and memberships are untouched.
//! - I9: reset keeps the region, sets the chosen currency and language, the newest version,
//!   administration mode off, and removes every security role held in the instance.
//! - P4: users cannot be created as administrative or non-interactive; the access mode is
//!   set while the user holds a license. P3: application users are created as such, never
//!   licensed, and never change access mode; at most 5 non-interactive users hold roles in
//!   one instance.
//! - P6: removing the global admin role from a user, or deleting a global admin, is refused
//!   when it would leave fewer than two global admins.
//! - I4: every change of an instance needs it `ready`, except delete and reset (refused
//!   only while provisioning).
//! - Security group names need not be unique (as in the directory).
//!
//! # Fault injection (test-only)
//!
//! Counted over the calls of the process (1-based):
//! - `CRMCTL_LOCAL_FAIL_AT=N`: the Nth `execute` call fails with a backend error before
//!   writing.
//! - `CRMCTL_LOCAL_EXIT_AT=N`: the Nth call that changes the tenant aborts the process in
//!   the middle of its transaction (rows written, not committed), like a `kill -9`.
//! - `CRMCTL_LOCAL_EXIT_AFTER=N`: the Nth call that changes the tenant aborts the process
//!   right after its commit, before returning (the caller never learns the created id).
//!
//! Calls that change nothing (`adopt`, a set to the current value) do not count for the
//! two aborts, so that a crash point lands on a write however many adoptions come first.

mod delta;
mod rules;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

use rusqlite::Connection;

use crate::plan::action::Op;
use crate::provider::{Outcome, Provider, ProviderError};
use crate::tenant::Tenant;

use delta::{Counters, Delta, Index, Meta};

/// The embedded local tenant provider (`--backend local:PATH`).
pub struct LocalProvider {
    path: PathBuf,
    inner: Mutex<Inner>,
    group: Mutex<Group>,
    group_done: Condvar,
    transactions: AtomicU64,
}

/// Group commit: ops that arrive while a transaction is being written wait in the queue;
/// the next caller to find no leader writes them all in one transaction.
#[derive(Default)]
struct Group {
    queue: Vec<Queued>,
    done: HashMap<u64, Result<Outcome, ProviderError>>,
    leader: bool,
    next_ticket: u64,
}

struct Queued {
    ticket: u64,
    op: Op,
}

struct Inner {
    conn: Option<Connection>,
    tenant: Tenant,
    index: Index,
    counters: Counters,
    /// The tenant-level row must be written with the next change (domain hint).
    meta_dirty: bool,
    /// The domain hint, kept to restore it if a failed write forces a reload.
    domain_hint: Option<String>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("path", &self.path)
            .finish()
    }
}

struct FaultPlan {
    fail_at: Option<u64>,
    exit_at: Option<u64>,
    exit_after: Option<u64>,
}

fn faults() -> &'static FaultPlan {
    static FAULTS: OnceLock<FaultPlan> = OnceLock::new();
    FAULTS.get_or_init(|| {
        let get = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse().ok());
        FaultPlan {
            fail_at: get("CRMCTL_LOCAL_FAIL_AT"),
            exit_at: get("CRMCTL_LOCAL_EXIT_AT"),
            exit_after: get("CRMCTL_LOCAL_EXIT_AFTER"),
        }
    })
}

static EXECUTE_CALLS: AtomicU64 = AtomicU64::new(0);
/// Calls that changed the tenant (numbering for `CRMCTL_LOCAL_EXIT_AT` / `_AFTER`).
static WRITE_CALLS: AtomicU64 = AtomicU64::new(0);

impl LocalProvider {
    /// Open the local tenant at `path`; a missing file is a fresh tenant (created on the
    /// first change, never by observe).
    pub fn open(path: &Path) -> Result<LocalProvider, ProviderError> {
        let (conn, tenant, counters) = if path.exists() {
            let conn = store::connect(path, false)?;
            match store::load(&conn, path)? {
                Some((t, c)) => (Some(conn), t, c),
                None => (Some(conn), Tenant::fresh(""), Counters::default()),
            }
        } else {
            (None, Tenant::fresh(""), Counters::default())
        };
        Ok(LocalProvider {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                conn,
                index: Index::build(&tenant),
                tenant,
                counters,
                meta_dirty: false,
                domain_hint: None,
            }),
            group: Mutex::new(Group::default()),
            group_done: Condvar::new(),
            transactions: AtomicU64::new(0),
        })
    }

    /// The file holding the tenant.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SQLite write transactions committed by `execute` so far (several concurrent ops share
    /// one transaction: group commit). For benchmarks.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Whether the file exists (a tenant that was never changed has none).
    pub fn exists(&self) -> bool {
        self.lock().map(|i| i.conn.is_some()).unwrap_or(false)
    }

    /// Give a tenant without a domain (a fresh one) its domain, e.g. the desired file's
    /// `tenant`. Nothing is written now; the domain is stored with the next change.
    pub fn set_domain_hint(&self, domain: &str) -> Result<(), ProviderError> {
        let mut inner = self.lock()?;
        if inner.tenant.domain.is_empty() && !domain.is_empty() {
            inner.tenant.domain = domain.to_string();
            inner.meta_dirty = true;
            inner.domain_hint = Some(domain.to_string());
        }
        Ok(())
    }

    /// Replace the whole tenant (the admin center's view of `crmctl local import` and
    /// `crmctl local edit`): no service rule is checked, only that references point at
    /// existing objects. Only the rows that differ are written, in one transaction.
    pub fn admin_replace(&self, new: Tenant) -> Result<(), ProviderError> {
        check_integrity(&new)?;
        let mut inner = self.lock()?;
        let counters = counters_covering(&new, inner.counters);
        let mut deltas = delta::diff(&inner.tenant, &new, inner.counters);
        if counters != inner.counters || inner.conn.is_none() || inner.meta_dirty {
            deltas.retain(|d| !matches!(d, Delta::Meta(_)));
            deltas.insert(0, Delta::Meta(Box::new(Meta::of(&new, counters))));
        }
        self.commit(&mut inner, deltas)
    }

    /// Change the tenant with a closure (for `crmctl local set`): no service rule is checked.
    pub fn admin_update(
        &self,
        f: impl FnOnce(&mut Tenant) -> Result<(), String>,
    ) -> Result<(), ProviderError> {
        let mut new = self.observe()?;
        f(&mut new).map_err(ProviderError::Invalid)?;
        self.admin_replace(new)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, ProviderError> {
        self.inner
            .lock()
            .map_err(|_| ProviderError::Backend("local tenant lock poisoned by a panic".into()))
    }

    /// Write deltas in one transaction, then apply them to the cache (admin edits).
    fn commit(&self, inner: &mut Inner, deltas: Vec<Delta>) -> Result<(), ProviderError> {
        if deltas.is_empty() {
            return Ok(());
        }
        self.write(inner, &deltas, &[], false)?;
        let Inner {
            tenant,
            index,
            counters,
            ..
        } = inner;
        delta::apply_to_cache(tenant, index, counters, &deltas);
        inner.meta_dirty = false;
        Ok(())
    }

    /// Write deltas in one SQLite transaction (creating the file when needed). `calls` are
    /// the numbers of the tenant-changing calls the transaction serves (for fault
    /// injection). With
    /// `meta_from_cache`, the tenant-level row is also written from the cache when it is new
    /// or dirty (the cache then already holds the deltas' effects).
    fn write(
        &self,
        inner: &mut Inner,
        deltas: &[Delta],
        calls: &[u64],
        meta_from_cache: bool,
    ) -> Result<(), ProviderError> {
        let creating = inner.conn.is_none();
        let head = (meta_from_cache && (inner.meta_dirty || creating))
            .then(|| Delta::Meta(Box::new(Meta::of(&inner.tenant, inner.counters))));
        if creating {
            inner.conn = Some(store::connect(&self.path, true)?);
        }
        let conn = inner.conn.as_mut().expect("connection opened above");
        let tx = store::begin(conn, &self.path)?;
        // The head (tenant-level row from the cache) goes last: when ops ran, the cache
        // already holds their effects, so it is the newest tenant-level row.
        store::write(&tx, &self.path, deltas)?;
        if let Some(head) = head {
            store::write(&tx, &self.path, &[head])?;
        }
        if let Some(n) = faults().exit_at.filter(|n| calls.contains(n)) {
            eprintln!("crmctl: CRMCTL_LOCAL_EXIT_AT={n}: aborting before commit");
            std::process::abort();
        }
        tx.commit().map_err(store::db_err(&self.path))?;
        if let Some(n) = faults().exit_after.filter(|n| calls.contains(n)) {
            eprintln!("crmctl: CRMCTL_LOCAL_EXIT_AFTER={n}: aborting after commit");
            std::process::abort();
        }
        Ok(())
    }

    /// Run queued ops as one transaction: each op is checked against the cache as left by
    /// the ops before it (and applied to it at once); refused ops write nothing. If the
    /// transaction fails, the cache is reloaded from the file and every op of the group
    /// fails with the backend error (none of them was done).
    fn run_group(&self, batch: Vec<Queued>) -> Vec<(u64, Result<Outcome, ProviderError>)> {
        let mut inner = match self.lock() {
            Ok(i) => i,
            Err(e) => {
                return batch
                    .into_iter()
                    .map(|q| (q.ticket, Err(e.clone())))
                    .collect()
            }
        };
        let mut results = Vec::with_capacity(batch.len());
        let mut deltas = Vec::new();
        let mut calls = Vec::new();
        for q in &batch {
            let inner = &mut *inner;
            match rules::effect(&inner.tenant, &inner.index, inner.counters, &q.op) {
                Ok(effect) => {
                    delta::apply_to_cache(
                        &mut inner.tenant,
                        &mut inner.index,
                        &mut inner.counters,
                        &effect.deltas,
                    );
                    if !effect.deltas.is_empty() {
                        calls.push(WRITE_CALLS.fetch_add(1, Ordering::SeqCst) + 1);
                    }
                    deltas.extend(effect.deltas);
                    results.push((q.ticket, Ok(effect.outcome)));
                }
                Err(e) => results.push((q.ticket, Err(e))),
            }
        }
        if deltas.is_empty() {
            return results;
        }
        match self.write(&mut inner, &deltas, &calls, true) {
            Ok(()) => {
                inner.meta_dirty = false;
                self.transactions.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if let Err(reload) = self.reload(&mut inner) {
                    eprintln!(
                        "crmctl: cannot reload the local tenant after a failed write: {reload}"
                    );
                }
                for r in results.iter_mut().filter(|r| r.1.is_ok()) {
                    r.1 = Err(e.clone());
                }
            }
        }
        results
    }

    /// Reload the cache from the file (after a failed transaction).
    fn reload(&self, inner: &mut Inner) -> Result<(), ProviderError> {
        let loaded = match &inner.conn {
            Some(conn) => store::load(conn, &self.path)?,
            None => None,
        };
        let (tenant, counters) = loaded.unwrap_or_else(|| (Tenant::fresh(""), Counters::default()));
        inner.index = Index::build(&tenant);
        inner.tenant = tenant;
        inner.counters = counters;
        if let Some(hint) = inner.domain_hint.clone() {
            if inner.tenant.domain.is_empty() {
                inner.tenant.domain = hint;
                inner.meta_dirty = true;
            }
        }
        Ok(())
    }
}

impl Provider for LocalProvider {
    fn observe(&self) -> Result<Tenant, ProviderError> {
        Ok(self.lock()?.tenant.clone())
    }

    fn execute(&self, op: &Op) -> Result<Outcome, ProviderError> {
        self.submit(std::slice::from_ref(op))
            .pop()
            .expect("one result per op")
    }

    fn execute_batch(&self, ops: &[Op]) -> Vec<Result<Outcome, ProviderError>> {
        self.submit(ops)
    }

    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }
}

/// Ops per `execute_batch` that apply sends: one SQLite transaction serves them all.
const BATCH_SIZE: usize = 64;

impl LocalProvider {
    /// Queue ops for the next group commit and wait for their results.
    fn submit(&self, ops: &[Op]) -> Vec<Result<Outcome, ProviderError>> {
        let mut results: Vec<Option<Result<Outcome, ProviderError>>> = vec![None; ops.len()];
        let poisoned = || ProviderError::Backend("local tenant queue poisoned by a panic".into());
        let mut g = match self.group.lock() {
            Ok(g) => g,
            Err(_) => return ops.iter().map(|_| Err(poisoned())).collect(),
        };
        let mut tickets = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let call = EXECUTE_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
            if faults().fail_at == Some(call) {
                results[i] = Some(Err(ProviderError::Backend(format!(
                    "injected failure (CRMCTL_LOCAL_FAIL_AT={call})"
                ))));
                continue;
            }
            let ticket = g.next_ticket;
            g.next_ticket += 1;
            g.queue.push(Queued {
                ticket,
                op: op.clone(),
            });
            tickets.push((i, ticket));
        }
        while !tickets.is_empty() {
            tickets.retain(|(i, t)| match g.done.remove(t) {
                Some(r) => {
                    results[*i] = Some(r);
                    false
                }
                None => true,
            });
            if tickets.is_empty() {
                break;
            }
            if !g.leader {
                // Lead: write everything queued so far (our ops included) in one transaction.
                g.leader = true;
                let batch = std::mem::take(&mut g.queue);
                drop(g);
                let done = self.run_group(batch);
                g = match self.group.lock() {
                    Ok(g) => g,
                    Err(_) => return ops.iter().map(|_| Err(poisoned())).collect(),
                };
                g.done.extend(done);
                g.leader = false;
                self.group_done.notify_all();
                continue;
            }
            g = match self.group_done.wait(g) {
                Ok(g) => g,
                Err(_) => return ops.iter().map(|_| Err(poisoned())).collect(),
            };
        }
        results
            .into_iter()
            .map(|r| r.expect("every op has a result"))
            .collect()
    }
}

/// Counters at least as high as every id of the form `xxx-NNNNNN` in the tenant, so that a
/// later creation never reuses an imported id.
fn counters_covering(t: &Tenant, mut c: Counters) -> Counters {
    fn num(id: &str, prefix: &str) -> u64 {
        id.strip_prefix(prefix)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
    for id in t.users.keys() {
        c.user = c.user.max(num(id, "usr-"));
    }
    for id in t.groups.keys() {
        c.group = c.group.max(num(id, "grp-"));
    }
    for id in t.instances.keys() {
        c.instance = c.instance.max(num(id, "org-"));
    }
    c
}

/// Referential integrity of an imported tenant (not the service's rules).
fn check_integrity(t: &Tenant) -> Result<(), ProviderError> {
    let bad = |m: String| Err(ProviderError::Invalid(m));
    for (k, u) in &t.users {
        if *k != u.id {
            return bad(format!(
                "users: key `{k}` differs from the user's id `{}`",
                u.id
            ));
        }
        for iid in u.roles.keys() {
            if !t.instances.contains_key(iid) {
                return bad(format!("users.{k}.roles: no instance with id `{iid}`"));
            }
        }
    }
    for (k, g) in &t.groups {
        if *k != g.id {
            return bad(format!(
                "groups: key `{k}` differs from the group's id `{}`",
                g.id
            ));
        }
        if let Some(m) = g.members.iter().find(|m| !t.users.contains_key(*m)) {
            return bad(format!("groups.{k}.members: no user with id `{m}`"));
        }
    }
    for (k, i) in &t.instances {
        if *k != i.id {
            return bad(format!(
                "instances: key `{k}` differs from the instance's id `{}`",
                i.id
            ));
        }
        if let Some(g) = &i.security_group {
            if !t.groups.contains_key(g) {
                return bad(format!(
                    "instances.{k}.security_group: no group with id `{g}`"
                ));
            }
        }
    }
    Ok(())
}
