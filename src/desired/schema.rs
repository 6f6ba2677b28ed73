//! The JSON Schema of the desired-state file (`crmctl schema`, `schemas/crmctl.schema.json`),
//! generated from the model so that it can never drift from what crmctl reads.

use crate::desired::model::Desired;

/// The JSON Schema of the desired-state file, as pretty JSON with a final newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Desired);
    let mut s = serde_json::to_string_pretty(&schema).expect("a JSON Schema always serializes");
    s.push('\n');
    s
}
