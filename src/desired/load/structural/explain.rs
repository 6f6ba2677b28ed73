//! A failed check in the words of the file's author: the located diagnostic, with the
//! rule behind the field, a "did you mean" and what the field expects.

use serde_path_to_error::Segment;

use super::check::Failure;
use super::syntax::yaml_message;
use super::{error_at, Node, Pos, Source, Value, COUNT_FIELDS};
use crate::desired::load::locate::join;
use crate::diag::Diagnostic;

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

pub(super) fn list(expected: &[&str]) -> String {
    expected
        .iter()
        .map(|e| format!("`{e}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn unknown_field(
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
pub(super) fn failure_diag(
    src: &Source,
    tree: &Node,
    f: &Failure,
    entry: Option<&str>,
) -> Diagnostic {
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

/// The value at `path` in `tree`, when the whole path resolves.
fn value_at<'a>(tree: &'a Node, path: &str) -> Option<&'a Value> {
    let (node, found) = tree.resolve(path)?;
    found.complete.then_some(&node.value)
}

pub(super) fn describe(v: &Value) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        let expected = ["name", "url", "type", "currency", "region"];
        assert_eq!(suggestion("curency", &expected), Some("currency"));
        assert_eq!(suggestion("regoin", &expected), Some("region"));
        assert_eq!(suggestion("zzzzzz", &expected), None);
    }
}
