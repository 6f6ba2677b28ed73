//! The pure planner: `plan(desired, observed, state) -> Plan`. No I/O, deterministic.

pub mod action;
pub mod saved;

pub use action::{Action, ActionKind, Change, ObjKind, ObjRef, Op, Plan, Summary};

use crate::spec::model::Desired;
use crate::state::State;
use crate::tenant::Tenant;

/// Compute the plan that takes `observed` to `desired`, given what `state` manages.
///
/// FIRST VERSION: returns an empty plan (the planner issue completes it).
pub fn plan(desired: &Desired, observed: &Tenant, state: &State) -> Plan {
    let _ = (observed, state);
    Plan {
        format_version: action::FORMAT_VERSION.to_string(),
        tenant: desired.tenant.clone(),
        ..Plan::default()
    }
}
