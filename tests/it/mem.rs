//! issue 9 item 7 (bounded error path): a file with more problems than crmctl describes
//! stops after 100 and says how many more there are, in YAML and JSON, in the human output
//! and in `validate --format json`; every problem shown is located (file:line:col); a
//! minified JSON file (one long line) echoes each problem's own part of the line. Untimed:
//! the time and memory figures are `cargo bench --bench errpath`'s.

use assert_cmd::Command;

use crate::support::{self, root};
use crmctl::desired::load::{load_str, to_yaml, MAX_DIAGNOSTICS};
use crmctl::synth::{generate, SynthParams};

fn crmctl() -> Command {
    support::crmctl(&root())
}

/// A generated tenant of `users` users, each given a wrong-typed field (`admin_roles` is a
/// list, here the number 5), as YAML or as JSON (minified: one line); and how many users.
fn every_user_wrong(users: usize, json: bool) -> (String, usize) {
    let p = SynthParams {
        users,
        groups: 10,
        memberships: users * 3,
        ..SynthParams::small()
    };
    let d = generate(&p);
    if json {
        let text = serde_json::to_string(&d).unwrap();
        let n = text.matches("\"license\":\"").count();
        (
            text.replace("\"license\":\"", "\"admin_roles\":5,\"license\":\""),
            n,
        )
    } else {
        let mut out = String::new();
        let mut n = 0;
        for l in to_yaml(&d).unwrap().split_inclusive('\n') {
            let t = l.trim_start();
            if t.starts_with("license: ") {
                out.push_str(&l[..l.len() - t.len()]);
                out.push_str("admin_roles: 5\n");
                n += 1;
            }
            out.push_str(l);
        }
        (out, n)
    }
}

/// issue 9 item 7: 100 problems described, "and N more" for the rest, YAML and JSON, human
/// and JSON output; each described problem has file:line:col and is about `admin_roles`.
#[test]
fn issue9_item7_the_error_list_stops_at_100_and_says_how_many_more() {
    let dir = tempfile::tempdir().unwrap();
    for json in [false, true] {
        let (text, users) = every_user_wrong(400, json);
        assert_eq!(users, 400, "every user has a license line");
        let file = dir
            .path()
            .join(if json { "every.json" } else { "every.yaml" });
        std::fs::write(&file, &text).unwrap();
        let path = file.to_str().unwrap();

        let out = crmctl().args(["validate", "-f", path]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{path}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let located: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with(&format!("{path}:")) && l.contains(": error: "))
            .collect();
        assert_eq!(located.len(), MAX_DIAGNOSTICS, "{path}: {stderr}");
        for l in &located {
            // FILE:LINE:COL: error: ...
            let rest = &l[path.len() + 1..];
            let mut parts = rest.splitn(3, ':');
            let line: u32 = parts.next().unwrap().parse().expect("a line number");
            let col: u32 = parts.next().unwrap().parse().expect("a column number");
            assert!(line >= 1 && col >= 1, "{l}");
        }
        assert_eq!(
            stderr.matches("= path: users.").count(),
            MAX_DIAGNOSTICS,
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "{path}: ... and {} more problem(s) not shown",
                users - MAX_DIAGNOSTICS
            )),
            "{path}: {}",
            &stderr[stderr.len().saturating_sub(400)..]
        );

        let out = crmctl()
            .args(["validate", "--format", "json", "-f", path])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["omitted"], users - MAX_DIAGNOSTICS, "{doc}");
        assert_eq!(doc["errors"], users, "{path}");
        let diags = doc["diagnostics"].as_array().unwrap();
        assert_eq!(diags.len(), MAX_DIAGNOSTICS);
        for d in diags {
            assert!(
                d["line"].as_u64().is_some_and(|l| l >= 1)
                    && d["column"].as_u64().is_some_and(|c| c >= 1),
                "{d}"
            );
            assert!(
                d["address"]
                    .as_str()
                    .is_some_and(|a| a.ends_with(".admin_roles")),
                "{d}"
            );
        }
    }
}

/// issue 9 item 7: the library's answer: the first 100 problems in file order, the rest
/// counted, for YAML and JSON alike.
#[test]
fn issue9_item7_load_describes_the_first_100_problems_and_counts_the_rest() {
    for json in [false, true] {
        let (text, users) = every_user_wrong(300, json);
        let path = if json { "t.json" } else { "t.yaml" };
        let f = load_str(path, text).unwrap_err();
        assert_eq!(f.diagnostics.len(), MAX_DIAGNOSTICS, "{path}");
        assert_eq!(f.omitted, users - MAX_DIAGNOSTICS, "{path}");
        let places: Vec<(u32, u32)> = f
            .diagnostics
            .iter()
            .map(|d| {
                let l = d.location.as_ref().expect("located");
                (l.line, l.column)
            })
            .collect();
        assert!(places.windows(2).all(|w| w[0] < w[1]), "{path}: {places:?}");
        // The first 100 users in the file, in order.
        let mut keys: Vec<&str> = f
            .diagnostics
            .iter()
            .map(|d| d.address.as_deref().unwrap())
            .collect();
        keys.dedup();
        assert_eq!(keys.len(), MAX_DIAGNOSTICS, "{path}");
        assert!(
            keys[0].starts_with("users.user000000@"),
            "{path}: {}",
            keys[0]
        );
    }
}

/// issue 9 item 7: on a minified JSON file (one line), each of the 100 problems echoes a
/// window of the line around its own column (found in one pass over the line), with the
/// caret under the wrong value.
#[test]
fn issue9_item7_one_line_json_echoes_each_problem_at_its_column() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = every_user_wrong(250, true);
    assert_eq!(text.lines().count(), 1);
    let file = dir.path().join("one-line.json");
    std::fs::write(&file, &text).unwrap();
    let out = crmctl()
        .args(["--no-color", "validate", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    let mut echoed = 0;
    for (i, l) in lines.iter().enumerate() {
        // `1 | ...text...` then `  | <lead>^`.
        let Some(shown) = l.strip_prefix("1 | ") else {
            continue;
        };
        let marks = lines[i + 1].strip_prefix("  | ").expect("the underline");
        let caret = marks.find('^').expect("a caret");
        let at: String = shown.chars().skip(caret).take(1).collect();
        assert_eq!(at, "5", "{shown}\n{marks}");
        assert!(shown.chars().count() <= 126, "{shown}");
        echoed += 1;
    }
    assert_eq!(echoed, MAX_DIAGNOSTICS, "{stderr}");
}
