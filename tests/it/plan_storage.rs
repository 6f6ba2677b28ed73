//! T8: storage shared by all instances; warned at 80%, read-only at 100%. The planner checks
//! the capacity the plan leaves (T6 included storage for the final license count, plus the
//! add-on).

use crmctl::desired::load::from_yaml;
use crmctl::desired::model::Desired;
use crmctl::diag::Severity;
use crmctl::domain::kinds::LicensePlan;
use crmctl::observed::Tenant;
use crmctl::plan::plan;
use crmctl::state::State;

fn t8(desired: &str, pro_now: u32, additional_now: u32, used: f64) -> Vec<(Severity, String)> {
    let d: Desired = from_yaml(desired).unwrap();
    let mut t = Tenant::fresh("coho.onmicrosoft.com");
    t.licenses.insert(LicensePlan::Professional, pro_now);
    t.storage.additional_gb = additional_now;
    t.storage.used_gb = used;
    plan(&d, &t, &State::empty("test"))
        .diagnostics
        .into_iter()
        .filter(|d| d.rule.as_deref() == Some("T8"))
        .map(|d| (d.severity, d.message))
        .collect()
}

#[test]
fn t8_storage_thresholds() {
    let unmanaged = "tenant: coho.onmicrosoft.com\n";
    // 40 Professional licenses include 5 + 2 x 2.5 = 10 GB (T6).
    /// name, file, Professional now, add-on now, used GB, expected T8 diagnostic.
    type Case<'a> = (&'a str, &'a str, u32, u32, f64, Option<(Severity, &'a str)>);
    let cases: [Case; 6] = [
        ("plenty of room", unmanaged, 40, 0, 2.0, None),
        (
            "80% used",
            unmanaged,
            40,
            0,
            8.0,
            Some((Severity::Warning, "80%")),
        ),
        (
            "full",
            unmanaged,
            40,
            0,
            10.0,
            Some((Severity::Warning, "read-only")),
        ),
        (
            "buying storage clears the warning",
            "tenant: coho.onmicrosoft.com\nstorage: {additional_gb: 10}\n",
            40,
            0,
            10.0,
            None,
        ),
        (
            "reducing licenses drops included storage below what is used",
            "tenant: coho.onmicrosoft.com\nlicenses: {professional: 10}\n",
            40,
            0,
            9.0,
            Some((Severity::Error, "every instance would become read-only")),
        ),
        (
            "reducing the add-on below what is used",
            "tenant: coho.onmicrosoft.com\nstorage: {additional_gb: 0}\n",
            0,
            10,
            6.0,
            Some((Severity::Error, "lowers storage to 5 GB")),
        ),
    ];
    for (name, file, pro, add, used, want) in cases {
        let got = t8(file, pro, add, used);
        match want {
            None => assert!(got.is_empty(), "{name}: {got:?}"),
            Some((sev, text)) => {
                assert_eq!(got.len(), 1, "{name}: {got:?}");
                assert_eq!(got[0].0, sev, "{name}");
                assert!(got[0].1.contains(text), "{name}: {}", got[0].1);
            }
        }
    }
}
