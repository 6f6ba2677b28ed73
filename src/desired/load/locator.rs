//! Placing diagnostics: YAML paths to file:line:col, and the order they are shown in.

use std::collections::BTreeMap;

use super::locate::Finder;
use super::{is_json_path, loc, tree_options, tree_text, Source};
use crate::diag::{Diagnostic, Location};

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

    fn find(&self, paths: Vec<String>) -> Finder {
        if is_json_path(&self.src.path) {
            // The JSON scanner first (issue 9 item 7); the YAML parser if it cannot read
            // the text (a syntax error).
            let mut finder = Finder::new(paths.clone());
            if finder.run_json(&self.src.text) {
                return finder;
            }
        }
        let mut finder = Finder::new(paths);
        let text = tree_text(self.src);
        finder.run(&text, tree_options(&text));
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
