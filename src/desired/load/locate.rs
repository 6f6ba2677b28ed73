//! The located tree: the same text re-parsed by serde-saphyr into a small tree of nodes with
//! line and column, built only when there is something to report. JSON text parses too.
//!
//! Paths: map keys joined with `.`, list items as `[i]` (`users.ana@x.com.roles.sales`,
//! `security_groups.sales.members[2]`). Keys may themselves contain dots (user principal
//! names do): at each map the longest key that matches the rest of the path wins.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based position (line, column in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    fn of(loc: &serde_saphyr::Location) -> Pos {
        Pos {
            line: loc.line().min(u32::MAX as u64) as u32,
            column: loc.column().min(u32::MAX as u64) as u32,
        }
    }
}

/// A node of the located tree.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// A map entry: the key, where the key is, and the value.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// What a node holds; scalars as the YAML library resolved them.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order (duplicates kept), and entry indices sorted by key for lookup.
    Map(Vec<Entry>, Vec<u32>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            pos: Pos::of(&s.referenced),
            value: s.value,
        })
    }
}

/// A map key and where it is.
pub(crate) struct Key(pub String, pub Pos);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<String>::deserialize(d)?;
        Ok(Key(s.value, Pos::of(&s.referenced)))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// The visitor of [`Value`]; the streaming walks (`structural`, [`Finder`]) forward to it
/// what they do not handle themselves.
pub(crate) struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::UInt(v))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
        while let Some(n) = a.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(Key(key, key_pos)) = a.next_key::<Key>()? {
            let value = a.next_value::<Node>()?;
            entries.push(Entry {
                key,
                key_pos,
                value,
            });
        }
        Ok(Value::map(entries))
    }
}

impl Value {
    /// A map of these entries (in file order), indexed by key.
    pub fn map(entries: Vec<Entry>) -> Value {
        let mut index: Vec<u32> = (0..entries.len() as u32).collect();
        // Stable: the first of duplicate keys comes first.
        index.sort_by(|&a, &b| entries[a as usize].key.cmp(&entries[b as usize].key));
        Value::Map(entries, index)
    }

    /// The entry with exactly this key (the first one if duplicated).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        let Value::Map(entries, index) = self else {
            return None;
        };
        let i = index.partition_point(|&i| entries[i as usize].key.as_str() < key);
        index
            .get(i)
            .map(|&i| &entries[i as usize])
            .filter(|e| e.key == key)
    }

    /// A short name of the kind of value, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::UInt(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(..) => "a mapping",
        }
    }
}

/// Where a path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// The key of the last map entry on the path, when the path ends at a map entry.
    pub key: Option<Pos>,
    /// The value the path leads to.
    pub value: Pos,
    /// Whether the whole path resolved (otherwise: its longest resolvable prefix).
    pub complete: bool,
}

impl Found {
    /// The key for map entries, the item itself for list items.
    pub fn best(&self) -> Pos {
        self.key.unwrap_or(self.value)
    }
}

impl Node {
    /// How many nodes this one holds, itself included (the batches of the structural pass
    /// are bounded by it; issue 9 item 7).
    pub fn size(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::size).sum(),
            Value::Map(entries, _) => entries.iter().map(|e| e.value.size()).sum(),
            _ => 0,
        }
    }

    /// Follow `path` from this node. `None` when not even its first segment resolves.
    pub fn find(&self, path: &str) -> Option<Found> {
        self.resolve(path).map(|(_, found)| found)
    }

    /// [`Node::find`], and the node the path leads to (the end of its longest resolvable
    /// prefix when the path resolves only in part).
    pub fn resolve(&self, path: &str) -> Option<(&Node, Found)> {
        let mut node = self;
        let mut found = Found {
            key: None,
            value: self.pos,
            complete: true,
        };
        let mut rest = path;
        let mut steps = 0;
        while !rest.is_empty() {
            let step = if let Some(after) = rest.strip_prefix('[') {
                // A list index.
                let end = after.find(']');
                let item = end.and_then(|e| {
                    let i: usize = after[..e].parse().ok()?;
                    match &node.value {
                        Value::Seq(items) => items.get(i).map(|n| (n, &after[e + 1..])),
                        _ => None,
                    }
                });
                item.map(|(n, r)| (n, None, r))
            } else {
                // The longest key that matches a prefix of `rest` ending at a separator.
                let mut candidates: Vec<usize> = rest
                    .char_indices()
                    .filter(|&(_, c)| c == '.' || c == '[')
                    .map(|(i, _)| i)
                    .collect();
                candidates.push(rest.len());
                candidates.into_iter().rev().find_map(|end| {
                    node.value
                        .get(&rest[..end])
                        .map(|e| (&e.value, Some(e.key_pos), &rest[end..]))
                })
            };
            let Some((next, key, r)) = step else {
                found.complete = false;
                break;
            };
            steps += 1;
            node = next;
            found.key = key;
            found.value = next.pos;
            rest = r.strip_prefix('.').unwrap_or(r);
        }
        if steps == 0 && !path.is_empty() {
            return None;
        }
        Some((node, found))
    }
}

/// Where each of a set of paths is, found in one streaming pass over the text that keeps
/// nothing but the best position found for each path (issue 9 item 7: locating a few
/// diagnostics in a large file costs no located tree of the whole file). Same answers as
/// [`Node::find`] on the whole tree: at each map, the longest key that matches; a path that
/// resolves only in part gives its longest resolvable prefix.
pub(crate) struct Finder {
    /// The paths, sorted and without repeats.
    paths: Vec<String>,
    /// For each path: how much of it resolved (bytes), and where.
    best: Vec<Option<(usize, Found)>>,
    /// The path of the node being read.
    here: String,
}

impl Finder {
    pub fn new(mut paths: Vec<String>) -> Finder {
        paths.sort();
        paths.dedup();
        let best = vec![None; paths.len()];
        Finder {
            paths,
            best,
            here: String::new(),
        }
    }

    /// Read `text` (YAML or JSON) with `options`; what was found before a syntax error is
    /// kept.
    pub fn run(&mut self, text: &str, options: serde_saphyr::Options) {
        let _ = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
            use serde::de::DeserializeSeed as _;
            Walk(&mut *self).deserialize(de)
        });
    }

    /// Read JSON `text` with the located JSON scanner (issue 9 item 7: about ten times
    /// faster than the YAML parser on the same text). `false` if the scanner could not read
    /// it (then nothing useful was found: use [`Finder::run`] on a new finder).
    pub fn run_json(&mut self, text: &str) -> bool {
        let mut s = super::jscan::JsonScan::new(text);
        self.walk_json(&mut s, 0).is_ok() && s.peek().is_none()
    }

    fn walk_json(&mut self, s: &mut super::jscan::JsonScan, depth: u32) -> Result<(), ()> {
        match s.peek().ok_or(())? {
            b'{' => {
                let base = self.here.len();
                if s.open(b'{', b'}')? {
                    loop {
                        let (key, key_pos) = s.string()?;
                        s.eat(b':')?;
                        if self.enter_key(base, &key, key_pos) {
                            self.walk_json(s, depth + 1)?;
                        } else {
                            s.value(depth + 1)?;
                        }
                        if !s.next_item(b'}')? {
                            break;
                        }
                    }
                }
                self.here.truncate(base);
            }
            b'[' => {
                let base = self.here.len();
                let mut i = 0usize;
                if s.open(b'[', b']')? {
                    loop {
                        let wanted = self.enter_item(base, i);
                        let node = s.value(depth + 1)?;
                        self.item(wanted, &node);
                        i += 1;
                        if !s.next_item(b']')? {
                            break;
                        }
                    }
                }
                self.here.truncate(base);
            }
            _ => {
                s.value(depth)?;
            }
        }
        Ok(())
    }

    /// Enter map key `key` (at `key_pos`) of the map at path length `base`: record it for
    /// the paths through it; whether any path goes on into its value.
    fn enter_key(&mut self, base: usize, key: &str, key_pos: Pos) -> bool {
        self.here.truncate(base);
        if base > 0 {
            self.here.push('.');
        }
        self.here.push_str(key);
        let range = self.matching();
        let mut any = false;
        for p in range {
            if self.is_prefix(p) {
                any = true;
                let n = self.here.len();
                let complete = self.paths[p].len() == n;
                self.record(
                    p,
                    n,
                    Found {
                        key: Some(key_pos),
                        value: key_pos,
                        complete,
                    },
                );
            }
        }
        any
    }

    /// Enter item `i` of the list at path length `base`: the paths that go through it.
    fn enter_item(&mut self, base: usize, i: usize) -> Vec<usize> {
        self.here.truncate(base);
        self.here.push('[');
        self.here.push_str(itoa::Buffer::new().format(i));
        self.here.push(']');
        let range = self.matching();
        range.filter(|&p| self.is_prefix(p)).collect()
    }

    /// A list item (read because the paths `wanted` go through it): look inside it.
    fn item(&mut self, wanted: Vec<usize>, node: &Node) {
        let n = self.here.len();
        for p in wanted {
            let rest = &self.paths[p][n..];
            let rest = rest.strip_prefix('.').unwrap_or(rest).to_string();
            let found = node.find(&rest).filter(|_| !rest.is_empty());
            let (resolved, found) = match found {
                Some(fd) if fd.complete => (self.paths[p].len(), fd),
                Some(fd) => (n + 1, fd),
                None => (
                    n,
                    Found {
                        key: None,
                        value: node.pos,
                        complete: rest.is_empty(),
                    },
                ),
            };
            self.record(p, resolved, found);
        }
    }

    /// Where `path` is, as [`Node::find`] would say.
    pub fn get(&self, path: &str) -> Option<Found> {
        let i = self.paths.binary_search_by(|p| p.as_str().cmp(path)).ok()?;
        self.best[i].map(|(_, f)| f)
    }

    /// Indices of the paths that `self.here` is a prefix of (ending at a separator).
    fn matching(&self) -> std::ops::Range<usize> {
        let here = self.here.as_str();
        let lo = self.paths.partition_point(|p| p.as_str() < here);
        let mut hi = lo;
        while hi < self.paths.len() && self.paths[hi].starts_with(here) {
            hi += 1;
        }
        lo..hi
    }

    fn is_prefix(&self, i: usize) -> bool {
        let p = &self.paths[i];
        let n = self.here.len();
        p.len() == n || matches!(p.as_bytes()[n], b'.' | b'[')
    }

    fn record(&mut self, i: usize, resolved: usize, found: Found) {
        if self.best[i].is_none_or(|(r, _)| resolved > r) {
            self.best[i] = Some((resolved, found));
        }
    }
}

/// The scalar methods of a [`Visitor`] that walks a document for its structure only: every
/// scalar is accepted and dropped (the two streaming walks, the locator's and the merge-key
/// check's, share them).
macro_rules! skip_scalars {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_i128<E>(self, _: i128) -> Result<(), E> {
            Ok(())
        }
        fn visit_u128<E>(self, _: u128) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_none<E>(self) -> Result<(), E> {
            Ok(())
        }
    };
}
pub(crate) use skip_scalars;

struct Walk<'f>(&'f mut Finder);

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    skip_scalars!();
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let f = self.0;
        let base = f.here.len();
        let mut i = 0usize;
        loop {
            let wanted = f.enter_item(base, i);
            if wanted.is_empty() {
                if a.next_element::<serde::de::IgnoredAny>()?.is_none() {
                    break;
                }
            } else {
                // A list item that some path goes through: read it (items are small:
                // names, addresses) and look inside it with `Node::find`.
                let Some(node) = a.next_element::<Node>()? else {
                    break;
                };
                f.item(wanted, &node);
            }
            i += 1;
        }
        f.here.truncate(base);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let f = self.0;
        let base = f.here.len();
        while let Some(Key(key, key_pos)) = a.next_key::<Key>()? {
            if f.enter_key(base, &key, key_pos) {
                a.next_value_seed(Walk(&mut *f))?;
            } else {
                a.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        f.here.truncate(base);
        Ok(())
    }
}

/// Join a path and a map key.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        serde_saphyr::from_str(text).unwrap()
    }

    #[test]
    fn finds_keys_with_dots_items_and_prefixes() {
        let t = tree(
            "users:\n  ana@x.com:\n    roles:\n      sales: [A, B]\n  ana@x:\n    name: x\ngroups:\n  g:\n    members:\n      - a\n      - b\n",
        );
        let f = t.find("users.ana@x.com.roles.sales").unwrap();
        assert_eq!(f.key, Some(Pos { line: 4, column: 7 }));
        assert_eq!(
            f.value,
            Pos {
                line: 4,
                column: 14
            }
        );
        assert!(f.complete);
        // The shorter key `ana@x` must not capture `ana@x.com`.
        let f = t.find("users.ana@x.name").unwrap();
        assert_eq!(f.key, Some(Pos { line: 6, column: 5 }));
        let f = t.find("groups.g.members[1]").unwrap();
        assert_eq!(
            f.best(),
            Pos {
                line: 11,
                column: 9
            }
        );
        assert_eq!(f.key, None);
        let f = t.find("users.ana@x.com.license").unwrap();
        assert!(!f.complete);
        assert_eq!(f.best(), Pos { line: 2, column: 3 });
        assert!(t.find("nothing.here").is_none());
    }

    #[test]
    fn json_text_locates_too() {
        let t = tree("{\n  \"tenant\": \"x\",\n  \"instances\": {\"a\": {\"url\": \"u\"}}\n}\n");
        let f = t.find("instances.a.url").unwrap();
        assert_eq!(
            f.key,
            Some(Pos {
                line: 3,
                column: 23
            })
        );
    }
}
