//! Every example and fixture plans without errors against a fresh tenant, applies in the
//! rule-checking simulator, and re-plans to no changes.

use crate::common;
use common::*;

#[test]
fn examples_and_fixtures_converge_from_fresh() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["examples", "tests/fixtures/plan"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml") {
                let loaded = crmctl::desired::load::load_file(&p).unwrap();
                let t = crmctl::observed::Tenant::fresh(&loaded.desired.tenant);
                converge(&loaded.desired, &t, &state(&[]));
                n += 1;
            }
        }
    }
    assert!(n >= 1);
}
