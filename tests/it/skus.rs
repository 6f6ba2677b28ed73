//! The desired file's SKU overrides (`skus:`, issue 12 item 4; T2: one SKU per licence
//! plan): validation with file:line:col, and a tenant that holds only a SKU the built-in
//! table does not name, mapped by the file, on `--backend microsoft` against the emulator.

use crmctl::desired::load::load_str;
use crmctl::diag::Severity;
use crmctl::domain::kinds::LicensePlan;
use crmctl::emulator::{Emulator, EmulatorConfig};
use crmctl::observed::Tenant;
use crmctl::provider::graph::skus::SkuTable;
use crmctl::provider::{block_on, Scope};

use crate::emulator::{crmctl_on, CLIENT, SECRET};

const BASE: &str = "\
tenant: fabrikam.onmicrosoft.com
licenses:
  enterprise: 2
skus:
  enterprise: DYN365_ENTERPRISE_SALES
users:
  ana@fabrikam.com:
    name: Ana Diaz
    license: enterprise
";

/// `DYN365_ENTERPRISE_SALES` (Dynamics 365 for Sales Enterprise Edition) and its `skuId`,
/// an offer the built-in table does not map.
const SALES_PART: &str = "DYN365_ENTERPRISE_SALES";
const SALES_ID: &str = "1e1a282c-9c54-43a2-9310-98ef728faace";

struct Case {
    name: &'static str,
    from: &'static str,
    to: &'static str,
    address: &'static str,
    line: u32,
    /// Every one of these is in the message.
    says: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "a mistyped GUID",
        from: "enterprise: DYN365_ENTERPRISE_SALES",
        to: "enterprise: 1e1a282c-9c54-43a2-9310",
        address: "skus.enterprise",
        line: 5,
        says: &["1e1a282c-9c54-43a2-9310", "GUID"],
    },
    Case {
        name: "a part number with a slash",
        from: "enterprise: DYN365_ENTERPRISE_SALES",
        to: "enterprise: DYN365/SALES",
        address: "skus.enterprise",
        line: 5,
        says: &["DYN365/SALES", "part number"],
    },
    Case {
        name: "two plans of the file on one SKU",
        from: "  enterprise: DYN365_ENTERPRISE_SALES\n",
        to: "  basic: dyn365_enterprise_sales\n  enterprise: DYN365_ENTERPRISE_SALES\n",
        address: "skus.enterprise",
        line: 6,
        says: &["`basic`", "`enterprise`", "skus.basic"],
    },
    Case {
        name: "a plan on another plan's built-in SKU",
        from: "enterprise: DYN365_ENTERPRISE_SALES",
        to: "enterprise: d17b27af-3f49-4822-99f9-56a661538792",
        address: "skus.enterprise",
        line: 5,
        says: &["`professional`", "`enterprise`", "built-in"],
    },
    Case {
        name: "an add-on SKU as a licence",
        from: "enterprise: DYN365_ENTERPRISE_SALES",
        to: "enterprise: CRMINSTANCE",
        address: "skus.enterprise",
        line: 5,
        says: &["CRMINSTANCE", "add-on"],
    },
];

// T2 (issue 12 item 4): each bad override is an error at its file:line:col, saying what is
// wrong and naming both plans when two share a SKU; the base file is clean.
#[test]
fn bad_sku_overrides_are_errors_at_their_entry() {
    let base = load_str("t.yaml", BASE.to_string()).expect("the base file loads");
    assert!(base.diagnostics.is_empty(), "{:?}", base.diagnostics);
    assert_eq!(
        base.desired
            .skus
            .as_ref()
            .and_then(|m| m.get(&LicensePlan::Enterprise)),
        Some(&SALES_PART.to_string())
    );
    let mut failures = vec![];
    for c in CASES {
        assert!(BASE.contains(c.from), "{}", c.name);
        let text = BASE.replacen(c.from, c.to, 1);
        let diags = match load_str("t.yaml", text) {
            Ok(l) => l.diagnostics,
            Err(f) => f.diagnostics,
        };
        let hits: Vec<_> = diags
            .iter()
            .filter(|d| d.rule.as_deref() == Some("T2"))
            .collect();
        let [d] = hits.as_slice() else {
            failures.push(format!("{}: want one T2 error, got {diags:#?}", c.name));
            continue;
        };
        let line = d.location.as_ref().map(|l| l.line);
        if d.severity != Severity::Error
            || d.address.as_deref() != Some(c.address)
            || line != Some(c.line)
            || !c.says.iter().all(|s| d.message.contains(s))
        {
            failures.push(format!("{}: got {d:#?}", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The emulator of a tenant that bought 2 licences of `DYN365_ENTERPRISE_SALES` only: its
/// `subscribedSkus` lists that SKU for the enterprise plan, and `assignLicense` knows no
/// other id for it.
fn sales_only_emulator() -> (
    crmctl::emulator::EmulatorHandle,
    std::sync::Arc<dyn crmctl::provider::Provider>,
) {
    let domain = "fabrikam.onmicrosoft.com";
    let mut t = Tenant::fresh(domain);
    t.licenses.insert(LicensePlan::Enterprise, 2);
    let mut cfg = EmulatorConfig::new(t, domain, CLIENT, SECRET);
    cfg.skus = SkuTable::builtin()
        .with_override(LicensePlan::Enterprise, SALES_PART, SALES_ID)
        .unwrap();
    let provider = cfg.provider.clone();
    (Emulator::start(cfg).expect("emulator starts"), provider)
}

// issue 12 item 4 (T2, T3): the tenant holds only a non-built-in SKU; the file maps the
// enterprise plan to it by part number. The Graph provider reads its id from
// subscribedSkus, sees the 2 licences bought (no purchase planned) and assignLicense sends
// that id (the emulator refuses any other for the plan); the next plan shows no changes.
#[test]
fn a_part_number_override_reads_and_assigns_the_tenants_own_sku() {
    let (emu, provider) = sales_only_emulator();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.yaml"), BASE).unwrap();
    let out = crmctl_on(&emu, dir.path())
        .args([
            "apply",
            "--backend",
            "microsoft",
            "-f",
            "t.yaml",
            "--auto-approve",
        ])
        .output()
        .unwrap();
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "apply: {all}");
    assert!(
        !all.contains("purchase_licenses"),
        "the 2 licences are seen: {all}"
    );
    let t = block_on(provider.observe(&Scope::all())).unwrap().unwrap();
    let ana = t
        .users
        .values()
        .find(|u| u.upn == "ana@fabrikam.com")
        .unwrap();
    assert_eq!(ana.license, Some(LicensePlan::Enterprise));
    assert_replans_empty(&emu, dir.path());
}

// issue 12 item 4: without the override the built-in SKU of `enterprise` is not in the
// tenant: the plan asks to buy the licences (a manual step naming the built-in part
// number); with an override the tenant does not hold, plan fails naming the entry and
// what the tenant holds.
#[test]
fn without_or_with_a_wrong_override_the_plan_says_so() {
    let (emu, _provider) = sales_only_emulator();
    let dir = tempfile::tempdir().unwrap();
    let without = BASE.replace("skus:\n  enterprise: DYN365_ENTERPRISE_SALES\n", "");
    std::fs::write(dir.path().join("without.yaml"), without).unwrap();
    let out = crmctl_on(&emu, dir.path())
        .args([
            "plan",
            "--backend",
            "microsoft",
            "-f",
            "without.yaml",
            "--detailed-exitcode",
        ])
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("purchase_licenses"), "{all}");
    let wrong = BASE.replace(SALES_PART, "DYN365_ENTERPRISE_CUSTOMER_SERVICE");
    std::fs::write(dir.path().join("wrong.yaml"), wrong).unwrap();
    let out = crmctl_on(&emu, dir.path())
        .args(["plan", "--backend", "microsoft", "-f", "wrong.yaml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        err.contains("skus.enterprise")
            && err.contains("DYN365_ENTERPRISE_CUSTOMER_SERVICE")
            && err.contains(SALES_PART),
        "{err}"
    );
}

// issue 12 item 4 (T2, T3): `plan --out` records the file's override under the checksum and
// `apply PLANFILE` feeds it to the backend as the file path does: the licence assigned is
// the tenant's own SKU (the emulator refuses the built-in id for the plan, so the apply
// fails if the override is lost). An edited override in the saved file is refused.
#[test]
fn a_saved_plan_applies_with_the_files_override_and_an_edit_is_refused() {
    let (emu, provider) = sales_only_emulator();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.yaml"), BASE).unwrap();
    let out = crmctl_on(&emu, dir.path())
        .args([
            "plan",
            "--backend",
            "microsoft",
            "-f",
            "t.yaml",
            "--out",
            "p.json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plan --out: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = std::fs::read_to_string(dir.path().join("p.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(v["skus"]["enterprise"], SALES_PART, "{saved}");

    // The override edited (to another valid part number): refused by the checksum.
    let entry = format!("\"enterprise\": \"{SALES_PART}\"");
    assert_eq!(saved.matches(&entry).count(), 1, "{saved}");
    let edited = saved.replace(&entry, "\"enterprise\": \"DYN365_ENTERPRISE_PLAN1\"");
    std::fs::write(dir.path().join("edited.json"), edited).unwrap();
    let out = crmctl_on(&emu, dir.path())
        .args(["apply", "edited.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("edited.json was modified") && err.contains("checksum"),
        "{err}"
    );

    let out = crmctl_on(&emu, dir.path())
        .args(["apply", "p.json"])
        .output()
        .unwrap();
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "apply p.json: {all}");
    let t = block_on(provider.observe(&Scope::all())).unwrap().unwrap();
    let ana = t
        .users
        .values()
        .find(|u| u.upn == "ana@fabrikam.com")
        .expect("ana was created");
    assert_eq!(ana.license, Some(LicensePlan::Enterprise), "{all}");
    assert_replans_empty(&emu, dir.path());
}

// A saved plan records the cloud it was made in (`--cloud`, when not public): `apply
// PLANFILE` reaches that cloud without being told again, and refuses another `--cloud`.
#[test]
fn a_saved_plan_keeps_its_cloud_and_refuses_another() {
    let (emu, _provider) = sales_only_emulator();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.yaml"), BASE).unwrap();
    let out = crmctl_on(&emu, dir.path())
        .args([
            "--cloud",
            "usgov",
            "plan",
            "--backend",
            "microsoft",
            "-f",
            "t.yaml",
            "--out",
            "p.json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plan --out: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = std::fs::read_to_string(dir.path().join("p.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(v["cloud"], "usgov", "{saved}");
    let out = crmctl_on(&emu, dir.path())
        .args(["--cloud", "public", "apply", "p.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("made in the `usgov` cloud, not `public`"),
        "{err}"
    );
    let out = crmctl_on(&emu, dir.path())
        .args(["apply", "p.json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apply p.json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The next plan of `t.yaml` on `--backend microsoft` has no changes (exit 0).
fn assert_replans_empty(emu: &crmctl::emulator::EmulatorHandle, dir: &std::path::Path) {
    let out = crmctl_on(emu, dir)
        .args([
            "plan",
            "--backend",
            "microsoft",
            "-f",
            "t.yaml",
            "--detailed-exitcode",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
