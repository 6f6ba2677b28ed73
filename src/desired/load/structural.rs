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
use serde_path_to_error::Segment;
use serde_saphyr::MessageFormatter;

use super::jscan::JsonScan;
use super::locate::{join, Entry, Key, Node, Pos, Value, ValueVisitor};
use super::{loc, tree_options, yaml_options, Source};
use crate::desired::model::Desired;
use crate::diag::{Diagnostic, Severity};

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

/// The message of a serde-saphyr error, without location or snippet.
pub(crate) fn yaml_message(e: &serde_saphyr::Error) -> String {
    serde_saphyr::UserMessageFormatter
        .format_message(e.without_snippet())
        .into_owned()
}

/// A hint for a YAML syntax error, from its message.
fn syntax_hint(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("unsupported tag") {
        "crmctl reads plain YAML data: remove the tag (`!name` or `!!name`) before the value"
    } else if m.contains("plain decimal digits") {
        "write the count as digits only, e.g. `1000`"
    } else if m.contains("tab") {
        "indent with spaces: YAML does not allow tabs for indentation"
    } else if m.contains("budget") || m.contains("limit") || m.contains("exceeded") {
        "the file is larger or more deeply nested than crmctl accepts; split it or remove anchors/aliases"
    } else if m.contains("block mapping")
        || m.contains("indent")
        || m.contains("mapping values are not allowed")
        || m.contains("did not find expected")
    {
        "check the indentation of this line against the lines above it"
    } else if m.contains("duplicate") {
        "each key may appear once in a mapping; remove or merge the repeated one"
    } else if m.contains("unexpected character") || m.contains("control character") {
        "remove the character: a desired-state file holds printable text only (names refuse control characters too)"
    } else {
        // issue 9 item 8: every diagnostic says what to do.
        "check the YAML syntax here: quotes and brackets closed, `key: value` with a space after the colon"
    }
}

/// A hint for a JSON syntax error, from serde_json's message (issue 9 item 8: every
/// diagnostic says what to do).
fn json_hint(message: &str) -> &'static str {
    if message.contains("trailing comma") {
        "remove the comma after the last entry"
    } else if message.contains("control character") {
        "write control characters in strings as escapes (`\\n`, `\\u001b`), or remove them"
    } else if message.contains("EOF") {
        "the file ends early: close every `{`, `[` and `\"`"
    } else if message.contains("trailing characters") {
        "remove what follows the closing `}` of the document"
    } else {
        "check the JSON syntax here: commas between entries, keys in double quotes, brackets closed"
    }
}

/// The fast path's own error, located as its library reports it.
fn fast_error(src: &Source, fast: &FastError) -> Diagnostic {
    match fast {
        FastError::Yaml(e) => {
            let message = yaml_message(e);
            let pos = e.location().map(|l| Pos {
                line: l.line() as u32,
                column: l.column() as u32,
            });
            let hint = syntax_hint(&message);
            let mut pos = pos.filter(|p| p.line > 0);
            if message.to_ascii_lowercase().contains("tab") {
                pos = pos.map(|p| tab_at_or_after(&src.text, p));
            }
            error_at(src, message, None, pos).hint(hint)
        }
        FastError::Json(e) => {
            let mut message = e.to_string();
            // serde_json appends " at line L column C"; the location says it already.
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
            let pos = (e.line() > 0).then(|| json_pos(&src.text, e.line(), e.column()));
            let hint = if e.is_data() {
                "compare the value with what `crmctl schema` says this field takes"
            } else {
                json_hint(&message)
            };
            error_at(src, message, None, pos).hint(hint)
        }
    }
}

/// The YAML library reports some tabs at the end of the line before them: the position of
/// the first tab at or after `p` on `p`'s line, else the first tab of the next line, else `p` (issue 9 item 8: a tab
/// is reported on its own line).
fn tab_at_or_after(text: &str, p: Pos) -> Pos {
    let mut lines = super::source_lines(text).skip(p.line as usize - 1);
    let here: Vec<char> = lines.next().unwrap_or("").chars().collect();
    let col = p.column as usize;
    if let Some(i) = here
        .iter()
        .skip(col.saturating_sub(1))
        .position(|&c| c == '\t')
    {
        return Pos {
            line: p.line,
            column: (col.max(1) + i) as u32,
        };
    }
    if let Some(i) = lines.next().and_then(|l| l.chars().position(|c| c == '\t')) {
        return Pos {
            line: p.line + 1,
            column: i as u32 + 1,
        };
    }
    p
}

/// serde_json's position (lines ended by LF only, columns in bytes) as the loader counts
/// positions (LF, CRLF or CR; columns in characters), clamped to the text.
fn json_pos(text: &str, line: usize, column: usize) -> Pos {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    let mut end = (start + column.saturating_sub(1)).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let (line, column) = super::end_position(&text[..end]);
    Pos { line, column }
}

/// Most diagnostics kept (issue 9 item 7): after these, problems are only counted.
pub(crate) const MAX_DIAGNOSTICS: usize = 100;

/// Collection entries checked together (one parse) before any is checked on its own.
const BATCH: usize = 256;

/// Every structural problem of a text whose fast parse failed with `fast` (at most
/// [`MAX_DIAGNOSTICS`]), and how many more were found.
///
/// One streaming pass over the text (issue 9 item 7): each top-level field, and each entry
/// of a collection, is read into a small located tree of its own, checked, and dropped, so
/// that memory stays that of one entry (and of the collection's keys, for duplicates), not
/// that of a located tree of the whole file. Entries are checked in batches of [`BATCH`];
/// only the entries of a failing batch are checked one by one.
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
        serde_saphyr::with_deserializer_from_str_with_options(&text, tree_options(), |de| {
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
            self.batch.pop();
        }
        self.batch.push((key, key_pos, node));
        if self.batch.len() >= BATCH {
            self.flush(coll, coll_pos);
        }
    }

    /// A top-level field other than a collection map (or a collection that is not a map).
    fn top_level(&mut self, key: &str, key_pos: Pos, node: Node) {
        let mut found = Vec::new();
        duplicates(self.src, &node, key, &mut found);
        let unit = to_json(&node.value);
        if check(fragment(key, unit.clone())).is_some() {
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
        let mut all = JsonMap::new();
        for (k, _, n) in &batch {
            all.insert(k.clone(), to_json(&n.value));
        }
        let doc = fragment(coll, Json::Object(all));
        if (self.json && json_ok(&doc)) || check(doc).is_none() {
            return;
        }
        for (key, key_pos, node) in batch {
            let wrap = |v: Json| {
                let mut one = JsonMap::new();
                one.insert(key.clone(), v);
                fragment(coll, Json::Object(one))
            };
            let unit = to_json(&node.value);
            if self.full() {
                // Over the limit: count the entry's problem, do not describe it.
                // (A JSON file's entry is counted as the fast path reads it: serde_json.)
                let doc = wrap(unit);
                let bad = if self.json {
                    !json_ok(&doc)
                } else {
                    check(doc).is_some()
                };
                if bad {
                    self.omitted += 1;
                }
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
            self.push_all(found);
        }
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

struct RootSeed<'c, 's>(&'c mut Ctx<'s>);

impl<'de> de::DeserializeSeed<'de> for RootSeed<'_, '_> {
    type Value = Root;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Root, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RootSeed<'_, '_> {
    type Value = Root;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a desired-state document")
    }
    fn visit_unit<E>(self) -> Result<Root, E> {
        Ok(Root::Null)
    }
    fn visit_none<E>(self) -> Result<Root, E> {
        Ok(Root::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Root, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Root, E> {
        Ok(Root::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Root, E> {
        Ok(Root::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Root, E> {
        Ok(Root::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Root, E> {
        Ok(Root::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Root, E> {
        Ok(Root::Other("a string"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Root, A::Error> {
        // Read through (nothing kept): a large list costs no memory.
        while a.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Root::Other("a list"))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Root, A::Error> {
        let ctx = self.0;
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut tenant = false;
        while let Some(Key(key, key_pos)) = a.next_key::<Key>()? {
            if !ctx.root_key(&mut seen, &mut tenant, &key, key_pos) {
                a.next_value::<de::IgnoredAny>()?;
                continue;
            }
            if COLLECTIONS.contains(&key.as_str()) {
                a.next_value_seed(CollSeed {
                    ctx: &mut *ctx,
                    key: &key,
                    key_pos,
                })?;
            } else {
                let node = a.next_value::<Node>()?;
                ctx.top_level(&key, key_pos, node);
            }
        }
        Ok(Root::Map { tenant })
    }
}

/// A collection (`users`, ...): a map whose entries are checked one batch at a time.
struct CollSeed<'c, 's, 'k> {
    ctx: &'c mut Ctx<'s>,
    key: &'k str,
    key_pos: Pos,
}

impl<'de> de::DeserializeSeed<'de> for CollSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! not_a_map {
    ($($name:ident($($t:ty)?)),*) => {$(
        fn $name<E: de::Error>(self $(, v: $t)?) -> Result<(), E> {
            let value = ValueVisitor.$name($(v as $t)?)?;
            self.ctx.top_level(self.key, self.key_pos, Node { pos: self.key_pos, value });
            Ok(())
        }
    )*};
}

impl<'de> Visitor<'de> for CollSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a mapping")
    }
    not_a_map!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_i128(i128),
        visit_u128(u128),
        visit_f64(f64),
        visit_str(&str),
        visit_string(String),
        visit_unit(),
        visit_none()
    );
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, a: A) -> Result<(), A::Error> {
        let value = ValueVisitor.visit_seq(a)?;
        self.ctx.top_level(
            self.key,
            self.key_pos,
            Node {
                pos: self.key_pos,
                value,
            },
        );
        Ok(())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut seen: HashMap<String, u32> = HashMap::new();
        while let Some(Key(key, key_pos)) = a.next_key::<Key>()? {
            if !ctx.entry_key(&seen, self.key, &key, key_pos) {
                a.next_value::<de::IgnoredAny>()?;
                continue;
            }
            let node = a.next_value::<Node>()?;
            ctx.entry(&mut seen, self.key, self.key_pos, key, key_pos, node);
        }
        ctx.flush(self.key, self.key_pos);
        Ok(())
    }
}

/// The streaming pass of a JSON file, read with [`JsonScan`] (issue 9 item 7: the YAML
/// parser costs about ten times serde_json on the same text; this costs about one parse).
/// The same checks as [`RootSeed`] and [`CollSeed`]; `Err` on anything unexpected (the
/// caller then uses the YAML parser).
fn walk_json(ctx: &mut Ctx, text: &str) -> Result<Root, ()> {
    let mut s = JsonScan::new(text);
    match s.peek() {
        Some(b'{') => {}
        Some(b'n') if text.trim() == "null" => return Ok(Root::Null),
        _ => return Err(()),
    }
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut tenant = false;
    if s.open(b'{', b'}')? {
        loop {
            let (key, key_pos) = s.string()?;
            s.eat(b':')?;
            if !ctx.root_key(&mut seen, &mut tenant, &key, key_pos) {
                s.value(1)?;
            } else if COLLECTIONS.contains(&key.as_str()) && s.peek() == Some(b'{') {
                let mut entries: HashMap<String, u32> = HashMap::new();
                if s.open(b'{', b'}')? {
                    loop {
                        let (k, k_pos) = s.string()?;
                        s.eat(b':')?;
                        let node = s.value(2)?;
                        if ctx.entry_key(&entries, &key, &k, k_pos) {
                            ctx.entry(&mut entries, &key, key_pos, k, k_pos, node);
                        }
                        if !s.next_item(b'}')? {
                            break;
                        }
                    }
                }
                ctx.flush(&key, key_pos);
            } else {
                let node = s.value(1)?;
                let node = if COLLECTIONS.contains(&key.as_str()) {
                    Node {
                        pos: key_pos,
                        value: node.value,
                    }
                } else {
                    node
                };
                ctx.top_level(&key, key_pos, node);
            }
            if !s.next_item(b'}')? {
                break;
            }
        }
    }
    match s.peek() {
        None => Ok(Root::Map { tenant }),
        Some(_) => Err(()),
    }
}

/// Check one unit (a collection entry, or a top-level field) and report its problems: after
/// each error, the offending field of the unit is removed and the unit checked again, so
/// that every wrong field of an entry is reported, not only the first.
fn check_unit(
    src: &Source,
    tree: &Node,
    wrap: &dyn Fn(Json) -> Json,
    mut unit: Json,
    depth: usize,
    entry: Option<&str>,
    out: &mut Vec<Diagnostic>,
) {
    let mut removed: BTreeSet<String> = BTreeSet::new();
    for _ in 0..256 {
        let Some(f) = check(wrap(unit.clone())) else {
            return;
        };
        if let serde_saphyr::Error::SerdeMissingField { field, .. } = f.error.without_snippet() {
            if removed.contains(*field) {
                return; // we removed it ourselves
            }
        }
        out.push(failure_diag(src, tree, &f, entry));
        let field = match f.path.get(depth) {
            Some(Segment::Map { key }) => key.clone(),
            _ => return,
        };
        let Json::Object(m) = &mut unit else { return };
        if m.remove(&field).is_none() {
            return;
        }
        removed.insert(field);
    }
}

/// Report every repeated key, at the repetition, with the first one's line.
fn duplicates(src: &Source, node: &Node, path: &str, out: &mut Vec<Diagnostic>) {
    match &node.value {
        Value::Map(entries, _) => {
            let mut first: HashMap<&str, Pos> = HashMap::new();
            for e in entries {
                let here = join(path, &e.key);
                match first.get(e.key.as_str()) {
                    Some(p) => out.push(
                        error_at(
                            src,
                            format!("duplicate key `{}`", e.key),
                            Some(here),
                            Some(e.key_pos),
                        )
                        .hint(format!(
                            "`{}` is already defined at line {}; keep one of them",
                            e.key, p.line
                        )),
                    ),
                    None => {
                        first.insert(&e.key, e.key_pos);
                        duplicates(src, &e.value, &here, out);
                    }
                }
            }
        }
        Value::Seq(items) => {
            for (i, n) in items.iter().enumerate() {
                duplicates(src, n, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A minimal document holding one top-level field (and a placeholder tenant).
fn fragment(field: &str, value: Json) -> Json {
    let mut m = JsonMap::new();
    if field != "tenant" {
        m.insert("tenant".into(), Json::String(PLACEHOLDER_TENANT.into()));
    }
    m.insert(field.into(), value);
    Json::Object(m)
}

/// The located tree as JSON (first of duplicate keys; non-finite floats as YAML spells them).
fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or_else(|| {
                Json::String(if f.is_nan() {
                    ".nan".into()
                } else if *f > 0.0 {
                    ".inf".into()
                } else {
                    "-.inf".into()
                })
            }),
        Value::Str(s) => Json::String(s.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(|n| to_json(&n.value)).collect()),
        Value::Map(entries, _) => {
            let mut m = JsonMap::new();
            for e in entries {
                m.entry(e.key.clone())
                    .or_insert_with(|| to_json(&e.value.value));
            }
            Json::Object(m)
        }
    }
}

/// A failed check: where serde was, and what it said.
struct Failure {
    path: Vec<Segment>,
    error: serde_saphyr::Error,
}

/// Deserialize `doc` into the model the way the fast path does (serde-saphyr's typing
/// rules; JSON text is YAML), tracking the path of the first error.
fn check(doc: Json) -> Option<Failure> {
    let text = yaml_safe(doc.to_string());
    let mut track = serde_path_to_error::Track::new();
    let result =
        serde_saphyr::with_deserializer_from_str_with_options(&text, yaml_options(), |de| {
            Desired::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
        });
    match result {
        Ok(_) => None,
        Err(error) => Some(Failure {
            path: track.path().iter().cloned().collect(),
            error,
        }),
    }
}

/// Whether serde_json reads `doc` into the model, as the fast path reads a JSON file (a
/// cheap first check of a JSON file's batch; issue 9 item 7).
fn json_ok(doc: &Json) -> bool {
    Desired::deserialize(doc).is_ok()
}

/// JSON text that YAML reads the same: characters YAML does not allow in a document (C1
/// controls, DEL, U+FFFE, U+FFFF; serde_json escapes C0 already) can only be inside strings
/// here, and are written as `\uXXXX` escapes (issue 9 item 8: a JSON `\uFFFF` lost every
/// location).
fn yaml_safe(text: String) -> String {
    let bad = |c: char| matches!(c, '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}');
    if !text.contains(bad) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The domain rule behind a closed set or a typed field, by the field's name.
fn rule_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "region" => "I6",
        "license" | "licenses" => "T2",
        "access_mode" => "P3",
        "type" => "I7",
        "kind" => "I11",
        "admin_roles" => "P6",
        "currency" => "I3",
        "url" => "I5",
        "admin_mode" => "I10",
        "update" | "target_version" => "U1",
        _ => return None,
    })
}

fn suggestion<'a>(wanted: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|n| {
            (
                strsim::jaro_winkler(&wanted.to_ascii_lowercase(), &n.to_ascii_lowercase()),
                *n,
            )
        })
        .filter(|(s, _)| *s >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

fn list(expected: &[&str]) -> String {
    expected
        .iter()
        .map(|e| format!("`{e}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_field(
    src: &Source,
    field: &str,
    address: String,
    pos: Pos,
    expected: &[&str],
) -> Diagnostic {
    let hint = match suggestion(field, expected) {
        Some(s) => format!("did you mean `{s}`? (expected one of {})", list(expected)),
        None => format!("expected one of {}", list(expected)),
    };
    error_at(
        src,
        format!("unknown field `{field}`"),
        Some(address),
        Some(pos),
    )
    .hint(hint)
}

/// Turn a failed check into a located diagnostic. `entry` is the key of the collection entry
/// the document held, if any (serde cannot tell the path of an error inside a map key).
fn failure_diag(src: &Source, tree: &Node, f: &Failure, entry: Option<&str>) -> Diagnostic {
    // The path as text; stop at an unknown segment (an error in a map key).
    let mut path = String::new();
    let mut last_key: Option<String> = None;
    let mut in_key = false;
    // A count is read through a span-aware wrapper (`load::counts`) whose inner map adds a
    // `value` segment: not part of the file's path.
    let mut segments = &f.path[..];
    if let [.., Segment::Map { key: count }, Segment::Map { key: inner }] = segments {
        if inner == "value" && COUNT_FIELDS.contains(&count.as_str()) {
            segments = &segments[..segments.len() - 1];
        }
    }
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            Segment::Map { key } => {
                path = join(&path, key);
                last_key = Some(key.clone());
            }
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Enum { variant } => path = join(&path, variant),
            Segment::Unknown => {
                if let (1, Some(k)) = (i, entry) {
                    path = join(&path, k);
                    last_key = Some(k.to_string());
                }
                in_key = true;
                break;
            }
        }
    }
    let found = if path.is_empty() {
        None
    } else {
        tree.find(&path)
    };
    let field = last_key.clone().unwrap_or_default();
    let parent_field = segments.iter().rev().find_map(|s| match s {
        Segment::Map { key } if Some(key) != last_key.as_ref() => Some(key.clone()),
        _ => None,
    });
    let address = (!path.is_empty()).then(|| path.clone());
    match f.error.without_snippet() {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => {
            let pos = found.map(|f| f.best());
            unknown_field(
                src,
                field,
                path.clone(),
                pos.unwrap_or(Pos { line: 1, column: 1 }),
                expected,
            )
        }
        serde_saphyr::Error::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            // An unknown map key (a license plan) or an unknown value (region, type, ...).
            let (what, rule_field, pos) = if in_key {
                let coll = parent_field.as_deref().unwrap_or(&field);
                (
                    format!("unknown key `{variant}` in `{coll}`"),
                    coll.to_string(),
                    found.map(|f| f.best()),
                )
            } else {
                (
                    format!("unknown value `{variant}` for `{field}`"),
                    field.clone(),
                    found.map(|f| f.value),
                )
            };
            let hint = match suggestion(variant, expected) {
                Some(s) => format!("did you mean `{s}`? (expected one of {})", list(expected)),
                None => format!("expected one of {}", list(expected)),
            };
            let mut d = error_at(src, what, address, pos).hint(hint);
            d.rule = rule_of(&rule_field).map(str::to_string);
            d
        }
        serde_saphyr::Error::SerdeMissingField { field: missing, .. } => {
            let at = if path.is_empty() {
                "the top level".to_string()
            } else {
                format!("`{path}`")
            };
            error_at(
                src,
                format!("missing field `{missing}` in {at}"),
                address,
                found.map(|f| f.best()).or(Some(Pos { line: 1, column: 1 })),
            )
            .hint(format!("add `{missing}:`; it is required"))
        }
        serde_saphyr::Error::DuplicateMappingKey { .. } => {
            // Reported from the tree with both positions; keep this one only as a fallback.
            let m = yaml_message(&f.error);
            error_at(src, m, address, found.map(|f| f.best()))
        }
        other => {
            let m = plain_words(&yaml_message(other));
            let node = found.and_then(|fd| fd.complete.then_some(fd.value));
            let shown = found
                .filter(|fd| fd.complete)
                .and_then(|_| value_at(tree, &path))
                .map(describe)
                .unwrap_or_default();
            let message = if field.is_empty() {
                m
            } else {
                format!("invalid value for `{field}`: {m}{shown}")
            };
            let mut d = error_at(src, message, address, node.or(found.map(|f| f.best())));
            d.rule = rule_of(&field).map(str::to_string);
            if let Some(h) = type_hint(&field) {
                d = d.hint(h);
            }
            d
        }
    }
}

/// The serde-saphyr wording of common type errors, in the words of the file's author.
fn plain_words(m: &str) -> String {
    let l = m.to_ascii_lowercase();
    let said = if l.starts_with("invalid u") || l.starts_with("invalid i") {
        "expected a whole number"
    } else if l.contains("boolean") {
        "expected `true` or `false`"
    } else if l.contains("null") {
        "a value is required here, found nothing"
    } else if l.contains("string scalar") {
        "expected a text value"
    } else if l.contains("mapping start") {
        "expected a mapping (`key: value` lines)"
    } else if l.contains("sequence start") {
        "expected a list"
    } else {
        return m.to_string();
    };
    said.to_string()
}

fn value_at<'a>(tree: &'a Node, path: &str) -> Option<&'a Value> {
    // Re-walk to get the node itself (find only returns positions).
    fn walk<'a>(node: &'a Node, rest: &str) -> Option<&'a Value> {
        if rest.is_empty() {
            return Some(&node.value);
        }
        if let Some(after) = rest.strip_prefix('[') {
            let e = after.find(']')?;
            let i: usize = after[..e].parse().ok()?;
            let Value::Seq(items) = &node.value else {
                return None;
            };
            let r = &after[e + 1..];
            return walk(items.get(i)?, r.strip_prefix('.').unwrap_or(r));
        }
        let mut ends: Vec<usize> = rest
            .char_indices()
            .filter(|&(_, c)| c == '.' || c == '[')
            .map(|(i, _)| i)
            .collect();
        ends.push(rest.len());
        ends.into_iter().rev().find_map(|end| {
            let e = node.value.get(&rest[..end])?;
            let r = &rest[end..];
            walk(&e.value, r.strip_prefix('.').unwrap_or(r))
        })
    }
    walk(tree, path)
}

fn describe(v: &Value) -> String {
    match v {
        // Non-finite numbers (`1e400`, `.inf`) are kept as their canonical text in the tree.
        Value::Str(s) if matches!(s.as_str(), ".inf" | "-.inf" | ".nan") => {
            " (found a number that is not finite or too large)".to_string()
        }
        Value::Str(s) if s.chars().count() <= 40 => format!(" (found the string `{s}`)"),
        Value::Int(i) => format!(" (found the number {i})"),
        Value::UInt(u) => format!(" (found the number {u})"),
        Value::Bool(b) => format!(" (found `{b}`)"),
        Value::Null => String::new(),
        other => format!(" (found {})", other.kind()),
    }
}

/// What a field expects, for type errors.
fn type_hint(field: &str) -> Option<&'static str> {
    Some(match field {
        "language" => "write a Windows LCID number, e.g. `1033` for English",
        "additional_gb" => "write a whole number of gigabytes, e.g. `10`",
        "protect" | "enabled" | "background_operations" => "write `true` or `false`",
        "members" | "notification_recipients" => {
            "write a list, e.g. `[ana@cohowinery.com, ben@cohowinery.com]`"
        }
        "roles" => "write a mapping of instance key to role names, e.g. `sales: [Salesperson]`",
        "admin_roles" => "write a list, e.g. `[global_admin]`",
        "name" | "purpose" | "description" | "message" | "url" | "currency" | "tenant" => {
            "write a text value; quote it if it looks like a number or is empty"
        }
        "professional" | "enterprise" | "basic" | "essential" => {
            "write the purchased count as a whole number, e.g. `40`"
        }
        _ => return None,
    })
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
                fields: fields_of::<Desired>(),
                valid_before,
                json: true,
            };
            let mut scanned = new_ctx();
            let root = walk_json(&mut scanned, text).expect("the scanner reads valid JSON");
            let by_scanner = finish(&src, scanned, root, &fast);
            let mut parsed = new_ctx();
            let root = serde_saphyr::with_deserializer_from_str_with_options(
                &super::super::tree_text(&src),
                tree_options(),
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

    #[test]
    fn suggests_close_names() {
        let expected = ["name", "url", "type", "currency", "region"];
        assert_eq!(suggestion("curency", &expected), Some("currency"));
        assert_eq!(suggestion("regoin", &expected), Some("region"));
        assert_eq!(suggestion("zzzzzz", &expected), None);
    }
}
