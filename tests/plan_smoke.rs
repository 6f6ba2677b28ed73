mod common;
use common::*;

#[test]
fn basic_fixture_converges_from_fresh() {
    let text = std::fs::read_to_string("tests/fixtures/plan/basic.yaml").unwrap();
    let d = desired(&text);
    converge(&d, &fresh(), &state(&[]));
}
