//! The machine-readable documents of the commands other than the plan itself (issue 15
//! item 2): `validate --format json`, the document a failed `plan --format json` writes, and
//! the summary of `apply --format json`. Each has a `format_version` and a JSON Schema in
//! `schemas/` (`validate`, `plan`, `apply`); `docs/json-output.md` describes them.
//!
//! Diagnostics are [`JsonDiag`]s, the shape the JSON plan uses too.

use serde::Serialize;

use crate::apply::{ActionOutcome, ApplyReport};
use crate::diag::Diagnostic;
use crate::domain::op::ActionKind;
use crate::plan::{Action, Plan};
use crate::render::JsonDiag;

/// The version of these documents (and of the JSON plan, `plan::FORMAT_VERSION`): raised
/// when a key changes meaning or goes away; keys may be added within a version.
pub const FORMAT_VERSION: &str = "1";

/// `validate --format json`.
#[derive(Debug, Serialize)]
pub struct ValidateDoc<'a> {
    format_version: &'static str,
    /// The file as given.
    file: &'a str,
    /// No errors (warnings allowed).
    valid: bool,
    errors: usize,
    warnings: usize,
    /// Problems found beyond those described (after 100).
    omitted: usize,
    diagnostics: Vec<JsonDiag<'a>>,
}

/// The document of `validate --format json` for `file` with `diagnostics`.
pub fn validate_doc<'a>(
    file: &'a str,
    diagnostics: &'a [Diagnostic],
    omitted: usize,
) -> ValidateDoc<'a> {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count() + omitted;
    ValidateDoc {
        format_version: FORMAT_VERSION,
        file,
        valid: errors == 0,
        errors,
        warnings: diagnostics.len() + omitted - errors,
        omitted,
        diagnostics: diagnostics.iter().map(JsonDiag::from).collect(),
    }
}

/// What a command with `--format json` writes when it could not produce its document (a
/// plan that could not be made: the file's errors, an unreachable tenant, a held lock).
#[derive(Debug, Serialize)]
pub struct FailureDoc<'a> {
    format_version: &'static str,
    /// The command (`plan`).
    command: &'a str,
    /// What stopped it, as printed after `error: `.
    error: &'a str,
    diagnostics: Vec<JsonDiag<'a>>,
}

/// The failure document of `command`.
pub fn failure_doc<'a>(
    command: &'a str,
    error: &'a str,
    diagnostics: &'a [Diagnostic],
) -> FailureDoc<'a> {
    FailureDoc {
        format_version: FORMAT_VERSION,
        command,
        error,
        diagnostics: diagnostics.iter().map(JsonDiag::from).collect(),
    }
}

/// How an apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyResult {
    /// Every action done (exit 0).
    Complete,
    /// Nothing to do (exit 0).
    NoChanges,
    /// Stopped at manual steps, everything else done (exit 3).
    Manual,
    /// Some actions failed (exit 1).
    Failed,
    /// Nothing was run: the file, the plan or the checks before approval refused it, or the
    /// run could not start or finish (exit 1); `error` says why.
    Error,
}

/// An action of the plan.
#[derive(Debug, Serialize)]
pub struct ActionRef<'a> {
    id: usize,
    kind: ActionKind,
    address: &'a str,
}

/// A failed action and the service's answer.
#[derive(Debug, Serialize)]
pub struct FailedAction<'a> {
    #[serde(flatten)]
    action: ActionRef<'a>,
    error: String,
}

/// An action not run, and why.
#[derive(Debug, Serialize)]
pub struct SkippedAction<'a> {
    #[serde(flatten)]
    action: ActionRef<'a>,
    /// The failed action it depends on.
    because_of: usize,
    reason: String,
}

/// A manual step not yet done.
#[derive(Debug, Serialize)]
pub struct ManualAction<'a> {
    #[serde(flatten)]
    action: ActionRef<'a>,
    instructions: &'a str,
}

/// A backup taken before an action.
#[derive(Debug, Serialize)]
pub struct Backup<'a> {
    /// The action it was taken before.
    before: usize,
    address: &'a str,
    backup: &'a str,
}

/// `apply --format json`: what was done, what failed, what was skipped and why.
#[derive(Debug, Serialize)]
pub struct ApplyDoc<'a> {
    format_version: &'static str,
    result: ApplyResult,
    done: Vec<ActionRef<'a>>,
    failed: Vec<FailedAction<'a>>,
    skipped: Vec<SkippedAction<'a>>,
    manual: Vec<ManualAction<'a>>,
    /// Actions not started (the run stopped before them).
    not_started: Vec<ActionRef<'a>>,
    backups: Vec<Backup<'a>>,
    /// State entries dropped (their objects no longer exist).
    forgotten: &'a [String],
    /// Why nothing (more) was run; `null` when the run ended on its own.
    error: Option<&'a str>,
    diagnostics: Vec<JsonDiag<'a>>,
}

fn action_ref(a: &Action) -> ActionRef<'_> {
    ActionRef {
        id: a.id,
        kind: a.kind,
        address: &a.address,
    }
}

/// The summary of a run of `plan` that ended (`error`: it stopped, e.g. the state could not
/// be saved). `file_diagnostics` are the desired file's warnings.
pub fn apply_doc<'a>(
    plan: &'a Plan,
    report: &'a ApplyReport,
    error: Option<&'a str>,
    file_diagnostics: &'a [Diagnostic],
) -> ApplyDoc<'a> {
    let mut doc = ApplyDoc {
        format_version: FORMAT_VERSION,
        result: ApplyResult::Complete,
        done: Vec::new(),
        failed: Vec::new(),
        skipped: Vec::new(),
        manual: Vec::new(),
        not_started: Vec::new(),
        backups: Vec::new(),
        forgotten: &report.forgotten,
        error,
        diagnostics: file_diagnostics
            .iter()
            .chain(&plan.diagnostics)
            .map(JsonDiag::from)
            .collect(),
    };
    for a in &plan.actions {
        match report.outcomes.get(&a.id) {
            None => doc.not_started.push(action_ref(a)),
            Some(ActionOutcome::Done) => doc.done.push(action_ref(a)),
            Some(ActionOutcome::Failed(e)) => doc.failed.push(FailedAction {
                action: action_ref(a),
                error: e.to_string(),
            }),
            Some(ActionOutcome::Manual { instructions }) => doc.manual.push(ManualAction {
                action: action_ref(a),
                instructions,
            }),
            Some(ActionOutcome::Skipped { because_of }) => {
                let cause = plan.actions.get(*because_of);
                doc.skipped.push(SkippedAction {
                    action: action_ref(a),
                    because_of: *because_of,
                    reason: match cause {
                        Some(c) => format!(
                            "depends on action {} ({} {}), which failed",
                            c.id,
                            c.kind.as_str(),
                            c.address
                        ),
                        None => format!("depends on action {because_of}, which failed"),
                    },
                })
            }
        }
    }
    for (id, backup) in &report.backups {
        doc.backups.push(Backup {
            before: *id,
            address: plan.actions.get(*id).map_or("", |a| a.address.as_str()),
            backup,
        });
    }
    doc.result = if error.is_some() || !doc.failed.is_empty() {
        if doc.failed.is_empty() && doc.done.is_empty() {
            ApplyResult::Error
        } else {
            ApplyResult::Failed
        }
    } else if !doc.manual.is_empty() {
        ApplyResult::Manual
    } else if !doc.not_started.is_empty() || !doc.skipped.is_empty() {
        ApplyResult::Failed
    } else if plan.actions.is_empty() {
        ApplyResult::NoChanges
    } else {
        ApplyResult::Complete
    };
    doc
}

/// The summary of an apply that ran nothing: `error` says why (refused by the checks, the
/// file's or the plan's errors, a lock, a stale saved plan), `diagnostics` are the problems.
pub fn apply_refused<'a>(error: &'a str, diagnostics: &'a [Diagnostic]) -> ApplyDoc<'a> {
    ApplyDoc {
        format_version: FORMAT_VERSION,
        result: ApplyResult::Error,
        done: Vec::new(),
        failed: Vec::new(),
        skipped: Vec::new(),
        manual: Vec::new(),
        not_started: Vec::new(),
        backups: Vec::new(),
        forgotten: &[],
        error: Some(error),
        diagnostics: diagnostics.iter().map(JsonDiag::from).collect(),
    }
}

/// A document as pretty JSON with a final newline.
pub fn to_pretty<T: Serialize>(doc: &T) -> String {
    let mut s = serde_json::to_string_pretty(doc).expect("the documents always serialize");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_doc_counts_and_flattens_locations() {
        let mut d = Diagnostic::error("instances.a.url", "bad URL name")
            .rule("I5")
            .hint("use a-z, 0-9 and -");
        d.location = Some(crate::diag::Location {
            file: "t.yaml".into(),
            line: 3,
            column: 10,
        });
        let w = Diagnostic::warning("users.x", "unused");
        let diags = [d, w];
        let v: serde_json::Value =
            serde_json::from_str(&to_pretty(&validate_doc("t.yaml", &diags, 0))).unwrap();
        assert_eq!(v["format_version"], "1");
        assert_eq!(v["valid"], false);
        assert_eq!(
            (v["errors"].as_u64(), v["warnings"].as_u64()),
            (Some(1), Some(1))
        );
        let first = &v["diagnostics"][0];
        assert_eq!(first["rule"], "I5");
        assert_eq!(first["hint"], "use a-z, 0-9 and -");
        assert_eq!(
            (first["line"].as_u64(), first["column"].as_u64()),
            (Some(3), Some(10))
        );
        assert_eq!(first["file"], "t.yaml");
        assert!(v["diagnostics"][1]["line"].is_null());
    }
}
