//! Licenses, storage and instance slots: T3-T7.

use crate::domain::kinds::InstanceType;
use crate::domain::limits::{MAX_PRODUCTION_INSTANCES, MAX_SANDBOX_INSTANCES};
use crate::domain::op::Op;
use crate::observed::Tenant;
use crate::provider::local::delta::{Counters, Index};
use crate::provider::ProviderError;

use super::{meta_with, not_mine, refused, Effect};

/// Check a license, storage or slot op against the tenant and compute what it writes.
pub(super) fn effect(
    t: &Tenant,
    idx: &Index,
    counters: Counters,
    op: &Op,
) -> Result<Effect, ProviderError> {
    match op {
        Op::PurchaseLicenses { plan, to } => {
            let have = t.purchased(*plan);
            if *to < have {
                return Err(ProviderError::Invalid(format!(
                    "purchase_licenses {} to {to} is below the {have} bought; use reduce_licenses",
                    plan.as_str()
                )));
            }
            if *to == have {
                return Ok(Effect::none());
            }
            Ok(Effect::of(vec![meta_with(t, counters, |m| {
                m.licenses.insert(*plan, *to);
            })]))
        }
        Op::ReduceLicenses { plan, to } => {
            let have = t.purchased(*plan);
            if *to > have {
                return Err(ProviderError::Invalid(format!(
                    "reduce_licenses {} to {to} is above the {have} bought; use purchase_licenses",
                    plan.as_str()
                )));
            }
            let assigned = idx.assigned(*plan);
            if *to < assigned {
                return Err(refused(
                    "T4",
                    format!(
                        "cannot reduce {} licenses to {to}: {assigned} are assigned; remove licenses from users (or delete users) first",
                        plan.as_str()
                    ),
                ));
            }
            if *to == have {
                return Ok(Effect::none());
            }
            // T6: below 25 Professional + Enterprise the included sandbox slot is gone; a
            // sandbox that occupies it needs a bought slot first.
            if plan.is_pro_or_enterprise() {
                let pe_after = t.pro_enterprise() - have + *to;
                let sandboxes = t.used_slots(InstanceType::Sandbox);
                let total_now = t.total_slots(InstanceType::Sandbox);
                let total_after = t.slots.sandbox
                    + crate::observed::included_slots(InstanceType::Sandbox, pe_after);
                if total_after < total_now && sandboxes > total_after {
                    return Err(refused(
                        "T6",
                        format!(
                            "reducing {} licenses to {to} leaves {pe_after} Professional + Enterprise licenses, which include no sandbox slot, and {sandboxes} sandbox instance(s) occupy {total_now} slot(s); buy a sandbox slot first (purchase_instance)",
                            plan.as_str()
                        ),
                    ));
                }
            }
            Ok(Effect::of(vec![meta_with(t, counters, |m| {
                if *to == 0 {
                    m.licenses.remove(plan);
                } else {
                    m.licenses.insert(*plan, *to);
                }
            })]))
        }
        Op::PurchaseStorage { to_gb } => {
            let have = t.storage.additional_gb;
            if *to_gb < have {
                return Err(ProviderError::Invalid(format!(
                    "purchase_storage to {to_gb} GB is below the {have} GB bought; use reduce_storage"
                )));
            }
            if *to_gb == have {
                return Ok(Effect::none());
            }
            check_t5(t, "storage")?;
            Ok(Effect::of(vec![meta_with(t, counters, |m| {
                m.storage.additional_gb = *to_gb;
            })]))
        }
        Op::ReduceStorage { to_gb } => {
            let have = t.storage.additional_gb;
            if *to_gb > have {
                return Err(ProviderError::Invalid(format!(
                    "reduce_storage to {to_gb} GB is above the {have} GB bought; use purchase_storage"
                )));
            }
            if *to_gb == have {
                return Ok(Effect::none());
            }
            Ok(Effect::of(vec![meta_with(t, counters, |m| {
                m.storage.additional_gb = *to_gb;
            })]))
        }
        Op::PurchaseInstance { kind } => {
            check_t5(t, &format!("a {} instance", kind.as_str()))?;
            let max = match kind {
                InstanceType::Production => MAX_PRODUCTION_INSTANCES,
                InstanceType::Sandbox => MAX_SANDBOX_INSTANCES,
            };
            let total = t.total_slots(*kind);
            if total + 1 > max {
                return Err(refused(
                    "T7",
                    format!(
                        "the tenant already has {total} {} slots; at most {max} are allowed",
                        kind.as_str()
                    ),
                ));
            }
            Ok(Effect::of(vec![meta_with(t, counters, |m| match kind {
                InstanceType::Production => m.slots.production += 1,
                InstanceType::Sandbox => m.slots.sandbox += 1,
            })]))
        }
        _ => Err(not_mine(op, "license, storage or slot")),
    }
}

/// T5: additional instances and storage only on a paid subscription with Professional or
/// Enterprise licenses.
fn check_t5(t: &Tenant, what: &str) -> Result<(), ProviderError> {
    if t.trial {
        return Err(refused(
            "T5",
            format!("{what} cannot be bought on a trial subscription; convert it to a paid subscription first"),
        ));
    }
    if t.pro_enterprise() == 0 {
        return Err(refused(
            "T5",
            format!("{what} can be bought only with Professional or Enterprise licenses; buy some first"),
        ));
    }
    Ok(())
}
