//! Reading and writing the state file.
//!
//! The state is pretty JSON, written atomically: a temporary file in the same directory,
//! fsync, rename over the old file, fsync of the directory. A crash at any point leaves
//! either the old or the new state, never a torn file.
//!
//! During an apply, rewriting the whole state after every batch would be quadratic on a
//! large tenant (100,000 users). [`StateWriter`] therefore appends each batch's changes to a
//! journal next to the state (`<state>.journal`, one JSON line per batch, carrying the
//! lineage and the new serial) and compacts it into the state file (atomic rewrite, then the
//! journal is removed) when the journal grows as large as the state, and at the end of the
//! apply. [`load`] replays the journal lines newer than the state file. The journal is
//! written without fsync, like the local tenant's `synchronous=NORMAL`: it survives a crash
//! or `kill -9` of the process, not a power loss.
//!
//! Replay rule (issue 9 item 5): every well-formed line of the state's lineage whose serial
//! is above the last serial applied is applied, in file order; lines at or below it were
//! already folded into the state file and are skipped. A line that cannot be read is
//! skipped and *reported* ([`load_reporting`], [`JournalWarning`]), and the lines after it
//! still apply: a line holds absolute per-address changes (this address now has this id,
//! this address is forgotten), never a delta, so a later batch does not depend on an
//! earlier one, and the newest value of every address it touches is right. What a damaged
//! line loses is its own batch's changes only, and they heal: objects it created are found
//! again by natural key and adopted on the next plan; an entry of an object it deleted is
//! left for the next plan and apply to sort out. The only silent skip is an unterminated
//! last line: the normal trace of a crash in the middle of an append. A gap in the serials,
//! a line out of order, or one of another lineage are reported too.
//!
//! A state path that is a symlink is written through to its target (the temporary file
//! and the rename happen in the target's directory, the link stays), and the journal and
//! the lock live beside the target ([`resolve_symlinks`]), so that two paths to one state
//! share one lock.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::remote;
use crate::state::{PendingOperation, Resource, State, STATE_VERSION};

/// One change of the state's resources, as recorded after a batch of completed actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum StateChange {
    /// The address now manages this object.
    Set {
        /// Address.
        address: String,
        /// The object.
        resource: Resource,
    },
    /// The address no longer manages anything.
    Remove {
        /// Address.
        address: String,
    },
    /// A long-running operation was accepted for the address's action: recorded before
    /// apply waits for it (issue 11 item 4).
    Pending {
        /// Address of the action.
        address: String,
        /// The operation.
        operation: PendingOperation,
    },
    /// The address's long-running operation ended (or is no longer wanted).
    Settled {
        /// Address of the action.
        address: String,
    },
    /// A backup was taken (issue 13 item 3).
    Backup(crate::state::Backup),
    /// Apply is about to send the create of this instance address (a write-ahead intent,
    /// I11; see [`State::creating`]).
    Creating {
        /// Address of the instance.
        address: String,
    },
}

impl StateChange {
    /// Apply the change to a state.
    pub fn apply_to(&self, state: &mut State) {
        match self {
            StateChange::Set { address, resource } => {
                state.resources.insert(address.clone(), resource.clone());
                state.creating.remove(address);
            }
            StateChange::Remove { address } => {
                state.resources.remove(address);
                state.creating.remove(address);
            }
            StateChange::Creating { address } => {
                state.creating.insert(address.clone());
            }
            StateChange::Pending { address, operation } => {
                state.pending.insert(address.clone(), operation.clone());
            }
            StateChange::Settled { address } => {
                state.pending.remove(address);
            }
            StateChange::Backup(b) => {
                state.backups.push(b.clone());
                let over = state
                    .backups
                    .len()
                    .saturating_sub(crate::state::MAX_BACKUPS);
                state.backups.drain(..over);
            }
        }
    }
}

/// One journal line: the changes of one batch, and the serial they bring the state to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalLine {
    lineage: String,
    serial: u64,
    tenant: String,
    changes: Vec<StateChange>,
}

/// The journal file of a state file: `<state>.journal`, beside the symlink's target when
/// the state path is a symlink.
pub fn journal_path(state: &Path) -> PathBuf {
    let mut s = resolve_symlinks(state).into_os_string();
    s.push(".journal");
    PathBuf::from(s)
}

/// The file a state path designates: the path itself, or, when it is a symbolic link
/// (possibly to a file not created yet), the final target of the chain of links. A relative
/// target is relative to the link's directory. Gives up after 40 links (a loop) and returns
/// the last path reached; the write then fails with the system's own error.
pub fn resolve_symlinks(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        let is_link = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            break;
        }
        let Ok(target) = std::fs::read_link(&p) else {
            break;
        };
        p = match p.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    p
}

/// A problem found while replaying the journal: the state was loaded, without that line's
/// changes (see the module docs for the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalWarning {
    /// The journal file.
    pub journal: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the line.
    pub problem: JournalProblem,
}

/// What is wrong with a journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalProblem {
    /// Not a journal line (not UTF-8, not JSON, or not the shape of a line).
    Damaged {
        /// The parse error.
        message: String,
        /// Last serial applied before the line (the state file's, or an earlier line's).
        after_serial: u64,
    },
    /// Serials are missing between the previous line and this one (the line is applied).
    Gap {
        /// Last serial applied.
        after_serial: u64,
        /// This line's serial.
        serial: u64,
    },
    /// The line's serial is not above the previous line's (the line is skipped).
    OutOfOrder {
        /// Last serial applied.
        after_serial: u64,
        /// This line's serial.
        serial: u64,
    },
    /// The line belongs to another state (lineage); skipped.
    OtherLineage {
        /// The line's lineage.
        lineage: String,
    },
    /// There is no state file beside the journal (moved or deleted): the state is rebuilt
    /// from the journal alone (issue 9 item 3). `line` is the first line replayed (0: none
    /// could be read, nothing was replayed).
    NoStateFile {
        /// The missing state file.
        state: PathBuf,
        /// Serial of the first line replayed (0: none).
        from_serial: u64,
    },
}

impl std::fmt::Display for JournalWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = format!("{}:{}", self.journal.display(), self.line);
        const HEALS: &str = "objects that batch created are found by natural key and adopted on the next plan; the next apply folds the journal into the state file";
        match &self.problem {
            JournalProblem::Damaged {
                message,
                after_serial,
            } => write!(
                f,
                "{at}: damaged journal line skipped ({message}); the state is loaded without the changes of that batch (after serial {after_serial}), later lines still apply; {HEALS}"
            ),
            JournalProblem::Gap {
                after_serial,
                serial,
            } => write!(
                f,
                "{at}: journal line has serial {serial} but the last applied is {after_serial}: the changes of serial(s) {}..={} are missing; {HEALS}",
                after_serial + 1,
                serial - 1
            ),
            JournalProblem::OutOfOrder {
                after_serial,
                serial,
            } => write!(
                f,
                "{at}: journal line with serial {serial} after serial {after_serial} skipped (out of order)"
            ),
            JournalProblem::OtherLineage { lineage } => write!(
                f,
                "{at}: journal line of another state (lineage {lineage}) skipped; the next apply removes the journal"
            ),
            JournalProblem::NoStateFile { state, from_serial: 0 } => write!(
                f,
                "{}: journal without its state file {} and without a readable line: nothing could be recovered from it; restore the state file if you have it, before the next apply removes the journal",
                self.journal.display(),
                state.display()
            ),
            JournalProblem::NoStateFile { state, from_serial } => write!(
                f,
                "{}: the state file {} is missing but its journal is here: the state is rebuilt from the journal alone (serial {from_serial} on; entries of the state file that no journal line touched are lost: their objects are found by natural key and adopted on the next plan); restore the state file instead if you have it, before the next apply folds the journal into a new one",
                self.journal.display(),
                state.display()
            ),
        }
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid state.
    #[error("{path}: not a valid crmctl state file: {message} (restore it from a backup, or move it away to start over; objects then get adopted by natural key)")]
    Invalid {
        /// The state file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The file was written by a newer crmctl.
    #[error("{path}: state format version {found} is newer than this crmctl supports ({supported}); upgrade crmctl")]
    TooNew {
        /// The state file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build writes.
        supported: u32,
    },
    /// A remote state could not be read or written (issue 15 item 1).
    #[error("remote state {0}")]
    Remote(crate::state::remote::RemoteError),
    /// A conditional write of a remote state lost: another writer changed it since this
    /// run read it. Nothing was overwritten.
    #[error("the state {url} was changed by another writer since this run read it, so this run did not write it (conditional write, ETag If-Match): nothing of the other writer's was overwritten, and this run's last changes are not in the state. Check who else writes this state (a run without the lock, or a hand edit), then run `crmctl plan`: objects this run made are found by natural key and adopted")]
    Conflict {
        /// The state URL.
        url: String,
    },
}

impl From<crate::state::remote::RemoteError> for StateError {
    fn from(e: crate::state::remote::RemoteError) -> StateError {
        match e {
            crate::state::remote::RemoteError::Conflict { url } => StateError::Conflict { url },
            e => StateError::Remote(e),
        }
    }
}

/// A new lineage: a random-ish 128-bit id in UUID form, fixed when a state is first created.
pub fn new_lineage() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Load the state at `path`; a missing file is `None`. Problems found in the journal are
/// dropped: commands use [`load_reporting`] and print them.
pub fn load(path: &Path) -> Result<Option<State>, StateError> {
    Ok(load_reporting(path)?.0)
}

/// Load the state at `path` (a missing file is `None`), with the problems found while
/// replaying its journal.
pub fn load_reporting(path: &Path) -> Result<(Option<State>, Vec<JournalWarning>), StateError> {
    if remote::is_remote(path) {
        return load_remote(path);
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return lone_journal(path),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let state: State = serde_json::from_str(&text).map_err(|e| StateError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if state.version > STATE_VERSION {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: state.version,
            supported: STATE_VERSION,
        });
    }
    let mut state = state;
    let warnings = replay_journal(path, &mut state)?;
    Ok((Some(state), warnings))
}

/// [`load_reporting`] of a remote state: the state object (its version remembered for the
/// conditional write), then its journal objects, replayed by the same rule as a local
/// journal.
fn load_remote(path: &Path) -> Result<(Option<State>, Vec<JournalWarning>), StateError> {
    let url = remote::url_of(path);
    let fetched = remote::get(url)?;
    remote::remember_version(url, fetched.as_ref().map(|f| f.version.clone()));
    let journal = remote::read_journal(url)?;
    let jpath = remote::as_path(&remote::journal_dir(url));
    let Some(fetched) = fetched else {
        return match journal {
            None => Ok((None, Vec::new())),
            Some(bytes) => lone_journal_bytes(path, jpath, &bytes),
        };
    };
    let state = parse_state(path, &fetched.bytes)?;
    let mut state = state;
    let warnings = match journal {
        Some(bytes) => replay_bytes(jpath, &bytes, &mut state),
        None => Vec::new(),
    };
    Ok((Some(state), warnings))
}

fn parse_state(path: &Path, bytes: &[u8]) -> Result<State, StateError> {
    let state: State = serde_json::from_slice(bytes).map_err(|e| StateError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if state.version > STATE_VERSION {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: state.version,
            supported: STATE_VERSION,
        });
    }
    Ok(state)
}

/// No state file at `path`: a journal beside it (the state file moved or deleted, the
/// journal left behind) is replayed into a state of its lineage, starting just below its
/// first line's serial, and reported (issue 9 item 3: it used to be ignored and then
/// deleted by the next apply). No journal: `None`.
fn lone_journal(path: &Path) -> Result<(Option<State>, Vec<JournalWarning>), StateError> {
    let jpath = journal_path(path);
    let bytes = match std::fs::read(&jpath) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new())),
        Err(source) => {
            return Err(StateError::Io {
                path: jpath,
                source,
            })
        }
    };
    lone_journal_bytes(path, jpath, &bytes)
}

fn lone_journal_bytes(
    path: &Path,
    jpath: PathBuf,
    bytes: &[u8],
) -> Result<(Option<State>, Vec<JournalWarning>), StateError> {
    let first = bytes.split(|b| *b == b'\n').find_map(|raw| {
        let line = std::str::from_utf8(raw).ok()?;
        serde_json::from_str::<JournalLine>(line).ok()
    });
    let Some(first) = first else {
        let warning = JournalWarning {
            journal: jpath,
            line: 0,
            problem: JournalProblem::NoStateFile {
                state: path.to_path_buf(),
                from_serial: 0,
            },
        };
        return Ok((None, vec![warning]));
    };
    let mut state = State::empty(first.lineage);
    state.serial = first.serial.saturating_sub(1);
    state.tenant = first.tenant;
    let mut warnings = vec![JournalWarning {
        journal: jpath,
        line: 0,
        problem: JournalProblem::NoStateFile {
            state: path.to_path_buf(),
            from_serial: first.serial,
        },
    }];
    warnings.extend(replay_bytes(
        jpath_for_replay(path, &warnings),
        bytes,
        &mut state,
    ));
    Ok((Some(state), warnings))
}

/// Apply the journal lines of the same lineage newer than the state (the rule is in the
/// module docs); returns what was skipped or missing.
fn replay_journal(path: &Path, state: &mut State) -> Result<Vec<JournalWarning>, StateError> {
    let jpath = journal_path(path);
    let bytes = match std::fs::read(&jpath) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                path: jpath,
                source,
            })
        }
    };
    Ok(replay_bytes(jpath, &bytes, state))
}

fn jpath_for_replay(path: &Path, warnings: &[JournalWarning]) -> PathBuf {
    warnings
        .first()
        .map(|w| w.journal.clone())
        .unwrap_or_else(|| journal_path(path))
}

/// Apply the journal `bytes` (the lines of `jpath`) to `state` by the rule of the module
/// docs; returns what was skipped or missing.
fn replay_bytes(jpath: PathBuf, bytes: &[u8], state: &mut State) -> Vec<JournalWarning> {
    let mut warnings = Vec::new();
    let mut warn = |line: usize, problem: JournalProblem| {
        warnings.push(JournalWarning {
            journal: jpath.clone(),
            line,
            problem,
        })
    };
    let base = state.serial;
    // The last serial applied from the journal (None: none yet).
    let mut last: Option<u64> = None;
    // Whether a damaged line explains a gap that follows it.
    let mut damaged_since_last = false;
    let mut lines = bytes.split(|b| *b == b'\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let is_last = lines.peek().is_none();
        if is_last && raw.is_empty() {
            break; // the file ends with a newline
        }
        let parsed = std::str::from_utf8(raw)
            .map_err(|e| e.to_string())
            .and_then(|l| serde_json::from_str::<JournalLine>(l).map_err(|e| e.to_string()));
        let entry = match parsed {
            Ok(entry) => entry,
            // An unterminated last line: a crash in the middle of an append.
            Err(_) if is_last => break,
            Err(message) => {
                warn(
                    i + 1,
                    JournalProblem::Damaged {
                        message,
                        after_serial: last.unwrap_or(state.serial),
                    },
                );
                damaged_since_last = true;
                continue;
            }
        };
        if entry.lineage != state.lineage {
            warn(
                i + 1,
                JournalProblem::OtherLineage {
                    lineage: entry.lineage,
                },
            );
            continue;
        }
        let after = last.unwrap_or(base);
        if entry.serial <= after {
            // At or below the state file's serial: folded already (a crash between the
            // rewrite and the journal's removal). Below an applied line: out of order.
            if last.is_some() {
                warn(
                    i + 1,
                    JournalProblem::OutOfOrder {
                        after_serial: after,
                        serial: entry.serial,
                    },
                );
            }
            continue;
        }
        if entry.serial > after + 1 && !damaged_since_last {
            warn(
                i + 1,
                JournalProblem::Gap {
                    after_serial: after,
                    serial: entry.serial,
                },
            );
        }
        for c in &entry.changes {
            c.apply_to(state);
        }
        state.serial = entry.serial;
        state.tenant = entry.tenant;
        last = Some(entry.serial);
        damaged_since_last = false;
    }
    warnings
}

/// Load the state at `path`, or a new empty state (fresh lineage, serial 0) when the file
/// does not exist. Nothing is written.
pub fn load_or_empty(path: &Path) -> Result<State, StateError> {
    Ok(load(path)?.unwrap_or_else(|| State::empty(new_lineage())))
}

/// Write `state` to `path` atomically (temp file in the same directory, fsync, rename,
/// fsync of the directory). Creates the parent directory when missing. When `path` is a
/// symlink, the target is written (temp file and rename in the target's directory) and the
/// link stays.
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut json = serde_json::to_vec_pretty(state).expect("state serializes");
    json.push(b'\n');
    if remote::is_remote(path) {
        // Conditional (If-Match the version read, If-None-Match for a new state).
        return Ok(remote::write_state(
            remote::url_of(path),
            state.serial,
            json,
        )?);
    }
    write_atomically(path, &json).map_err(io)
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory; a crash leaves the old file or the new one,
/// never a part. Creates the parent directory when missing. When `path` is a symlink, the
/// target is written (temporary file and rename in the target's directory) and the link
/// stays. The one atomic write of crmctl (the state, saved plans).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = resolve_symlinks(path);
    let path = target.as_path();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".state-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(&dir)
}

/// Writes the state during an apply: a journal line per batch, compacted into the state
/// file when the journal grows as large as the state, and by [`StateWriter::finish`].
#[derive(Debug)]
pub struct StateWriter {
    path: PathBuf,
    journal: Option<std::fs::File>,
    journal_bytes: u64,
    state_bytes: u64,
    saved_once: bool,
    /// A journal was on disk when the run began (left by a run that crashed before its
    /// fold): [`StateWriter::finish`] folds it even if this run writes nothing.
    leftover: bool,
}

impl StateWriter {
    /// A writer for the state file at `path`.
    pub fn new(path: &Path) -> StateWriter {
        StateWriter {
            path: path.to_path_buf(),
            journal: None,
            journal_bytes: 0,
            state_bytes: 0,
            saved_once: false,
            leftover: if remote::is_remote(path) {
                remote::list(&remote::journal_dir(remote::url_of(path)))
                    .map(|j| !j.is_empty())
                    .unwrap_or(true)
            } else {
                journal_path(path).exists()
            },
        }
    }

    /// Record one batch: `state` already includes `changes` and the bumped serial.
    pub fn write(&mut self, state: &State, changes: &[StateChange]) -> Result<(), StateError> {
        // The first write of a run rewrites the file (it may not exist yet, and the journal
        // must extend a state file of the same lineage); later ones append, until the
        // journal is as large as the state.
        if !self.saved_once || self.journal_bytes >= self.state_bytes.max(64 * 1024) {
            return self.compact(state);
        }
        let line = JournalLine {
            lineage: state.lineage.clone(),
            serial: state.serial,
            tenant: state.tenant.clone(),
            changes: changes.to_vec(),
        };
        if remote::is_remote(&self.path) {
            // One object per batch, created only if absent (remote module docs).
            let mut bytes = serde_json::to_vec(&line).expect("journal lines serialize");
            bytes.push(b'\n');
            let len = bytes.len() as u64;
            let url = remote::journal_url(remote::url_of(&self.path), state.serial);
            remote::put(&url, bytes, remote::Expect::Absent)?;
            self.journal_bytes += len;
            return Ok(());
        }
        let io = |source| StateError::Io {
            path: journal_path(&self.path),
            source,
        };
        if self.journal.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(journal_path(&self.path))
                .map_err(io)?;
            self.journal = Some(f);
        }
        let mut bytes = serde_json::to_vec(&line).expect("journal lines serialize");
        bytes.push(b'\n');
        self.journal
            .as_mut()
            .expect("opened above")
            .write_all(&bytes)
            .map_err(io)?;
        self.journal_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Write the whole state atomically and drop the journal.
    pub fn compact(&mut self, state: &State) -> Result<(), StateError> {
        save(&self.path, state)?;
        self.saved_once = true;
        self.journal = None;
        self.journal_bytes = 0;
        if remote::is_remote(&self.path) {
            self.state_bytes = serde_json::to_vec_pretty(state).map_or(0, |v| v.len() as u64);
            return Ok(remote::clear_journal(remote::url_of(&self.path))?);
        }
        self.state_bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(journal_path(&self.path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                path: journal_path(&self.path),
                source,
            }),
        }
    }

    /// End of the apply: fold the journal into the state file, if this run journaled
    /// anything or found a journal left by a crashed run (so that after any finished
    /// apply, even one with nothing to do, the state file alone is the whole state).
    pub fn finish(&mut self, state: &State) -> Result<(), StateError> {
        if self.journal_bytes > 0 || self.leftover {
            self.compact(state)?;
            self.leftover = false;
        }
        Ok(())
    }
}

/// fsync a directory so that a rename in it is durable (no-op where unsupported).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}
