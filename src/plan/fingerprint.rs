//! Fingerprint of an observed tenant: hex SHA-256 of its canonical JSON.
//!
//! The JSON is canonical because every map in [`Tenant`] is a `BTreeMap` (sorted keys) and
//! struct fields serialize in declaration order. A saved plan records the fingerprint so
//! that apply can refuse it when the tenant changed since (a stale plan).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::tenant::Tenant;

/// Hex SHA-256 of the canonical JSON of `tenant`.
pub fn fingerprint(tenant: &Tenant) -> String {
    use std::io::Write as _;
    let mut hasher = Sha256::new();
    // serde_json writes many tiny pieces (quotes, commas, keys); a buffer in front of the
    // hasher turns them into large updates. Serializing plain data into a hasher cannot
    // fail (no maps with non-string keys).
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, HashWriter(&mut hasher));
    serde_json::to_writer(&mut w, tenant).expect("a tenant always serializes to JSON");
    w.flush().expect("hashing cannot fail");
    drop(w);
    let digest = hasher.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Streams JSON bytes into the hasher without building the whole string.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        let a = Tenant::fresh("coho.onmicrosoft.com");
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 64);
        b.storage.additional_gb = 1;
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
