//! The JSON plan: `{"format_version","tenant","fingerprint","summary","actions",
//! "diagnostics"}`, actions in execution order. Byte-identical for identical plans.

use serde::Serialize;

use crate::diag::{Diagnostic, Severity};
use crate::plan::{Action, ActionKind, Change, Plan, Summary};

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'a str,
    tenant: &'a str,
    fingerprint: &'a str,
    summary: &'a Summary,
    actions: Vec<JsonAction<'a>>,
    diagnostics: Vec<JsonDiag<'a>>,
}

#[derive(Serialize)]
struct JsonAction<'a> {
    id: usize,
    kind: ActionKind,
    address: &'a str,
    depends_on: &'a [usize],
    destructive: bool,
    changes: &'a [Change],
    reason: &'a str,
}

#[derive(Serialize)]
struct JsonDiag<'a> {
    severity: Severity,
    message: &'a str,
    address: Option<&'a str>,
    rule: Option<&'a str>,
}

impl<'a> From<&'a Action> for JsonAction<'a> {
    fn from(a: &'a Action) -> Self {
        JsonAction {
            id: a.id,
            kind: a.kind,
            address: &a.address,
            depends_on: &a.depends_on,
            destructive: a.destructive,
            changes: &a.changes,
            reason: &a.reason,
        }
    }
}

impl<'a> From<&'a Diagnostic> for JsonDiag<'a> {
    fn from(d: &'a Diagnostic) -> Self {
        JsonDiag {
            severity: d.severity,
            message: &d.message,
            address: d.address.as_deref(),
            rule: d.rule.as_deref(),
        }
    }
}

/// The plan as pretty-printed JSON (ends with a newline).
pub fn render_json(plan: &Plan) -> String {
    let doc = JsonPlan {
        format_version: &plan.format_version,
        tenant: &plan.tenant,
        fingerprint: &plan.fingerprint,
        summary: &plan.summary,
        actions: plan.actions.iter().map(JsonAction::from).collect(),
        diagnostics: plan.diagnostics.iter().map(JsonDiag::from).collect(),
    };
    let mut out = serde_json::to_string_pretty(&doc).expect("a plan always serializes");
    out.push('\n');
    out
}
