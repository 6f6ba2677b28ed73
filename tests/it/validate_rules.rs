//! The service's rules (domain.md ids) through the library: `desired::validate::validate` is
//! pure, `desired::load::load_str` adds parsing and locations. Table-driven: each case is a
//! small file, the rule it breaks, the YAML path and line of the diagnostic; and the
//! case's fix, which must make the diagnostic go away (so that no rule fires on valid input).

use crmctl::desired::load::{load_str, locate, Source};
use crmctl::desired::validate::validate;
use crmctl::desired::Desired;
use crmctl::diag::{Diagnostic, Severity};
use crmctl::domain::syntax;

const BASE: &str = "\
tenant: coho.onmicrosoft.com
licenses:
  professional: 5
security_groups:
  sales:
    members: [ana@coho.com]
users:
  ana@coho.com:
    license: professional
    roles:
      sales: [Salesperson]
instances:
  sales:
    name: Sales
    url: cohosales
    type: production
    currency: USD
  dev:
    name: Dev
    url: cohodev
    type: sandbox
";

struct Case {
    name: &'static str,
    /// Replace `from` by `to` in BASE to break the rule...
    from: &'static str,
    to: &'static str,
    rule: &'static str,
    severity: Severity,
    address: &'static str,
    /// 1-based line of the diagnostic in the broken text.
    line: u32,
}

const CASES: &[Case] = &[
    Case { name: "T1 tenant domain", from: "tenant: coho.onmicrosoft.com", to: "tenant: coho.com", rule: "T1", severity: Severity::Error, address: "tenant", line: 1 },
    Case { name: "T3 assigned over purchased", from: "professional: 5", to: "professional: 0", rule: "T3", severity: Severity::Error, address: "licenses.professional", line: 3 },
    Case { name: "T5 add-ons need pro licenses", from: "  professional: 5\n", to: "  basic: 5\n", rule: "T5", severity: Severity::Error, address: "licenses", line: 2 },
    Case { name: "P1 user principal name", from: "  ana@coho.com:\n", to: "  ana: {}\n  ana@coho.com:\n", rule: "P1", severity: Severity::Error, address: "users.ana", line: 8 },
    Case { name: "P2 roles in an undeclared instance", from: "sales: [Salesperson]", to: "sale: [Salesperson]", rule: "P2", severity: Severity::Error, address: "users.ana@coho.com.roles.sale", line: 11 },
    Case { name: "P2 roles without license", from: "    license: professional\n", to: "", rule: "P2", severity: Severity::Warning, address: "users.ana@coho.com.roles", line: 9 },
    Case { name: "P3 licensed application user", from: "    license: professional\n", to: "    license: professional\n    access_mode: application\n", rule: "P3", severity: Severity::Error, address: "users.ana@coho.com.license", line: 9 },
    // P3: an application id is a GUID, and only application users have one.
    Case { name: "P3 application id on a directory user", from: "    license: professional\n", to: "    license: professional\n    application_id: 8f3c2a1e-5b7d-4c9a-a2e1-3d4f5a6b7c8d\n", rule: "P3", severity: Severity::Error, address: "users.ana@coho.com.application_id", line: 10 },
    Case { name: "P3 application id not a GUID", from: "    license: professional\n", to: "    access_mode: application\n    application_id: 8f3c2a1e-5b7d\n", rule: "P3", severity: Severity::Error, address: "users.ana@coho.com.application_id", line: 10 },
    // issue 12 item 4: a usage location is an ISO 3166-1 alpha-2 code.
    Case { name: "P1 usage location", from: "    license: professional\n", to: "    license: professional\n    usage_location: UK\n", rule: "P1", severity: Severity::Error, address: "users.ana@coho.com.usage_location", line: 10 },
    Case { name: "P6 one global admin", from: "    license: professional\n", to: "    license: professional\n    admin_roles: [global_admin]\n", rule: "P6", severity: Severity::Warning, address: "users", line: 7 },
    Case { name: "I3 ISO 4217", from: "currency: USD", to: "currency: DOLLAR", rule: "I3", severity: Severity::Error, address: "instances.sales.currency", line: 17 },
    Case { name: "I5 URL syntax", from: "url: cohodev", to: "url: coho.dev", rule: "I5", severity: Severity::Error, address: "instances.dev.url", line: 20 },
    Case { name: "I5 URL unique", from: "url: cohodev", to: "url: cohosales", rule: "I5", severity: Severity::Error, address: "instances.sales.url", line: 15 },
    Case { name: "I10 admin mode on production", from: "    currency: USD\n", to: "    currency: USD\n    admin_mode: {enabled: true}\n", rule: "I10", severity: Severity::Error, address: "instances.sales.admin_mode", line: 18 },
    Case { name: "I10 background operations", from: "    type: sandbox\n", to: "    type: sandbox\n    admin_mode: {enabled: false, background_operations: false}\n", rule: "I10", severity: Severity::Error, address: "instances.dev.admin_mode.background_operations", line: 22 },
    Case { name: "I11 copy onto production", from: "    currency: USD\n", to: "    currency: USD\n    copy_from: {instance: dev, kind: full}\n", rule: "I11", severity: Severity::Error, address: "instances.sales.copy_from", line: 18 },
    Case { name: "I11 copy from undeclared", from: "    type: sandbox\n", to: "    type: sandbox\n    copy_from: {instance: nope, kind: full}\n", rule: "I11", severity: Severity::Error, address: "instances.dev.copy_from.instance", line: 22 },
    // issue 10 item 5: a copy brings the source's currency and language (I3, I11).
    Case { name: "I11 copy with another currency", from: "    type: sandbox\n", to: "    type: sandbox\n    copy_from: {instance: sales, kind: full}\n    currency: EUR\n", rule: "I11", severity: Severity::Error, address: "instances.dev.currency", line: 23 },
    Case { name: "I12 undeclared group", from: "    type: sandbox\n", to: "    type: sandbox\n    security_group: devs\n", rule: "I12", severity: Severity::Error, address: "instances.dev.security_group", line: 22 },
    Case { name: "I12 undeclared member", from: "members: [ana@coho.com]", to: "members: [ana@coho.com, bob@coho.com]", rule: "I12", severity: Severity::Error, address: "security_groups.sales.members[1]", line: 6 },
    Case { name: "I13 recipient address", from: "    type: sandbox\n", to: "    type: sandbox\n    notification_recipients: [admins]\n", rule: "I13", severity: Severity::Error, address: "instances.dev.notification_recipients[0]", line: 22 },
    Case { name: "I13 duplicate recipient", from: "    type: sandbox\n", to: "    type: sandbox\n    notification_recipients: [a@coho.com, A@coho.com]\n", rule: "I13", severity: Severity::Warning, address: "instances.dev.notification_recipients[1]", line: 22 },
    Case { name: "U1 version", from: "    type: sandbox\n", to: "    type: sandbox\n    update: {target_version: '8.1', preferred: '2016-05-14T22:00:00Z', alternate: '2016-05-21T22:00:00Z'}\n", rule: "U1", severity: Severity::Error, address: "instances.dev.update.target_version", line: 22 },
    Case { name: "U3 date", from: "    type: sandbox\n", to: "    type: sandbox\n    update: {target_version: 8.1.0, preferred: '2016-05-14', alternate: '2016-05-21T22:00:00Z'}\n", rule: "U3", severity: Severity::Error, address: "instances.dev.update.preferred", line: 22 },
    Case { name: "U5 production before sandbox", from: "    currency: USD\n", to: "    currency: USD\n    update: {target_version: 8.1.0, preferred: '2016-05-14T22:00:00Z', alternate: '2016-05-21T22:00:00Z'}\n", rule: "U5", severity: Severity::Warning, address: "instances.sales.update.target_version", line: 18 },
];

fn parse(text: &str) -> Desired {
    crmctl::desired::load::from_yaml(text).unwrap()
}

/// BASE with `from` (which must be in it) replaced once by `to`.
fn mutated(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "`{from}` not in BASE");
    BASE.replacen(from, to, 1)
}

/// Every diagnostic of loading `text` as `t.yaml`, whether the load failed or not.
fn load_diagnostics(text: &str) -> Vec<Diagnostic> {
    match load_str("t.yaml", text.to_string()) {
        Ok(l) => l.diagnostics,
        Err(f) => f.diagnostics,
    }
}

#[test]
fn the_base_file_is_clean() {
    assert_eq!(validate(&parse(BASE)), vec![]);
    let loaded = load_str("base.yaml", BASE.to_string()).unwrap();
    assert!(loaded.diagnostics.is_empty());
}

#[test]
fn each_rule_fires_where_it_should() {
    let mut failures = Vec::new();
    for c in CASES {
        let text = mutated(c.from, c.to);
        let diags = validate(&parse(&text));
        let hits: Vec<_> = diags
            .iter()
            .filter(|d| d.rule.as_deref() == Some(c.rule))
            .collect();
        let [d] = hits.as_slice() else {
            failures.push(format!(
                "{}: expected one {} diagnostic, got {diags:#?}",
                c.name, c.rule
            ));
            continue;
        };
        if d.severity != c.severity || d.address.as_deref() != Some(c.address) || d.hint.is_none() {
            failures.push(format!("{}: got {d:#?}", c.name));
        }
        // Located on the right line, by load_str and by the public locate().
        let via_load = load_diagnostics(&text);
        let located = via_load
            .iter()
            .find(|x| x.rule.as_deref() == Some(c.rule))
            .and_then(|x| x.location.clone());
        if located.as_ref().map(|l| l.line) != Some(c.line) {
            failures.push(format!(
                "{}: located at {located:?}, expected line {}",
                c.name, c.line
            ));
        }
        let src = Source {
            path: "t.yaml".into(),
            text: text.clone(),
        };
        if locate(&src, c.address).map(|l| l.line) != Some(c.line) {
            failures.push(format!(
                "{}: locate({}) is not line {}",
                c.name, c.address, c.line
            ));
        }
        // Errors fail the load; warnings do not.
        let failed = load_str("t.yaml", text).is_err();
        if failed != (c.severity == Severity::Error) {
            failures.push(format!("{}: load failed = {failed}", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// issue 12 item 4: usage locations (Graph `usageLocation`, ISO 3166-1 alpha-2): each bad
// code is an error at its line with a hint that names the fix.
#[test]
fn usage_location_codes_and_hints() {
    for (code, hint) in [
        ("US", None),
        ("JP", None),
        ("us", Some("did you mean `US`?")),
        ("UK", Some("did you mean `GB`?")),
        ("De", Some("did you mean `DE`?")),
        ("USA", Some("e.g. US, DE, GB")),
        ("ZZ", Some("e.g. US, DE, GB")),
        ("''", Some("e.g. US, DE, GB")),
    ] {
        let text = mutated(
            "    license: professional\n",
            &format!("    license: professional\n    usage_location: {code}\n"),
        );
        let diags = load_diagnostics(&text);
        let hit = diags
            .iter()
            .find(|d| d.address.as_deref() == Some("users.ana@coho.com.usage_location"));
        match hint {
            None => assert!(hit.is_none(), "{code}: {diags:#?}"),
            Some(h) => {
                let d = hit.unwrap_or_else(|| panic!("{code}: no diagnostic in {diags:#?}"));
                assert_eq!(d.severity, Severity::Error, "{code}");
                assert_eq!(d.location.as_ref().map(|l| l.line), Some(10), "{code}");
                assert!(
                    d.hint.as_deref().is_some_and(|x| x.contains(h)),
                    "{code}: {d:#?}"
                );
            }
        }
    }
}

#[test]
fn t7_instance_limits() {
    let mut text =
        String::from("tenant: coho.onmicrosoft.com\nlicenses: {enterprise: 10}\ninstances:\n");
    for i in 0..50 {
        text.push_str(&format!(
            "  p{i}: {{name: P, url: p{i}, type: production}}\n"
        ));
    }
    for i in 0..75 {
        text.push_str(&format!("  s{i}: {{name: S, url: s{i}, type: sandbox}}\n"));
    }
    assert_eq!(
        validate(&parse(&text)),
        vec![],
        "50 + 75 is the limit, not over it"
    );
    text.push_str(
        "  p50: {name: P, url: p50, type: production}\n  s75: {name: S, url: s75, type: sandbox}\n",
    );
    let d = validate(&parse(&text));
    let t7: Vec<_> = d
        .iter()
        .filter(|d| d.rule.as_deref() == Some("T7"))
        .collect();
    assert_eq!(t7.len(), 2, "{d:#?}");
    assert!(t7[0].message.contains("51 production") && t7[1].message.contains("76 sandbox"));
}

#[test]
fn p3_at_most_five_non_interactive_users_per_instance() {
    let doc = |n: usize| {
        let mut t = String::from("tenant: coho.onmicrosoft.com\nusers:\n");
        for i in 0..n {
            t.push_str(&format!("  bot{i}@coho.com: {{access_mode: non-interactive, roles: {{sales: [Integration]}}}}\n"));
        }
        // Application users never count (P3).
        for i in 0..10 {
            t.push_str(&format!("  app{i}@coho.com: {{access_mode: application, roles: {{sales: [Integration]}}}}\n"));
        }
        t.push_str("instances:\n  sales: {name: S, url: s, type: production}\n");
        validate(&parse(&t))
    };
    assert_eq!(doc(5), vec![]);
    let d = doc(6);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].rule.as_deref(), Some("P3"));
    assert_eq!(
        d[0].address.as_deref(),
        Some("users.bot5@coho.com.roles.sales")
    );
}

#[test]
fn u3_alternate_must_follow_preferred() {
    let doc = |p: &str, a: &str| {
        validate(&parse(&format!(
            "tenant: coho.onmicrosoft.com\ninstances:\n  s:\n    name: S\n    url: s\n    type: production\n    update: {{target_version: 8.1.0, preferred: '{p}', alternate: '{a}'}}\n"
        )))
    };
    assert_eq!(doc("2016-05-14T22:00:00Z", "2016-05-21T22:00:00Z"), vec![]);
    for (p, a) in [
        ("2016-05-21T22:00:00Z", "2016-05-14T22:00:00Z"),
        ("2016-05-14T22:00:00Z", "2016-05-14T22:00:00Z"),
    ] {
        let d = doc(p, a);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].rule.as_deref(), Some("U3"));
        assert_eq!(
            d[0].address.as_deref(),
            Some("instances.s.update.alternate")
        );
    }
    // Not a real date, or not UTC.
    for bad in [
        "2016-02-30T22:00:00Z",
        "2016-05-14T22:00:00+02:00",
        "2016-05-14 22:00:00Z",
    ] {
        let d = doc(bad, "2016-05-21T22:00:00Z");
        assert!(
            d.iter().any(|x| x.rule.as_deref() == Some("U3")),
            "{bad}: {d:#?}"
        );
    }
}

#[test]
fn group_members_are_checked_in_linear_time_with_duplicates_warned() {
    // 20,000 members of one group, every one declared, one listed twice.
    let mut t =
        String::from("tenant: coho.onmicrosoft.com\nsecurity_groups:\n  all:\n    members:\n");
    for i in 0..20_000 {
        t.push_str(&format!("      - u{i}@coho.com\n"));
    }
    t.push_str("      - u7@coho.com\nusers:\n");
    for i in 0..20_000 {
        t.push_str(&format!("  u{i}@coho.com: {{}}\n"));
    }
    let d = validate(&parse(&t));
    assert_eq!(d.len(), 1, "{:#?}", &d[..d.len().min(3)]);
    assert_eq!(
        d[0].address.as_deref(),
        Some("security_groups.all.members[20000]")
    );
    assert_eq!(d[0].severity, Severity::Warning);
}

/// A clash of names the service compares without regard to case: every entry involved,
/// with its YAML path and line.
struct Clash {
    name: &'static str,
    from: &'static str,
    to: &'static str,
    rule: &'static str,
    at: &'static [(&'static str, u32)],
}

// issue 9 item 2 (P1, I12): keys and names that differ only in case are one identity for
// the service, so two of them in a file are an error at each entry (every line involved is
// shown). Before, `Ana@coho.com` next to `ana@coho.com` validated and failed at apply.
const CLASHES: &[Clash] = &[
    Clash {
        name: "P1 two user keys differing in case",
        from: "users:\n  ana@coho.com:\n",
        to: "users:\n  Ana@coho.com: {}\n  ana@coho.com:\n",
        rule: "P1",
        at: &[("users.Ana@coho.com", 8), ("users.ana@coho.com", 9)],
    },
    Clash {
        name: "P1 three spellings, none lower case",
        from: "users:\n  ana@coho.com:\n",
        to: "users:\n  ANA@coho.com: {}\n  Ana@coho.com: {}\n  aNa@coho.com:\n",
        rule: "P1",
        at: &[
            ("users.ANA@coho.com", 8),
            ("users.Ana@coho.com", 9),
            ("users.aNa@coho.com", 10),
        ],
    },
    Clash {
        name: "I12 group keys as display names differing in case",
        from: "security_groups:\n  sales:\n",
        to: "security_groups:\n  Sales: {}\n  sales:\n",
        rule: "I12",
        at: &[("security_groups.Sales", 5), ("security_groups.sales", 6)],
    },
    Clash {
        name: "I12 display names differing in case",
        from: "security_groups:\n  sales:\n",
        to: "security_groups:\n  team: {name: Sales}\n  sales:\n    name: SALES\n",
        rule: "I12",
        at: &[
            ("security_groups.sales.name", 7),
            ("security_groups.team.name", 5),
        ],
    },
    Clash {
        name: "I12 the same display name twice (exact repeats are one check with case)",
        from: "security_groups:\n  sales:\n",
        to: "security_groups:\n  team: {name: Sales}\n  sales:\n    name: Sales\n",
        rule: "I12",
        at: &[
            ("security_groups.sales.name", 7),
            ("security_groups.team.name", 5),
        ],
    },
    Clash {
        name: "I12 group keys differing in case, names distinct",
        from: "security_groups:\n  sales:\n",
        to: "security_groups:\n  Sales: {name: One}\n  sales:\n    name: Two\n",
        rule: "I12",
        at: &[("security_groups.Sales", 5), ("security_groups.sales", 6)],
    },
];

#[test]
fn identities_differing_only_in_case_are_an_error_at_each_entry() {
    let mut failures = Vec::new();
    for c in CLASHES {
        let text = mutated(c.from, c.to);
        let diags = load_diagnostics(&text);
        let mut got: Vec<(String, u32)> = diags
            .iter()
            .filter(|d| d.rule.as_deref() == Some(c.rule) && d.is_error())
            .map(|d| {
                (
                    d.address.clone().unwrap_or_default(),
                    d.location.as_ref().map_or(0, |l| l.line),
                )
            })
            .collect();
        got.sort();
        let mut want: Vec<(String, u32)> = c.at.iter().map(|(a, l)| (a.to_string(), *l)).collect();
        want.sort();
        if got != want {
            failures.push(format!(
                "{}: got {got:?}, want {want:?}\n{diags:#?}",
                c.name
            ));
        }
        if diags
            .iter()
            .any(|d| d.hint.is_none() && d.rule.as_deref() == Some(c.rule))
        {
            failures.push(format!("{}: a diagnostic without a hint", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A member spelled in another case than its user's key is named as that user.
    let text = BASE.replacen("members: [ana@coho.com]", "members: [ANA@COHO.COM]", 1);
    let d = validate(&parse(&text));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(
        d[0].hint.as_deref().unwrap().contains("`ana@coho.com`"),
        "{:?}",
        d[0].hint
    );
    // The base file (all keys lower case) has no clash, and 20,000 distinct keys with
    // capitals neither.
    let mut t = String::from("tenant: coho.onmicrosoft.com\nusers:\n");
    for i in 0..20_000 {
        t.push_str(&format!("  User{i}@Coho.com: {{}}\n"));
    }
    assert_eq!(validate(&parse(&t)), vec![]);
}

#[test]
fn patterns_match_their_rust_matchers() {
    use regex::Regex;
    type Matcher = fn(&str) -> bool;
    let pairs: [(&str, Matcher); 6] = [
        (syntax::URL_NAME_PATTERN, syntax::is_url_name),
        (syntax::CURRENCY_PATTERN, syntax::is_currency_syntax),
        (syntax::EMAIL_PATTERN, syntax::is_email),
        (syntax::TENANT_PATTERN, syntax::is_tenant_domain),
        (syntax::VERSION_PATTERN, syntax::is_version),
        (syntax::GUID_PATTERN, syntax::is_guid),
    ];
    let samples = [
        "",
        "a",
        "A",
        "-a",
        "a-",
        "a-b",
        "cohowinerysales",
        "coho_sales",
        "coho.sales",
        "USD",
        "usd",
        "US",
        "EURO",
        "ana@coho.com",
        "ana@coho",
        "ana.b@x.co.uk",
        ".ana@x.com",
        "ana..b@x.com",
        "ana@-x.com",
        "ana@x-.com",
        "a+b@x.com",
        "ana@@x.com",
        "ana @x.com",
        "coho.onmicrosoft.com",
        "Coho.onmicrosoft.com",
        "-coho.onmicrosoft.com",
        "coho-.onmicrosoft.com",
        ".onmicrosoft.com",
        "8.1.0",
        "8.1",
        "8.1.0.1234",
        "8.1.0.",
        "v8.1.0",
        "8.1.0.1.2",
        "é@x.com",
        "a@é.com",
        &"a".repeat(63),
        &"a".repeat(64),
        "8f3c2a1e-5b7d-4c9a-a2e1-3d4f5a6b7c8d",
        "8F3C2A1E-5B7D-4C9A-A2E1-3D4F5A6B7C8D",
        "8f3c2a1e5b7d4c9aa2e13d4f5a6b7c8d",
        "8f3c2a1e-5b7d-4c9a-a2e1-3d4f5a6b7c8",
        "8f3c2a1e-5b7d-4c9a-a2e1-3d4f5a6b7c8g",
        "{8f3c2a1e-5b7d-4c9a-a2e1-3d4f5a6b7c8d}",
    ];
    for (pattern, f) in pairs {
        let re = Regex::new(pattern).unwrap();
        for s in samples {
            assert_eq!(
                re.is_match(s),
                f(s),
                "pattern {pattern} vs matcher on {s:?}"
            );
        }
    }
}

mod equivalence {
    use proptest::prelude::*;
    use regex::Regex;

    use super::syntax;

    proptest! {
        #[test]
        fn email_matcher_equals_its_pattern(s in "[a-zA-Z0-9.@_+-]{0,24}") {
            let re = Regex::new(syntax::EMAIL_PATTERN).unwrap();
            prop_assert_eq!(re.is_match(&s), syntax::is_email(&s));
        }

        #[test]
        fn url_matcher_equals_its_pattern(s in "[a-zA-Z0-9._-]{0,12}") {
            let re = Regex::new(syntax::URL_NAME_PATTERN).unwrap();
            prop_assert_eq!(re.is_match(&s), syntax::is_url_name(&s));
        }

        #[test]
        fn version_matcher_equals_its_pattern(s in "[0-9.v]{0,10}") {
            let re = Regex::new(syntax::VERSION_PATTERN).unwrap();
            prop_assert_eq!(re.is_match(&s), syntax::is_version(&s));
        }
    }
}

/// issue 10 item 9 (I10): a production instance may state the production default of
/// administration mode (a sandbox becoming production says so); anything else is an error.
/// issue 10 item 5 (I3/I11): the same source currency and language are accepted on a copy.
#[test]
fn i10_production_default_admin_mode_and_i11_matching_copy_are_valid() {
    let ok = BASE.replace(
        "    currency: USD\n",
        "    currency: USD\n    language: 1036\n    admin_mode: {enabled: false, background_operations: true}\n",
    );
    assert_eq!(validate(&parse(&ok)), vec![]);
    let copy = ok.replace(
        "    type: sandbox\n",
        "    type: sandbox\n    copy_from: {instance: sales, kind: full}\n    currency: USD\n    language: 1036\n",
    );
    assert_eq!(validate(&parse(&copy)), vec![]);
    let bad_lang = copy.replace(
        "kind: full}\n    currency: USD\n    language: 1036",
        "kind: full}\n    currency: USD\n    language: 1033",
    );
    assert_ne!(bad_lang, copy);
    let d = validate(&parse(&bad_lang));
    assert!(
        d.iter().any(|d| d.rule.as_deref() == Some("I11")
            && d.address.as_deref() == Some("instances.dev.language")),
        "{d:#?}"
    );
    for bad in [
        "{enabled: false, background_operations: true, message: hi}",
        "{enabled: true, background_operations: true}",
    ] {
        let f = BASE.replace(
            "    currency: USD\n",
            &format!("    currency: USD\n    admin_mode: {bad}\n"),
        );
        let d = validate(&parse(&f));
        assert!(
            d.iter().any(|d| d.rule.as_deref() == Some("I10")),
            "{bad}: {d:#?}"
        );
    }
}

/// issue 9 (done-when): mutated example files (YAML and their JSON forms) never panic the
/// loader, and every diagnostic of a load is located. Precisely: for every diagnostic of a
/// failed load (and every warning of a successful one), `location` is present, names the
/// loaded path, and `1 <= line <= L + 1` and `1 <= column <= C + 1`, where L is the number of
/// lines of the text as the loader reads it (LF, CRLF or CR line ends, a leading BOM
/// dropped; the lossy text for non-UTF-8 input) and C the number of characters of that
/// line (line L + 1 is the end of the file, column C + 1 the end of its line).
///
/// 10,000 cases with a fixed count (CI sets `PROPTEST_RNG_SEED`); the library is called
/// in-process (`desired::load::load_bytes`), not the binary.
mod load_fuzz {
    use proptest::prelude::*;

    use crmctl::desired::load::{load_bytes, Source};
    use crmctl::diag::Diagnostic;

    const EXAMPLES: [(&str, &str); 3] = [
        (
            "coho-winery",
            include_str!("../../examples/coho-winery.yaml"),
        ),
        ("minimal", include_str!("../../examples/minimal.yaml")),
        (
            "multi-region",
            include_str!("../../examples/multi-region.yaml"),
        ),
    ];

    /// (path, bytes) of every example in YAML and as pretty JSON.
    fn sources() -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (name, yaml) in EXAMPLES {
            out.push((format!("{name}.yaml"), yaml.as_bytes().to_vec()));
            let value: serde_json::Value = crmctl::desired::load::from_yaml(yaml).unwrap();
            let json = serde_json::to_string_pretty(&value).unwrap();
            out.push((format!("{name}.json"), json.into_bytes()));
        }
        out
    }

    /// Inserted characters: controls, bidi, BOM, separators, a tab, a lone surrogate's
    /// neighbours, quotes and YAML indicators.
    const INSERTS: [&str; 16] = [
        "\0", "\u{1b}", "\r", "\t", "\u{7f}", "\u{85}", "\u{202e}", "\u{2066}", "\u{feff}",
        "\u{2028}", "\u{ffff}", "\"", "'", ": ", "- ", "!",
    ];

    #[derive(Debug, Clone)]
    enum Mutation {
        FlipByte(usize, u8),
        DeleteLine(usize),
        DuplicateLine(usize),
        Truncate(usize),
        Insert(usize, usize),
        SwapValues(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 1u8..=255).prop_map(|(p, m)| Mutation::FlipByte(p, m)),
            any::<usize>().prop_map(Mutation::DeleteLine),
            any::<usize>().prop_map(Mutation::DuplicateLine),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 0..INSERTS.len()).prop_map(|(p, i)| Mutation::Insert(p, i)),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapValues(a, b)),
        ]
    }

    /// Byte ranges of the lines (without their ends).
    fn lines(b: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, &c) in b.iter().enumerate() {
            if c == b'\n' {
                out.push((start, i));
                start = i + 1;
            }
        }
        if start < b.len() {
            out.push((start, b.len()));
        }
        out
    }

    fn apply(b: &mut Vec<u8>, m: &Mutation) {
        let ls = lines(b);
        match *m {
            Mutation::FlipByte(p, mask) if !b.is_empty() => {
                let p = p % b.len();
                b[p] ^= mask;
            }
            Mutation::DeleteLine(l) if !ls.is_empty() => {
                let (s, e) = ls[l % ls.len()];
                b.drain(s..(e + 1).min(b.len()));
            }
            Mutation::DuplicateLine(l) if !ls.is_empty() => {
                let (s, e) = ls[l % ls.len()];
                let mut line = b[s..e].to_vec();
                line.push(b'\n');
                b.splice(s..s, line);
            }
            Mutation::Truncate(p) => b.truncate(p % (b.len() + 1)),
            Mutation::Insert(p, i) => {
                let p = p % (b.len() + 1);
                b.splice(p..p, INSERTS[i].bytes());
            }
            Mutation::SwapValues(x, y) => {
                // The text after `: ` on two lines (YAML `key: value`, JSON `"k": v,`).
                let values: Vec<(usize, usize)> = ls
                    .iter()
                    .filter_map(|&(s, e)| {
                        let line = &b[s..e];
                        let i = line.windows(2).position(|w| w == b": ")?;
                        Some((s + i + 2, e))
                    })
                    .collect();
                if values.len() >= 2 {
                    let (a, c) = (values[x % values.len()], values[y % values.len()]);
                    let (first, second) = if a.0 <= c.0 { (a, c) } else { (c, a) };
                    if first != second {
                        let va = b[first.0..first.1].to_vec();
                        let vb = b[second.0..second.1].to_vec();
                        b.splice(second.0..second.1, va);
                        b.splice(first.0..first.1, vb);
                    }
                }
            }
            _ => {}
        }
    }

    /// The lines as the loader counts them (see the module docs).
    fn loader_lines(src: &Source) -> Vec<usize> {
        let mut out = Vec::new();
        let mut n = 0;
        let mut chars = src.text.chars().peekable();
        let mut any = false;
        while let Some(c) = chars.next() {
            any = true;
            match c {
                '\r' => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    out.push(n);
                    n = 0;
                    any = false;
                }
                '\n' => {
                    out.push(n);
                    n = 0;
                    any = false;
                }
                _ => n += 1,
            }
        }
        if any {
            out.push(n);
        }
        out
    }

    fn unlocated(path: &str, src: &Source, diags: &[Diagnostic]) -> Option<String> {
        let lines = loader_lines(src);
        for d in diags {
            let Some(l) = &d.location else {
                return Some(format!("no location: {d:?}"));
            };
            let width = lines.get(l.line as usize - 1).copied().unwrap_or(0);
            if l.file != path
                || l.line < 1
                || l.line as usize > lines.len() + 1
                || l.column < 1
                || l.column as usize > width + 1
            {
                return Some(format!(
                    "location out of the text ({} lines, this one {width} characters): {d:?}",
                    lines.len()
                ));
            }
        }
        None
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 10_000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn mutated_examples_never_panic_and_every_diagnostic_is_located(
            which in 0usize..6,
            mutations in proptest::collection::vec(mutation(), 1..4),
        ) {
            let all = sources();
            let (path, mut bytes) = all[which].clone();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            let (src, diags) = match load_bytes(&path, bytes) {
                Ok(l) => (l.src, l.diagnostics),
                Err(f) => {
                    prop_assert!(f.diagnostics.iter().any(Diagnostic::is_error));
                    (f.src, f.diagnostics)
                }
            };
            if let Some(problem) = unlocated(&path, &src, &diags) {
                prop_assert!(false, "{problem}\n--- text:\n{}", src.text);
            }
        }
    }
}

/// issue 9 items 6, 8 and 10: input accepted silently (or reported without a place) before,
/// refused now with a located error. Each case: a file (BASE with one replacement, or a
/// whole text), a substring of the message, and every (line, column) expected among the
/// errors.
#[test]
fn issue9_refused_and_located() {
    struct C {
        name: &'static str,
        path: &'static str,
        text: String,
        message: &'static str,
        at: &'static [(u32, u32)],
    }
    let base = mutated;
    let long_local = format!("{}@coho.com", "a".repeat(65));
    let long_domain = format!("ana@{}.com", "d".repeat(250));
    let cases = vec![
        // item 10
        C { name: "duplicate role (case-insensitive)", path: "t.yaml", text: base("sales: [Salesperson]", "sales: [Salesperson, salesperson]"), message: "listed twice", at: &[(11, 28)] },
        C { name: "duplicate admin role", path: "t.yaml", text: base("    license: professional\n", "    license: professional\n    admin_roles: [global_admin, billing_admin, billing_admin]\n"), message: "admin role `billing_admin` is listed twice", at: &[(10, 48)] },
        C { name: "application tag", path: "t.yaml", text: base("tenant: coho.onmicrosoft.com", "tenant: !custom coho.onmicrosoft.com"), message: "unsupported tag", at: &[(1, 17)] },
        C { name: "python tag", path: "t.yaml", text: base("    name: Dev\n", "    name: !!python/object:os.system Dev\n"), message: "unsupported tag", at: &[(19, 37)] },
        C { name: "YAML 1.1 boolean", path: "t.yaml", text: base("    type: sandbox\n", "    type: sandbox\n    protect: no\n"), message: "expected `true` or `false`", at: &[(22, 14)] },
        C { name: "YAML 1.1 boolean on", path: "t.yaml", text: base("    type: sandbox\n", "    type: sandbox\n    protect: on\n"), message: "expected `true` or `false`", at: &[(22, 14)] },
        C { name: "count with underscore", path: "t.yaml", text: base("professional: 5", "professional: 1_000"), message: "plain decimal digits", at: &[(3, 17)] },
        C { name: "octal count", path: "t.yaml", text: base("professional: 5", "professional: 0o12"), message: "plain decimal digits", at: &[(3, 17)] },
        C { name: "quoted count", path: "t.yaml", text: base("professional: 5", "professional: \"5\""), message: "plain decimal digits", at: &[(3, 17)] },
        C { name: "hex language", path: "t.yaml", text: base("    currency: USD\n", "    currency: USD\n    language: 0x409\n"), message: "plain decimal digits", at: &[(18, 15)] },
        C { name: "two merge keys", path: "t.yaml", text: base("  sales:\n    name: Sales\n", "  sales: &s\n    name: Sales\n").replacen("  dev:\n    name: Dev\n", "  dev:\n    <<: *s\n    <<: {purpose: x}\n    name: Dev\n", 1), message: "two merge keys", at: &[(20, 5)] },
        C { name: "UPN local part over 64", path: "t.yaml", text: base("  ana@coho.com:\n", &format!("  {long_local}: {{}}\n  ana@coho.com:\n")), message: "too long", at: &[(8, 3)] },
        C { name: "UPN over 254", path: "t.yaml", text: base("  ana@coho.com:\n", &format!("  {long_domain}: {{}}\n  ana@coho.com:\n")), message: "too long", at: &[(8, 3)] },
        C { name: "two groups, one display name (both lines)", path: "t.yaml", text: base("users:\n", "  crew:\n    name: SALES\nusers:\n"), message: "as does", at: &[(5, 3), (8, 5)] },
        // item 6
        C { name: "ESC in a name", path: "t.yaml", text: base("name: Sales", "name: \"Sales\\e]0;pwned\\a\""), message: "control character (`\\x1b`)", at: &[(14, 5)] },
        C { name: "CR in a name", path: "t.yaml", text: base("name: Sales", "name: \"Sa\\rles\""), message: "(`\\r`)", at: &[(14, 5)] },
        C { name: "NUL in a role", path: "t.yaml", text: base("sales: [Salesperson]", "sales: [\"Sales\\0person\"]"), message: "(`\\x00`)", at: &[(11, 15)] },
        C { name: "DEL in a group name", path: "t.yaml", text: base("  sales:\n    members", "  sales:\n    name: \"x\\x7f\"\n    members"), message: "(`\\x7f`)", at: &[(6, 5)] },
        C { name: "C1 (NEL) in a purpose", path: "t.yaml", text: base("    type: sandbox\n", "    type: sandbox\n    purpose: \"a\\Nb\"\n"), message: "(`\\u{85}`)", at: &[(22, 5)] },
        C { name: "bidi override in a user key", path: "t.yaml", text: base("  ana@coho.com:\n", "  \"an\u{202e}a@coho.com\": {}\n  ana@coho.com:\n"), message: "bidirectional", at: &[(8, 3)] },
        C { name: "bidi isolate in an instance name", path: "t.yaml", text: base("name: Dev", "name: \"De\u{2066}v\""), message: "(`\\u{2066}`)", at: &[(19, 5)] },
        C { name: "ESC in a multi-line description", path: "t.yaml", text: base("  sales:\n    members", "  sales:\n    description: \"line one\\n\\ttwo \\e[2J\"\n    members"), message: "(`\\x1b`)", at: &[(6, 5)] },
        // item 8
        C { name: "url .inf located", path: "t.yaml", text: base("url: cohodev", "url: .inf"), message: "not a valid host name", at: &[(20, 5)] },
        C { name: "1e400 located (YAML)", path: "t.yaml", text: base("professional: 5", "professional: 1e400"), message: "whole number", at: &[(3, 17)] },
        C { name: "1e400 located (JSON)", path: "t.json", text: "{\"tenant\": \"coho.onmicrosoft.com\",\n \"licenses\": {\"basic\": 1e400}}".into(), message: "not finite or too large", at: &[(2, 24)] },
        C { name: "JSON \\uFFFF keeps locations", path: "t.json", text: "{\"tenant\": \"coho.onmicrosoft.com\",\n \"instances\": {\"a\": {\"name\": \"\\uFFFF\", \"url\": \"A\", \"type\": \"sandbox\"}}}".into(), message: "not a valid host name", at: &[(2, 40)] },
        C { name: "raw U+FFFF in a JSON string", path: "t.json", text: "{\"tenant\": \"coho.onmicrosoft.com\",\n \"instances\": {\"a\": {\"name\": \"x\u{ffff}\", \"url\": \"A\", \"type\": \"sandbx\"}}}".into(), message: "unknown value `sandbx`", at: &[(2, 56)] },
        C { name: "CR-only line ends", path: "t.yaml", text: base("url: cohodev", "url: Cohodev").replace('\n', "\r"), message: "not a valid host name", at: &[(20, 5)] },
        C { name: "comment first, CR-only", path: "t.yaml", text: format!("# tenant\r{}", base("url: cohodev", "url: Cohodev").replace('\n', "\r")), message: "not a valid host name", at: &[(21, 5)] },
        C { name: "tab on its own line", path: "t.yaml", text: base("    type: sandbox\n", "    type: sandbox\n\t\n    purpose: x\n\tregion: NA\n"), message: "tab", at: &[(24, 1)] },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let got = match crmctl::desired::load::load_bytes(c.path, c.text.clone().into_bytes()) {
            Ok(_) => {
                failures.push(format!("{}: loaded without error", c.name));
                continue;
            }
            Err(f) => f.diagnostics,
        };
        let hits: Vec<(u32, u32)> = got
            .iter()
            .filter(|d| d.is_error() && d.message.contains(c.message) && d.hint.is_some())
            .filter_map(|d| d.location.as_ref().map(|l| (l.line, l.column)))
            .collect();
        if hits != c.at {
            failures.push(format!(
                "{}: expected {:?}, got {hits:?} in {got:#?}",
                c.name, c.at
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// issue 9 item 8: a UTF-8 byte order mark is accepted in YAML and JSON; non-UTF-8 bytes
/// are reported at the line and column of the first bad byte.
#[test]
fn issue9_bom_and_non_utf8() {
    use crmctl::desired::load::load_bytes;
    for (path, text) in [
        ("t.yaml", format!("\u{feff}{BASE}")),
        (
            "t.json",
            "\u{feff}{\"tenant\": \"coho.onmicrosoft.com\"}".to_string(),
        ),
    ] {
        assert!(
            load_bytes(path, text.into_bytes()).is_ok(),
            "{path} with a BOM"
        );
    }
    let mut bytes = BASE.as_bytes().to_vec();
    let at = BASE.find("Dev").unwrap() + 1;
    bytes[at] = 0xff; // line 19: `    name: Dev`, the `e`
    let f = load_bytes("t.yaml", bytes).unwrap_err();
    let d = &f.diagnostics[0];
    assert!(
        d.message.contains("not UTF-8") && d.message.contains("0xff"),
        "{d:?}"
    );
    let l = d.location.as_ref().expect("located");
    assert_eq!((l.line, l.column), (19, 12));
}

/// issue 9 item 7: at most 100 diagnostics are described (the first ones in the file,
/// errors before warnings), the rest counted in `omitted`; structural (the slow path) and
/// semantic (validation) alike, YAML and JSON.
#[test]
fn issue9_at_most_100_diagnostics_then_the_rest_counted() {
    let mut structural = String::from("tenant: coho.onmicrosoft.com\nusers:\n");
    let mut semantic =
        String::from("tenant: coho.onmicrosoft.com\nlicenses: {basic: 300}\nusers:\n");
    let mut json = String::from("{\"tenant\": \"coho.onmicrosoft.com\", \"users\": {\n");
    for i in 0..300 {
        structural.push_str(&format!("  u{i:03}@coho.com: {{licence: basic}}\n"));
        semantic.push_str(&format!(
            "  u{i:03}@coho.com: {{license: basic, roles: {{nowhere: [X]}}}}\n"
        ));
        json.push_str(&format!(
            "{}\"u{i:03}@coho.com\": {{\"licence\": \"basic\"}}\n",
            if i == 0 { "" } else { "," }
        ));
    }
    json.push_str("}}\n");
    for (path, text, first_line) in [
        ("s.yaml", structural, 3),
        ("v.yaml", semantic, 4),
        ("s.json", json, 2),
    ] {
        let f = load_str(path, text).unwrap_err();
        assert_eq!(f.diagnostics.len(), 100, "{path}");
        assert_eq!(f.omitted, 200, "{path}");
        let lines: Vec<u32> = f
            .diagnostics
            .iter()
            .map(|d| d.location.as_ref().expect("located").line)
            .collect();
        assert_eq!(lines[0], first_line, "{path}");
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "{path}: {lines:?}");
    }
}

/// issue 9 item 8: every syntax error has a place AND says what to do (before, serde_json's
/// errors and YAML errors such as a raw control character came without a hint).
#[test]
fn issue9_syntax_errors_have_a_location_and_a_hint() {
    let cases = [
        (
            "raw ESC in YAML",
            "t.yaml",
            "tenant: coho.onmicrosoft.com\nusers:\n  ana@coho.com:\n    name: An\u{1b}a\n",
        ),
        (
            "unclosed YAML list",
            "t.yaml",
            "tenant: coho.onmicrosoft.com\nlicenses: [\n",
        ),
        (
            "JSON trailing comma",
            "t.json",
            "{\"tenant\": \"coho.onmicrosoft.com\",\n}",
        ),
        (
            "JSON missing colon",
            "t.json",
            "{\"tenant\" \"coho.onmicrosoft.com\"}",
        ),
        (
            "JSON cut short",
            "t.json",
            "{\"tenant\": \"coho.onmicrosoft.com\",\n \"users\": {",
        ),
        (
            "JSON raw control character",
            "t.json",
            "{\"tenant\": \"co\u{1}ho.onmicrosoft.com\"}",
        ),
        (
            "JSON after the document",
            "t.json",
            "{\"tenant\": \"coho.onmicrosoft.com\"} x",
        ),
    ];
    let mut failures = Vec::new();
    for (name, path, text) in cases {
        match crmctl::desired::load::load_bytes(path, text.as_bytes().to_vec()) {
            Ok(_) => failures.push(format!("{name}: loaded")),
            Err(f) => {
                for d in f.diagnostics.iter().filter(|d| d.is_error()) {
                    if d.location.is_none() || d.hint.is_none() {
                        failures.push(format!("{name}: {d:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 11 item 1/3: the texts of the reference hints and of a copy's currency and language
/// (now written once each in `desired::validate`) stay word for word what they were.
#[test]
fn reference_and_copy_texts_are_unchanged() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // (from, to, address, message, hint)
        (
            "      sales: [Salesperson]\n",
            "      sals: [Salesperson]\n",
            "users.ana@coho.com.roles.sals",
            "user `ana@coho.com` has roles in instance `sals`, which is not declared",
            "did you mean `sales`? roles are keyed by instance keys declared under `instances`",
        ),
        (
            "      sales: [Salesperson]\n",
            "      zzzzzzzz: [Salesperson]\n",
            "users.ana@coho.com.roles.zzzzzzzz",
            "user `ana@coho.com` has roles in instance `zzzzzzzz`, which is not declared",
            "roles are keyed by instance keys declared under `instances` (declared: `dev`, `sales`)",
        ),
        (
            "    currency: USD\n",
            "    currency: USD\n    security_group: sale\n",
            "instances.sales.security_group",
            "security group `sale` of instance `sales` is not declared",
            "did you mean `sales`? the value is a key under `security_groups`",
        ),
        (
            "    currency: USD\n",
            "    currency: USD\n    security_group: marketing\n",
            "instances.sales.security_group",
            "security group `marketing` of instance `sales` is not declared",
            "declare it under `security_groups:` (declared: `sales`), or omit `security_group` for none",
        ),
        (
            "    type: sandbox\n",
            "    type: sandbox\n    copy_from: {instance: sale, kind: full}\n",
            "instances.dev.copy_from.instance",
            "copy source `sale` is not a declared instance",
            "did you mean `sales`? the source is an instance key declared under `instances`",
        ),
        (
            "    type: sandbox\n",
            "    type: sandbox\n    copy_from: {instance: zzzzzzzz, kind: full}\n",
            "instances.dev.copy_from.instance",
            "copy source `zzzzzzzz` is not a declared instance",
            "the source is an instance key declared under `instances`",
        ),
        (
            "    type: sandbox\n",
            "    type: sandbox\n    currency: EUR\n    copy_from: {instance: sales, kind: full}\n",
            "instances.dev.currency",
            "instance `dev` is copied from `sales`, whose base currency is USD, and a copy brings the source's currency (I3), not EUR",
            "set `currency: USD`, or remove `currency` from this instance",
        ),
    ];
    let mut failures = Vec::new();
    for &(from, to, address, message, hint) in cases {
        let diags = validate(&parse(&mutated(from, to)));
        let found = diags.iter().any(|d| {
            d.address.as_deref() == Some(address)
                && d.message == message
                && d.hint.as_deref() == Some(hint)
        });
        if !found {
            failures.push(format!(
                "{address}: want `{message}` / `{hint}`, got {diags:#?}"
            ));
        }
    }
    // The language of a copy, likewise (both instances declare one).
    let text = mutated(
        "    currency: USD\n",
        "    currency: USD\n    language: 1033\n",
    )
    .replacen(
        "    type: sandbox\n",
        "    type: sandbox\n    language: 1036\n    copy_from: {instance: sales, kind: full}\n",
        1,
    );
    let diags = validate(&parse(&text));
    if !diags.iter().any(|d| {
        d.address.as_deref() == Some("instances.dev.language")
            && d.message
                == "instance `dev` is copied from `sales`, whose language is 1033, and a copy brings the source's language (I3), not 1036"
            && d.hint.as_deref() == Some("set `language: 1033`, or remove `language` from this instance")
    }) {
        failures.push(format!("language: got {diags:#?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// issue 14 item 3: `moved` entries are checked with their location: an address of a known
// kind, one kind per entry, the new key declared, the old key gone, nothing moved twice.
#[test]
fn moved_entries_are_checked_where_they_are() {
    let cases: &[(&str, &str, &str)] = &[
        ("moved: [{from: instances.old, to: instances.dev}]\n", "", ""),
        ("moved: [{from: old, to: instances.dev}]\n", "moved[0].from", "is not an address"),
        ("moved: [{from: instances.old, to: dev}]\n", "moved[0].to", "is not an address"),
        ("moved: [{from: security_groups.old, to: instances.dev}]\n", "moved[0].to", "different kinds"),
        ("moved: [{from: instances.old, to: instances.nope}]\n", "moved[0].to", "not declared"),
        ("moved: [{from: instances.sales, to: instances.dev}]\n", "moved[0].from", "still declared"),
        ("moved: [{from: instances.dev, to: instances.dev}]\n", "moved[0].to", "to itself"),
        (
            "moved:\n  - {from: instances.a, to: instances.dev}\n  - {from: instances.b, to: instances.dev}\n",
            "moved[1].to",
            "two entries move to",
        ),
    ];
    for (extra, address, message) in cases {
        let text = format!("{BASE}{extra}");
        let diags = load_diagnostics(&text);
        if address.is_empty() {
            assert!(diags.is_empty(), "{extra}: {diags:#?}");
            continue;
        }
        let d = diags
            .iter()
            .find(|d| d.address.as_deref() == Some(*address))
            .unwrap_or_else(|| panic!("{extra}: {diags:#?}"));
        assert!(d.message.contains(message) && d.hint.is_some(), "{d:#?}");
        assert_eq!(d.severity, Severity::Error);
        let line = d.location.as_ref().map(|l| l.line).unwrap_or(0);
        assert!(line > 20, "{extra}: located at line {line}");
    }
}
