//! The observe cache beside the state (issue 12 item 4): `<state>.observe-cache.json`
//! holds what the backend returned as its [`ObserveCursor`] (for Graph: delta links and
//! the directory they apply to), so that the next `plan` or `apply` reads only what
//! changed. Written atomically ([`write_atomically`]) by a run that holds the state lock,
//! after an observe that succeeded and a state that fits the tenant.
//!
//! The file is one header line (JSON: format, backend identity, state lineage, tenant
//! domain) and then the cursor's bytes. A cache whose header does not match the run
//! (another backend, another state, another tenant, another format), or that cannot be
//! read, is ignored: the backend reads everything, as without a cache. It holds tenant data
//! (like the state), never a secret.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store::{resolve_symlinks, write_atomically};
use crate::provider::ObserveCursor;

const FORMAT: u32 = 1;

/// What a cache must match to be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// The backend's identity (`Backend::identity`).
    pub backend: String,
    /// The state's lineage; empty for a state not written yet.
    pub lineage: String,
    /// The tenant's domain; an empty one (a state that names none yet) matches any.
    pub domain: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    #[serde(flatten)]
    key: CacheKey,
}

/// `<state>.observe-cache.json`, beside the symlink's target when the state path is one.
pub fn cache_path(state: &Path) -> PathBuf {
    let mut s = resolve_symlinks(state).into_os_string();
    s.push(".observe-cache.json");
    PathBuf::from(s)
}

/// The cursor cached for `key`, if any.
pub fn read(state: &Path, key: &CacheKey) -> Option<ObserveCursor> {
    // A remote state keeps no observe cache (it would be one more object to keep
    // consistent with the state for every reader): the backend reads everything.
    if crate::state::remote::is_remote(state) {
        return None;
    }
    let bytes = std::fs::read(cache_path(state)).ok()?;
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let header: Header = serde_json::from_slice(&bytes[..split]).ok()?;
    let fits = header.format == FORMAT
        && header.key.backend == key.backend
        && header.key.lineage == key.lineage
        && (key.domain.is_empty() || crate::domain::ident::same(&header.key.domain, &key.domain));
    fits.then(|| ObserveCursor(bytes[split + 1..].to_vec()))
}

/// Cache `cursor` for `key` (atomically).
pub fn write(state: &Path, key: &CacheKey, cursor: &ObserveCursor) -> std::io::Result<()> {
    if crate::state::remote::is_remote(state) {
        return Ok(());
    }
    let header = Header {
        format: FORMAT,
        key: key.clone(),
    };
    let mut bytes = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&cursor.0);
    write_atomically(&cache_path(state), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(backend: &str, lineage: &str, domain: &str) -> CacheKey {
        CacheKey {
            backend: backend.into(),
            lineage: lineage.into(),
            domain: domain.into(),
        }
    }

    // issue 12 item 4: a cache is used only by the backend, state and tenant it was written
    // for; anything else (or a damaged file) is ignored.
    #[test]
    fn a_cache_is_used_only_for_its_backend_state_and_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let cursor = ObserveCursor(b"{\"links\":1}\nsecond line".to_vec());
        let k = key("microsoft:coho@public", "L1", "coho.onmicrosoft.com");
        write(&state, &k, &cursor).unwrap();
        assert_eq!(read(&state, &k), Some(cursor.clone()));
        assert_eq!(
            read(&state, &key("microsoft:coho@public", "L1", "")),
            Some(cursor),
            "a state that names no tenant yet"
        );
        for other in [
            key("microsoft:other@public", "L1", "coho.onmicrosoft.com"),
            key("local:/t.db", "L1", "coho.onmicrosoft.com"),
            key("microsoft:coho@public", "L2", "coho.onmicrosoft.com"),
            key("microsoft:coho@public", "L1", "fabrikam.onmicrosoft.com"),
        ] {
            assert_eq!(read(&state, &other), None, "{other:?}");
        }
        std::fs::write(cache_path(&state), b"not json\n{}").unwrap();
        assert_eq!(read(&state, &k), None);
    }
}
