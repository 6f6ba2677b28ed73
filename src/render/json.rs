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
    actions: Actions<'a>,
    diagnostics: Vec<JsonDiag<'a>>,
}

/// The actions, serialized one by one (no intermediate list).
struct Actions<'a>(&'a [Action]);

impl Serialize for Actions<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(JsonAction::from))
    }
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
    let mut out = Vec::with_capacity(1024 + 256 * plan.actions.len());
    write_json(plan, &mut out).expect("writing into memory does not fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// [`render_json`], streamed into `w` (a 300,000-action plan is some 200 MB of JSON: the
/// CLI writes it to standard output as it goes instead of holding it). Fails only when
/// `w` does.
pub fn write_json<W: std::io::Write>(plan: &Plan, w: &mut W) -> std::io::Result<()> {
    let doc = JsonPlan {
        format_version: &plan.format_version,
        tenant: &plan.tenant,
        fingerprint: &plan.fingerprint,
        summary: &plan.summary,
        actions: Actions(&plan.actions),
        diagnostics: plan.diagnostics.iter().map(JsonDiag::from).collect(),
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut *w, Pretty::default());
    doc.serialize(&mut ser).map_err(std::io::Error::from)?;
    w.write_all(b"\n")
}

/// Exactly serde_json's `PrettyFormatter` with a two-space indent, but each line break
/// and its indentation is one write instead of one per level (the plan of a large
/// tenant has millions of lines).
#[derive(Default)]
struct Pretty {
    level: usize,
    has_value: bool,
}

/// `,\n` and enough spaces for the deepest line of a plan (deeper lines loop).
const BREAK: &[u8; 2 + 2 * 16] = b",\n                                ";

impl Pretty {
    /// A line break (after a comma unless `first`), then the indentation of `level`.
    fn line<W: ?Sized + std::io::Write>(
        &self,
        w: &mut W,
        first: bool,
        level: usize,
    ) -> std::io::Result<()> {
        let start = usize::from(first);
        if level <= 16 {
            w.write_all(&BREAK[start..2 + 2 * level])
        } else {
            w.write_all(&BREAK[start..2])?;
            for _ in 0..level {
                w.write_all(b"  ")?;
            }
            Ok(())
        }
    }
}

impl serde_json::ser::Formatter for Pretty {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.line(w, true, self.level)?;
        }
        w.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.line(w, first, self.level)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.line(w, true, self.level)?;
        }
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.line(w, first, self.level)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}
