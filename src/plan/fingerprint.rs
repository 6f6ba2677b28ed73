//! Fingerprint of an observed tenant over the fields crmctl manages, object by object.
//!
//! Each object (a user, a group, an instance, and the tenant-wide `tenant`, `licenses`,
//! `storage` and `slots`) gets a digest: SHA-256 of its canonical binary encoding
//! (postcard: length-prefixed strings, varint numbers; canonical because every map is a
//! `BTreeMap` and no field of the tenant model is skipped, a test below keeps it so).
//! The fingerprint is the hex SHA-256 of those digests in a fixed order, so two tenants
//! that differ in a managed field never fingerprint alike. Volatile fields that no plan
//! depends on and that change by themselves (`storage.used_gb`, the storage in use) are
//! left out: they used to make every saved plan stale for nothing (issue 11 item 4).
//!
//! A saved plan records the fingerprint, so that apply refuses it when the tenant changed
//! since, and a [`Sketch`] of the per-object digests (a few kilobytes whatever the size
//! of the tenant: an invertible Bloom lookup table), from which apply recovers WHICH
//! objects changed, were added or removed, to say so in the refusal.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::observed::{StorageState, Tenant};
use crate::state::State;

/// Hex SHA-256 of the managed fields of `tenant`, object by object.
pub fn fingerprint(tenant: &Tenant) -> String {
    let mut outer = Sha256::new();
    walk(tenant, |_, _, digest| outer.update(digest));
    hex(&outer.finalize())
}

/// The kinds of objects digested, in the order of the walk (the tag is part of each key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Tenant = 0,
    Licenses = 1,
    Storage = 2,
    Slots = 3,
    Group = 4,
    User = 5,
    Instance = 6,
}

impl Tag {
    fn from_key(key: u64) -> Option<Tag> {
        Some(match key >> 56 {
            0 => Tag::Tenant,
            1 => Tag::Licenses,
            2 => Tag::Storage,
            3 => Tag::Slots,
            4 => Tag::Group,
            5 => Tag::User,
            6 => Tag::Instance,
            _ => return None,
        })
    }
    fn noun(self) -> &'static str {
        match self {
            Tag::Tenant => "the tenant's domain, trial or versions",
            Tag::Licenses => "licenses",
            Tag::Storage => "storage",
            Tag::Slots => "slots",
            Tag::Group => "a security group",
            Tag::User => "a user",
            Tag::Instance => "an instance",
        }
    }
    fn of(kind: crate::domain::op::ObjKind) -> Tag {
        use crate::domain::op::ObjKind;
        match kind {
            ObjKind::Group => Tag::Group,
            ObjKind::User => Tag::User,
            ObjKind::Instance => Tag::Instance,
        }
    }
}

/// An object of the walk: what apply names in a stale plan's refusal.
#[derive(Debug, Clone, Copy)]
enum Obj<'a> {
    Whole(&'static str),
    Group(&'a str),
    User(&'a str),
    Instance(&'a str),
}

impl Obj<'_> {
    fn address(self) -> String {
        match self {
            Obj::Whole(name) => name.to_string(),
            Obj::Group(name) => format!("security_groups.{name}"),
            Obj::User(upn) => format!("users.{upn}"),
            Obj::Instance(url) => format!("instances.{url}"),
        }
    }
}

/// Call `f(object, key, digest)` for every object of `tenant` in a fixed order: the key
/// is the object's identity (its kind in the top byte, a hash of its id below), the digest
/// the SHA-256 of its managed fields. One encoding buffer for all objects.
fn walk<'t>(tenant: &'t Tenant, mut f: impl FnMut(Obj<'t>, u64, &[u8])) {
    // Destructured without `..`: a field added to the model must be placed here (managed
    // or volatile) before this compiles.
    let Tenant {
        domain,
        trial,
        licenses,
        storage,
        slots,
        versions,
        groups,
        users,
        instances,
        unreadable: _, // what the backend can read, not a managed field
        changed: _,    // who changed what when (issue 14 item 2): metadata, never managed
    } = tenant;
    let StorageState {
        additional_gb,
        used_gb: _, // volatile: the storage in use changes by itself (T8)
    } = storage;
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let digest = |buf: &mut Vec<u8>, value: &dyn erased::Encode| -> [u8; 32] {
        buf.clear();
        value.encode(buf);
        Sha256::digest(&buf[..]).into()
    };
    let whole = |tag: Tag| (tag as u64) << 56;
    let d = digest(&mut buf, &(domain, trial, versions));
    f(Obj::Whole("tenant"), whole(Tag::Tenant), &d);
    let d = digest(&mut buf, licenses);
    f(Obj::Whole("licenses"), whole(Tag::Licenses), &d);
    let d = digest(&mut buf, additional_gb);
    f(Obj::Whole("storage"), whole(Tag::Storage), &d);
    let d = digest(&mut buf, slots);
    f(Obj::Whole("slots"), whole(Tag::Slots), &d);
    for g in groups.values() {
        let d = digest(&mut buf, g);
        f(Obj::Group(&g.name), key(Tag::Group, &g.id), &d);
    }
    for u in users.values() {
        let d = digest(&mut buf, u);
        f(Obj::User(&u.upn), key(Tag::User, &u.id), &d);
    }
    for i in instances.values() {
        let d = digest(&mut buf, i);
        f(Obj::Instance(&i.url), key(Tag::Instance, &i.id), &d);
    }
}

/// Postcard encoding through a trait object, so that [`walk`] has one digest function for
/// values of every type.
mod erased {
    pub trait Encode {
        fn encode(&self, buf: &mut Vec<u8>);
    }
    impl<T: serde::Serialize + ?Sized> Encode for T {
        fn encode(&self, buf: &mut Vec<u8>) {
            // Serializing plain data into a vector cannot fail.
            postcard::to_io(self, buf).expect("a tenant always serializes");
        }
    }
}

/// The key of an object: its kind in the top byte, FNV-1a of its remote id below.
fn key(tag: Tag, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ((tag as u64) << 56) | (h & 0x00ff_ffff_ffff_ffff)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The digests of a tenant's objects: its [`fingerprint`] and what a [`Sketch`] is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    fingerprint: String,
    /// `(key, first 8 bytes of the digest)` per object, in the order of the walk.
    entries: Vec<(u64, u64)>,
}

impl Digests {
    /// Digest every object of `tenant` (one pass).
    pub fn of(tenant: &Tenant) -> Digests {
        let mut outer = Sha256::new();
        let mut entries = Vec::with_capacity(
            4 + tenant.groups.len() + tenant.users.len() + tenant.instances.len(),
        );
        walk(tenant, |_, key, digest| {
            outer.update(digest);
            let head: [u8; 8] = digest[..8].try_into().expect("32 bytes");
            entries.push((key, u64::from_le_bytes(head)));
        });
        Digests {
            fingerprint: hex(&outer.finalize()),
            entries,
        }
    }

    /// The tenant's [`fingerprint`].
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The compact summary a saved plan carries.
    pub fn sketch(&self) -> Sketch {
        let mut cells = Cells::new();
        for &(k, v) in &self.entries {
            cells.add(k, v, 1);
        }
        Sketch {
            cells: cells.to_hex(),
        }
    }
}

/// Hash functions of the sketch; a cell table of [`HASHES`] parts of [`PART`] cells, each
/// entry in one cell of each part.
const HASHES: usize = 3;
const PART: usize = 50;
const CELLS: usize = HASHES * PART;
/// Bytes of a cell in the encoding: count (i32), key xor (u64), value xor (u64), check xor
/// (u32).
const CELL_BYTES: usize = 24;

/// An invertible Bloom lookup table of the `(object key, digest)` pairs of a tenant: a
/// fixed size (3.6 KB, 7.2 KB as hex), from which the pairs that differ between two
/// tenants are recovered as long as about 50 objects or fewer changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sketch {
    /// The cells, hex.
    cells: String,
}

#[derive(Clone, Copy, Default)]
struct Cell {
    count: i32,
    keys: u64,
    values: u64,
    check: u32,
}

struct Cells(Vec<Cell>);

fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn entry_hash(key: u64, value: u64) -> u64 {
    mix(key ^ mix(value ^ 0x9e37_79b9_7f4a_7c15))
}

impl Cells {
    fn new() -> Cells {
        Cells(vec![Cell::default(); CELLS])
    }

    /// Add (`sign` 1) or remove (`sign` -1) an entry.
    fn add(&mut self, key: u64, value: u64, sign: i32) {
        let h = entry_hash(key, value);
        for part in 0..HASHES {
            let i = part * PART + (mix(h.wrapping_add(part as u64)) % PART as u64) as usize;
            let c = &mut self.0[i];
            c.count += sign;
            c.keys ^= key;
            c.values ^= value;
            c.check ^= h as u32;
        }
    }

    /// Recover the entries of a difference table: `(key, value, sign)`, `None` when too
    /// many differ to tell them apart.
    fn peel(mut self) -> Option<Vec<(u64, u64, i32)>> {
        let mut out = Vec::new();
        loop {
            let pure = self.0.iter().position(|c| {
                (c.count == 1 || c.count == -1) && c.check == entry_hash(c.keys, c.values) as u32
            });
            let Some(i) = pure else { break };
            let Cell {
                count,
                keys,
                values,
                ..
            } = self.0[i];
            out.push((keys, values, count));
            self.add(keys, values, -count);
        }
        self.0
            .iter()
            .all(|c| c.count == 0 && c.keys == 0 && c.values == 0 && c.check == 0)
            .then_some(out)
    }

    fn to_hex(&self) -> String {
        let mut bytes = Vec::with_capacity(CELLS * CELL_BYTES);
        for c in &self.0 {
            bytes.extend_from_slice(&c.count.to_le_bytes());
            bytes.extend_from_slice(&c.keys.to_le_bytes());
            bytes.extend_from_slice(&c.values.to_le_bytes());
            bytes.extend_from_slice(&c.check.to_le_bytes());
        }
        hex(&bytes)
    }

    fn from_hex(s: &str) -> Option<Cells> {
        if s.len() != CELLS * CELL_BYTES * 2 || !s.is_ascii() {
            return None;
        }
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
            .collect::<Option<_>>()?;
        let cells = bytes
            .chunks_exact(CELL_BYTES)
            .map(|b| Cell {
                count: i32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
                keys: u64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
                values: u64::from_le_bytes(b[12..20].try_into().expect("8 bytes")),
                check: u32::from_le_bytes(b[20..24].try_into().expect("4 bytes")),
            })
            .collect();
        Some(Cells(cells))
    }
}

impl Sketch {
    /// The objects that differ between the tenant of this sketch and `now` (the digests of
    /// `tenant`), by address: named by `tenant` (changed, added) or by `state` (removed
    /// objects the state manages; others by kind). `None` when too many differ to tell (or
    /// the sketch is damaged).
    pub fn changes(
        &self,
        now: &Digests,
        tenant: &Tenant,
        state: &State,
    ) -> Option<Vec<(String, Change)>> {
        let mut diff = Cells::from_hex(&self.cells)?;
        for &(k, v) in &now.entries {
            diff.add(k, v, -1);
        }
        let entries = diff.peel()?;
        // By key: +1 only in the sketch (removed), -1 only now (added), both: changed.
        let mut by_key: std::collections::BTreeMap<u64, (bool, bool)> = Default::default();
        for (k, _, sign) in &entries {
            let e = by_key.entry(*k).or_default();
            if *sign > 0 {
                e.0 = true;
            } else {
                e.1 = true;
            }
        }
        // Names of the objects present now, for the keys wanted only (one more walk).
        let mut names: std::collections::BTreeMap<u64, String> = Default::default();
        walk(tenant, |obj, key, _| {
            if by_key.get(&key).is_some_and(|(_, now)| *now) {
                names.insert(key, obj.address());
            }
        });
        // Removed objects the state manages are named by their address there (one pass
        // over the state, only when something was removed).
        let mut managed: std::collections::BTreeMap<u64, &str> = Default::default();
        if by_key.values().any(|(then, now)| *then && !*now) {
            for (address, r) in &state.resources {
                let k = key(Tag::of(r.kind), &r.id);
                if by_key.get(&k).is_some_and(|(then, now)| *then && !*now) {
                    managed.insert(k, address);
                }
            }
        }
        let mut out: Vec<(String, Change)> = by_key
            .iter()
            .map(|(k, (then, now))| match (then, now) {
                (true, true) => (names.remove(k).unwrap_or_default(), Change::Changed),
                (false, _) => (names.remove(k).unwrap_or_default(), Change::Added),
                (true, false) => {
                    let name = match (managed.get(k), Tag::from_key(*k)) {
                        (Some(address), _) => address.to_string(),
                        (None, Some(tag)) => tag.noun().to_string(),
                        (None, None) => "an object".to_string(),
                    };
                    (name, Change::Removed)
                }
            })
            .collect();
        out.sort();
        Some(out)
    }

    /// [`Sketch::changes`] as the start of a stale plan's refusal: `users.a@x.com changed,
    /// security_groups.Sales added; `.
    pub fn describe_changes(&self, now: &Digests, tenant: &Tenant, state: &State) -> String {
        let Some(objects) = self.changes(now, tenant, state) else {
            return "more objects changed than the saved plan can name; ".to_string();
        };
        let mut out = String::new();
        for (name, change) in &objects {
            let what = match change {
                Change::Changed => "changed",
                Change::Added => "added",
                Change::Removed => "removed",
            };
            let _ = write!(out, "{name} {what}, ");
        }
        if out.ends_with(", ") {
            out.truncate(out.len() - 2);
            out.push_str("; ");
        }
        out
    }
}

/// How an object differs from when a [`Sketch`] was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Its managed fields changed.
    Changed,
    /// It is new.
    Added,
    /// It is gone.
    Removed,
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
        assert_eq!(fingerprint(&a), Digests::of(&a).fingerprint());
        b.storage.additional_gb = 1;
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    // issue 11 item 4: the storage in use is volatile, not managed: it changes nothing.
    #[test]
    fn storage_used_does_not_change_the_fingerprint() {
        let a = Tenant::fresh("coho.onmicrosoft.com");
        let mut b = a.clone();
        b.storage.used_gb = 42.5;
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    // Issue 14 item 2: who changed what is metadata: a saved plan never goes stale for it.
    #[test]
    fn who_changed_what_does_not_change_the_fingerprint() {
        let a = Tenant::fresh("coho.onmicrosoft.com");
        let mut b = a.clone();
        b.changed.tenant.insert(
            "storage".into(),
            crate::observed::LastChange {
                by: Some("crmctl local (ana)".into()),
                at: Some("2026-12-02T10:00:00Z".into()),
            },
        );
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(Digests::of(&a), Digests::of(&b));
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

    fn tenant_with_users(n: usize) -> Tenant {
        let mut t = Tenant::fresh("coho.onmicrosoft.com");
        for i in 0..n {
            let id = format!("usr-{i:06}");
            t.users.insert(
                id.clone(),
                crate::observed::User {
                    id,
                    upn: format!("u{i}@coho.com"),
                    name: format!("User {i}"),
                    license: None,
                    access_mode: crate::domain::kinds::AccessMode::ReadWrite,
                    roles: Default::default(),
                    admin_roles: Default::default(),
                    synced: false,
                    application_id: None,
                    usage_location: None,
                },
            );
        }
        t
    }

    // issue 11 item 4: a stale plan says which objects changed, were added or removed;
    // table-driven over the kinds of change.
    #[test]
    fn the_sketch_names_what_changed() {
        let before = tenant_with_users(2_000);
        let sketch = Digests::of(&before).sketch();
        let state = State::empty("l");
        type Edit = fn(&mut Tenant);
        use Change::*;
        let cases: [(Edit, &[(&str, Change)]); 7] = [
            (|_| {}, &[]),
            // issue 12 item 4: the usage location and the on-premises flag are managed.
            (
                |t| t.users.get_mut("usr-000008").unwrap().usage_location = Some("DE".into()),
                &[("users.u8@coho.com", Changed)],
            ),
            (
                |t| t.users.get_mut("usr-000009").unwrap().synced = true,
                &[("users.u9@coho.com", Changed)],
            ),
            (
                |t| t.users.get_mut("usr-000007").unwrap().name = "Seven".into(),
                &[("users.u7@coho.com", Changed)],
            ),
            (|t| t.storage.additional_gb = 3, &[("storage", Changed)]),
            (
                |t| {
                    t.users.remove("usr-000010");
                    t.users.get_mut("usr-001999").unwrap().upn = "last@coho.com".into();
                },
                &[("a user", Removed), ("users.last@coho.com", Changed)],
            ),
            (
                |t| {
                    let mut u = t.users["usr-000001"].clone();
                    u.id = "usr-900000".into();
                    u.upn = "new@coho.com".into();
                    t.users.insert(u.id.clone(), u);
                },
                &[("users.new@coho.com", Added)],
            ),
        ];
        for (edit, want) in cases {
            let mut now = before.clone();
            edit(&mut now);
            let got = sketch
                .changes(&Digests::of(&now), &now, &state)
                .expect("few changes are recovered");
            let want: Vec<(String, Change)> =
                want.iter().map(|(a, c)| (a.to_string(), *c)).collect();
            assert_eq!(got, want);
        }
        // A removed object the state manages is named by its address there.
        let mut now = before.clone();
        now.users.remove("usr-000010");
        let mut state = State::empty("l");
        state.resources.insert(
            "users.u10@coho.com".into(),
            crate::state::Resource {
                kind: crate::domain::op::ObjKind::User,
                id: "usr-000010".into(),
                protect: false,
                protected_at: None,
                copied_from: None,
                ids: Default::default(),
            },
        );
        let d = Digests::of(&now);
        assert_eq!(
            sketch.describe_changes(&d, &now, &state),
            "users.u10@coho.com removed; "
        );
        // Too many to tell: said so, never a wrong name.
        let mut now = before.clone();
        for u in now.users.values_mut().take(500) {
            u.name.push('!');
        }
        assert_eq!(sketch.changes(&Digests::of(&now), &now, &state), None);
        // The sketch is small whatever the size of the tenant.
        assert_eq!(
            serde_json::to_string(&sketch).unwrap().len(),
            "{\"cells\":\"\"}".len() + CELLS * CELL_BYTES * 2
        );
    }
}
