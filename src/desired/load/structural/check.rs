//! Checking one unit (a collection entry or a top-level field) against the model: a small
//! document of its own, deserialized as the fast path would, the path of its first error
//! tracked.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Map as JsonMap, Value as Json};
use serde_path_to_error::Segment;

use super::explain::failure_diag;
use super::{duplicate_key, Node, Source, Value, PLACEHOLDER_TENANT};
use crate::desired::load::locate::join;
use crate::desired::load::yaml_options;
use crate::desired::model::Desired;
use crate::diag::Diagnostic;

/// Check one unit (a collection entry, or a top-level field) and report its problems: after
/// each error, the offending field of the unit is removed and the unit checked again, so
/// that every wrong field of an entry is reported, not only the first.
pub(super) fn check_unit(
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
        let Some(f) = check(&wrap(unit.clone())) else {
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
///
/// Paths are made only for what can hold a key (issue 9 item 7: a path per list item, a
/// hash map per mapping, for the 500 members of every group was an eighth of the error
/// path's time); the first of repeated keys is found in the mapping's sorted index.
pub(super) fn duplicates(src: &Source, node: &Node, path: &str, out: &mut Vec<Diagnostic>) {
    let container = |n: &Node| matches!(n.value, Value::Map(..) | Value::Seq(_));
    match &node.value {
        Value::Map(entries, _) => {
            for e in entries {
                let first = node.value.get(&e.key).unwrap_or(e);
                if !std::ptr::eq(first, e) {
                    let here = join(path, &e.key);
                    out.push(duplicate_key(
                        src,
                        &e.key,
                        here,
                        e.key_pos,
                        first.key_pos.line,
                    ));
                } else if container(&e.value) {
                    duplicates(src, &e.value, &join(path, &e.key), out);
                }
            }
        }
        Value::Seq(items) => {
            for (i, n) in items.iter().enumerate() {
                if container(n) {
                    duplicates(src, n, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// A minimal document holding one top-level field (and a placeholder tenant).
pub(super) fn fragment(field: &str, value: Json) -> Json {
    let mut m = JsonMap::new();
    if field != "tenant" {
        m.insert("tenant".into(), Json::String(PLACEHOLDER_TENANT.into()));
    }
    m.insert(field.into(), value);
    Json::Object(m)
}

/// The located tree as JSON (first of duplicate keys; non-finite floats as YAML spells them).
pub(super) fn to_json(v: &Value) -> Json {
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
pub(super) struct Failure {
    pub(super) path: Vec<Segment>,
    pub(super) error: serde_saphyr::Error,
}

/// Deserialize `doc` into the model the way the fast path does (serde-saphyr's typing
/// rules; JSON text is YAML), tracking the path of the first error.
pub(super) fn check(doc: &Json) -> Option<Failure> {
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
pub(super) fn json_ok(doc: &Json) -> bool {
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
