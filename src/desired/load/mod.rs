//! Loading desired-state files: the only module that knows YAML (serde-saphyr) and the file
//! formats; everyone else calls the functions here.
//!
//! - **Fast path.** The text is parsed straight into the plain model
//!   ([`Desired`](crate::desired::model::Desired)): YAML by serde-saphyr with budgets (against
//!   alias bombs and huge inputs) and duplicate keys rejected; a `.json` file by serde_json.
//!   Then [`validate`](crate::desired::validate::validate) checks the service's rules. A valid
//!   file costs a parse and a validation, nothing more.
//! - **Locations on demand.** Diagnostics carry the YAML path of what they are about in
//!   `address`. Only when there is something to report is the text parsed again into a small
//!   located tree (see [`Locator`]) that maps each path to file:line:col.
//! - **Slow path.** When the fast parse fails, every structural problem (syntax, wrong type,
//!   unknown field with "did you mean", bad enum value, duplicate key, missing field) is
//!   found and located, not only the first. A `.json` file is read there (and located) by
//!   a small JSON scanner (`jscan`), not by the YAML parser, which costs ten times as much:
//!   its error path stays within about 3x its valid path (issue 9 item 7).

mod jscan;
mod locate;
mod locator;
mod render;
mod structural;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::desired::index::MemberPositions;
use crate::desired::model::Desired;
use crate::diag::{Diagnostic, Location};

use locate::Pos;
pub use locator::{locate, locate_diagnostics, sort_diagnostics, Locator};
pub use render::render_diagnostics;
use structural::FastError;

/// Counts (license counts, `additional_gb`, `language`) written as plain decimal digits only
/// (issue 9 item 10): YAML would also read `1_000`, `0o12`, `0x0A`, `+5` and the quoted
/// `"5"` as numbers, which a reviewer reads differently (or as text). Where the parser knows
/// the scalar's span (serde-saphyr), the span must be exactly the digits of the value; a
/// JSON file's numbers are plain already (serde_json refuses strings for counts). Used by
/// the model through `deserialize_with`: the only YAML-aware part of the model lives here,
/// with the rest of the YAML knowledge.
pub(crate) mod counts {
    use serde::de::{Deserialize, Deserializer, Error};

    /// The message of a count not written as plain digits (the loader's hint names it).
    pub const NOT_PLAIN: &str =
        "a count must be written as plain decimal digits (not quoted, no `_`, `0o`, `0x` or sign)";

    fn digits(mut v: u32) -> u64 {
        let mut n = 1;
        while v >= 10 {
            v /= 10;
            n += 1;
        }
        n
    }

    /// One count.
    pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s = serde_saphyr::Spanned::<u32>::deserialize(d)?;
        match s.referenced.span().byte_len() {
            Some(len) if len != digits(s.value) => Err(D::Error::custom(NOT_PLAIN)),
            _ => Ok(s.value),
        }
    }

    /// An optional count.
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        Ok(Option::<Count>::deserialize(d)?.map(|c| c.0))
    }

    /// A count as a type, for containers.
    pub struct Count(pub u32);

    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            one(d).map(Count)
        }
    }
}

/// Largest desired-state text accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 256 * 1024 * 1024;

/// A source file as read from disk.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path as given.
    pub path: String,
    /// Full text.
    pub text: String,
}

/// A file that loaded and validated without errors (warnings may remain).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The desired model.
    pub desired: Desired,
    /// Warnings (no errors), located and sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// The source, for locating later diagnostics (e.g. from the planner).
    pub src: Source,
    /// Group members resolved to users (validation needed them; the planner reuses them
    /// through [`crate::plan::plan_resolved`]).
    pub members: MemberPositions,
}

/// A file that could not be loaded or had errors.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in {}", diagnostics.len(), src.path)]
pub struct LoadFailure {
    /// Every problem found (errors and warnings), located and sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// The source (empty text when the file could not be read).
    pub src: Source,
    /// Problems found beyond the first [`MAX_DIAGNOSTICS`] and not described (issue 9 item
    /// 7: a file with a problem on every line stops at 100 and says "and N more").
    pub omitted: usize,
}

/// Most diagnostics a failed load describes; the rest are counted in
/// [`LoadFailure::omitted`].
pub const MAX_DIAGNOSTICS: usize = structural::MAX_DIAGNOSTICS;

/// Parser budgets: generous enough for a 100,000-user tenant (about 40 MB of YAML), yet
/// bounded, and strict on anchors and aliases (the defaults) against alias bombs.
fn budget() -> Option<serde_saphyr::Budget> {
    serde_saphyr::budget! {
        max_events: 80_000_000,
        max_nodes: 40_000_000,
        max_total_scalar_bytes: MAX_INPUT_BYTES,
        max_documents: 1,
        max_depth: 64,
    }
}

/// Options of the fast path: budgets, duplicate keys are errors, only YAML 1.2 booleans
/// (`protect: no` is not `false`), and no application tags (`!custom`, `!!python/...`):
/// issue 9 item 10.
pub(crate) fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: budget(),
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        strict_booleans: true,
        reject_unsupported_tags: true,
    }
}

/// Options of the fast parse of a whole file into the model: [`yaml_options`], except for a
/// text without merge keys (`<<`), where the parser does not keep every key of every mapping
/// to refuse a repeated one (issue 9 item 7: the keys of a large `users:` map were a tenth
/// of the file's parse). The model refuses a repeated key itself: a derived struct names a
/// field given twice, and every map of the model is read by its `unique_keys`, which says
/// "duplicate key"; the slow path then reports every repetition with both positions, as
/// before. With merge keys the parser needs the keys it has seen (an explicit key wins
/// over a merged one), so such a text keeps the full options.
fn fast_yaml_options(text: &str) -> serde_saphyr::Options {
    if text.contains("<<") {
        return yaml_options();
    }
    serde_saphyr::options! {
        budget: budget(),
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        merge_keys: serde_saphyr::MergeKeyPolicy::AsOrdinary,
        strict_booleans: true,
        reject_unsupported_tags: true,
    }
}

/// Options of the located tree: the same budgets, duplicate keys kept (reported, all of
/// them, with both positions); `.inf` and `1e400` kept as text (so that the tree still
/// locates, issue 9 item 8); YAML 1.2 booleans as in the fast path (so that `no` is shown as
/// the text it is). A text without merge keys (`<<`) has them read as ordinary keys (there
/// are none), so that the parser keeps no keys of its own for them (issue 9 item 7: with
/// duplicates passed through, merging is what made it remember every key of `users:`).
pub(crate) fn tree_options(text: &str) -> serde_saphyr::Options {
    let merge_keys = if text.contains("<<") {
        serde_saphyr::MergeKeyPolicy::Merge
    } else {
        serde_saphyr::MergeKeyPolicy::AsOrdinary
    };
    serde_saphyr::options! {
        budget: budget(),
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        merge_keys: merge_keys,
        strict_booleans: true,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
    }
}

fn is_json_path(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".json")
}

pub(crate) fn loc(src: &Source, p: Pos) -> Location {
    Location {
        file: src.path.clone(),
        line: p.line,
        column: p.column,
    }
}

/// A failure of the whole file (unreadable, too large, not text): one diagnostic without a
/// place in the text.
fn whole_file_failure(path: &str, message: String, hint: &str) -> LoadFailure {
    LoadFailure {
        diagnostics: vec![Diagnostic {
            address: None,
            ..Diagnostic::error("", message).hint(hint)
        }],
        src: Source {
            path: path.to_string(),
            text: String::new(),
        },
        omitted: 0,
    }
}

/// Read, parse and validate a desired-state file (YAML, or JSON by its `.json` extension).
pub fn load_file(path: &Path) -> Result<Loaded, LoadFailure> {
    let display = path.display().to_string();
    let fail = |message: String, hint: &str| whole_file_failure(&display, message, hint);
    let bytes = std::fs::read(path).map_err(|e| {
        fail(
            format!("cannot read the file: {e}"),
            "check the path given to -f",
        )
    })?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(fail(
            format!(
                "the file has {} bytes; crmctl reads at most {MAX_INPUT_BYTES}",
                bytes.len()
            ),
            "split the tenant into smaller files",
        ));
    }
    load_bytes(&display, bytes)
}

/// [`load_str`] for bytes as read from a file: text that is not UTF-8 is an error located
/// at its first bad byte; otherwise as [`load_str`].
pub fn load_bytes(path: &str, bytes: Vec<u8>) -> Result<Loaded, LoadFailure> {
    let fail = |message: String, hint: &str| whole_file_failure(path, message, hint);
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            // Located at the first bad byte (issue 9 item 8), with the line echoed (the bad
            // bytes shown as U+FFFD).
            let bytes = e.into_bytes();
            let valid = std::str::from_utf8(&bytes).map_or_else(|e| e.valid_up_to(), |_| 0);
            let good = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
            let (line, column) = end_position(good);
            let byte = bytes[good.len()];
            let mut f = fail(
                format!("the file is not UTF-8 text (byte 0x{byte:02x} is not valid UTF-8 here)"),
                "save the file as UTF-8",
            );
            f.src.text = String::from_utf8_lossy(&bytes).into_owned();
            f.diagnostics[0].location = Some(Location {
                file: path.to_string(),
                line,
                column,
            });
            return Err(f);
        }
    };
    load_str(path, text)
}

/// Parse and validate a desired-state text; `path` is used in messages and decides JSON
/// (`.json`) or YAML.
pub fn load_str(path: &str, mut text: String) -> Result<Loaded, LoadFailure> {
    // A UTF-8 byte order mark is not part of the text (issue 9 item 8; YAML and JSON).
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    let src = Source {
        path: path.to_string(),
        text,
    };
    let json = is_json_path(path);
    if src.text.len() > MAX_INPUT_BYTES {
        let d = Diagnostic {
            address: None,
            ..Diagnostic::error(
                "",
                format!(
                    "the text has {} bytes; crmctl reads at most {MAX_INPUT_BYTES}",
                    src.text.len()
                ),
            )
        };
        return Err(LoadFailure {
            diagnostics: vec![d],
            src,
            omitted: 0,
        });
    }
    let parsed = if json {
        serde_json::from_str::<Desired>(&src.text).map_err(FastError::Json)
    } else {
        serde_saphyr::from_str_with_options::<Desired>(&src.text, fast_yaml_options(&src.text))
            .map_err(FastError::Yaml)
    };
    match parsed {
        Ok(desired) => {
            let members = MemberPositions::resolve(&desired);
            let mut diagnostics = crate::desired::validate::validate_with(&desired, &members);
            if !json {
                diagnostics.extend(merge_key_errors(&src));
            }
            if diagnostics.is_empty() {
                return Ok(Loaded {
                    desired,
                    diagnostics,
                    src,
                    members,
                });
            }
            // At most MAX_DIAGNOSTICS described, errors first (issue 9 item 7).
            let has_errors = diagnostics.iter().any(Diagnostic::is_error);
            let omitted = if has_errors {
                diagnostics.len().saturating_sub(MAX_DIAGNOSTICS)
            } else {
                0
            };
            if omitted > 0 {
                diagnostics.sort_by_key(|d| !d.is_error()); // stable
                diagnostics.truncate(MAX_DIAGNOSTICS);
            }
            Locator::new(&src).locate_all(&mut diagnostics);
            sort_diagnostics(&mut diagnostics);
            if diagnostics.iter().any(Diagnostic::is_error) {
                Err(LoadFailure {
                    diagnostics,
                    src,
                    omitted,
                })
            } else {
                Ok(Loaded {
                    desired,
                    diagnostics,
                    src,
                    members,
                })
            }
        }
        Err(fast) => {
            let (mut diagnostics, omitted) = structural::diagnose(&src, json, fast);
            if !json {
                diagnostics.extend(merge_key_errors(&src));
            }
            sort_diagnostics(&mut diagnostics);
            Err(LoadFailure {
                diagnostics,
                src,
                omitted,
            })
        }
    }
}

/// The text the located tree is parsed from: the source itself, except that a JSON file's
/// characters that JSON allows and YAML does not (tabs between tokens; DEL, C1 controls,
/// U+FFFE and U+FFFF inside strings) are replaced one for one (tab by a space, the others by
/// U+FFFD), so that lines and columns stay those of the file (issue 9 item 8: a JSON file
/// with such a character lost every location).
pub(crate) fn tree_text(src: &Source) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        matches!(c, '\t' | '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}')
            || (c.is_control() && !matches!(c, '\n' | '\r' | '\u{85}'))
    };
    if !is_json_path(&src.path) || !src.text.contains(bad) {
        return std::borrow::Cow::Borrowed(&src.text);
    }
    std::borrow::Cow::Owned(
        src.text
            .chars()
            .map(|c| match c {
                '\t' => ' ',
                c if bad(c) => '\u{fffd}',
                c => c,
            })
            .collect(),
    )
}

/// Two merge keys (`<<`) in one mapping (issue 9 item 10): the YAML library merges both,
/// silently, and which value wins is not what a reader expects. Only files that contain
/// `<<` at all pay for the extra parse.
fn merge_key_errors(src: &Source) -> Vec<Diagnostic> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    /// A streaming walk (nothing kept but the diagnostics, issue 9 item 7).
    struct Walk<'a, 's>(&'a mut Vec<Diagnostic>, &'s Source);
    impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any YAML value")
        }
        locate::skip_scalars!();
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            while a.next_element_seed(Walk(&mut *self.0, self.1))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            let mut first: Option<Pos> = None;
            while let Some(locate::Key(key, key_pos)) = a.next_key::<locate::Key>()? {
                if key == "<<" {
                    match first {
                        None => first = Some(key_pos),
                        Some(p) => self.0.push(Diagnostic {
                            address: None,
                            location: Some(loc(self.1, key_pos)),
                            ..Diagnostic::error(
                                "",
                                "two merge keys (`<<`) in one mapping".to_string(),
                            )
                            .hint(format!(
                                "the first `<<` is at line {}; merge several anchors with one key: `<<: [*a, *b]`",
                                p.line
                            ))
                        }),
                    }
                }
                a.next_value_seed(Walk(&mut *self.0, self.1))?;
            }
            Ok(())
        }
    }
    if !src.text.contains("<<") {
        return Vec::new();
    }
    let options = serde_saphyr::options! {
        budget: budget(),
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        merge_keys: serde_saphyr::MergeKeyPolicy::AsOrdinary,
        strict_booleans: true,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
    };
    let mut out = Vec::new();
    let _ = serde_saphyr::with_deserializer_from_str_with_options(&src.text, options, |de| {
        Walk(&mut out, src).deserialize(de)
    });
    out
}

/// The 1-based line and column just after `prefix` (line breaks as in [`source_lines`]).
fn end_position(prefix: &str) -> (u32, u32) {
    // Line breaks found by a SIMD search, the last line's characters counted at once
    // (issue 9 item 7: a one-line JSON file's error lies megabytes into its only line).
    let bytes = prefix.as_bytes();
    let mut line = 1u32;
    let mut start = 0;
    for i in memchr::memchr2_iter(b'\n', b'\r', bytes) {
        // LF after CR: one break (CRLF).
        if !(bytes[i] == b'\n' && i > 0 && bytes[i - 1] == b'\r') {
            line += 1;
        }
        start = i + 1;
    }
    let column = prefix[start..].chars().count() as u32 + 1;
    (line, column)
}

/// The lines of a source text as the YAML parser counts them: ended by LF, CRLF or a lone
/// CR (issue 9 item 8: a file with CR-only line endings is read, and echoed, line by line).
pub(crate) fn source_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let r = rest?;
        // A SIMD search: a JSON file is often one line of megabytes (issue 9 item 7).
        match memchr::memchr2(b'\n', b'\r', r.as_bytes()) {
            Some(i) => {
                let skip = if r[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&r[i + skip..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                (!r.is_empty()).then_some(r)
            }
        }
    })
}

/// Serialize any value as YAML.
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| e.to_string())
}

/// Deserialize any value from YAML (or JSON, its subset), with the loader's budgets.
pub fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{end_position, source_lines};

    /// issue 9 items 7 and 8: the position after a prefix, found by a byte search, is the
    /// one a reading of each character gives, whatever the line endings (LF, CRLF, lone CR)
    /// and characters (multi-byte ones count once); and it agrees with `source_lines`.
    #[test]
    fn end_position_counts_lines_and_characters_as_a_reading_does() {
        fn reading(prefix: &str) -> (u32, u32) {
            let (mut line, mut column, mut after_cr) = (1, 1, false);
            for c in prefix.chars() {
                match c {
                    '\n' if after_cr => {}
                    '\n' | '\r' => (line, column) = (line + 1, 1),
                    _ => column += 1,
                }
                after_cr = c == '\r';
            }
            (line, column)
        }
        let text = "a: é\r\nb: 1\rc: 😀x\n\n\r\rd: \"€\"\r\n\re";
        for (end, _) in text.char_indices().chain([(text.len(), ' ')]) {
            let prefix = &text[..end];
            let (line, column) = end_position(prefix);
            assert_eq!((line, column), reading(prefix), "after {prefix:?}");
            // The line number is one more than the lines ended before the position.
            let ended = source_lines(prefix).count() - usize::from(column > 1);
            assert_eq!(line as usize, ended + 1, "after {prefix:?}");
        }
        assert_eq!(end_position(""), (1, 1));
    }
}
