//! The JSON Schema: committed file up to date, a description on every field (IDE hover
//! text), enums for closed sets, patterns that are the validator's own, and the modeline in
//! every example.

use crmctl::desired::schema::json_schema;
use crmctl::domain::kinds::LicensePlan;
use crmctl::domain::syntax;
use serde_json::Value;

use crate::support::root;

fn schema() -> Value {
    serde_json::from_str(&json_schema()).unwrap()
}

#[test]
fn committed_schema_is_up_to_date() {
    let committed = std::fs::read_to_string(root().join("schemas/crmctl.schema.json"))
        .expect("schemas/crmctl.schema.json exists");
    assert!(
        committed == json_schema(),
        "schemas/crmctl.schema.json differs from the model's schema; regenerate it with\n    cargo run -- schema > schemas/crmctl.schema.json"
    );
}

/// Every object schema's properties, with their JSON pointer.
fn properties<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                for (k, p) in props {
                    out.push((format!("{at}/properties/{k}"), p));
                }
            }
            for (k, child) in m {
                properties(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                properties(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_field_has_a_description() {
    let s = schema();
    let mut props = Vec::new();
    properties(&s, String::from("#"), &mut props);
    assert!(props.len() > 30, "only {} properties found", props.len());
    let missing: Vec<_> = props
        .iter()
        .filter(|(_, p)| {
            p.get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        })
        .map(|(at, _)| at.clone())
        .collect();
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
    // And every definition (struct or enum) too.
    for (name, def) in s["$defs"].as_object().unwrap() {
        assert!(
            def.get("description").is_some(),
            "$defs/{name} has no description"
        );
    }
}

fn consts(def: &Value) -> Vec<String> {
    def["oneOf"]
        .as_array()
        .map(|alts| {
            alts.iter()
                .filter_map(|a| a["const"].as_str().map(str::to_string))
                .collect()
        })
        .or_else(|| {
            def["enum"].as_array().map(|e| {
                e.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[test]
fn closed_sets_are_enums() {
    let s = schema();
    let defs = &s["$defs"];
    let plans: Vec<String> = LicensePlan::ALL
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    assert_eq!(consts(&defs["LicensePlan"]), plans);
    // License counts are keyed by plan: the keys are the same closed set.
    let keys: Vec<String> = s["properties"]["licenses"]["propertyNames"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, plans);
    assert_eq!(consts(&defs["InstanceType"]), ["production", "sandbox"]);
    assert_eq!(consts(&defs["CopyKind"]), ["full", "minimal"]);
    assert_eq!(
        consts(&defs["AccessMode"]),
        [
            "read-write",
            "administrative",
            "non-interactive",
            "application"
        ]
    );
    assert_eq!(
        consts(&defs["Region"]),
        ["NA", "SAM", "CAN", "EMEA", "APAC", "OCE", "JPN", "IND", "GCC", "UK"]
    );
    assert_eq!(consts(&defs["AdminRole"]).len(), 5);
}

#[test]
fn patterns_are_the_validators_own() {
    let s = schema();
    let inst = &s["$defs"]["Instance"]["properties"];
    assert_eq!(inst["url"]["pattern"], syntax::URL_NAME_PATTERN);
    assert_eq!(inst["currency"]["pattern"], syntax::CURRENCY_PATTERN);
    assert_eq!(
        inst["notification_recipients"]["items"]["pattern"],
        syntax::EMAIL_PATTERN
    );
    assert_eq!(s["properties"]["tenant"]["pattern"], syntax::TENANT_PATTERN);
    assert_eq!(
        s["properties"]["users"]["propertyNames"]["pattern"],
        syntax::EMAIL_PATTERN
    );
    assert_eq!(
        s["$defs"]["SecurityGroup"]["properties"]["members"]["items"]["pattern"],
        syntax::EMAIL_PATTERN
    );
    // issue 12 item 4: a usage location is two upper-case letters (the list is checked by
    // validation).
    assert_eq!(
        s["$defs"]["User"]["properties"]["usage_location"]["pattern"],
        crmctl::domain::iso3166::PATTERN
    );
    let update = &s["$defs"]["UpdateApproval"]["properties"];
    assert_eq!(update["target_version"]["pattern"], syntax::VERSION_PATTERN);
    assert_eq!(
        update["preferred"]["pattern"],
        syntax::DATE_TIME_UTC_PATTERN
    );
    assert_eq!(
        update["alternate"]["pattern"],
        syntax::DATE_TIME_UTC_PATTERN
    );
}

#[test]
fn examples_carry_the_schema_modeline() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            n += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                text.lines().next(),
                Some("# yaml-language-server: $schema=../schemas/crmctl.schema.json"),
                "{} must start with the modeline",
                path.display()
            );
        }
    }
    assert!(n >= 3);
}

/// Issue 11 item 5: the diagnostics crmctl prints link only inside the repository: for
/// every fixture and example (all the kinds of invalid input the tests keep), no message or
/// hint holds a `scheme://` link, and every repository file a hint names (`examples/...`,
/// `docs/...`) exists.
#[test]
fn diagnostics_link_only_inside_the_repository() {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    files(&root().join("tests/fixtures"), &mut paths);
    files(&root().join("examples"), &mut paths);
    let mut failures = Vec::new();
    let (mut hints, mut named_files) = (0, 0);
    for path in paths {
        let diagnostics = match crmctl::desired::load::load_file(&path) {
            Ok(l) => l.diagnostics,
            Err(f) => f.diagnostics,
        };
        for d in diagnostics {
            hints += usize::from(d.hint.is_some());
            for text in [Some(&d.message), d.hint.as_ref()].into_iter().flatten() {
                let at = path.display();
                if text.contains("://") {
                    failures.push(format!("{at}: a link outside the repository: {text}"));
                }
                for prefix in ["examples/", "docs/"] {
                    for (start, _) in text.match_indices(prefix) {
                        let named: String = text[start..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                            .collect();
                        let named = named.trim_end_matches('.');
                        named_files += 1;
                        if !root().join(named).is_file() {
                            failures.push(format!(
                                "{at}: names `{named}`, which is not in the repository: {text}"
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(hints > 40, "the fixtures give hints ({hints})");
    assert!(
        named_files > 0,
        "a hint names a file (empty.yaml: examples/minimal.yaml)"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
