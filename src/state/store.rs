//! Reading and writing the state file.
//!
//! The state is pretty JSON, written atomically: a temporary file in the same directory,
//! fsync, rename over the old file, fsync of the directory. A crash at any point leaves
//! either the old or the new state, never a torn file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::state::{State, STATE_VERSION};

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
    Ok(Some(state))
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
