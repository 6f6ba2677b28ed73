//! The JSON plan: `{"format_version","tenant","fingerprint","refresh_only" (only when true),"summary","actions",
//! "forget" (only when the plan drops state entries),"manual" (only when a person does some actions),"drift" (only when something changed outside crmctl),"targeting" (only for a partial plan),"diagnostics"}`, actions in execution order. Byte-identical for identical plans.

use serde::Serialize;

use crate::diag::{Diagnostic, Severity};
use crate::domain::op::ActionKind;
use crate::plan::drift::Drift;
use crate::plan::manual::ManualStep;
use crate::plan::target::Targeting;
use crate::plan::{Action, Change, Forget, Plan, Summary};

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'a str,
    tenant: &'a str,
    fingerprint: &'a str,
    /// `plan --refresh-only` (issue 14 item 2): the drift alone, no action; present (and
    /// `true`) only then.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    refresh_only: bool,
    summary: &'a Summary,
    actions: Actions<'a>,
    /// State entries the plan drops (issue 9 item 2); absent when none.
    #[serde(skip_serializing_if = "<[Forget]>::is_empty")]
    forget: &'a [Forget],
    /// Manual steps (issue 13 item 4); absent when none.
    #[serde(skip_serializing_if = "<[ManualStep]>::is_empty")]
    manual: &'a [ManualStep],
    /// Changes made outside crmctl since the last apply (issue 14 item 2); absent when none.
    #[serde(skip_serializing_if = "<[Drift]>::is_empty")]
    drift: &'a [Drift],
    /// `--target` / `--exclude` / `--replace` (issue 14 item 4); absent for a full plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    targeting: Option<&'a Targeting>,
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

/// A diagnostic in every JSON document crmctl writes (plans, `validate --format json`,
/// failures, apply summaries; issue 15 item 2): the location flattened into `file`, `line`
/// and `column`, `null` when unknown.
#[derive(Debug, Serialize)]
pub struct JsonDiag<'a> {
    severity: Severity,
    message: &'a str,
    address: Option<&'a str>,
    rule: Option<&'a str>,
    hint: Option<&'a str>,
    file: Option<&'a str>,
    line: Option<u32>,
    column: Option<u32>,
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
        let at = d.location.as_ref();
        JsonDiag {
            severity: d.severity,
            message: &d.message,
            address: d.address.as_deref(),
            rule: d.rule.as_deref(),
            hint: d.hint.as_deref(),
            file: at.map(|l| l.file.as_str()),
            line: at.map(|l| l.line),
            column: at.map(|l| l.column),
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
///
/// A large plan is rendered in chunks of actions on two threads, written in order; the
/// bytes are those of serializing the whole document at once (a test checks).
pub fn write_json<W: std::io::Write>(plan: &Plan, w: &mut W) -> std::io::Result<()> {
    write_json_chunked(plan, &[], w, CHUNK)
}

/// [`write_json`] with the desired file's own diagnostics (its warnings) listed before the
/// plan's (issue 15 item 2: the JSON plan carries every problem a pipeline must see).
pub fn write_json_with<W: std::io::Write>(
    plan: &Plan,
    file_diagnostics: &[Diagnostic],
    w: &mut W,
) -> std::io::Result<()> {
    write_json_chunked(plan, file_diagnostics, w, CHUNK)
}

/// Actions per chunk of the two-thread rendering (about 0.3 MB of JSON each).
const CHUNK: usize = 512;

/// [`write_json`] with chunks of `chunk` actions (two threads from two chunks on).
fn write_json_chunked<W: std::io::Write>(
    plan: &Plan,
    extra: &[Diagnostic],
    w: &mut W,
    chunk: usize,
) -> std::io::Result<()> {
    if plan.actions.len() < 2 * chunk {
        let mut ser = serde_json::Serializer::with_formatter(&mut *w, Pretty::default());
        document(plan, &plan.actions, extra)
            .serialize(&mut ser)
            .map_err(std::io::Error::from)?;
        return w.write_all(b"\n");
    }
    // The document is written field by field, in the order of `JsonPlan`, each value
    // with the indentation of its depth; the action list in between, chunk by chunk.
    let head = document(plan, &[], extra);
    w.write_all(b"{")?;
    field(w, true, "format_version", &head.format_version)?;
    field(w, false, "tenant", &head.tenant)?;
    field(w, false, "fingerprint", &head.fingerprint)?;
    if head.refresh_only {
        field(w, false, "refresh_only", &true)?;
    }
    field(w, false, "summary", &head.summary)?;
    w.write_all(b",\n  \"actions\": [")?;
    let chunks: Vec<&[Action]> = plan.actions.chunks(chunk).collect();
    std::thread::scope(|scope| -> std::io::Result<()> {
        // The helper renders the odd chunks into buffers that come back once written.
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
        let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let odd = &chunks;
        scope.spawn(move || {
            for c in odd.iter().skip(1).step_by(2) {
                let mut buf = spent_rx.try_recv().unwrap_or_default();
                buf.clear();
                render_actions(c, false, &mut buf);
                if done_tx.send(buf).is_err() {
                    return; // the writer failed and stopped
                }
            }
        });
        let mut mine = Vec::new();
        for (k, c) in chunks.iter().enumerate() {
            if k % 2 == 0 {
                mine.clear();
                render_actions(c, k == 0, &mut mine);
                w.write_all(&mine)?;
            } else {
                let buf = done_rx.recv().expect("the helper renders every odd chunk");
                w.write_all(&buf)?;
                let _ = spent_tx.send(buf);
            }
        }
        Ok(())
    })?;
    w.write_all(b"\n  ]")?;
    if !head.forget.is_empty() {
        field(w, false, "forget", &head.forget)?;
    }
    if !head.manual.is_empty() {
        field(w, false, "manual", &head.manual)?;
    }
    if !head.drift.is_empty() {
        field(w, false, "drift", &head.drift)?;
    }
    if let Some(t) = head.targeting {
        field(w, false, "targeting", t)?;
    }
    field(w, false, "diagnostics", &head.diagnostics)?;
    w.write_all(b"\n}\n")
}

/// The document of `plan` with `actions` as its action list, `extra` diagnostics first.
fn document<'a>(plan: &'a Plan, actions: &'a [Action], extra: &'a [Diagnostic]) -> JsonPlan<'a> {
    JsonPlan {
        format_version: &plan.format_version,
        tenant: &plan.tenant,
        fingerprint: &plan.fingerprint,
        refresh_only: plan.refresh_only,
        summary: &plan.summary,
        actions: Actions(actions),
        forget: &plan.forget,
        manual: &plan.manual,
        drift: &plan.drift,
        targeting: plan.targeting.as_ref(),
        diagnostics: extra
            .iter()
            .chain(&plan.diagnostics)
            .map(JsonDiag::from)
            .collect(),
    }
}

/// One field of the top-level object: its line, key and value (nested one level deep).
fn field<W: std::io::Write + ?Sized, T: Serialize + ?Sized>(
    w: &mut W,
    first: bool,
    key: &str,
    value: &T,
) -> std::io::Result<()> {
    let pretty = Pretty {
        level: 1,
        has_value: false,
    };
    pretty.line(w, first, 1)?;
    serde_json::to_writer(&mut *w, key)?;
    w.write_all(b": ")?;
    let mut ser = serde_json::Serializer::with_formatter(&mut *w, pretty);
    value.serialize(&mut ser).map_err(std::io::Error::from)
}

/// The actions of a chunk as elements of the action list (two levels deep), each after
/// its line break; `first`: the chunk starts the list.
fn render_actions(actions: &[Action], first: bool, out: &mut Vec<u8>) {
    for (i, a) in actions.iter().enumerate() {
        out.extend_from_slice(if first && i == 0 {
            b"\n    "
        } else {
            b",\n    "
        });
        write_action(a, out);
    }
}

/// One action as [`JsonAction`] serializes two levels deep, written directly: the keys
/// and the indentation are fixed, so only strings (escaped by serde_json), numbers and
/// the changes' values go through a serializer. A test compares the bytes with serde's.
fn write_action(a: &Action, out: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"{\n      \"id\": ");
    out.extend_from_slice(num.format(a.id).as_bytes());
    out.extend_from_slice(b",\n      \"kind\": ");
    write_str(out, a.kind.as_str());
    out.extend_from_slice(b",\n      \"address\": ");
    write_str(out, &a.address);
    out.extend_from_slice(b",\n      \"depends_on\": ");
    write_list(out, &a.depends_on, |out, d| {
        out.extend_from_slice(num.format(*d).as_bytes())
    });
    out.extend_from_slice(if a.destructive {
        b",\n      \"destructive\": true,\n      \"changes\": "
    } else {
        b",\n      \"destructive\": false,\n      \"changes\": "
    });
    write_list(out, &a.changes, |out, c| {
        out.extend_from_slice(b"{\n          \"path\": ");
        write_str(out, &c.path);
        out.extend_from_slice(b",\n          \"before\": ");
        write_value(out, &c.before);
        out.extend_from_slice(b",\n          \"after\": ");
        write_value(out, &c.after);
        out.extend_from_slice(b"\n        }");
    });
    out.extend_from_slice(b",\n      \"reason\": ");
    write_str(out, &a.reason);
    out.extend_from_slice(b"\n    }");
}

/// A list among an action's fields: `[]`, or one item per line.
fn write_list<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    if items.is_empty() {
        out.extend_from_slice(b"[]");
        return;
    }
    for (k, x) in items.iter().enumerate() {
        out.extend_from_slice(if k == 0 {
            b"[\n        "
        } else {
            b",\n        "
        });
        item(out, x);
    }
    out.extend_from_slice(b"\n      ]");
}

/// A JSON string, escaped by serde_json.
fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing into memory does not fail");
}

/// A change's value, pretty-printed at the depth of a change's fields.
fn write_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    let mut ser = serde_json::Serializer::with_formatter(
        &mut *out,
        Pretty {
            level: 5,
            has_value: false,
        },
    );
    v.serialize(&mut ser)
        .expect("writing into memory does not fail");
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

    /// Open an array or object with `bracket`.
    fn open<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    /// Close an array or object with `bracket`, on a line of its own unless it is empty.
    fn close<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.line(w, true, self.level)?;
        }
        w.write_all(bracket)
    }
}

impl serde_json::ser::Formatter for Pretty {
    /// serde_json escapes C0 controls; bidi, DEL and C1 characters (from the file or the
    /// observed tenant) are written as `\uXXXX` too (issue 9 item 6: the same string for a
    /// program, nothing raw for a terminal).
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if crate::domain::escape::first_unsafe(fragment).is_none() {
            return w.write_all(fragment.as_bytes());
        }
        let mut buf = [0u8; 4];
        for c in fragment.chars() {
            if crate::domain::escape::is_unsafe(c) {
                write!(w, "\\u{:04X}", c as u32)?;
            } else {
                w.write_all(c.encode_utf8(&mut buf).as_bytes())?;
            }
        }
        Ok(())
    }

    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
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
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{generate, SynthParams};

    /// A fresh-tenant plan of the small synthetic tenant (some 600 actions), with a
    /// warning and an error so that the diagnostics list is not empty.
    fn sample() -> Plan {
        let desired = generate(&SynthParams::small());
        let observed = crate::observed::Tenant::fresh(&desired.tenant);
        let mut plan = crate::plan::plan(&desired, &observed, &crate::state::State::empty("t"));
        plan.fingerprint = "ab\"c".into();
        // Every shape an action can take: destructive, strings to escape, no changes,
        // nested and empty values, no dependencies.
        let a = &mut plan.actions;
        a[1].destructive = true;
        a[2].address = "users.\"q\"\u{1}é\\".into();
        a[3].changes.clear();
        a[4].changes.push(crate::plan::Change {
            path: "a.\"b\"".into(),
            before: serde_json::json!({"x": [1, [], {}, -2.5], "y": null, "z": {"w": true}}),
            after: serde_json::json!([]),
        });
        a[5].reason = "tab\there\nnext".into();
        a[6].depends_on.clear();
        a[7].depends_on = vec![0, 1, 2];
        plan.diagnostics
            .push(Diagnostic::warning("users.a@b.c", "watch \"this\"\n").rule("I12"));
        plan.diagnostics
            .push(Diagnostic::error("instances.x", "no"));
        // issue 9 item 2: forgotten state entries are part of the document.
        plan.forget.push(Forget {
            address: "users.gus@\"x\".com".into(),
            kind: crate::domain::op::ObjKind::User,
            id: "u-1".into(),
        });
        plan.summary.forget = 1;
        plan
    }

    /// The reference bytes: the whole document serialized at once by serde_json's own
    /// pretty printer.
    fn reference(plan: &Plan) -> String {
        serde_json::to_string_pretty(&document(plan, &plan.actions, &[])).unwrap() + "\n"
    }

    #[test]
    fn chunked_rendering_is_the_document_serialized_at_once() {
        let mut plan = sample();
        assert!(plan.actions.len() > 500, "{}", plan.actions.len());
        for diagnostics in [true, false] {
            if !diagnostics {
                plan.diagnostics.clear();
            }
            let want = reference(&plan);
            // Chunk sizes that split the list evenly, unevenly, and not at all.
            for chunk in [1, 2, 7, 100, plan.actions.len() / 2, plan.actions.len()] {
                let mut out = Vec::new();
                write_json_chunked(&plan, &[], &mut out, chunk).unwrap();
                assert!(
                    String::from_utf8(out).unwrap() == want,
                    "chunk {chunk}, diagnostics {diagnostics}"
                );
            }
            assert_eq!(render_json(&plan), want);
        }
        // Fewer actions than two chunks, and none at all.
        plan.actions.truncate(3);
        let mut out = Vec::new();
        write_json_chunked(&plan, &[], &mut out, 2).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), reference(&plan));
        plan.actions.clear();
        assert_eq!(render_json(&plan), reference(&plan));
        assert!(render_json(&plan).contains("\"forget\": ["));
        plan.forget.clear();
        plan.summary.forget = 0;
        assert!(!render_json(&plan).contains("\"forget\""));
    }

    /// A writer that fails after `left` bytes.
    struct Failing {
        left: usize,
    }

    impl std::io::Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.left < buf.len() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "closed",
                ));
            }
            self.left -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_writer_stops_the_chunked_rendering_with_its_error() {
        let plan = sample();
        let size = reference(&plan).len();
        // In the head, in an even (own) chunk, in an odd (helper's) chunk, at the end.
        for left in [10, size / 3, size / 2, size - 5] {
            let err = write_json_chunked(&plan, &[], &mut Failing { left }, 5).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "left {left}");
        }
    }
}
