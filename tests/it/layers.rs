//! The module layering of ARCHITECTURE.md, checked from the source (issue 11 item 2):
//! a module may use only the modules below it, so the import graph has no loop (no
//! plan <-> state, no desired <-> render). Comments and `#[cfg(test)]` code are not counted.

use std::collections::BTreeMap;
use std::path::Path;

/// Bottom to top. `alloc` and `synth` stand apart (the binary's allocator; generated
/// tenants for benches and tests).
const LAYERS: &[&str] = &[
    "domain", "diag", "observed", "desired", "provider", "emulator", "state", "plan", "render",
    "apply", "ops", "cli",
];

/// Every `crate::X` that the module `top` (a file or a folder at `path`) uses, with one
/// file that uses it.
fn scan(path: &Path, top: &str, found: &mut BTreeMap<(String, String), String>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            scan(&entry.unwrap().path(), top, found);
        }
        return;
    }
    if path.extension().is_none_or(|e| e != "rs") {
        return;
    }
    let text = std::fs::read_to_string(path).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let used: String = line[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if used != top {
                found
                    .entry((top.to_string(), used))
                    .or_insert_with(|| path.display().to_string());
            }
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let top = path.file_stem().unwrap().to_string_lossy().to_string();
        if top != "lib" && top != "main" {
            scan(&path, &top, &mut found);
        }
    }
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let upward: Vec<String> = found
        .iter()
        .filter(|((from, to), _)| matches!((rank(from), rank(to)), (Some(f), Some(t)) if t > f))
        .map(|((from, to), at)| format!("{from} -> {to} ({at})"))
        .collect();
    assert!(
        upward.is_empty(),
        "modules using a layer above them:\n{}",
        upward.join("\n")
    );
    // The scan sees real edges (it would pass vacuously on an empty scan).
    assert!(found.contains_key(&("plan".into(), "state".into())));
    assert!(found.contains_key(&("cli".into(), "ops".into())));
}
