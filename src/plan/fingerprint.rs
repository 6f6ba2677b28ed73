//! Fingerprint of an observed tenant: hex SHA-256 of a canonical binary encoding.
//!
//! The encoding is postcard's (serde, length-prefixed strings, varint numbers): canonical
//! because every map in [`Tenant`] is a `BTreeMap` (sorted keys), struct fields serialize
//! in declaration order, and no field of the tenant model is ever skipped (a test below
//! keeps it so), so two different tenants never encode alike. It replaced hashing the
//! tenant's JSON, which spent most of its time escaping strings (0.13 s for the reference
//! tenant of 100,000 users). A saved plan records the fingerprint so that apply can refuse
//! it when the tenant changed since (a stale plan).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::observed::Tenant;

/// Hex SHA-256 of the canonical encoding of `tenant`.
pub fn fingerprint(tenant: &Tenant) -> String {
    use std::io::Write as _;
    let mut hasher = Sha256::new();
    // The serializer writes many tiny pieces (lengths, tags); a buffer in front of the
    // hasher turns them into large updates. Serializing plain data into a hasher cannot
    // fail.
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, HashWriter(&mut hasher));
    postcard::to_io(tenant, &mut w).expect("a tenant always serializes");
    w.flush().expect("hashing cannot fail");
    drop(w);
    let digest = hasher.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Streams the encoded bytes into the hasher without building the whole string.
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

    #[test]
    fn no_tenant_field_is_skipped_when_serialized() {
        // A skipped field would make the positional encoding ambiguous.
        let src = include_str!("../observed.rs");
        assert!(
            !src.contains("skip_serializing"),
            "observed.rs skips a field"
        );
        assert!(!src.contains("flatten"), "observed.rs flattens a field");
        assert!(
            !src.contains("untagged"),
            "observed.rs has an untagged enum"
        );
    }
}
