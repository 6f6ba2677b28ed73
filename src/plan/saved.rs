//! A plan saved with `plan --out PLANFILE`, applied later with `apply PLANFILE`.

use serde::{Deserialize, Serialize};

use crate::plan::action::Plan;

/// Format version of saved plan files.
pub const SAVED_PLAN_VERSION: u32 = 1;

/// A saved plan: the plan plus what apply needs to refuse it when it is stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Format version.
    pub version: u32,
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
    pub protect: std::collections::BTreeMap<String, bool>,
}
