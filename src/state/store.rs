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
//! apply. [`load`] replays the journal lines newer than the state file, and ignores a torn
//! last line. The journal is written without fsync, like the local tenant's
//! `synchronous=NORMAL`: it survives a crash or `kill -9` of the process, not a power loss.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{Resource, State, STATE_VERSION};

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
}

impl StateChange {
    /// Apply the change to a state.
    pub fn apply_to(&self, state: &mut State) {
        match self {
            StateChange::Set { address, resource } => {
                state.resources.insert(address.clone(), resource.clone());
            }
            StateChange::Remove { address } => {
                state.resources.remove(address);
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

/// The journal file of a state file: `<state>.journal`.
pub fn journal_path(state: &Path) -> PathBuf {
    let mut s = state.as_os_str().to_owned();
    s.push(".journal");
    PathBuf::from(s)
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

/// Load the state at `path`; a missing file is `None`.
pub fn load(path: &Path) -> Result<Option<State>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
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
    replay_journal(path, &mut state)?;
    Ok(Some(state))
}

/// Apply the journal lines of the same lineage newer than the state; stop at a torn line.
fn replay_journal(path: &Path, state: &mut State) -> Result<(), StateError> {
    let jpath = journal_path(path);
    let file = match std::fs::File::open(&jpath) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StateError::Io {
                path: jpath,
                source,
            })
        }
    };
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        let Ok(entry) = serde_json::from_str::<JournalLine>(&line) else {
            break; // a torn last line from a crash mid-write
        };
        if entry.lineage != state.lineage || entry.serial <= state.serial {
            continue;
        }
        for c in &entry.changes {
            c.apply_to(state);
        }
        state.serial = entry.serial;
        state.tenant = entry.tenant;
    }
    Ok(())
}

/// Load the state at `path`, or a new empty state (fresh lineage, serial 0) when the file
/// does not exist. Nothing is written.
pub fn load_or_empty(path: &Path) -> Result<State, StateError> {
    Ok(load(path)?.unwrap_or_else(|| State::empty(new_lineage())))
}

/// Write `state` to `path` atomically (temp file in the same directory, fsync, rename,
/// fsync of the directory). Creates the parent directory when missing.
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut json = serde_json::to_vec_pretty(state).expect("state serializes");
    json.push(b'\n');
    let mut tmp = tempfile::Builder::new()
        .prefix(".state-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(io)?;
    tmp.write_all(&json).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    sync_dir(&dir).map_err(io)?;
    Ok(())
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
            leftover: journal_path(path).exists(),
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
        let line = JournalLine {
            lineage: state.lineage.clone(),
            serial: state.serial,
            tenant: state.tenant.clone(),
            changes: changes.to_vec(),
        };
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
        self.state_bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        self.saved_once = true;
        self.journal = None;
        self.journal_bytes = 0;
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
