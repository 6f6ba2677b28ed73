//! The JSON Schema of the desired-state file (`crmctl schema`, `schemas/crmctl.schema.json`),
//! generated from the model so that it can never drift from what crmctl reads.

use crate::desired::model::Desired;

/// The version of the desired file's format: raised when a file valid under the previous
/// version may no longer be (issue 15 item 4). It is part of [`SCHEMA_ID`].
pub const SCHEMA_VERSION: u32 = 1;

/// The schema's `$id`: stable, versioned, and pointing nowhere outside the repository (a
/// URN, not a URL), so that an editor's schema association or a catalog can name it without
/// a relative path.
pub const SCHEMA_ID: &str = "urn:crmctl:schema:desired:v1";

/// The JSON Schema of the desired-state file, as pretty JSON with a final newline.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(Desired);
    schema.insert("$id".into(), SCHEMA_ID.into());
    // `$comment` (not a custom keyword, which strict validators such as ajv refuse).
    schema.insert(
        "$comment".into(),
        format!("crmctl desired-state file, format version {SCHEMA_VERSION}").into(),
    );
    let mut s = serde_json::to_string_pretty(&schema).expect("a JSON Schema always serializes");
    s.push('\n');
    s
}
