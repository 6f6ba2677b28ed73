//! The state lock: `<state>.lock`, held for a whole plan or apply.
//!
//! The lock file holds JSON `{id, owner, pid, created, operation}` and is removed when the
//! [`StateLock`] is dropped. It is written whole before it exists: the JSON goes to a
//! temporary file beside it (fsync), which is then linked into place without replacing an
//! existing one (`persist_noclobber`: `renameat2(RENAME_NOREPLACE)` or `link`), so a crash
//! never leaves an empty or partial lock file (issue 9 item 5). A run that finds the file
//! fails with a message naming the holder; a lock left by a crashed run is removed with
//! `crmctl force-unlock ID`. A lock file that cannot be parsed anyway (written by hand,
//! damaged on disk, or by an older crmctl) gets an id derived from its bytes
//! (`unreadable-` + 16 hex digits of their SHA-256), printed in the error, so that
//! `force-unlock` can remove exactly that file and nobody is stuck.
//!
//! When the state path is a symlink, the lock lives beside its target
//! ([`crate::state::store::resolve_symlinks`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::state::remote;

/// What the lock file says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Lock id, given to `force-unlock`.
    pub id: String,
    /// `user@host` of the holder.
    pub owner: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When the lock was taken, in seconds since the Unix epoch.
    pub created: u64,
    /// What the holder is doing (`plan`, `apply`).
    pub operation: String,
}

/// Why a lock could not be taken or removed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the lock.
    #[error("the state {state} is locked by {} (pid {}, operation `{}`, taken {}, lock id {}).\nIf no crmctl run is active (e.g. it crashed), remove the lock with: crmctl force-unlock {}", .info.owner, .info.pid, .info.operation, describe_age(.info.created), .info.id, .info.id)]
    Held {
        /// The state file.
        state: PathBuf,
        /// The holder.
        info: LockInfo,
    },
    /// The lock file exists but its content is not a lock (empty, damaged, foreign).
    #[error("the state {state} is locked but the lock file {lock} is unreadable ({message}).\nIf no crmctl run is active, remove the lock with: crmctl force-unlock {id}")]
    Unreadable {
        /// The state file.
        state: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// What was wrong.
        message: String,
        /// The id `force-unlock` accepts for this file (derived from its bytes).
        id: String,
    },
    /// The lock file changed or disappeared while being read.
    #[error("the lock of the state {0} changed while being read (another run taking or releasing it); retry")]
    Busy(PathBuf),
    /// `force-unlock` was given an id that is not the lock's.
    #[error("the lock on {state} has id {actual}, not {given}; nothing removed (the lock is held by {owner})")]
    WrongId {
        /// The state file.
        state: PathBuf,
        /// Id given.
        given: String,
        /// Id of the lock.
        actual: String,
        /// Holder.
        owner: String,
    },
    /// `force-unlock` found no lock.
    #[error("the state {0} is not locked; nothing to do")]
    NotLocked(PathBuf),
    /// This run's lock is gone (`force-unlock`) or was replaced by another run's: the run
    /// must not write the state any more (issue 9 item 1: last writer wins otherwise).
    #[error("the lock {id} of the state {state} {} while this run was going: it stopped without writing the state again, so as not to overwrite what another run records", match .now { Some(i) => format!("was replaced by the lock {} of {} (pid {}, operation `{}`)", i.id, i.owner, i.pid, i.operation), None => "was removed (crmctl force-unlock)".to_string() })]
    Lost {
        /// The state file.
        state: PathBuf,
        /// This run's lock id.
        id: String,
        /// The lock there now, if any (an unreadable one counts as none).
        now: Option<Box<LockInfo>>,
    },
    /// The lock object of a remote state could not be read or written (issue 15 item 1).
    #[error("lock of the state: {0}")]
    Remote(crate::state::remote::RemoteError),
    /// I/O failure.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A held lock; removes its file on drop.
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
    info: LockInfo,
}

/// The lock file of a state file: `<state>.lock`, beside the symlink's target when the
/// state path is a symlink.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut s = crate::state::store::resolve_symlinks(state).into_os_string();
    s.push(".lock");
    PathBuf::from(s)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn describe_age(created: u64) -> String {
    let age = now_secs().saturating_sub(created);
    match age {
        0..=59 => format!("{age} s ago"),
        60..=3599 => format!("{} min ago", age / 60),
        3600..=86_399 => format!("{} h ago", age / 3600),
        _ => format!("{} days ago", age / 86_400),
    }
}

fn owner() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".to_string());
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_string());
    format!("{user}@{host}")
}

/// Read the lock of `state`, if any.
pub fn read_lock(state: &Path) -> Result<Option<LockInfo>, LockError> {
    let path = lock_path(state);
    if remote::is_remote(&path) {
        return match remote::get(remote::url_of(&path)).map_err(LockError::Remote)? {
            Some(f) => parse_lock(state, &path, &f.bytes).map(Some),
            None => Ok(None),
        };
    }
    match std::fs::read(&path) {
        Ok(bytes) => parse_lock(state, &path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LockError::Io { path, source }),
    }
}

fn parse_lock(state: &Path, path: &Path, bytes: &[u8]) -> Result<LockInfo, LockError> {
    serde_json::from_slice::<LockInfo>(bytes).map_err(|e| LockError::Unreadable {
        state: state.to_path_buf(),
        lock: path.to_path_buf(),
        message: if bytes.is_empty() {
            "it is empty".to_string()
        } else {
            e.to_string()
        },
        id: unreadable_id(bytes),
    })
}

/// The id of a lock file whose content is not a lock: `unreadable-` and the first 16 hex
/// digits of the SHA-256 of its bytes (the same bytes always give the same id, so the id
/// printed by the failed run is accepted by `force-unlock`, and only for that content).
fn unreadable_id(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    let digest = Sha256::digest(bytes);
    let mut id = String::from("unreadable-");
    for b in &digest[..8] {
        let _ = write!(id, "{b:02x}");
    }
    id
}

impl StateLock {
    /// Take the lock of `state` for `operation`; fails with [`LockError::Held`] when another
    /// run holds it. Creates the state's directory when missing.
    pub fn acquire(state: &Path, operation: &str) -> Result<StateLock, LockError> {
        let path = lock_path(state);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !remote::is_remote(&path))
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let info = LockInfo {
            id: format!("{:016x}", fastrand::u64(..)),
            owner: owner(),
            pid: std::process::id(),
            created: now_secs(),
            operation: operation.to_string(),
        };
        let json = serde_json::to_vec_pretty(&info).expect("lock info serializes");
        if remote::is_remote(&path) {
            // An object created only if absent (If-None-Match: *): of two runs, one wins.
            return match remote::put(remote::url_of(&path), json, remote::Expect::Absent) {
                Ok(_) => Ok(StateLock { path, info }),
                Err(remote::RemoteError::Conflict { .. }) => Err(match read_lock(state)? {
                    Some(info) => LockError::Held {
                        state: state.to_path_buf(),
                        info,
                    },
                    None => LockError::Busy(state.to_path_buf()),
                }),
                Err(e) => Err(LockError::Remote(e)),
            };
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // The whole content first, then linked into place: never an empty lock file.
        let mut tmp = tempfile::Builder::new()
            .prefix(".lock-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io)?;
        tmp.write_all(&json).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(match read_lock(state)? {
                    Some(info) => LockError::Held {
                        state: state.to_path_buf(),
                        info,
                    },
                    // Removed between our attempt and our read.
                    None => LockError::Busy(state.to_path_buf()),
                });
            }
            // A filesystem without links or no-replace renames: create the file
            // exclusively and write it (a crash in between can leave it empty, which
            // `force-unlock` handles).
            Err(e) => {
                drop(e.file);
                let mut file = match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Err(match read_lock(state)? {
                            Some(info) => LockError::Held {
                                state: state.to_path_buf(),
                                info,
                            },
                            None => LockError::Busy(state.to_path_buf()),
                        });
                    }
                    Err(e) => return Err(io(e)),
                };
                file.write_all(&json).map_err(io)?;
                file.sync_all().map_err(io)?;
            }
        }
        if let Some(d) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = crate::state::store::sync_dir(d);
        }
        Ok(StateLock { path, info })
    }

    /// The lock's details.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Whether the lock file is still this lock (same id): [`LockError::Lost`] when it was
    /// removed by `force-unlock` or replaced by another run's lock. A run checks before
    /// each state write (issue 9 item 1). `state`: the state path, for the message.
    pub fn check(&self, state: &Path) -> Result<(), LockError> {
        check_held(&self.path, &self.info.id, state)
    }
}

/// [`StateLock::check`] for the lock file `lock` and the id `id` (for a check that runs
/// where the [`StateLock`] is not: the apply engine's threads).
pub fn check_held(lock: &Path, id: &str, state: &Path) -> Result<(), LockError> {
    let read = if remote::is_remote(lock) {
        match remote::get(remote::url_of(lock)).map_err(LockError::Remote)? {
            Some(f) => Ok(f.bytes),
            None => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        }
    } else {
        std::fs::read(lock)
    };
    let now = match read {
        Ok(bytes) => serde_json::from_slice::<LockInfo>(&bytes)
            .ok()
            .map(Box::new),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(LockError::Io {
                path: lock.to_path_buf(),
                source,
            })
        }
    };
    if now.as_ref().is_some_and(|i| i.id == id) {
        return Ok(());
    }
    Err(LockError::Lost {
        state: state.to_path_buf(),
        id: id.to_string(),
        now,
    })
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Remove only our own lock (a force-unlock may have replaced it meanwhile).
        if remote::is_remote(&self.path) {
            let url = remote::url_of(&self.path);
            let ours = remote::get(url)
                .ok()
                .flatten()
                .and_then(|f| serde_json::from_slice::<LockInfo>(&f.bytes).ok())
                .is_some_and(|i| i.id == self.info.id);
            if ours {
                let _ = remote::delete(url);
            }
            return;
        }
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_json::from_str::<LockInfo>(&t).ok())
            .is_some_and(|i| i.id == self.info.id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Remove the lock of `state` if its id is `id` (`crmctl force-unlock`). Returns the removed
/// lock's details. A lock file that is not a lock is removed when `id` is the
/// `unreadable-...` id its error printed; the details returned then have that id, owner
/// `unknown (unreadable lock file)`, pid 0 and created 0.
pub fn force_unlock(state: &Path, id: &str) -> Result<LockInfo, LockError> {
    let path = lock_path(state);
    let read = if remote::is_remote(&path) {
        match remote::get(remote::url_of(&path)).map_err(LockError::Remote)? {
            Some(f) => Ok(f.bytes),
            None => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        }
    } else {
        std::fs::read(&path)
    };
    let bytes = match read {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LockError::NotLocked(state.to_path_buf()))
        }
        Err(source) => return Err(LockError::Io { path, source }),
    };
    let info = match parse_lock(state, &path, &bytes) {
        Ok(info) => info,
        Err(LockError::Unreadable { id: actual, .. }) => LockInfo {
            id: actual,
            owner: "unknown (unreadable lock file)".to_string(),
            pid: 0,
            created: 0,
            operation: "unknown".to_string(),
        },
        Err(e) => return Err(e),
    };
    if info.id != id {
        return Err(LockError::WrongId {
            state: state.to_path_buf(),
            given: id.to_string(),
            actual: info.id,
            owner: info.owner,
        });
    }
    if remote::is_remote(&path) {
        // Read, compare, delete: a store has no conditional delete here; the window is
        // the time between the two requests of a command run by hand.
        remote::delete(remote::url_of(&path)).map_err(LockError::Remote)?;
        return Ok(info);
    }
    std::fs::remove_file(&path).map_err(|source| LockError::Io { path, source })?;
    Ok(info)
}
