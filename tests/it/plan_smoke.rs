//! Every example and fixture plans without errors against a fresh tenant, applies on
//! the in-memory provider (the local provider's rules), and re-plans to no changes.

use crate::common;
use crate::support::files_in;
use common::*;

#[test]
fn examples_and_fixtures_converge_from_fresh() {
    let mut n = 0;
    let examples = files_in("examples", &["yaml"]);
    for p in examples
        .into_iter()
        .chain(files_in("tests/fixtures/plan", &["yaml"]))
    {
        let loaded = crmctl::desired::load::load_file(&p).unwrap();
        let t = crmctl::observed::Tenant::fresh(&loaded.desired.tenant);
        converge(&loaded.desired, &t, &state(&[]));
        n += 1;
    }
    assert!(n >= 1);
}
