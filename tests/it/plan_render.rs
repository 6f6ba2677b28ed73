//! Snapshot tests of the human, JSON and Markdown renderings (expect-test; refresh with
//! `UPDATE_EXPECT=1 cargo test --test plan_render`), for our fixtures and for every
//! example planned against a fresh tenant.

use crate::common;

use std::path::Path;

use crate::support::{files_in, root};
use common::*;

fn snapshot(file: &Path) {
    let loaded = crmctl::desired::load::load_file(file)
        .unwrap_or_else(|e| panic!("{}: {:?}", file.display(), e.diagnostics));
    let t = crmctl::observed::Tenant::fresh(&loaded.desired.tenant);
    let plan = crmctl::plan::plan(&loaded.desired, &t, &state(&[]));
    assert!(
        !plan.has_errors(),
        "{}: {:#?}",
        file.display(),
        plan.diagnostics
    );
    let stem = file.file_stem().unwrap().to_string_lossy().to_string();
    let dir = root().join("tests/snapshots/plan");
    expect_test::expect_file![dir.join(format!("{stem}.human.txt"))]
        .assert_eq(&crmctl::render::render_human(&plan, false));
    let json = crmctl::render::render_json(&plan);
    expect_test::expect_file![dir.join(format!("{stem}.json"))].assert_eq(&json);
    expect_test::expect_file![dir.join(format!("{stem}.md"))]
        .assert_eq(&crmctl::render::render_markdown(&plan));
    // Same input, byte-identical output.
    let again = crmctl::plan::plan(&loaded.desired, &t, &state(&[]));
    assert_eq!(json, crmctl::render::render_json(&again));
}

#[test]
fn fixtures_render_as_snapshotted() {
    let files = files_in("tests/fixtures/plan", &["yaml"]);
    assert!(!files.is_empty());
    for f in files {
        snapshot(&f);
    }
}

#[test]
fn examples_render_as_snapshotted() {
    for f in files_in("examples", &["yaml"]) {
        snapshot(&f);
    }
}

#[test]
fn colors_only_when_asked_and_empty_plan_says_no_changes() {
    let d = desired("users:\n  a@coho.com: {}\n");
    let plan = crmctl::plan::plan(&d, &fresh(), &state(&[]));
    let plain = crmctl::render::render_human(&plan, false);
    assert!(!plain.contains('\x1b'));
    assert!(crmctl::render::render_human(&plan, true).contains("\x1b[32m"));
    assert!(
        plain.ends_with("Plan: 0 to buy, 1 to create, 0 to change, 0 to delete.\n"),
        "{plain}"
    );
    let empty = crmctl::plan::plan(&desired(""), &fresh(), &state(&[]));
    assert_eq!(crmctl::render::render_human(&empty, false), "No changes.\n");
    let dot = crmctl::render::render_dot(&plan);
    assert!(dot.starts_with("digraph plan {") && dot.contains("create_user"));
}

/// issue 9 item 6: text from the observed tenant (a group's display name and multi-line
/// description holding ESC, BEL, CR and a bidi override) reaches no rendering raw: human
/// (plain and colored, the unified diff too), Markdown, DOT, and apply progress lines; each
/// shows the characters as visible escapes.
#[test]
fn hostile_text_from_the_tenant_is_escaped_in_every_rendering() {
    use crmctl::domain::escape::is_unsafe;
    let hostile = "old\u{1b}]0;pwned\u{7}\nline\r two\u{202e}";
    let mut t = fresh();
    t.groups.insert(
        "g1".into(),
        crmctl::observed::Group {
            id: "g1".into(),
            name: "Sales".into(),
            description: hostile.into(),
            members: Default::default(),
        },
    );
    let d =
        desired("security_groups:\n  sales:\n    name: Sales\n    description: \"new\\nline\"\n");
    let mut plan = crmctl::plan::plan(&d, &t, &state(&[]));
    assert!(!plan.has_errors(), "{:#?}", plan.diagnostics);
    // And a hostile diagnostic, as a provider or the planner could word one.
    plan.diagnostics.push(crmctl::diag::Diagnostic::warning(
        "security_groups.sales",
        format!("group `{hostile}` looks odd"),
    ));
    let only_layout = |s: &str| !s.chars().any(|c| is_unsafe(c) && c != '\n');
    let human = crmctl::render::render_human(&plan, false);
    assert!(only_layout(&human), "{human:?}");
    assert!(
        human.contains("\\x1b]0;pwned\\x07") && human.contains("\\u{202e}"),
        "{human}"
    );
    let colored = crmctl::render::render_human(&plan, true);
    assert!(!colored.contains("\u{1b}]0") && !colored.contains('\u{202e}'));
    let md = crmctl::render::render_markdown(&plan);
    assert!(only_layout(&md) && md.contains("\\u{202e}"), "{md}");
    let dot = crmctl::render::render_dot(&plan);
    assert!(only_layout(&dot), "{dot}");
    // JSON (`plan --format json`): the bidi override as `\u202E`, the same string for a
    // program (before: raw).
    let json = crmctl::render::render_json(&plan);
    assert!(only_layout(&json) && json.contains("\\u202E"), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        v.to_string().contains('\u{202e}'),
        "the JSON string reads back as it was"
    );
    // Apply progress: the failure text (from the provider) is escaped too.
    let a = &plan.actions[0];
    let failed = crmctl::apply::ActionOutcome::Failed(crmctl::provider::ProviderError::NotFound(
        hostile.into(),
    ));
    let line = crmctl::apply::ProgressEvent {
        finished: 1,
        total: 1,
        action: a,
        outcome: &failed,
    }
    .line();
    assert!(
        only_layout(&line) && !line.contains('\n') && line.contains("\\x1b"),
        "{line}"
    );
}

/// issue 9 item 6: diagnostics echo the source line with its control characters escaped,
/// and the caret still under the column.
#[test]
fn diagnostics_escape_the_echoed_line_and_the_message() {
    use crmctl::desired::load::{load_str, render_diagnostics};
    let text = "tenant: coho.onmicrosoft.com\nsecurity_groups:\n  a: {name: \"x\\e\", description: \u{202e}y}\n";
    let f = load_str("t.yaml", text.into()).unwrap_err();
    let out = render_diagnostics(&f.diagnostics, &f.src, false);
    assert!(
        !out.chars()
            .any(|c| crmctl::domain::escape::is_unsafe(c) && c != '\n'),
        "{out:?}"
    );
    assert!(out.contains("description: \\u{202e}y"), "{out}");
    // The caret under `description` (column 25 of the raw line) is moved past the escape.
    let echoed = out.lines().find(|l| l.starts_with("3 | ")).unwrap();
    let caret = out
        .lines()
        .skip_while(|l| !l.starts_with("3 | "))
        .nth(1)
        .unwrap();
    let col = caret.find('^').unwrap();
    assert!(
        echoed[col..].starts_with("description") || echoed[col..].starts_with("name"),
        "{out}"
    );
}

// issue 12 item 4: an update of the usage location shows its before and after in every
// rendering, and a synchronised user's kept name is a warning in each.
#[test]
fn usage_location_update_and_synced_warning_in_every_rendering() {
    let t = tenant("users:\n  u1: {id: u1, upn: a@coho.com, name: A, access_mode: read-write, usage_location: US, synced: true}\n");
    let d = desired("users:\n  a@coho.com: {name: Ana, usage_location: DE}\n");
    let s = state(&[(
        "users.a@coho.com",
        crmctl::domain::op::ObjKind::User,
        "u1",
        false,
    )]);
    let plan = crmctl::plan::plan(&d, &t, &s);
    assert!(!plan.has_errors(), "{:#?}", plan.diagnostics);
    let human = crmctl::render::render_human(&plan, false);
    assert!(
        human.contains(r#"usage_location = "US" -> "DE""#),
        "{human}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&crmctl::render::render_json(&plan)).unwrap();
    let changes = &json["actions"][0]["changes"][0];
    assert_eq!(
        (&changes["path"], &changes["before"], &changes["after"]),
        (&"usage_location".into(), &"US".into(), &"DE".into()),
        "{json:#}"
    );
    let md = crmctl::render::render_markdown(&plan);
    assert!(md.contains("usage_location") && md.contains("DE"), "{md}");
    for text in [&human, &md, &json.to_string()] {
        assert!(text.contains("its name is managed there"), "{text}");
    }
}
