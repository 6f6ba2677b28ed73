//! The SQLite file behind the local tenant.
//!
//! WAL journal with `synchronous=NORMAL`: a committed transaction survives a crash or
//! `kill -9` of the process (not necessarily a power loss, which is fine for a test and
//! demo tenant); an uncommitted one is rolled back on the next open. One row per object:
//!
//! - `meta(key, value)`: `tenant` -> JSON of the tenant-level fields and id counters;
//! - `users(id, data)`, `groups(id, data)`, `instances(id, data)`: JSON per object
//!   (users without roles, groups without members);
//! - `members(group_id, user_id)`: one row per membership;
//! - `roles(user_id, instance_id, roles)`: a user's roles in one instance (JSON array);
//! - `changes(kind, id, by, at)`: who last changed each object and when (issue 14 item 2;
//!   schema version 2: a version-1 file gets the table when it is opened, empty).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::observed::{Group, Instance, Tenant, User};
use crate::provider::local::delta::{Counters, Delta, Meta, Stamped};
use crate::provider::ProviderError;

/// Schema version stored in `meta`. 2: the `changes` table ([`CHANGES`]).
const SCHEMA_VERSION: &str = "2";

/// Who last changed each object and when (issue 14 item 2): `kind` is `user`, `group`,
/// `instance` (by id) or `tenant` (by address). Added in schema version 2; created on open
/// in a file made before it.
const CHANGES: &str = "
CREATE TABLE IF NOT EXISTS changes (
    kind TEXT NOT NULL, id TEXT NOT NULL, by TEXT, at TEXT, PRIMARY KEY (kind, id)
) WITHOUT ROWID;
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    group_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members(user_id);
CREATE TABLE IF NOT EXISTS roles (
    user_id TEXT NOT NULL, instance_id TEXT NOT NULL, roles TEXT NOT NULL,
    PRIMARY KEY (user_id, instance_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS roles_by_instance ON roles(instance_id);
CREATE TABLE IF NOT EXISTS changes (
    kind TEXT NOT NULL, id TEXT NOT NULL, by TEXT, at TEXT, PRIMARY KEY (kind, id)
) WITHOUT ROWID;
";

pub(crate) fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> ProviderError + '_ {
    move |e| ProviderError::Backend(format!("{}: {e}", path.display()))
}

fn json_err(path: &Path, what: &str, e: serde_json::Error) -> ProviderError {
    ProviderError::Backend(format!(
        "{}: corrupt {what} row: {e} (fix it with `crmctl local edit` or `crmctl local import`)",
        path.display()
    ))
}

/// Open (and, with `create`, create) the database with the pragmas the durability contract
/// needs.
pub(crate) fn connect(path: &Path, create: bool) -> Result<Connection, ProviderError> {
    use rusqlite::OpenFlags;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                ProviderError::Backend(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let err = db_err(path);
    let conn = Connection::open_with_flags(path, flags).map_err(&err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(&err)?;
    // Two processes creating one file at the same moment: switching the journal mode and
    // reading the schema while the other connection does the same can fail with "database
    // is locked" before SQLite's busy handler is consulted; such a setup is retried (within
    // the same 10 s as the busy timeout).
    retry_busy(|| {
        let (new, migrate) = refuse_foreign(&conn, path)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(&err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(ProviderError::Backend(format!(
                "{}: cannot switch to WAL journal (got {mode})",
                path.display()
            )));
        }
        // A checkpoint fsyncs; with the default (every 1,000 pages) checkpoints dominate a
        // large apply. Every 10,000 pages (about 40 MB of WAL) keeps them rare.
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=10000;")
            .map_err(&err)?;
        if new {
            // All the tables or none: a crash while creating them never leaves a file that
            // [`refuse_foreign`] would take for another program's database.
            conn.execute_batch(&format!("BEGIN IMMEDIATE;{SCHEMA}COMMIT;"))
                .map_err(|e| {
                    let _ = conn.execute_batch("ROLLBACK;");
                    err(e)
                })?;
        } else if migrate {
            // Schema 1 -> 2: the `changes` table, empty (nothing known of earlier writes),
            // and the version, in one transaction.
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE;{CHANGES}INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');COMMIT;"
            ))
            .map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK;");
                err(e)
            })?;
        }
        Ok(())
    })?;
    Ok(conn)
}

/// The tables every tenant file has (created together by [`SCHEMA`]).
const TABLES: [&str; 6] = ["meta", "users", "groups", "instances", "members", "roles"];

/// Refuse a database that holds tables but not a tenant's (another program's file named
/// by a mistyped `--backend`), before anything is written to it: no table is created, the
/// journal mode is not changed (issue 9 item 4). `(true, _)`: a database without tables
/// (new), whose tables are to be created; `(false, true)`: a tenant of schema version 1,
/// without the `changes` table.
fn refuse_foreign(conn: &Connection, path: &Path) -> Result<(bool, bool), ProviderError> {
    let mut st = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .map_err(db_err(path))?;
    let tables: Vec<String> = st
        .query_map([], |r| r.get(0))
        .map_err(db_err(path))?
        .collect::<Result<_, _>>()
        .map_err(db_err(path))?;
    if tables.is_empty() {
        return Ok((true, false));
    }
    if TABLES.iter().all(|t| tables.iter().any(|n| n == t)) {
        return Ok((false, !tables.iter().any(|n| n == "changes")));
    }
    let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
    Err(ProviderError::Backend(format!(
        "{} is an SQLite database but not a crmctl tenant (it holds the table(s) {}{}); nothing was written to it. Check --backend (or CRMCTL_BACKEND)",
        path.display(),
        shown.join(", "),
        if tables.len() > shown.len() { ", ..." } else { "" }
    )))
}

/// Run `f` again while it fails because another connection holds the file ("database is
/// locked" / "busy"), for at most 10 s.
fn retry_busy<T>(mut f: impl FnMut() -> Result<T, ProviderError>) -> Result<T, ProviderError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match f() {
            Err(ProviderError::Backend(m))
                if (m.ends_with("database is locked") || m.contains("database is busy"))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5 + fastrand::u64(..20)));
            }
            other => return other,
        }
    }
}

/// Load the whole tenant. `None` when the file has no tenant yet.
pub(crate) fn load(
    conn: &Connection,
    path: &Path,
) -> Result<Option<(Tenant, Counters)>, ProviderError> {
    let err = db_err(path);
    let meta: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'tenant'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(&err)?;
    let Some(meta) = meta else { return Ok(None) };
    let meta: Meta = serde_json::from_str(&meta).map_err(|e| json_err(path, "meta", e))?;
    let mut t = Tenant {
        domain: meta.domain,
        trial: meta.trial,
        licenses: meta.licenses,
        storage: meta.storage,
        slots: meta.slots,
        versions: meta.versions,
        ..Tenant::default()
    };
    {
        let mut st = conn.prepare("SELECT data FROM users").map_err(&err)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(&err)?;
        for row in rows {
            let u: User =
                serde_json::from_str(&row.map_err(&err)?).map_err(|e| json_err(path, "user", e))?;
            t.users.insert(u.id.clone(), u);
        }
    }
    {
        let mut st = conn.prepare("SELECT data FROM groups").map_err(&err)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(&err)?;
        for row in rows {
            let g: Group = serde_json::from_str(&row.map_err(&err)?)
                .map_err(|e| json_err(path, "group", e))?;
            t.groups.insert(g.id.clone(), g);
        }
    }
    {
        let mut st = conn.prepare("SELECT data FROM instances").map_err(&err)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(&err)?;
        for row in rows {
            let i: Instance = serde_json::from_str(&row.map_err(&err)?)
                .map_err(|e| json_err(path, "instance", e))?;
            t.instances.insert(i.id.clone(), i);
        }
    }
    {
        let mut st = conn
            .prepare("SELECT group_id, user_id FROM members ORDER BY group_id")
            .map_err(&err)?;
        let mut rows = st.query([]).map_err(&err)?;
        while let Some(r) = rows.next().map_err(&err)? {
            let g: String = r.get(0).map_err(&err)?;
            let u: String = r.get(1).map_err(&err)?;
            if let Some(grp) = t.groups.get_mut(&g) {
                grp.members.insert(u);
            }
        }
    }
    {
        let mut st = conn
            .prepare("SELECT user_id, instance_id, roles FROM roles")
            .map_err(&err)?;
        let mut rows = st.query([]).map_err(&err)?;
        while let Some(r) = rows.next().map_err(&err)? {
            let u: String = r.get(0).map_err(&err)?;
            let i: String = r.get(1).map_err(&err)?;
            let roles: String = r.get(2).map_err(&err)?;
            let roles = serde_json::from_str(&roles).map_err(|e| json_err(path, "roles", e))?;
            if let Some(user) = t.users.get_mut(&u) {
                user.roles.insert(i, roles);
            }
        }
    }
    {
        let mut st = conn
            .prepare("SELECT kind, id, by, at FROM changes")
            .map_err(&err)?;
        let mut rows = st.query([]).map_err(&err)?;
        while let Some(r) = rows.next().map_err(&err)? {
            let kind: String = r.get(0).map_err(&err)?;
            let id: String = r.get(1).map_err(&err)?;
            let who = crate::observed::LastChange {
                by: r.get(2).map_err(&err)?,
                at: r.get(3).map_err(&err)?,
            };
            let map = match Stamped::parse(&kind) {
                Some(Stamped::User) => &mut t.changed.users,
                Some(Stamped::Group) => &mut t.changed.groups,
                Some(Stamped::Instance) => &mut t.changed.instances,
                Some(Stamped::Tenant) => &mut t.changed.tenant,
                None => continue,
            };
            map.insert(id, who);
        }
    }
    Ok(Some((t, meta.counters)))
}

/// `PRAGMA data_version`: changes whenever another connection (this process or another)
/// committed to the file since the last call on this connection; this connection's own
/// commits leave it unchanged. Cheap (no I/O beyond the WAL index).
pub(crate) fn data_version(conn: &Connection, path: &Path) -> Result<i64, ProviderError> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(db_err(path))
}

/// Begin a read transaction: the reads inside see one snapshot of the file, whatever
/// other writers commit meanwhile.
pub(crate) fn begin_read<'c>(
    conn: &'c mut Connection,
    path: &Path,
) -> Result<Transaction<'c>, ProviderError> {
    conn.transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(db_err(path))
}

/// Begin a write transaction (immediate: takes the write lock up front).
pub(crate) fn begin<'c>(
    conn: &'c mut Connection,
    path: &Path,
) -> Result<Transaction<'c>, ProviderError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err(path))
}

/// Write deltas inside a transaction.
pub(crate) fn write(
    tx: &Transaction<'_>,
    path: &Path,
    deltas: &[Delta],
) -> Result<(), ProviderError> {
    let err = db_err(path);
    for d in deltas {
        match d {
            Delta::Meta(m) => {
                tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES ('tenant', ?1)")
                    .map_err(&err)?
                    .execute(params![to_json(&**m)])
                    .map_err(&err)?;
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?1)",
                )
                .map_err(&err)?
                .execute(params![SCHEMA_VERSION])
                .map_err(&err)?;
            }
            Delta::PutUser(u) => {
                let mut row = (**u).clone();
                row.roles.clear();
                tx.prepare_cached("INSERT OR REPLACE INTO users(id, data) VALUES (?1, ?2)")
                    .map_err(&err)?
                    .execute(params![u.id, to_json(&row)])
                    .map_err(&err)?;
            }
            Delta::DelUser(id) => {
                for sql in [
                    "DELETE FROM users WHERE id = ?1",
                    "DELETE FROM members WHERE user_id = ?1",
                    "DELETE FROM roles WHERE user_id = ?1",
                    "DELETE FROM changes WHERE kind = 'user' AND id = ?1",
                ] {
                    tx.prepare_cached(sql)
                        .map_err(&err)?
                        .execute(params![id])
                        .map_err(&err)?;
                }
            }
            Delta::PutGroup(g) => {
                let mut row = (**g).clone();
                row.members.clear();
                tx.prepare_cached("INSERT OR REPLACE INTO groups(id, data) VALUES (?1, ?2)")
                    .map_err(&err)?
                    .execute(params![g.id, to_json(&row)])
                    .map_err(&err)?;
            }
            Delta::DelGroup(id) => {
                for sql in [
                    "DELETE FROM groups WHERE id = ?1",
                    "DELETE FROM members WHERE group_id = ?1",
                    "DELETE FROM changes WHERE kind = 'group' AND id = ?1",
                ] {
                    tx.prepare_cached(sql)
                        .map_err(&err)?
                        .execute(params![id])
                        .map_err(&err)?;
                }
            }
            Delta::AddMember(g, u) => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO members(group_id, user_id) VALUES (?1, ?2)",
                )
                .map_err(&err)?
                .execute(params![g, u])
                .map_err(&err)?;
            }
            Delta::DelMember(g, u) => {
                tx.prepare_cached("DELETE FROM members WHERE group_id = ?1 AND user_id = ?2")
                    .map_err(&err)?
                    .execute(params![g, u])
                    .map_err(&err)?;
            }
            Delta::SetRoles(u, i, roles) => {
                if roles.is_empty() {
                    tx.prepare_cached("DELETE FROM roles WHERE user_id = ?1 AND instance_id = ?2")
                        .map_err(&err)?
                        .execute(params![u, i])
                        .map_err(&err)?;
                } else {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO roles(user_id, instance_id, roles) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(&err)?
                    .execute(params![u, i, to_json(roles)])
                    .map_err(&err)?;
                }
            }
            Delta::PutInstance(i) => {
                tx.prepare_cached("INSERT OR REPLACE INTO instances(id, data) VALUES (?1, ?2)")
                    .map_err(&err)?
                    .execute(params![i.id, to_json(&**i)])
                    .map_err(&err)?;
            }
            Delta::PutBackup(id, instance, label) => {
                // Kept in `meta` (no table of its own: older tenant files open unchanged).
                let value = serde_json::json!({"instance": instance, "label": label});
                tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")
                    .map_err(&err)?
                    .execute(params![format!("backup:{id}"), value.to_string()])
                    .map_err(&err)?;
            }
            Delta::Stamp(kind, id, who) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO changes(kind, id, by, at) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(&err)?
                .execute(params![kind.as_str(), id, who.by, who.at])
                .map_err(&err)?;
            }
            Delta::DelInstance(id) => {
                for sql in [
                    "DELETE FROM instances WHERE id = ?1",
                    "DELETE FROM roles WHERE instance_id = ?1",
                    "DELETE FROM changes WHERE kind = 'instance' AND id = ?1",
                ] {
                    tx.prepare_cached(sql)
                        .map_err(&err)?
                        .execute(params![id])
                        .map_err(&err)?;
                }
            }
        }
    }
    Ok(())
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("tenant rows serialize")
}

/// A `meta` row other than the tenant's (e.g. a long-running operation), inside a
/// transaction.
pub(crate) fn get_meta(
    tx: &Transaction<'_>,
    path: &Path,
    key: &str,
) -> Result<Option<String>, ProviderError> {
    tx.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .map_err(db_err(path))?
        .query_row(params![key], |r| r.get(0))
        .optional()
        .map_err(db_err(path))
}

/// Insert or replace a `meta` row, inside a transaction.
pub(crate) fn put_meta(
    tx: &Transaction<'_>,
    path: &Path,
    key: &str,
    value: &str,
) -> Result<(), ProviderError> {
    tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")
        .map_err(db_err(path))?
        .execute(params![key, value])
        .map(|_| ())
        .map_err(db_err(path))
}
