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
mod structural;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::desired::index::MemberPositions;
use crate::desired::model::Desired;
use crate::diag::{Diagnostic, Location, Severity};

use locate::Pos;
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

/// Options of the located tree: the same budgets, duplicate keys kept (reported, all of
/// them, with both positions); `.inf` and `1e400` kept as text (so that the tree still
/// locates, issue 9 item 8); YAML 1.2 booleans as in the fast path (so that `no` is shown as
/// the text it is).
pub(crate) fn tree_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: budget(),
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
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
        serde_saphyr::from_str_with_options::<Desired>(&src.text, yaml_options())
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

/// Maps YAML paths (`instances.sales`, `users.ana@x.com.roles.sales`,
/// `security_groups.sales.members[2]`) to positions in one source. Building it parses the
/// text once; build one per batch of diagnostics, not one per diagnostic.
pub struct Locator<'a> {
    src: &'a Source,
}

impl<'a> Locator<'a> {
    /// A locator of positions in `src`. Nothing is parsed until something is located; each
    /// call reads the text once, streaming, keeping only the positions asked for (issue 9
    /// item 7: no located tree of the whole file).
    pub fn new(src: &'a Source) -> Self {
        Locator { src }
    }

    fn find(&self, paths: Vec<String>) -> locate::Finder {
        if is_json_path(&self.src.path) {
            // The JSON scanner first (issue 9 item 7); the YAML parser if it cannot read
            // the text (a syntax error).
            let mut finder = locate::Finder::new(paths.clone());
            if finder.run_json(&self.src.text) {
                return finder;
            }
        }
        let mut finder = locate::Finder::new(paths);
        finder.run(&tree_text(self.src), tree_options());
        finder
    }

    /// Where `path` is: the key's position for a map entry, the item's for a list item. A
    /// path that resolves only in part gives the position of its longest resolvable prefix
    /// (a resource whose field is omitted points at the resource); `None` when not even the
    /// first segment is in the file.
    pub fn locate(&self, path: &str) -> Option<Location> {
        let found = self.find(vec![path.to_string()]).get(path)?;
        Some(loc(self.src, found.best()))
    }

    /// Where each of `paths` is (one pass over the text for all of them); paths not found
    /// are left out.
    pub fn locate_many(&self, paths: Vec<String>) -> BTreeMap<String, Location> {
        if paths.is_empty() {
            return BTreeMap::new();
        }
        let finder = self.find(paths.clone());
        paths
            .into_iter()
            .filter_map(|p| {
                let l = finder.get(&p).map(|f| loc(self.src, f.best()))?;
                Some((p, l))
            })
            .collect()
    }

    /// Fill in the location of every diagnostic that has an address but no location (one
    /// pass over the text for all of them).
    pub fn locate_all(&self, diagnostics: &mut [Diagnostic]) {
        let wanted: Vec<String> = diagnostics
            .iter()
            .filter(|d| d.location.is_none())
            .filter_map(|d| d.address.clone())
            .collect();
        if wanted.is_empty() {
            return;
        }
        let finder = self.find(wanted);
        for d in diagnostics.iter_mut() {
            if d.location.is_none() {
                if let Some(a) = &d.address {
                    d.location = finder.get(a).map(|f| loc(self.src, f.best()));
                }
            }
        }
    }
}

/// Where `path` (a YAML path or a resource address such as `instances.sales`) is in `src`.
/// Parses the text each time: to place many diagnostics, use [`Locator`] or
/// [`locate_diagnostics`].
pub fn locate(src: &Source, path: &str) -> Option<Location> {
    Locator::new(src).locate(path)
}

/// Fill in the location of every diagnostic that has an address but no location, parsing
/// the text at most once (not at all when every diagnostic is located already).
pub fn locate_diagnostics(src: &Source, diagnostics: &mut [Diagnostic]) {
    if diagnostics
        .iter()
        .any(|d| d.location.is_none() && d.address.is_some())
    {
        Locator::new(src).locate_all(diagnostics);
    }
}

/// Sort diagnostics deterministically: unlocated ones first, then by file, line and column;
/// errors before warnings at the same place.
pub fn sort_diagnostics(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            (
                d.location
                    .as_ref()
                    .map(|l| (l.file.clone(), l.line, l.column)),
                std::cmp::Reverse(d.severity),
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.rule.cmp(&b.rule))
            .then_with(|| a.message.cmp(&b.message))
            .then_with(|| a.address.cmp(&b.address))
    });
}

/// The 1-based line and column just after `prefix` (line breaks as in [`source_lines`]).
fn end_position(prefix: &str) -> (u32, u32) {
    let mut line = 1u32;
    let mut column = 1u32;
    let mut after_cr = false;
    for c in prefix.chars() {
        match c {
            '\n' if after_cr => {}
            '\n' | '\r' => {
                line += 1;
                column = 1;
            }
            _ => column += 1,
        }
        after_cr = c == '\r';
    }
    (line, column)
}

/// The lines of a source text as the YAML parser counts them: ended by LF, CRLF or a lone
/// CR (issue 9 item 8: a file with CR-only line endings is read, and echoed, line by line).
pub(crate) fn source_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.find(['\n', '\r']) {
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

/// How wide the token at `col` (1-based, in characters) of `line` is, for the underline.
fn token_width(line: &str, col: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(col.saturating_sub(1)).collect();
    let Some(&first) = rest.first() else { return 1 };
    if first == '"' || first == '\'' {
        let mut i = 1;
        while i < rest.len() {
            if rest[i] == first && !(first == '"' && rest[i - 1] == '\\') {
                return i + 1;
            }
            i += 1;
        }
        return rest.len().max(1);
    }
    if matches!(first, '[' | '{') || (first == '-' && rest.get(1).is_none_or(|c| *c == ' ')) {
        return 1;
    }
    let mut end = 0;
    while end < rest.len() {
        let c = rest[end];
        let next = rest.get(end + 1).copied();
        if matches!(c, ',' | ']' | '}')
            || (c == ':' && next.is_none_or(|n| n == ' ' || n == '\t'))
            || (c == ' ' && next == Some('#'))
        {
            break;
        }
        end += 1;
    }
    let token: String = rest[..end].iter().collect();
    token.trim_end().chars().count().max(1)
}

/// Most characters of a source line echoed under a diagnostic.
const ECHO_WIDTH: usize = 120;

/// The part of `line` echoed for a diagnostic at `col` (1-based, characters), and the
/// column within it: a long line (a minified JSON file is one line) is shown as a window
/// of [`ECHO_WIDTH`] characters around the column, with `...` where it was cut (issue 9
/// item 7: 100 diagnostics on a 10 MB line printed 550 MB and took seconds).
fn line_window(line: &str, col: usize) -> (std::borrow::Cow<'_, str>, usize) {
    if line.len() <= ECHO_WIDTH {
        return (line.into(), col);
    }
    let skip = col.saturating_sub(1 + ECHO_WIDTH / 4);
    let mut chars = line.char_indices().skip(skip);
    let Some((start, _)) = chars.next() else {
        return (line.into(), col);
    };
    let end = chars.nth(ECHO_WIDTH - 2).map_or(line.len(), |(i, _)| i);
    if start == 0 && end == line.len() {
        return (line.into(), col);
    }
    let mut out = String::with_capacity(end - start + 6);
    let mut col = col - skip;
    if start > 0 {
        out.push_str("...");
        col += 3;
    }
    out.push_str(&line[start..end]);
    if end < line.len() {
        out.push_str("...");
    }
    (out.into(), col)
}

/// Render diagnostics like rustc: `FILE:LINE:COL: error: MESSAGE [RULE]`, the source line
/// with an underline at the column, then `= hint:` and `= path:` lines. Without a location:
/// `FILE: error: MESSAGE [RULE]`. ANSI colors only when `color` is true.
pub fn render_diagnostics(diagnostics: &[Diagnostic], source: &Source, color: bool) -> String {
    use anstyle::{AnsiColor, Style};
    let paint = |style: Style, text: &str| {
        if color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    };
    let bold = Style::new().bold();
    let blue = Style::new().bold().fg_color(Some(AnsiColor::Blue.into()));
    let cyan = Style::new().bold().fg_color(Some(AnsiColor::Cyan.into()));
    use crate::render::escape::{escape, escape_keep_tabs, is_unsafe};
    // Only the lines shown, found in one pass that stops at the last one (a large file is
    // not split into lines to show a few; issue 9 item 7).
    let wanted: std::collections::BTreeSet<usize> = diagnostics
        .iter()
        .filter_map(|d| d.location.as_ref())
        .filter(|l| l.file == source.path && l.line >= 1)
        .map(|l| l.line as usize - 1)
        .collect();
    let mut lines: std::collections::HashMap<usize, &str> = std::collections::HashMap::new();
    // The number of lines, when the pass read the whole text.
    let mut total = None;
    if let Some(&last) = wanted.last() {
        let mut n = 0;
        for (i, line) in source_lines(&source.text).enumerate() {
            n = i + 1;
            if wanted.contains(&i) {
                lines.insert(i, line);
            }
            if i >= last {
                break;
            }
        }
        if n <= last {
            total = Some(n);
        }
    }
    let mut out = String::new();
    for d in diagnostics {
        let (label, tone) = match d.severity {
            Severity::Error => (
                "error",
                Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            ),
            Severity::Warning => (
                "warning",
                Style::new().bold().fg_color(Some(AnsiColor::Yellow.into())),
            ),
        };
        let rule = d
            .rule
            .as_ref()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        let place = match &d.location {
            Some(l) => format!("{}:{}:{}", escape(&l.file), l.line, l.column),
            None => escape(&source.path).into_owned(),
        };
        let _ = writeln!(
            out,
            "{}: {}: {}{}",
            paint(bold, &place),
            paint(tone, label),
            paint(bold, &escape(&d.message)),
            escape(&rule)
        );
        let source_line = d
            .location
            .as_ref()
            .filter(|l| l.file == source.path && l.line >= 1)
            .and_then(|l| {
                // One past the last line: the end of the file (an empty file, a missing end).
                let i = l.line as usize - 1;
                let text = if total == Some(i) {
                    Some("")
                } else {
                    lines.get(&i).copied()
                };
                text.map(|t| (l, t))
            });
        let gutter = match &source_line {
            Some((l, _)) => l.line.to_string().len(),
            None => 1,
        };
        let pad = " ".repeat(gutter);
        if let Some((l, text)) = source_line {
            let (window, col) = line_window(text, l.column.max(1) as usize);
            let text = &*window;
            // Mirror tabs so that the underline lines up with the text; an escaped
            // character (issue 9 item 6) is as wide as its escape.
            let mut lead = String::new();
            for c in text.chars().take(col - 1) {
                match c {
                    '\t' => lead.push('\t'),
                    c if is_unsafe(c) => {
                        let w = crate::render::escape::escape_char(c).len();
                        lead.extend(std::iter::repeat_n(' ', w));
                    }
                    _ => lead.push(' '),
                }
            }
            let marks = "^".repeat(token_width(text, col));
            let text = escape_keep_tabs(text);
            let _ = writeln!(out, "{pad} {}", paint(blue, "|"));
            let _ = writeln!(
                out,
                "{} {} {text}",
                paint(blue, &l.line.to_string()),
                paint(blue, "|")
            );
            let _ = writeln!(
                out,
                "{pad} {} {lead}{}",
                paint(blue, "|"),
                paint(tone, &marks)
            );
        }
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "{pad} {} {}", paint(cyan, "= hint:"), escape(h));
        }
        if let Some(a) = d.address.as_ref().filter(|a| !a.is_empty()) {
            let _ = writeln!(out, "{pad} {} {}", paint(cyan, "= path:"), escape(a));
        }
    }
    out
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
    use super::*;

    #[test]
    fn a_long_line_is_echoed_as_a_window_around_the_column() {
        // issue 9 item 7: a minified JSON file is one line; each diagnostic shows a part.
        let line = format!("{}\"license\": 1,{}", "x".repeat(5000), "y".repeat(5000));
        let col = 5001 + "\"license\": ".len();
        let (shown, c) = line_window(&line, col);
        assert!(shown.len() <= ECHO_WIDTH + 6, "{}", shown.len());
        assert!(shown.starts_with("...") && shown.ends_with("..."));
        assert_eq!(shown.chars().nth(c - 1), Some('1'));
        assert_eq!(line_window("short", 2), ("short".into(), 2));
        let src = Source {
            path: "f.json".into(),
            text: line.clone(),
        };
        let mut d = Diagnostic::error("x", "bad");
        d.location = Some(loc(
            &src,
            Pos {
                line: 1,
                column: col as u32,
            },
        ));
        let out = render_diagnostics(&[d], &src, false);
        assert!(out.len() < 600, "{out}");
        assert!(
            out.contains("\n  |           ") && out.contains("^"),
            "{out}"
        );
    }

    #[test]
    fn underline_covers_the_token() {
        assert_eq!(token_width("    curency: USD", 5), 7);
        assert_eq!(token_width("  url: \"a b\" # c", 8), 5);
        assert_eq!(token_width("  name: Ana Diaz  # x", 9), 8);
        assert_eq!(token_width("  - ana@x.com", 3), 1);
        assert_eq!(token_width("  language: -1", 13), 2);
        assert_eq!(token_width("", 1), 1);
    }

    #[test]
    fn colors_only_when_asked() {
        let src = Source {
            path: "f.yaml".into(),
            text: "tenant: x\n".into(),
        };
        let d = vec![Diagnostic::error("tenant", "bad").rule("T1").hint("fix it")];
        let mut located = d.clone();
        locate_diagnostics(&src, &mut located);
        assert_eq!(
            located[0].location.as_ref().map(|l| (l.line, l.column)),
            Some((1, 1))
        );
        let plain = render_diagnostics(&located, &src, false);
        assert_eq!(
            plain,
            "f.yaml:1:1: error: bad [T1]\n  |\n1 | tenant: x\n  | ^^^^^^\n  = hint: fix it\n  = path: tenant\n"
        );
        let colored = render_diagnostics(&located, &src, true);
        assert!(colored.contains("\u{1b}[") && !plain.contains('\u{1b}'));
        // Without a location: `FILE: error: ...`.
        assert!(render_diagnostics(&d, &src, false).starts_with("f.yaml: error: bad [T1]\n"));
    }
}
