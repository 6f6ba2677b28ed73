//! `crmctl validate` end to end: every example passes; every file under tests/fixtures/invalid
//! fails with exit code 1, `FILE:LINE:COL`, the rule id and a hint; every file under
//! tests/fixtures/warnings passes with exit code 0 and its warning; large files work.
//!
//! The line of the expected diagnostic is the line of the fixture marked `# <-` (or given
//! explicitly where the file cannot hold a comment).

use assert_cmd::Command;

use crate::support::{self, root};

/// `crmctl` run in the repository's root.
fn crmctl() -> Command {
    support::crmctl(&root())
}

/// Run `crmctl validate -f FILE`; (exit code, stderr).
fn validate(file: &str) -> (i32, String) {
    let out = crmctl().args(["validate", "-f", file]).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn marker_line(file: &str) -> u32 {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let i = text
        .lines()
        .position(|l| l.contains("# <-"))
        .unwrap_or_else(|| panic!("{file} has no `# <-` marker"));
    i as u32 + 1
}

struct Case {
    file: &'static str,
    /// Explicit line (files without a marker comment).
    line: Option<u32>,
    column: u32,
    rule: Option<&'static str>,
    /// Substrings of the first diagnostic's lines (message, hint, path).
    expect: &'static [&'static str],
}

const INVALID: &[Case] = &[
    // Structural problems.
    Case {
        file: "typo_field.yaml",
        line: None,
        column: 5,
        rule: None,
        expect: &[
            "unknown field `curency`",
            "did you mean `currency`?",
            "path: instances.sales.curency",
        ],
    },
    Case {
        file: "wrong_type.yaml",
        line: None,
        column: 15,
        rule: None,
        expect: &[
            "invalid value for `language`: expected a whole number",
            "LCID",
        ],
    },
    Case {
        file: "bad_enum.yaml",
        line: None,
        column: 11,
        rule: Some("I7"),
        expect: &[
            "unknown value `prod` for `type`",
            "did you mean `production`?",
        ],
    },
    Case {
        file: "bad_region.yaml",
        line: None,
        column: 13,
        rule: Some("I6"),
        expect: &["unknown value `EU` for `region`", "`EMEA`"],
    },
    Case {
        file: "duplicate_key.yaml",
        line: None,
        column: 5,
        rule: None,
        expect: &["duplicate key `name`", "already defined at line 4"],
    },
    Case {
        file: "tab_indent.yaml",
        line: None,
        column: 2,
        rule: None,
        expect: &["tabs", "indent with spaces"],
    },
    Case {
        file: "bad_indent.yaml",
        line: None,
        column: 4,
        rule: None,
        expect: &["did not find expected key", "indentation"],
    },
    Case {
        file: "empty.yaml",
        line: Some(1),
        column: 1,
        rule: None,
        expect: &["the file is empty", "tenant: <name>.onmicrosoft.com"],
    },
    Case {
        file: "missing_field.yaml",
        line: None,
        column: 3,
        rule: None,
        expect: &["missing field `url` in `instances.sales`", "add `url:`"],
    },
    Case {
        file: "many_errors.yaml",
        line: None,
        column: 3,
        rule: Some("T2"),
        expect: &[
            "unknown key `profesional` in `licenses`",
            "did you mean `professional`?",
        ],
    },
    Case {
        file: "alias_bomb.yaml",
        line: Some(7),
        column: 45,
        rule: None,
        expect: &["too large or too complex", "anchors/aliases"],
    },
    Case {
        file: "syntax.json",
        line: Some(4),
        column: 73,
        rule: None,
        expect: &["trailing comma"],
    },
    // serde_json keeps the last of two equal keys; the model refuses it in every format.
    Case {
        file: "duplicate_key.json",
        line: Some(3),
        column: 12,
        rule: None,
        expect: &["duplicate key `a@coho.com`", "already defined at line 2"],
    },
    Case {
        file: "typo.json",
        line: Some(8),
        column: 7,
        rule: None,
        expect: &["unknown field `regoin`", "did you mean `region`?"],
    },
    // The service's rules.
    Case {
        file: "t1_tenant.yaml",
        line: None,
        column: 1,
        rule: Some("T1"),
        expect: &[
            "`cohowinery.com` is not a `<name>.onmicrosoft.com` domain",
            "cohowinery.onmicrosoft.com",
        ],
    },
    Case {
        file: "t3_licenses.yaml",
        line: None,
        column: 3,
        rule: Some("T3"),
        expect: &[
            "2 users are assigned a professional license but only 1 are purchased",
            "at least 2",
            "path: licenses.professional",
        ],
    },
    Case {
        file: "t5_addons.yaml",
        line: None,
        column: 1,
        rule: Some("T5"),
        expect: &[
            "Professional or Enterprise",
            "1 additional production instance",
        ],
    },
    Case {
        file: "t7_too_many.yaml",
        line: None,
        column: 1,
        rule: Some("T7"),
        expect: &["51 production instances", "at most 50"],
    },
    Case {
        file: "p1_upn.yaml",
        line: None,
        column: 3,
        rule: Some("P1"),
        expect: &["`ana` is not a user principal name", "user@domain"],
    },
    // issue 9 item 2 (P1): two user keys differing only in case.
    Case {
        file: "p1_upn_case.yaml",
        line: None,
        column: 3,
        rule: Some("P1"),
        expect: &[
            "`ana@coho.com` is the same user as `Ana@coho.com`",
            "without regard to case",
            "one spelling",
        ],
    },
    // issue 9 item 2 (I12): two display names differing only in case.
    Case {
        file: "i12_group_name_case.yaml",
        line: None,
        column: 5,
        rule: Some("I12"),
        expect: &["display name `SALES`, as does `sales`", "its own `name`"],
    },
    Case {
        file: "p2_roles_instance.yaml",
        line: None,
        column: 7,
        rule: Some("P2"),
        expect: &[
            "instance `sale`, which is not declared",
            "did you mean `sales`?",
            "path: users.ana@coho.com.roles.sale",
        ],
    },
    Case {
        file: "p3_non_interactive.yaml",
        line: None,
        column: 13,
        rule: Some("P3"),
        expect: &["6 non-interactive users", "at most 5", "application"],
    },
    Case {
        file: "p3_application_license.yaml",
        line: None,
        column: 5,
        rule: Some("P3"),
        expect: &["application users are never licensed", "remove `license`"],
    },
    Case {
        file: "i3_currency.yaml",
        line: None,
        column: 5,
        rule: Some("I3"),
        expect: &["`USX` is not an ISO 4217 currency code", "`USD`"],
    },
    Case {
        file: "i5_url_syntax.yaml",
        line: None,
        column: 5,
        rule: Some("I5"),
        expect: &["`Coho_Sales` is not a valid host name label", "lower-case"],
    },
    Case {
        file: "i5_url_duplicate.yaml",
        line: None,
        column: 22,
        rule: Some("I5"),
        expect: &["also used by instance `sales`", "its own URL name"],
    },
    Case {
        file: "i6_copy_region.yaml",
        line: None,
        column: 5,
        rule: Some("I6"),
        expect: &["copy lands in the source's region", "set `region: NA`"],
    },
    Case {
        file: "i10_admin_mode_production.yaml",
        line: None,
        column: 5,
        rule: Some("I10"),
        expect: &["sandbox instances only", "type: sandbox"],
    },
    Case {
        file: "i10_background_operations.yaml",
        line: None,
        column: 7,
        rule: Some("I10"),
        expect: &[
            "only while administration mode is enabled",
            "enabled: true",
            "path: instances.dev.admin_mode.background_operations",
        ],
    },
    Case {
        file: "i11_copy_onto_production.yaml",
        line: None,
        column: 5,
        rule: Some("I11"),
        expect: &["never lands on a production instance", "type: sandbox"],
    },
    Case {
        file: "i11_copy_source.yaml",
        line: None,
        column: 7,
        rule: Some("I11"),
        expect: &[
            "copy source `sails` is not a declared instance",
            "did you mean `sales`?",
        ],
    },
    Case {
        file: "i11_copy_self.yaml",
        line: None,
        column: 7,
        rule: Some("I11"),
        expect: &["cannot be copied onto itself", "another instance"],
    },
    Case {
        file: "i12_security_group.yaml",
        line: None,
        column: 5,
        rule: Some("I12"),
        expect: &[
            "security group `sale` of instance `sales` is not declared",
            "did you mean `sales`?",
        ],
    },
    Case {
        file: "i12_member_undeclared.yaml",
        line: None,
        column: 9,
        rule: Some("I12"),
        expect: &[
            "member `ben@coho.com` of group `sales` is not declared under `users`",
            "ben@coho.com: {}",
            "path: security_groups.sales.members[1]",
        ],
    },
    Case {
        file: "i13_recipient.yaml",
        line: None,
        column: 9,
        rule: Some("I13"),
        expect: &["`crm-admins` is not an email address", "full address"],
    },
    Case {
        file: "u1_version.yaml",
        line: None,
        column: 7,
        rule: Some("U1"),
        expect: &["`v8.1` is not a version", "8.1.0"],
    },
    Case {
        file: "u3_date.yaml",
        line: None,
        column: 7,
        rule: Some("U3"),
        expect: &[
            "not an RFC 3339 date and time in UTC",
            "2016-05-14T22:00:00Z",
        ],
    },
    Case {
        file: "u3_alternate_first.yaml",
        line: None,
        column: 7,
        rule: Some("U3"),
        expect: &[
            "alternate date must be later than the preferred date",
            "fallback",
        ],
    },
    // issue 9 items 6, 8, 10.
    Case {
        file: "issue9_control_char.yaml",
        line: None,
        column: 5,
        rule: None,
        expect: &["`name` contains a control character (`\\x1b`)", "remove it"],
    },
    Case {
        file: "issue9_yaml_tag.yaml",
        line: None,
        column: 37,
        rule: None,
        expect: &[
            "unsupported tag `!!python/object:os.system`",
            "remove the tag",
        ],
    },
    Case {
        file: "issue9_yaml11_bool.yaml",
        line: None,
        column: 14,
        rule: None,
        expect: &[
            "expected `true` or `false` (found the string `no`)",
            "write `true` or `false`",
        ],
    },
    Case {
        file: "issue9_count.yaml",
        line: None,
        column: 17,
        rule: None,
        expect: &["plain decimal digits", "digits only"],
    },
    Case {
        file: "issue9_merge_keys.yaml",
        line: None,
        column: 5,
        rule: None,
        expect: &["two merge keys", "the first `<<` is at line 9"],
    },
    Case {
        file: "issue9_duplicate_role.yaml",
        line: None,
        column: 11,
        rule: Some("P2"),
        expect: &["role `salesperson` is listed twice", "remove the duplicate"],
    },
    Case {
        file: "issue9_group_display_name.yaml",
        line: None,
        column: 5,
        rule: Some("I12"),
        expect: &["as does `sales2`", "give each group its own `name`"],
    },
    Case {
        file: "issue9_non_utf8.yaml",
        line: Some(4),
        column: 15,
        rule: None,
        expect: &["not UTF-8 text (byte 0xe9", "save the file as UTF-8"],
    },
    Case {
        file: "issue9_cr_only.yaml",
        line: Some(6),
        column: 5,
        rule: Some("I5"),
        expect: &["URL name `Cohosales`", "url: Cohosales"],
    },
];

const WARNINGS: &[Case] = &[
    Case {
        file: "p6_global_admins.yaml",
        line: None,
        column: 1,
        rule: Some("P6"),
        expect: &[
            "1 global admin(s) declared",
            "keep at least two",
            "second administrator",
        ],
    },
    Case {
        file: "u5_production_first.yaml",
        line: None,
        column: 7,
        rule: Some("U5"),
        expect: &["updated to 8.1.0 before any sandbox", "sandbox first"],
    },
    Case {
        file: "p2_no_license.yaml",
        line: None,
        column: 5,
        rule: Some("P2"),
        expect: &["security roles but no license", "license: professional"],
    },
    Case {
        file: "i13_duplicate_recipient.yaml",
        line: None,
        column: 9,
        rule: Some("I13"),
        expect: &["listed twice", "remove the duplicate"],
    },
    Case {
        file: "i12_duplicate_member.yaml",
        line: None,
        column: 9,
        rule: Some("I12"),
        expect: &["listed twice in group `sales`", "remove the duplicate"],
    },
];

fn check(dir: &str, cases: &[Case], code: i32, severity: &str) {
    let mut failures = Vec::new();
    for c in cases {
        let file = format!("tests/fixtures/{dir}/{}", c.file);
        let line = c.line.unwrap_or_else(|| marker_line(&file));
        let (got, stderr) = validate(&file);
        let head = format!("{file}:{line}:{}: {severity}: ", c.column);
        let mut problems = Vec::new();
        if got != code {
            problems.push(format!("exit code {got}, expected {code}"));
        }
        match stderr.lines().position(|l| l.starts_with(&head)) {
            None => problems.push(format!("no line starting with `{head}`")),
            Some(i) => {
                let first = stderr.lines().nth(i).unwrap();
                if let Some(rule) = c.rule {
                    if !first.ends_with(&format!("[{rule}]")) {
                        problems.push(format!("rule [{rule}] missing from `{first}`"));
                    }
                }
                // The diagnostic's own block: up to the next diagnostic or the summary.
                let block: Vec<&str> = stderr
                    .lines()
                    .skip(i)
                    .take_while({
                        let mut first = true;
                        // Gutter lines start with a space or a line number.
                        move |l| {
                            std::mem::take(&mut first)
                                || l.starts_with(' ')
                                || l.starts_with(|c: char| c.is_ascii_digit())
                        }
                    })
                    .collect();
                let block = block.join("\n");
                for e in c.expect {
                    if !block.contains(e) {
                        problems.push(format!("`{e}` missing from:\n{block}"));
                    }
                }
                if !block.contains('^') {
                    problems.push(format!("no caret under the column in:\n{block}"));
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{file}:\n  {}\n--- stderr:\n{stderr}",
                problems.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_invalid_fixture_fails_with_location_rule_and_hint() {
    check("invalid", INVALID, 1, "error");
}

#[test]
fn warnings_keep_exit_code_zero() {
    check("warnings", WARNINGS, 0, "warning");
}

#[test]
fn every_fixture_is_in_a_table() {
    for (dir, cases) in [("invalid", INVALID), ("warnings", WARNINGS)] {
        for entry in std::fs::read_dir(root().join("tests/fixtures").join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                cases.iter().any(|c| c.file == name),
                "tests/fixtures/{dir}/{name} is not checked by any case"
            );
        }
    }
}

#[test]
fn examples_are_valid_without_warnings() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            n += 1;
            let rel = format!("examples/{}", path.file_name().unwrap().to_str().unwrap());
            let (code, stderr) = validate(&rel);
            assert_eq!(code, 0, "{rel}:\n{stderr}");
            assert_eq!(stderr.trim(), format!("{rel}: valid"), "{rel} has warnings");
        }
    }
    assert!(n >= 3, "expected the three examples, found {n}");
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let (code, stderr) = validate("tests/fixtures/invalid/many_errors.yaml");
    assert_eq!(code, 1);
    expect_test::expect![[r#"
        tests/fixtures/invalid/many_errors.yaml:3:3: error: unknown key `profesional` in `licenses` [T2]
          |
        3 |   profesional: 5        # <- plan typo
          |   ^^^^^^^^^^^
          = hint: did you mean `professional`? (expected one of `essential`, `basic`, `professional`, `enterprise`)
          = path: licenses.profesional
        tests/fixtures/invalid/many_errors.yaml:7:5: error: unknown field `acces_mode`
          |
        7 |     acces_mode: read-write
          |     ^^^^^^^^^^
          = hint: did you mean `access_mode`? (expected one of `name`, `license`, `access_mode`, `application_id`, `usage_location`, `roles`, `admin_roles`)
          = path: users.ana@coho.com.acces_mode
        tests/fixtures/invalid/many_errors.yaml:13:5: error: unknown field `curency`
           |
        13 |     curency: USD
           |     ^^^^^^^
           = hint: did you mean `currency`? (expected one of `name`, `url`, `type`, `purpose`, `region`, `currency`, `language`, `security_group`, `notification_recipients`, `update`, `protect`, `admin_mode`, `copy_from`)
           = path: instances.sales.curency
        tests/fixtures/invalid/many_errors.yaml:14:15: error: invalid value for `language`: expected a whole number (found the string `abc`)
           |
        14 |     language: abc
           |               ^^^
           = hint: write a Windows LCID number, e.g. `1033` for English
           = path: instances.sales.language
        tests/fixtures/invalid/many_errors.yaml: 4 errors and 0 warnings
    "#]]
    .assert_eq(&stderr);
}

#[test]
fn json_files_use_the_same_model_and_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Every example, converted to JSON, is valid too.
    for name in ["coho-winery", "minimal", "multi-region"] {
        let text = std::fs::read_to_string(root().join(format!("examples/{name}.yaml"))).unwrap();
        let d: crmctl::desired::Desired = crmctl::desired::load::from_yaml(&text).unwrap();
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&d).unwrap()).unwrap();
        let (code, stderr) = validate(path.to_str().unwrap());
        assert_eq!(code, 0, "{stderr}");
    }
    // A semantic error in JSON is located like in YAML.
    let bad = "{\n  \"tenant\": \"coho.onmicrosoft.com\",\n  \"instances\": {\n    \"sales\": {\n      \"name\": \"Sales\",\n      \"url\": \"cohosales\",\n      \"type\": \"production\",\n      \"currency\": \"EURO\"\n    }\n  }\n}\n";
    let path = dir.path().join("bad.json");
    std::fs::write(&path, bad).unwrap();
    let p = path.to_str().unwrap();
    let (code, stderr) = validate(p);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "{p}:8:7: error: `EURO` is not an ISO 4217 currency code [I3]"
        )),
        "{stderr}"
    );
}

fn big_yaml(min_bytes: usize) -> String {
    use crmctl::synth::{generate, SynthParams};
    let users = 30_000;
    let p = SynthParams {
        users,
        groups: 600,
        memberships: 300_000,
        instances: 125,
        seed: 3,
    };
    let text = crmctl::desired::load::to_yaml(&generate(&p)).unwrap();
    assert!(
        text.len() >= min_bytes,
        "generated only {} bytes",
        text.len()
    );
    text
}

#[test]
fn a_ten_megabyte_file_works_and_its_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let text = big_yaml(10 * 1024 * 1024);
    let good = dir.path().join("big.yaml");
    std::fs::write(&good, &text).unwrap();
    let (code, stderr) = validate(good.to_str().unwrap());
    assert_eq!(code, 0, "{}", &stderr[..stderr.len().min(2000)]);

    // The same file with one wrong currency near its end: found, on the right line.
    let target = "    currency: JPY\n";
    let at = text.rfind(target).expect("a JPY instance");
    let line = text[..at].lines().count() + 1;
    let mut bad_text = text.clone();
    bad_text.replace_range(at..at + target.len(), "    currency: YEN\n");
    let bad = dir.path().join("big-bad.yaml");
    std::fs::write(&bad, &bad_text).unwrap();
    let b = bad.to_str().unwrap();
    let (code, stderr) = validate(b);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "{b}:{line}:5: error: `YEN` is not an ISO 4217 currency code [I3]"
        )),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
}

#[test]
fn unreadable_file_is_an_error_with_a_hint() {
    let (code, stderr) = validate("tests/fixtures/does-not-exist.yaml");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("tests/fixtures/does-not-exist.yaml: error: cannot read the file"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: check the path"), "{stderr}");
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = crmctl().arg("schema").output().unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(root().join("schemas/crmctl.schema.json")).unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        committed,
        "schemas/crmctl.schema.json is stale: regenerate it with `cargo run -- schema > schemas/crmctl.schema.json`"
    );
}

// issue 9 item 2 (P1): a clash of keys differing only in case points at both lines, each
// with file:line:col, the rule and the other spelling.
#[test]
fn a_case_clash_points_at_both_lines() {
    let file = "tests/fixtures/invalid/p1_upn_case.yaml";
    let (code, stderr) = validate(file);
    assert_eq!(code, 1, "{stderr}");
    for (line, other) in [(3, "Ana@coho.com"), (5, "ana@coho.com")] {
        let head = format!("{file}:{line}:3: error: ");
        let first = stderr
            .lines()
            .find(|l| l.starts_with(&head))
            .unwrap_or_else(|| panic!("no `{head}` in:\n{stderr}"));
        assert!(
            first.contains(&format!("same user as `{other}`")),
            "{first}"
        );
        assert!(first.ends_with("[P1]"), "{first}");
    }
}

/// issue 9 item 6: what a file says reaches the terminal escaped: no raw ESC or BEL in the
/// output of `validate`, the escapes shown instead.
#[test]
fn control_characters_are_shown_escaped() {
    let (code, stderr) = validate("tests/fixtures/invalid/issue9_control_char.yaml");
    assert_eq!(code, 1);
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
    assert!(stderr.contains("\\x1b"), "{stderr}");
}

/// issue 9 item 7: a file with a problem in every entry stops after 100 and says how many
/// more there are.
#[test]
fn after_100_problems_the_rest_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.yaml");
    let mut text = String::from("tenant: coho.onmicrosoft.com\nusers:\n");
    for i in 0..250 {
        text.push_str(&format!("  u{i:03}@coho.com: {{licence: basic}}\n"));
    }
    std::fs::write(&file, text).unwrap();
    let (code, stderr) = validate(file.to_str().unwrap());
    assert_eq!(code, 1);
    assert_eq!(
        stderr.matches(": error: unknown field `licence`").count(),
        100
    );
    assert!(
        stderr.contains("... and 150 more problem(s) not shown"),
        "{stderr}"
    );
}
