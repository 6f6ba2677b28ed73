//! A plan saved with `plan --out PLANFILE`, applied later with `apply PLANFILE`.
//!
//! The file carries a SHA-256 checksum of everything apply uses from it (the plan, the
//! backend, the state path, lineage and serial, the `protect` flags), so that a file edited
//! after `plan --out` wrote it is refused ([`SavedPlan::from_json`]).
//!
//! The checksum is an integrity check against accidental and naive edits (a hand-edited
//! value, a flipped flag, a truncated or merged file), **not authentication**: anyone who
//! can write the file can also recompute the checksum. That is why apply never relies on it
//! for safety: it derives destructiveness from the ops (`Plan::destructive_flags`), checks
//! protected instances against the state (`apply::check_protected`), refuses a stale plan
//! by the tenant's fingerprint and the state's serial, and the provider checks every rule
//! of domain.md on each request.
//!
//! The fingerprint covers the tenant's managed fields only (a change of the storage in use
//! does not make a plan stale), and the file carries a [`Sketch`] of the tenant's
//! per-object digests (a few kilobytes whatever the tenant's size) so that a stale plan's
//! refusal names the objects that changed (issue 11 item 4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plan::action::Plan;
pub use crate::plan::fingerprint::{Digests, Sketch};

/// Format version of saved plan files. Version 2 added the checksum; version 3 the
/// fingerprint over managed fields only and the digests' [`Sketch`]. An older file is
/// refused with a request to plan again (its fingerprint is not comparable any more).
pub const SAVED_PLAN_VERSION: u32 = 3;

/// The prefix of [`SavedPlan::checksum`].
const CHECKSUM_PREFIX: &str = "sha256:";

/// A saved plan: the plan plus what apply needs to refuse it when it is stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Format version.
    pub version: u32,
    /// `sha256:<hex>` of the canonical serialization of every other field (see
    /// [`SavedPlan::content_checksum`]). Empty in files written before version 2.
    #[serde(default)]
    pub checksum: String,
    /// Backend spec the plan was made against (e.g. `local:.crmctl/tenant.db`).
    pub backend: String,
    /// State file path the plan was made with.
    pub state_path: String,
    /// Lineage of the state when planned.
    pub state_lineage: String,
    /// Serial of the state when planned.
    pub state_serial: u64,
    /// The plan; `plan.fingerprint` is the observed tenant's fingerprint when planned.
    pub plan: Plan,
    /// `protect` flags per instance address from the desired file, recorded into the state
    /// after apply.
    #[serde(default)]
    pub protect: BTreeMap<String, bool>,
    /// Where the desired file declares `protect: true` (`FILE:LINE`), by instance address,
    /// recorded into the state with the flags (issue 9 item 8). Absent when none (and in
    /// files written before it: the checksum of such a file is unchanged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub protect_at: BTreeMap<String, String>,
    /// The per-object digests of the tenant the plan was made against, to name what
    /// changed when the plan is stale. Absent when not recorded (a plan written by a
    /// program, not by `plan --out`): a stale plan then says only that the tenant changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digests: Option<Sketch>,
    /// The file's large-plan thresholds (issue 14 item 5), checked again by apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<crate::desired::model::Safety>,
    /// The desired file's SKU overrides (`skus:`, issue 12 item 4; T2): plan -> part number
    /// or GUID, fed to the backend by apply exactly as a plan from the file does, so that
    /// the licence assigned is the SKU the plan meant. Absent when the file has none (the
    /// checksum of such a file is unchanged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skus: BTreeMap<crate::domain::kinds::LicensePlan, String>,
    /// The Microsoft cloud of a `microsoft` backend (`--cloud`), when not the public one:
    /// apply reaches the same cloud's endpoints (absent for the public cloud and the local
    /// backend: the checksum of such a file is unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
}

/// The fields the checksum covers, in a fixed order: every field but the checksum.
#[derive(Serialize)]
struct Content<'a> {
    version: u32,
    backend: &'a str,
    state_path: &'a str,
    state_lineage: &'a str,
    state_serial: u64,
    plan: &'a Plan,
    protect: &'a BTreeMap<String, bool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    protect_at: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digests: &'a Option<Sketch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety: &'a Option<crate::desired::model::Safety>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    skus: &'a BTreeMap<crate::domain::kinds::LicensePlan, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud: &'a Option<String>,
}

/// Why a saved plan file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    /// Not a saved plan (not JSON, or not the shape of one).
    #[error("{file} is not a plan saved by `crmctl plan --out` ({message}); a desired-state file needs -f")]
    NotAPlan {
        /// The plan file.
        file: String,
        /// The parse error.
        message: String,
    },
    /// Written by a newer crmctl.
    #[error("{file}: saved plan version {found} is newer than this crmctl supports ({SAVED_PLAN_VERSION}); upgrade crmctl")]
    TooNew {
        /// The plan file.
        file: String,
        /// Its version.
        found: u32,
    },
    /// Written by an older crmctl (without a checksum, or with a fingerprint of another
    /// kind).
    #[error("{file}: saved plan version {found} was written by an older crmctl; run `crmctl plan --out` again")]
    TooOld {
        /// The plan file.
        file: String,
        /// Its version.
        found: u32,
    },
    /// The content does not match the checksum (or the checksum is missing or malformed).
    #[error("{file} was modified after `crmctl plan --out` wrote it (checksum mismatch); run `crmctl plan --out` again")]
    Modified {
        /// The plan file.
        file: String,
    },
}

impl SavedPlan {
    /// A saved plan of the current format, with its checksum.
    pub fn new(
        backend: String,
        state_path: String,
        state_lineage: String,
        state_serial: u64,
        plan: Plan,
        protect: BTreeMap<String, bool>,
    ) -> SavedPlan {
        let mut saved = SavedPlan {
            version: SAVED_PLAN_VERSION,
            checksum: String::new(),
            backend,
            state_path,
            state_lineage,
            state_serial,
            plan,
            protect,
            protect_at: BTreeMap::new(),
            digests: None,
            safety: None,
            skus: BTreeMap::new(),
            cloud: None,
        };
        saved.seal();
        saved
    }

    /// Set [`SavedPlan::checksum`] from the current content.
    pub fn seal(&mut self) {
        self.checksum = self.content_checksum();
    }

    /// `sha256:<hex>` of the compact JSON of every field but the checksum, in declaration
    /// order. Canonical for a file read back: maps are sorted (`BTreeMap`) or keep the
    /// file's order, and serializing what was parsed from the JSON serde wrote gives the
    /// same bytes. Streamed into the hasher (a large plan is never held twice).
    pub fn content_checksum(&self) -> String {
        let content = Content {
            version: self.version,
            backend: &self.backend,
            state_path: &self.state_path,
            state_lineage: &self.state_lineage,
            state_serial: self.state_serial,
            plan: &self.plan,
            protect: &self.protect,
            protect_at: &self.protect_at,
            digests: &self.digests,
            safety: &self.safety,
            skus: &self.skus,
            cloud: &self.cloud,
        };
        let mut hasher = Sha256::new();
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, &mut hasher);
        serde_json::to_writer(&mut w, &content).expect("a plan always serializes");
        w.flush().expect("hashing cannot fail");
        drop(w);
        let mut out = String::with_capacity(CHECKSUM_PREFIX.len() + 64);
        out.push_str(CHECKSUM_PREFIX);
        for b in hasher.finalize() {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// Read a saved plan from the text of `file` (named in errors): refused when it is not
    /// a saved plan, of another format version, or modified since it was written.
    pub fn from_json(text: &str, file: &str) -> Result<SavedPlan, SavedPlanError> {
        let saved: SavedPlan =
            serde_json::from_str(text).map_err(|e| SavedPlanError::NotAPlan {
                file: file.to_string(),
                message: e.to_string(),
            })?;
        if saved.version > SAVED_PLAN_VERSION {
            return Err(SavedPlanError::TooNew {
                file: file.to_string(),
                found: saved.version,
            });
        }
        if saved.version < SAVED_PLAN_VERSION {
            return Err(SavedPlanError::TooOld {
                file: file.to_string(),
                found: saved.version,
            });
        }
        if saved.checksum != saved.content_checksum() {
            return Err(SavedPlanError::Modified {
                file: file.to_string(),
            });
        }
        Ok(saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::op::{ActionKind, ObjRef, Op};
    use crate::plan::action::Action;

    fn sample() -> SavedPlan {
        let plan = Plan {
            format_version: "1".into(),
            tenant: "coho.onmicrosoft.com".into(),
            fingerprint: "ab".repeat(32),
            actions: vec![Action {
                id: 0,
                kind: ActionKind::UpdateInstance,
                address: "instances.sales".into(),
                depends_on: vec![],
                destructive: false,
                changes: vec![],
                reason: "why".into(),
                op: Box::new(Op::UpdateInstance {
                    instance: ObjRef {
                        address: "instances.sales".into(),
                        id: Some("org-000001".into()),
                    },
                    name: Some("Sales \u{e9}\"\n".into()),
                    url: None,
                    purpose: None,
                    // An unbind: `null`, read back as an unbind (not as "unchanged").
                    security_group: Some(None),
                }),
            }],
            ..Plan::default()
        };
        let protect = BTreeMap::from([("instances.sales".to_string(), true)]);
        let mut saved = SavedPlan::new(
            "local:t.db".into(),
            "s.json".into(),
            "lin".into(),
            3,
            plan,
            protect,
        );
        saved.skus = BTreeMap::from([(
            crate::domain::kinds::LicensePlan::Enterprise,
            "DYN365_ENTERPRISE_SALES".to_string(),
        )]);
        saved.seal();
        saved
    }

    // issue 9 item 3: what `plan --out` writes reads back; any edit is refused.
    #[test]
    fn a_written_plan_reads_back_and_an_edit_is_refused() {
        let saved = sample();
        let text = serde_json::to_string_pretty(&saved).unwrap();
        let back = SavedPlan::from_json(&text, "p.json").unwrap();
        assert_eq!(back, saved, "a saved plan reads back exactly");
        assert!(saved.checksum.starts_with("sha256:") && saved.checksum.len() == 71);
        for (from, to) in [
            ("\"state_serial\": 3", "\"state_serial\": 4"),
            ("\"org-000001\"", "\"org-000002\""),
            ("\"instances.sales\": true", "\"instances.sales\": false"),
            ("\"destructive\": false", "\"destructive\": true"),
            ("\"local:t.db\"", "\"local:u.db\""),
            // issue 12 item 4 (T2): the SKU override is covered too.
            ("\"DYN365_ENTERPRISE_SALES\"", "\"DYN365_ENTERPRISE_PLAN1\""),
        ] {
            assert!(text.contains(from), "{from}");
            let edited = text.replacen(from, to, 1);
            let e = SavedPlan::from_json(&edited, "p.json").unwrap_err();
            assert!(matches!(e, SavedPlanError::Modified { .. }), "{from}: {e}");
            assert!(
                e.to_string().contains(
                    "p.json was modified after `crmctl plan --out` wrote it (checksum mismatch)"
                ),
                "{e}"
            );
        }
        // Formatting alone (whitespace) is not a modification.
        let compact = serde_json::to_string(&saved).unwrap();
        assert!(SavedPlan::from_json(&compact, "p.json").is_ok());
    }

    #[test]
    fn old_new_and_foreign_files_are_clear_errors() {
        let mut saved = sample();
        saved.version = 1;
        saved.checksum.clear();
        let e =
            SavedPlan::from_json(&serde_json::to_string(&saved).unwrap(), "p.json").unwrap_err();
        assert!(e.to_string().contains("older crmctl"), "{e}");
        saved.version = SAVED_PLAN_VERSION + 1;
        let e =
            SavedPlan::from_json(&serde_json::to_string(&saved).unwrap(), "p.json").unwrap_err();
        assert!(e.to_string().contains("upgrade crmctl"), "{e}");
        let e = SavedPlan::from_json("tenant: x\n", "t.yaml").unwrap_err();
        assert!(e.to_string().contains("needs -f"), "{e}");
    }
}
