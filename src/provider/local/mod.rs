//! The embedded local tenant: a tenant kept in a SQLite file that enforces domain.md on its
//! own, independently of the planner (`--backend local:PATH`, the default).
//!
//! # Model
//!
//! - A missing (or 0-byte) file holds no tenant; the provider then starts from a fresh one
//!   ([`Tenant::fresh`]): a new paid subscription with one production slot ready to
//!   configure, 5 GB storage, versions 7.0.0 to 8.1.0. `observe` never creates the file;
//!   the first `execute` that changes something does. [`LocalProvider::file`] says which
//!   case was found, so that the CLI never mistakes a missing tenant for an empty one.
//! - Ids are deterministic: `usr-000001`, `grp-000001`, `org-000001`, from counters kept in
//!   the file, so runs and tests are reproducible.
//! - The whole tenant is cached in memory. Several writers may share one file (two applies
//!   with different state files, `crmctl local set` during an apply), as they share the
//!   service: each write begins an IMMEDIATE transaction (the file's write lock), reads the
//!   cache again inside it when another connection committed since it was read (`PRAGMA
//!   data_version`), then checks each op against that fresh cache (every rule of
//!   domain.md, refusals name the rule), takes ids from the fresh counters, writes only the
//!   rows it changes (see the `store` module) and commits. `observe` reads the file again
//!   when it changed (a cheap check otherwise); admin edits (`local set/import/edit`) work
//!   on the current content inside their transaction too.
//!
//! # Who changed what (issue 14 item 2)
//!
//! Every write records, per object it changes (a user, a group, an instance, and the
//! tenant-wide `licenses.PLAN`, `storage`, `slots`), who made it and when, in the
//! `changes` table; `observe` returns them as [`Tenant::changed`], which the drift of a
//! plan shows. The actor is `crmctl apply (USER)` by default and `crmctl local (USER)` (or
//! `--by`) for the admin edits ([`LocalProvider::set_actor`]); the time is RFC 3339 UTC
//! (`CRMCTL_LOCAL_NOW` fixes it, for tests). A deleted object's record goes with it.
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
//! - `CRMCTL_LOCAL_PAUSE_AFTER=N` with `CRMCTL_LOCAL_PAUSE_FILE=PATH`: right after the
//!   Nth call that changes the tenant commits, the process creates PATH and waits (up to
//!   60 s) until it is removed (a test acts on the state's lock meanwhile).
//!
//! Calls that change nothing (`adopt`, a set to the current value) do not count for the
//! aborts and the pause, so that a crash point lands on a write however many adoptions come first.
//!
//! Long-running operations (issue 11 item 4; module `lro`): with `CRMCTL_LOCAL_LRO=1`,
//! `configure_instance`, `copy_instance` and `reset_instance` answer *accepted* with an
//! operation handle stored in the tenant file, and end on their Nth poll
//! (`CRMCTL_LOCAL_LRO_POLLS=N`, default 2; `CRMCTL_LOCAL_LRO_DELAY_MS`, default 10, is the
//! `retry_after` they give). Each accept and poll is a call that changes the tenant;
//! `CRMCTL_LOCAL_EXIT_AT_POLL=N` aborts the process on the Nth poll. Without the knob,
//! nothing changes.
//!
//! # Async
//!
//! The [`Provider`] methods are async; the SQLite work stays synchronous and runs on
//! tokio's blocking pool (inline without a runtime), so that concurrent requests still
//! meet in one group-commit transaction. [`LocalProvider::observe`] and
//! [`LocalProvider::execute`] are the blocking forms (admin commands, tests).

pub(crate) mod delta;
mod faults;
pub(crate) mod integrity;
mod lro;
pub(crate) mod rules;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use crate::domain::op::Op;
use crate::observed::{LastChange, Tenant};
use crate::provider::{
    BoxFuture, Executed, OperationHandle, Outcome, Polled, Provider, ProviderError, RequestFamily,
    Scope,
};

use delta::{Counters, Delta, Index, Meta};
use integrity::{check_integrity, counters_covering};

/// The embedded local tenant provider (`--backend local:PATH`).
pub struct LocalProvider {
    file: TenantFile,
    /// Shared with the blocking tasks that run requests (`spawn_blocking` needs `'static`).
    core: Arc<Core>,
}

/// The connection, the cache and the group-commit queue of one open tenant file.
struct Core {
    path: PathBuf,
    inner: Mutex<Inner>,
    group: Mutex<Group>,
    group_done: Condvar,
    transactions: AtomicU64,
    /// Who the writes are recorded as (issue 14 item 2; [`LocalProvider::set_actor`]).
    actor: Mutex<String>,
}

/// What the tenant file held when it was opened. A missing tenant is not an empty one
/// (issue 9 item 4): the caller decides whether a fresh tenant may start there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantFile {
    /// No file at the path.
    Missing,
    /// A file without a tenant: 0 bytes, or a database whose first change never committed.
    Empty,
    /// A tenant.
    Present,
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

/// The result of each queued op, by ticket.
type Results = Vec<(u64, Result<Outcome, ProviderError>)>;

struct Queued {
    ticket: u64,
    op: Op,
}

struct Inner {
    conn: Option<Connection>,
    cache: Cache,
}

/// The tenant as last read from the file (plus this process's own committed changes).
#[derive(Clone)]
struct Cache {
    tenant: Tenant,
    index: Index,
    counters: Counters,
    /// `PRAGMA data_version` of the connection when the cache was last read from the file:
    /// another writer (process or connection) committed since when it differs. `None`: not
    /// read through the connection yet.
    synced: Option<i64>,
    /// The file holds the tenant-level row (false for a fresh tenant not written yet).
    stored: bool,
    /// The tenant-level row must be written with the next change (domain hint).
    meta_dirty: bool,
    /// The domain hint, kept to apply it again when the cache is reloaded.
    domain_hint: Option<String>,
}

impl Cache {
    fn fresh() -> Cache {
        let tenant = Tenant::fresh("");
        Cache {
            index: Index::build(&tenant),
            tenant,
            counters: Counters::default(),
            synced: None,
            stored: false,
            meta_dirty: false,
            domain_hint: None,
        }
    }

    /// Replace the cache with what the file holds (`None`: no tenant row yet).
    fn install(&mut self, loaded: Option<(Tenant, Counters)>, version: Option<i64>) {
        let (tenant, counters, stored) = match loaded {
            Some((t, c)) => (t, c, true),
            None => (Tenant::fresh(""), Counters::default(), false),
        };
        self.index = Index::build(&tenant);
        self.tenant = tenant;
        self.counters = counters;
        self.stored = stored;
        self.synced = version;
        self.meta_dirty = false;
        if let Some(hint) = self.domain_hint.clone() {
            if self.tenant.domain.is_empty() {
                self.tenant.domain = hint;
                self.meta_dirty = true;
            }
        }
    }

    /// Bring the cache up to date with the file: reload it when another connection
    /// committed since it was read. Inside a write transaction this sees every commit (the
    /// write lock is held); inside a read transaction, one snapshot.
    fn sync(&mut self, conn: &Connection, path: &Path) -> Result<(), ProviderError> {
        // Read before the load: a commit in between only causes one more reload later.
        let version = store::data_version(conn, path)?;
        if self.synced != Some(version) {
            let loaded = store::load(conn, path)?;
            self.install(loaded, Some(version));
        }
        Ok(())
    }
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("path", &self.core.path)
            .finish()
    }
}

/// The length of the file at `path`, `None` when there is none.
fn file_len(path: &Path) -> Result<Option<u64>, ProviderError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ProviderError::Backend(format!("{}: {e}", path.display()))),
    }
}

impl LocalProvider {
    /// Open the local tenant at `path`. A missing (or 0-byte) file holds no tenant: the
    /// provider then starts from a fresh one, created on the first change, never by
    /// observe; [`LocalProvider::file`] tells the caller which case it is.
    pub fn open(path: &Path) -> Result<LocalProvider, ProviderError> {
        let len = file_len(path)?;
        let mut inner = Inner {
            conn: None,
            cache: Cache::fresh(),
        };
        // A 0-byte file is left alone (SQLite would make it a database on open).
        if len.is_some_and(|n| n > 0) {
            let mut conn = store::connect(path, false)?;
            let tx = store::begin_read(&mut conn, path)?;
            inner.cache.sync(&tx, path)?;
            drop(tx);
            inner.conn = Some(conn);
        }
        let file = match len {
            None => TenantFile::Missing,
            Some(_) if inner.cache.stored => TenantFile::Present,
            Some(_) => TenantFile::Empty,
        };
        Ok(LocalProvider {
            file,
            core: Arc::new(Core {
                path: path.to_path_buf(),
                inner: Mutex::new(inner),
                group: Mutex::new(Group::default()),
                group_done: Condvar::new(),
                transactions: AtomicU64::new(0),
                actor: Mutex::new(default_actor("crmctl apply")),
            }),
        })
    }

    /// The file holding the tenant.
    pub fn path(&self) -> &Path {
        &self.core.path
    }

    /// What the file held when it was opened.
    pub fn file(&self) -> TenantFile {
        self.file
    }

    /// SQLite write transactions committed by `execute` so far (several concurrent ops share
    /// one transaction: group commit). For benchmarks.
    pub fn transactions(&self) -> u64 {
        self.core.transactions.load(Ordering::Relaxed)
    }

    /// Whether the file exists (a tenant that was never changed has none).
    pub fn exists(&self) -> bool {
        self.core.lock().map(|i| i.conn.is_some()).unwrap_or(false)
    }

    /// Record the writes of this provider from now on as made by `actor` (issue 14 item 2):
    /// e.g. `crmctl local (ana)` for the admin edits. Default: `crmctl apply (USER)`.
    pub fn set_actor(&self, actor: impl Into<String>) {
        *self.core.actor.lock().unwrap_or_else(|p| p.into_inner()) = actor.into();
    }

    /// Give a tenant without a domain (a fresh one) its domain, e.g. the desired file's
    /// `tenant`. Nothing is written now; the domain is stored with the next change.
    pub fn set_domain_hint(&self, domain: &str) -> Result<(), ProviderError> {
        self.core.set_domain_hint(domain)
    }

    /// Replace the whole tenant (the admin center's view of `crmctl local import`): no
    /// service rule is checked, only that references point at existing objects. Only the
    /// rows that differ from the file's current content are written, in one transaction.
    pub fn admin_replace(&self, new: Tenant) -> Result<(), ProviderError> {
        check_integrity(&new)?;
        self.core.admin_write(|_| Ok(new))
    }

    /// [`LocalProvider::admin_replace`] for `crmctl local edit`: refused when the tenant
    /// is no longer `before` (another run or command wrote to it during the edit), so that
    /// an edit never reverts a change it did not see.
    pub fn admin_replace_unchanged(
        &self,
        before: &Tenant,
        new: Tenant,
    ) -> Result<(), ProviderError> {
        self.core.admin_replace_unchanged(before, new)
    }

    /// Change the tenant with a closure (for `crmctl local set`): no service rule is checked.
    /// The closure sees the file's current content, inside the write transaction, so that
    /// a concurrent apply's changes are neither lost nor reverted.
    pub fn admin_update(
        &self,
        f: impl FnOnce(&mut Tenant) -> Result<(), String>,
    ) -> Result<(), ProviderError> {
        self.core.admin_update(f)
    }

    /// The whole tenant as the file holds it now (blocking; the admin commands' view). The
    /// [`Provider::observe`] of the trait reads a [`Scope`] of it.
    pub fn observe(&self) -> Result<Tenant, ProviderError> {
        self.core.observe(&Scope::all())
    }

    /// Execute one op and wait until it is done (blocking; a long-running one, in the LRO
    /// mode, is polled to its end). Apply uses the async [`Provider::execute`] instead.
    pub fn execute(&self, op: &Op) -> Result<Outcome, ProviderError> {
        let executed = self
            .core
            .execute_now(std::slice::from_ref(op))
            .pop()
            .expect("one result per op")?;
        match executed {
            Executed::Done(outcome) => Ok(outcome),
            Executed::Accepted(handle) => loop {
                match self.core.poll_operation(&handle.id)? {
                    Polled::Done(outcome) => return Ok(outcome),
                    Polled::Failed(e) => return Err(e),
                    Polled::Running { retry_after } => {
                        std::thread::sleep(retry_after.unwrap_or(Duration::from_millis(10)))
                    }
                }
            },
        }
    }
}

impl Core {
    fn set_domain_hint(&self, domain: &str) -> Result<(), ProviderError> {
        let mut inner = self.lock()?;
        let cache = &mut inner.cache;
        if !domain.is_empty() {
            cache.domain_hint = Some(domain.to_string());
            if cache.tenant.domain.is_empty() {
                cache.tenant.domain = domain.to_string();
                cache.meta_dirty = true;
            }
        }
        Ok(())
    }

    fn admin_replace_unchanged(&self, before: &Tenant, new: Tenant) -> Result<(), ProviderError> {
        check_integrity(&new)?;
        self.admin_write(|current| {
            if current != before {
                return Err(ProviderError::Invalid(
                    "the tenant changed while it was being edited (another crmctl run or `crmctl local` command wrote to it); nothing was saved".into(),
                ));
            }
            Ok(new)
        })
    }

    fn admin_update(
        &self,
        f: impl FnOnce(&mut Tenant) -> Result<(), String>,
    ) -> Result<(), ProviderError> {
        self.admin_write(|current| {
            let mut new = current.clone();
            f(&mut new).map_err(ProviderError::Invalid)?;
            check_integrity(&new)?;
            Ok(new)
        })
    }

    /// One admin write: begin the write transaction, bring the cache up to date, compute
    /// the new tenant from the current one, write the rows that differ, commit.
    fn admin_write(
        &self,
        f: impl FnOnce(&Tenant) -> Result<Tenant, ProviderError>,
    ) -> Result<(), ProviderError> {
        let mut guard = self.lock()?;
        let (tx, cache) = self.begin_write(&mut guard)?;
        let new = f(&cache.tenant)?;
        let counters = counters_covering(&new, cache.counters);
        let mut deltas = delta::diff(&cache.tenant, &new, cache.counters);
        if counters != cache.counters || !cache.stored || cache.meta_dirty {
            deltas.retain(|d| !matches!(d, Delta::Meta(_)));
            deltas.insert(0, Delta::Meta(Box::new(Meta::of(&new, counters))));
        }
        if deltas.is_empty() {
            return Ok(());
        }
        let stamps = delta::stamps(&cache.tenant, &deltas, &self.who());
        deltas.extend(stamps);
        let result = (|| {
            store::write(&tx, &self.path, &deltas)?;
            tx.commit().map_err(store::db_err(&self.path))
        })();
        match result {
            Ok(()) => {
                delta::apply_to_cache(
                    &mut cache.tenant,
                    &mut cache.index,
                    &mut cache.counters,
                    &deltas,
                );
                cache.stored = true;
                cache.meta_dirty = false;
                Ok(())
            }
            Err(e) => {
                cache.synced = None;
                Err(e)
            }
        }
    }

    /// Begin a write transaction (IMMEDIATE; the file is created when missing) and bring
    /// the cache up to date inside it.
    fn begin_write<'g>(
        &self,
        inner: &'g mut Inner,
    ) -> Result<(rusqlite::Transaction<'g>, &'g mut Cache), ProviderError> {
        if inner.conn.is_none() {
            inner.conn = Some(store::connect(&self.path, true)?);
            inner.cache.synced = None;
        }
        let Inner { conn, cache } = inner;
        let conn = conn.as_mut().expect("connection opened above");
        let tx = store::begin(conn, &self.path)?;
        cache.sync(&tx, &self.path)?;
        Ok((tx, cache))
    }

    /// Write `deltas` (already in `cache`) and, when due, the tenant-level row from the
    /// cache (the newest one: it holds the deltas' effects), then commit. `calls`: the
    /// numbers of the tenant-changing calls inside, for fault injection.
    fn commit(
        &self,
        tx: rusqlite::Transaction<'_>,
        cache: &mut Cache,
        deltas: &[Delta],
        calls: &[u64],
    ) -> Result<(), ProviderError> {
        store::write(&tx, &self.path, deltas)?;
        if cache.meta_dirty || !cache.stored {
            let head = Delta::Meta(Box::new(Meta::of(&cache.tenant, cache.counters)));
            store::write(&tx, &self.path, &[head])?;
        }
        faults::before_commit(calls);
        tx.commit().map_err(store::db_err(&self.path))?;
        faults::after_commit(calls);
        cache.meta_dirty = false;
        cache.stored = true;
        self.transactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The record of a write made now by this provider's actor.
    fn who(&self) -> LastChange {
        LastChange {
            by: Some(self.actor.lock().unwrap_or_else(|p| p.into_inner()).clone()),
            at: Some(now_rfc3339()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, ProviderError> {
        self.inner
            .lock()
            .map_err(|_| ProviderError::Backend("local tenant lock poisoned by a panic".into()))
    }

    /// Bring the cache up to date with the file when another writer changed it (a cheap
    /// check when nobody did), outside any write transaction.
    fn refresh(&self, inner: &mut Inner) -> Result<(), ProviderError> {
        if inner.conn.is_none() {
            // Another process may have created the file since it was opened.
            if file_len(&self.path)?.is_none_or(|n| n == 0) {
                return Ok(());
            }
            inner.conn = Some(store::connect(&self.path, false)?);
            inner.cache.synced = None;
        }
        let Inner { conn, cache } = inner;
        let conn = conn.as_mut().expect("connection opened above");
        if cache.synced == Some(store::data_version(conn, &self.path)?) {
            return Ok(());
        }
        let tx = store::begin_read(conn, &self.path)?;
        cache.sync(&tx, &self.path)
    }

    /// Check each op against `cache` as left by the ops before it, and apply its effect
    /// to the cache at once. Returns the results, the deltas to write and the numbers of
    /// the tenant-changing calls (for fault injection; `count` numbers them).
    fn effects(
        cache: &mut Cache,
        batch: &[Queued],
        count: bool,
        who: &LastChange,
    ) -> (Results, Vec<Delta>, Vec<u64>) {
        let mut results = Vec::with_capacity(batch.len());
        let mut deltas = Vec::new();
        let mut calls = Vec::new();
        for q in batch {
            match rules::effect(&cache.tenant, &cache.index, cache.counters, &q.op) {
                Ok(mut effect) => {
                    if !effect.deltas.is_empty() {
                        let stamps = delta::stamps(&cache.tenant, &effect.deltas, who);
                        effect.deltas.extend(stamps);
                    }
                    delta::apply_to_cache(
                        &mut cache.tenant,
                        &mut cache.index,
                        &mut cache.counters,
                        &effect.deltas,
                    );
                    if count && !effect.deltas.is_empty() {
                        calls.push(faults::next_write_call());
                    }
                    deltas.extend(effect.deltas);
                    results.push((q.ticket, Ok(effect.outcome)));
                }
                Err(e) => results.push((q.ticket, Err(e))),
            }
        }
        (results, deltas, calls)
    }

    /// Run queued ops as one transaction. The IMMEDIATE transaction begins first; the
    /// cache is brought up to date inside it when another writer committed since it was
    /// read (issue 9 item 1: several writers on one file, as the service has); then each
    /// op is checked against the fresh cache as left by the ops before it, ids come from
    /// the fresh counters, and refused ops write nothing. If the transaction fails, every
    /// op of the group fails with the backend error (none of them was done) and the cache
    /// is read again from the file.
    fn run_group(&self, batch: Vec<Queued>) -> Results {
        let fail_all = |e: &ProviderError| {
            batch
                .iter()
                .map(|q| (q.ticket, Err(e.clone())))
                .collect::<Vec<_>>()
        };
        let mut guard = match self.lock() {
            Ok(i) => i,
            Err(e) => return fail_all(&e),
        };
        let inner = &mut *guard;
        if inner.conn.is_none() {
            if let Err(e) = self.refresh(inner) {
                return fail_all(&e);
            }
        }
        if inner.conn.is_none() {
            // No file yet: refused requests and no-ops must not create it. The fresh cache
            // is small; try the ops on a copy first.
            let mut probe = inner.cache.clone();
            let (results, deltas, _) = Self::effects(&mut probe, &batch, false, &self.who());
            if deltas.is_empty() {
                return results;
            }
            match store::connect(&self.path, true) {
                Ok(c) => inner.conn = Some(c),
                Err(e) => return fail_all(&e),
            }
            inner.cache.synced = None;
        }
        let Inner { conn, cache } = inner;
        let conn = conn.as_mut().expect("connection opened above");
        let tx = match store::begin(conn, &self.path) {
            Ok(tx) => tx,
            Err(e) => return fail_all(&e),
        };
        if let Err(e) = cache.sync(&tx, &self.path) {
            cache.synced = None;
            return fail_all(&e);
        }
        let who = self.who();
        let (mut results, deltas, calls) = Self::effects(cache, &batch, true, &who);
        if deltas.is_empty() {
            return results; // the transaction ends without writing
        }
        if let Err(e) = self.commit(tx, cache, &deltas, &calls) {
            // The cache holds effects that were not committed: read it again.
            cache.synced = None;
            if let Err(reload) = self.refresh(inner) {
                eprintln!("crmctl: cannot reload the local tenant after a failed write: {reload}");
            }
            for r in results.iter_mut().filter(|r| r.1.is_ok()) {
                r.1 = Err(e.clone());
            }
        }
        results
    }
}

impl Provider for LocalProvider {
    /// The part of the tenant in `scope`, as the file holds it now: the cache, read again
    /// when another writer changed the file since (a cheap check when nobody did). Only the
    /// maps in the scope are copied out of the cache.
    fn observe<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Tenant, ProviderError>> {
        Box::pin(async move { self.core.observe(scope) })
    }

    fn execute<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Result<Executed, ProviderError>> {
        Box::pin(async move {
            let mut results = self.execute_batch(std::slice::from_ref(op)).await;
            results.pop().expect("one result per op")
        })
    }

    /// The ops go to the group commit on tokio's blocking pool (the SQLite work is
    /// synchronous; concurrent requests share one transaction), or inline without a
    /// runtime.
    fn execute_batch<'a>(
        &'a self,
        ops: &'a [Op],
    ) -> BoxFuture<'a, Vec<Result<Executed, ProviderError>>> {
        let core = self.core.clone();
        let ops = ops.to_vec();
        Box::pin(blocking(move || core.execute_now(&ops)))
    }

    /// Every op is one family: a batch of up to [`BATCH_SIZE`] ops is one transaction.
    fn family(&self, _op: &Op) -> RequestFamily {
        RequestFamily {
            name: "local",
            max_ops: BATCH_SIZE,
        }
    }

    fn poll<'a>(
        &'a self,
        handle: &'a OperationHandle,
    ) -> BoxFuture<'a, Result<Polled, ProviderError>> {
        let core = self.core.clone();
        let id = handle.id.clone();
        Box::pin(blocking(move || core.poll_operation(&id)))
    }
}

/// `NAME (USER)`: an actor of the local tenant's writes, with the account running crmctl
/// (`$USER`, else `$USERNAME`), or `NAME` alone when neither is set (issue 14 item 2).
pub fn default_actor(name: &str) -> String {
    match std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        Some(user) => format!("{name} ({})", user.trim()),
        None => name.to_string(),
    }
}

/// The time of a write, RFC 3339 UTC to the second. `CRMCTL_LOCAL_NOW` (test knob) fixes
/// it, so that a test can show who changed what when in a snapshot.
fn now_rfc3339() -> String {
    if let Some(t) = std::env::var("CRMCTL_LOCAL_NOW")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return t;
    }
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Run `f` on tokio's blocking pool when there is a runtime, else here. A panic in `f`
/// goes on in the caller.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => match rt.spawn_blocking(f).await {
            Ok(v) => v,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("the local tenant's blocking task was cancelled: {e}"),
            },
        },
        Err(_) => f(),
    }
}

/// Ops per `execute_batch` that apply sends: one SQLite transaction serves them all.
const BATCH_SIZE: usize = 64;

impl Core {
    /// Observe: the part of the cache in `scope`.
    fn observe(&self, scope: &Scope) -> Result<Tenant, ProviderError> {
        let mut inner = self.lock()?;
        self.refresh(&mut inner)?;
        if *scope == Scope::all() {
            return Ok(inner.cache.tenant.clone());
        }
        Ok(scope.trim(&inner.cache.tenant))
    }

    /// Execute ops now (blocking): long-running ones, in the LRO mode, are accepted as
    /// operations ([`lro`]); the others go to the group commit.
    fn execute_now(&self, ops: &[Op]) -> Vec<Result<Executed, ProviderError>> {
        if !lro::enabled() || !ops.iter().any(lro::long_running) {
            return self
                .submit(ops)
                .into_iter()
                .map(|r| r.map(Executed::Done))
                .collect();
        }
        ops.iter()
            .map(|op| {
                if lro::long_running(op) {
                    if let Some(e) = faults::injected_failure() {
                        return Err(e);
                    }
                    self.accept(op)
                } else {
                    self.submit(std::slice::from_ref(op))
                        .pop()
                        .expect("one result per op")
                        .map(Executed::Done)
                }
            })
            .collect()
    }

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
            if let Some(e) = faults::injected_failure() {
                results[i] = Some(Err(e));
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
