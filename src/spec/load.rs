//! Loading desired-state files. The only module that knows YAML (serde-saphyr) and the
//! file formats; everyone else calls the functions here.
//!
//! FIRST VERSION (to be completed by the foundation work, issue 2): minimal loading so
//! that the planner and apply can be built against a stable API.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::diag::Diagnostic;
use crate::spec::model::Desired;

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
    /// Warnings (no errors).
    pub diagnostics: Vec<Diagnostic>,
    /// The source, for locating later diagnostics (e.g. from the planner).
    pub src: Source,
}

/// A file that could not be loaded or had errors.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in {}", diagnostics.len(), src.path)]
pub struct LoadFailure {
    /// Every problem found (errors and warnings).
    pub diagnostics: Vec<Diagnostic>,
    /// The source (empty text when the file could not be read).
    pub src: Source,
}

/// Read, parse and validate a desired-state file (YAML, or JSON by extension).
pub fn load_file(path: &Path) -> Result<Loaded, LoadFailure> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadFailure {
        diagnostics: vec![Diagnostic::error(display.clone(), format!("cannot read file: {e}"))],
        src: Source {
            path: display.clone(),
            text: String::new(),
        },
    })?;
    load_str(&display, text)
}

/// Parse and validate a desired-state text; `path` is used in messages and decides JSON
/// (`.json`) or YAML.
pub fn load_str(path: &str, text: String) -> Result<Loaded, LoadFailure> {
    let source = Source {
        path: path.to_string(),
        text,
    };
    let parsed: Result<Desired, String> = if path.ends_with(".json") {
        serde_json::from_str(&source.text).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str(&source.text).map_err(|e| e.to_string())
    };
    match parsed {
        Ok(desired) => Ok(Loaded {
            desired,
            diagnostics: vec![],
            src: source,
        }),
        Err(msg) => Err(LoadFailure {
            diagnostics: vec![Diagnostic::error(path, msg)],
            src: source,
        }),
    }
}

/// Render diagnostics as `FILE:LINE:COL: error: MESSAGE`, the source line and a caret.
pub fn render_diagnostics(diagnostics: &[Diagnostic], _source: &Source, _color: bool) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let sev = if d.is_error() { "error" } else { "warning" };
        out.push_str(&format!("{sev}: {}\n", d.message));
    }
    out
}

/// Serialize any value as YAML.
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| e.to_string())
}

/// Deserialize any value from YAML (or JSON, its subset).
pub fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}
