//! The slow path for files that do not parse into the model: find EVERY structural problem
//! (syntax, wrong type, unknown field, bad enum value, duplicate key, missing field), each
//! with its YAML path, file position and a hint.
//!
//! Runs only after the fast path failed. It builds the located tree, reports duplicate keys
//! and unknown top-level fields from the tree, then checks each top-level entry (each user,
//! group, instance, license plan; storage; tenant) on its own: the entry is put in a small
//! document of its own, parsed by serde-saphyr (so the same typing rules apply) through
//! `serde_path_to_error`, and the error's path is located in the tree.

use std::collections::{BTreeSet, HashMap};

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, Visitor};
use serde_json::{Map as JsonMap, Value as Json};

mod check;
mod explain;
mod syntax;
mod walk;

use super::locate::{join, Entry, Node, Pos, Value};
use super::{loc, tree_options, Source};
use crate::desired::model::Desired;
use crate::diag::{Diagnostic, Severity};
use check::{check, check_unit, duplicates, fragment, json_ok, to_json};
use explain::unknown_field;
use syntax::fast_error;
use walk::{walk_json, RootSeed};

/// Top-level fields that are maps of independent entries, checked one entry at a time.
const COLLECTIONS: [&str; 4] = ["licenses", "security_groups", "users", "instances"];

/// Fields read as counts (`load::counts`).
const COUNT_FIELDS: [&str; 6] = [
    "language",
    "additional_gb",
    "essential",
    "basic",
    "professional",
    "enterprise",
];

/// A tenant value that satisfies the model, for documents that check one other field.
const PLACEHOLDER_TENANT: &str = "placeholder.onmicrosoft.com";

/// The first error of the fast path.
pub(crate) enum FastError {
    /// From serde-saphyr.
    Yaml(serde_saphyr::Error),
    /// From serde_json.
    Json(serde_json::Error),
}

fn diag(
    src: &Source,
    severity: Severity,
    message: String,
    address: Option<String>,
    pos: Option<Pos>,
) -> Diagnostic {
    Diagnostic {
        severity,
        message,
        address,
        rule: None,
        hint: None,
        location: pos.map(|p| loc(src, p)),
    }
}

fn error_at(
    src: &Source,
    message: String,
    address: Option<String>,
    pos: Option<Pos>,
) -> Diagnostic {
    diag(src, Severity::Error, message, address, pos)
}

/// Whether the text holds nothing but blank lines and comments.
fn is_blank(text: &str, json: bool) -> bool {
    if json {
        // No comments in JSON (and a one-line file is not split into its one line).
        return text.trim().is_empty();
    }
    super::source_lines(text).all(|l| {
        let t = l.trim();
        t.is_empty() || (!json && t.starts_with('#'))
    })
}

fn empty_file(src: &Source) -> Diagnostic {
    error_at(
        src,
        "the file is empty".into(),
        None,
        Some(Pos { line: 1, column: 1 }),
    )
    .hint("a desired-state file starts with `tenant: <name>.onmicrosoft.com`; see examples/minimal.yaml")
}

/// Most diagnostics kept (issue 9 item 7): after these, problems are only counted.
pub(crate) const MAX_DIAGNOSTICS: usize = 100;

/// Collection entries checked together (one parse) before any is checked on its own.
const BATCH: usize = 256;

/// Most located nodes in one batch (issue 9 item 7): 256 security groups of 500 members
/// each held 128,000 nodes, and their JSON and model copies, at once (about 30 MB on a
/// 10 MB file).
const BATCH_NODES: usize = 8192;

/// Every structural problem of a text whose fast parse failed with `fast` (at most
/// [`MAX_DIAGNOSTICS`]), and how many more were found.
///
/// One streaming pass over the text (issue 9 item 7): each top-level field, and each entry
/// of a collection, is read into a small located tree of its own, checked, and dropped, so
/// that memory stays that of one entry (and of the collection's keys, for duplicates), not
/// that of a located tree of the whole file. Entries are checked in batches of [`BATCH`]
/// entries or [`BATCH_NODES`] nodes; only the entries of a failing batch (and of the batch
/// after it) are checked one by one.
pub(crate) fn diagnose(src: &Source, json: bool, fast: FastError) -> (Vec<Diagnostic>, usize) {
    if is_blank(&src.text, json) {
        return (vec![empty_file(src)], 0);
    }
    // A JSON document that is not an object says so in its first character: no need to
    // read a large array through (issue 9 item 7).
    if json {
        let first = src.text.char_indices().find(|(_, c)| !c.is_whitespace());
        let kind = match first.map(|(_, c)| c) {
            Some('[') => Some("a list"),
            Some('"') => Some("a string"),
            Some('t' | 'f') => Some("a boolean"),
            Some(c) if c == '-' || c.is_ascii_digit() => Some("a number"),
            _ => None,
        };
        if let (Some(kind), Some((i, _))) = (kind, first) {
            return (vec![not_a_mapping(src, kind, i)], 0);
        }
    }
    let valid_before = fast_error(src, &fast).location.map(|l| Pos {
        line: l.line,
        column: l.column,
    });
    let new_ctx = || Ctx {
        src,
        out: Vec::new(),
        omitted: 0,
        batch: Vec::new(),
        batch_nodes: 0,
        batch_failed: false,
        fields: fields_of::<Desired>(),
        valid_before,
        json,
    };
    if json {
        // A syntax error anywhere is reported as serde_json finds it (the text is not
        // read further); otherwise the text is read with the JSON scanner (issue 9 item 7).
        // (serde_json's typed parse calls some type errors, such as a number for a
        // license, syntax errors: only a parse of the text alone says.)
        if let Err(e) = serde_json::from_str::<de::IgnoredAny>(&src.text) {
            let first = match fast {
                FastError::Json(f) if f.is_syntax() || f.is_eof() => f,
                _ => e,
            };
            return (vec![fast_error(src, &FastError::Json(first))], 0);
        }
        let mut ctx = new_ctx();
        if let Ok(root) = walk_json(&mut ctx, &src.text) {
            return finish(src, ctx, root, &fast);
        }
    }
    let text = super::tree_text(src);
    let mut ctx = new_ctx();
    let walked =
        serde_saphyr::with_deserializer_from_str_with_options(&text, tree_options(&text), |de| {
            RootSeed(&mut ctx).deserialize(de)
        });
    let root = match walked {
        Ok(r) => r,
        Err(e) => {
            // A syntax error (the same as the fast path's, for YAML). For JSON, serde_json's
            // own message and position are the ones that match the file's syntax.
            if json {
                return (vec![fast_error(src, &fast)], 0);
            }
            return (vec![fast_error(src, &FastError::Yaml(e))], 0);
        }
    };
    finish(src, ctx, root, &fast)
}

/// The diagnostics of a finished streaming pass that found `root`.
fn finish(src: &Source, ctx: Ctx, root: Root, fast: &FastError) -> (Vec<Diagnostic>, usize) {
    let tenant = match root {
        Root::Null => return (vec![empty_file(src)], 0),
        Root::Other(kind) => {
            // The first character that is not blank or in a comment.
            let mut at = 0;
            for line in src.text.split_inclusive(['\n', '\r']) {
                let t = line.trim_start();
                if !t.is_empty() && !t.starts_with('#') {
                    at += line.len() - t.len();
                    break;
                }
                at += line.len();
            }
            return (vec![not_a_mapping(src, kind, at.min(src.text.len()))], 0);
        }
        Root::Map { tenant } => tenant,
    };
    let Ctx {
        mut out,
        mut omitted,
        ..
    } = ctx;
    // Required top-level fields: only `tenant` (a unit test keeps this true).
    if !tenant {
        let d = error_at(
            src,
            "missing field `tenant`".into(),
            None,
            Some(Pos { line: 1, column: 1 }),
        )
        .hint("add `tenant: <name>.onmicrosoft.com` at the top level");
        if out.len() < MAX_DIAGNOSTICS {
            out.push(d);
        } else {
            omitted += 1;
        }
    }
    let mut unique = BTreeSet::new();
    out.retain(|d| unique.insert((d.address.clone(), d.message.clone())));
    if out.is_empty() {
        out.push(fast_error(src, fast));
    }
    (out, omitted)
}

/// The top level is not a mapping: found `kind` at byte `at`.
fn not_a_mapping(src: &Source, kind: &str, at: usize) -> Diagnostic {
    let (line, column) = super::end_position(&src.text[..at]);
    error_at(
        src,
        format!("the top level must be a mapping (`tenant:`, `users:`, ...), found {kind}"),
        None,
        Some(Pos { line, column }),
    )
    .hint("start the file with `tenant: <name>.onmicrosoft.com`; see examples/minimal.yaml")
}

/// What the streaming pass found at the top level.
enum Root {
    Null,
    Other(&'static str),
    Map { tenant: bool },
}

/// The state of the streaming pass.
struct Ctx<'s> {
    src: &'s Source,
    out: Vec<Diagnostic>,
    omitted: usize,
    /// Entries of the current collection not checked yet.
    batch: Vec<(String, Pos, Node)>,
    /// The nodes of `batch` ([`Node::size`]).
    batch_nodes: usize,
    /// The last batch checked had an entry with a problem.
    batch_failed: bool,
    fields: &'static [&'static str],
    /// The fast path's first error: the fast path read the file in order up to there, so
    /// an entry that ends before it (its successor starts before it) is known to be well
    /// typed and is not checked again (issue 9 item 7: a large file with one late error
    /// costs about two parses).
    valid_before: Option<Pos>,
    /// A JSON file: batches are first checked by serde_json, as the fast path read them.
    json: bool,
}

impl Ctx<'_> {
    fn push_all(&mut self, found: Vec<Diagnostic>) {
        for d in found {
            if self.out.len() < MAX_DIAGNOSTICS {
                self.out.push(d);
            } else {
                self.omitted += 1;
            }
        }
    }

    fn full(&self) -> bool {
        self.out.len() >= MAX_DIAGNOSTICS
    }

    /// A top-level key: reported if repeated or unknown; whether its value is to be read.
    fn root_key(
        &mut self,
        seen: &mut HashMap<String, u32>,
        tenant: &mut bool,
        key: &str,
        key_pos: Pos,
    ) -> bool {
        if let Some(&first) = seen.get(key) {
            let d = duplicate_key(self.src, key, key.to_string(), key_pos, first);
            self.push_all(vec![d]);
            return false;
        }
        seen.insert(key.to_string(), key_pos.line);
        *tenant |= key == "tenant";
        if !self.fields.contains(&key) {
            let d = unknown_field(self.src, key, key.to_string(), key_pos, self.fields);
            self.push_all(vec![d]);
            return false;
        }
        true
    }

    /// A key of collection `coll`: reported if repeated; whether its value is to be read.
    fn entry_key(
        &mut self,
        seen: &HashMap<String, u32>,
        coll: &str,
        key: &str,
        key_pos: Pos,
    ) -> bool {
        match seen.get(key) {
            Some(&first) => {
                let d = duplicate_key(self.src, key, join(coll, key), key_pos, first);
                self.push_all(vec![d]);
                false
            }
            None => true,
        }
    }

    /// An entry of collection `coll` (at `coll_pos`), read: checked with its batch.
    fn entry(
        &mut self,
        seen: &mut HashMap<String, u32>,
        coll: &str,
        coll_pos: Pos,
        key: String,
        key_pos: Pos,
        node: Node,
    ) {
        let mut found = Vec::new();
        duplicates(self.src, &node, &join(coll, &key), &mut found);
        self.push_all(found);
        seen.insert(key.clone(), key_pos.line);
        if self.valid_before.is_some_and(|p| key_pos < p) {
            // The previous entry ended before the fast path's first error.
            if let Some((_, _, n)) = self.batch.pop() {
                self.batch_nodes -= n.size();
            }
        }
        self.batch_nodes += node.size();
        self.batch.push((key, key_pos, node));
        if self.batch.len() >= BATCH || self.batch_nodes >= BATCH_NODES {
            self.flush(coll, coll_pos);
        }
    }

    /// A top-level field other than a collection map (or a collection that is not a map).
    fn top_level(&mut self, key: &str, key_pos: Pos, node: Node) {
        let mut found = Vec::new();
        duplicates(self.src, &node, key, &mut found);
        let unit = to_json(&node.value);
        if check(&fragment(key, unit.clone())).is_some() {
            let tree = Node {
                pos: Pos { line: 1, column: 1 },
                value: Value::map(vec![Entry {
                    key: key.to_string(),
                    key_pos,
                    value: node,
                }]),
            };
            let wrap = |v: Json| fragment(key, v);
            check_unit(self.src, &tree, &wrap, unit, 1, None, &mut found);
        }
        self.push_all(found);
    }

    /// Check the collected entries of collection `coll` (at `coll_pos`).
    fn flush(&mut self, coll: &str, coll_pos: Pos) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_nodes = 0;
        let mut all = JsonMap::new();
        for (k, _, n) in &batch {
            all.insert(k.clone(), to_json(&n.value));
        }
        let mut doc = fragment(coll, Json::Object(all));
        // After a batch with problems the next one is checked entry by entry straight away
        // (issue 9 item 7: when every entry is wrong, the check of the whole batch is a
        // third of the work, and finds nothing the entries' checks do not).
        if !self.batch_failed && ((self.json && json_ok(&doc)) || check(&doc).is_none()) {
            return;
        }
        let mut units = match doc.get_mut(coll).map(Json::take) {
            Some(Json::Object(m)) => m,
            _ => JsonMap::new(),
        };
        drop(doc);
        let mut bad_entries = 0;
        for (key, key_pos, node) in batch {
            let wrap = |v: Json| {
                let mut one = JsonMap::new();
                one.insert(key.clone(), v);
                fragment(coll, Json::Object(one))
            };
            let unit = units.remove(&key).unwrap_or_else(|| to_json(&node.value));
            if self.full() {
                // Over the limit: count the entry's problem, do not describe it.
                // (A JSON file's entry is counted as the fast path reads it: serde_json.)
                let doc = wrap(unit);
                let bad = if self.json {
                    !json_ok(&doc)
                } else {
                    check(&doc).is_some()
                };
                if bad {
                    self.omitted += 1;
                    bad_entries += 1;
                }
                continue;
            }
            // A JSON file's entry that serde_json reads is as the fast path read it.
            if self.json && json_ok(&wrap(unit.clone())) {
                continue;
            }
            let tree = Node {
                pos: Pos { line: 1, column: 1 },
                value: Value::map(vec![Entry {
                    key: coll.to_string(),
                    key_pos: coll_pos,
                    value: Node {
                        pos: coll_pos,
                        value: Value::map(vec![Entry {
                            key: key.clone(),
                            key_pos,
                            value: node,
                        }]),
                    },
                }]),
            };
            let mut found = Vec::new();
            check_unit(self.src, &tree, &wrap, unit, 2, Some(&key), &mut found);
            bad_entries += usize::from(!found.is_empty());
            self.push_all(found);
        }
        self.batch_failed = bad_entries > 0;
    }
}

/// The duplicate-key diagnostic, at the repetition, naming the first one's line.
fn duplicate_key(src: &Source, key: &str, address: String, at: Pos, first_line: u32) -> Diagnostic {
    error_at(
        src,
        format!("duplicate key `{key}`"),
        Some(address),
        Some(at),
    )
    .hint(format!(
        "`{key}` is already defined at line {first_line}; keep one of them"
    ))
}
/// The field names a struct's derived `Deserialize` expects (its `FIELDS`), captured by a
/// deserializer that reads nothing.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Capture<'c>(&'c mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Capture<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("capture"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("capture"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Capture(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_the_model_fields() {
        let f = fields_of::<Desired>();
        assert!(f.contains(&"tenant") && f.contains(&"users") && f.contains(&"$schema"));
        for c in COLLECTIONS {
            assert!(f.contains(&c), "{c} is a field of Desired");
        }
    }

    /// issue 9 item 7: the JSON scanner's pass finds what the YAML parser's pass finds,
    /// at the same places (the fast pass must not change a diagnostic).
    #[test]
    fn json_scanner_pass_matches_the_yaml_parser_pass() {
        let texts = [
            "{\"tenant\": \"a.onmicrosoft.com\", \"licence\": 1,\r\n \"licenses\": {\"basic\": 1e400, \"pro\": 2}}",
            "{\"tenant\": 5, \"users\": {\"a@x.com\": {\"name\": \"\\u00e9\\ud83d\\ude00\", \"license\": 5, \"licence\": \"x\"},\n  \"a@x.com\": {}, \"b@x.com\": {\"roles\": {\"i\": [1, -2.5, null, true]}}}}",
            "{\"users\": [1, 2], \"instances\": {\"i\": {\"name\": \"\\uFFFF\", \"url\": \"A\", \"type\": \"sandbx\", \"x\": {\"y\": 1, \"y\": 2}}},\n\t\"storage\": {\"additional_gb\": -1}}",
        ];
        for text in texts {
            let src = Source {
                path: "t.json".into(),
                text: text.into(),
            };
            let fast = FastError::Json(serde_json::from_str::<Desired>(text).unwrap_err());
            let valid_before = fast_error(&src, &fast).location.map(|l| Pos {
                line: l.line,
                column: l.column,
            });
            let new_ctx = || Ctx {
                src: &src,
                out: Vec::new(),
                omitted: 0,
                batch: Vec::new(),
                batch_nodes: 0,
                batch_failed: false,
                fields: fields_of::<Desired>(),
                valid_before,
                json: true,
            };
            let mut scanned = new_ctx();
            let root = walk_json(&mut scanned, text).expect("the scanner reads valid JSON");
            let by_scanner = finish(&src, scanned, root, &fast);
            let mut parsed = new_ctx();
            let text = super::super::tree_text(&src);
            let root = serde_saphyr::with_deserializer_from_str_with_options(
                &text,
                tree_options(&text),
                |de| RootSeed(&mut parsed).deserialize(de),
            )
            .unwrap();
            let by_parser = finish(&src, parsed, root, &fast);
            assert!(!by_parser.0.is_empty());
            assert_eq!(
                format!("{by_scanner:?}"),
                format!("{by_parser:?}"),
                "{text}"
            );
        }
    }

    #[test]
    fn tenant_is_the_only_required_top_level_field() {
        let d: Desired = serde_saphyr::from_str("tenant: a.onmicrosoft.com\n").unwrap();
        assert_eq!(d.tenant, "a.onmicrosoft.com");
        assert!(serde_saphyr::from_str::<Desired>("users: {}\n").is_err());
    }
}
