//! Licences: `GET /subscribedSkus` and `POST /users/{id}/assignLicense`, over the tenant's
//! licence counts (T2, T3) through the emulator's SKU table (`EmulatorConfig::skus`: the
//! built-in one unless a test gives the tenant other offers).
//! Shapes: learn.microsoft.com/graph/api/subscribedsku-list (`skuId`, `skuPartNumber`,
//! `prepaidUnits.enabled`, `consumedUnits`, `capabilityStatus`, `appliesTo`) and
//! learn.microsoft.com/graph/api/user-assignlicense (`{addLicenses:[{skuId,
//! disabledPlans}], removeLicenses:[skuId]}` -> 200 with the user; a user without
//! `usageLocation` cannot be given a licence: 400).

use serde_json::{json, Value};

use super::graph::{bad_request, exec, not_found, obj, tenant, usage_location, user_json, Ctx};
use super::server::{Answer, Shared};
use crate::domain::kinds::LicensePlan;
use crate::domain::op::Op;
use crate::provider::graph::skus::{self, AddOn, SkuTable};

/// `assignedLicenses` of a user holding `plan`.
pub(super) fn assigned(table: &SkuTable, plan: Option<LicensePlan>) -> Value {
    Value::Array(
        plan.map(|p| json!({"skuId": table.sku_id(p), "disabledPlans": []}))
            .into_iter()
            .collect(),
    )
}

/// `GET /subscribedSkus`: one SKU per plan the tenant bought or assigned
/// (prepaidUnits.enabled = purchased, consumedUnits = assigned), then one per add-on the
/// tenant holds (instance slots, database storage).
pub(super) async fn subscribed_skus(shared: &Shared, ctx: &Ctx) -> Answer {
    let t = or_answer!(tenant(shared, ctx).await);
    let mut value = Vec::new();
    for plan in LicensePlan::ALL {
        let bought = t.licenses.get(&plan).copied().unwrap_or(0);
        let used = t.users.values().filter(|u| u.license == Some(plan)).count();
        if bought == 0 && used == 0 {
            continue;
        }
        let sku_id = shared.config.skus.sku_id(plan);
        value.push(json!({
            "id": format!("{}_{sku_id}", shared.config.tenant_id),
            "skuId": sku_id,
            "skuPartNumber": shared.config.skus.part_number(plan),
            "capabilityStatus": "Enabled",
            "appliesTo": "User",
            "consumedUnits": used,
            "prepaidUnits": {"enabled": bought, "suspended": 0, "warning": 0, "lockedOut": 0},
            "servicePlans": [],
        }));
    }
    // Add-ons (I2, T6, T8): the slots and storage the backing tenant bought, each as the
    // SKU an administrator buys in the admin center (`skus::ADDONS`), `GB_PER_UNIT` GB per
    // storage unit; listed only where the tenant holds some.
    let gb = t.storage.additional_gb.div_ceil(skus::GB_PER_UNIT);
    for (addon, units) in [
        (AddOn::ProductionSlot, t.slots.production),
        (AddOn::SandboxSlot, t.slots.sandbox),
        (AddOn::DatabaseStorage, gb),
    ] {
        if units == 0 {
            continue;
        }
        let (part, sku_id) = skus::addon_sku(addon);
        value.push(json!({
            "id": format!("{}_{sku_id}", shared.config.tenant_id),
            "skuId": sku_id,
            "skuPartNumber": part,
            "capabilityStatus": "Enabled",
            "appliesTo": "Company",
            "consumedUnits": 0,
            "prepaidUnits": {"enabled": units, "suspended": 0, "warning": 0, "lockedOut": 0},
            "servicePlans": [],
        }));
    }
    Answer::json(
        200,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#subscribedSkus", shared.base),
            "value": value,
        }),
    )
}

fn invalid_sku(ctx: &Ctx, sku: &str) -> Answer {
    bad_request(
        ctx,
        &format!("License {sku} does not correspond to a valid company License."),
    )
}

/// `POST /users/{id}/assignLicense`. The tenant holds one licence per user (T3): adding a
/// SKU replaces the one held; adding two at once is refused.
pub(super) async fn assign_license(shared: &Shared, ctx: &Ctx, id: &str, body: &Value) -> Answer {
    let list = |k: &str| body.get(k).and_then(Value::as_array).cloned();
    let (Some(add), Some(remove)) = (list("addLicenses"), list("removeLicenses")) else {
        return bad_request(
            ctx,
            "addLicenses and removeLicenses are required (either may be empty).",
        );
    };
    let mut add_plans = Vec::new();
    for a in &add {
        let sku = a.get("skuId").and_then(Value::as_str).unwrap_or_default();
        match shared.config.skus.plan_of_sku_id(sku) {
            Some(p) => add_plans.push(p),
            None => return invalid_sku(ctx, sku),
        }
    }
    let mut remove_plans = Vec::new();
    for r in &remove {
        let sku = r.as_str().unwrap_or_default();
        match shared.config.skus.plan_of_sku_id(sku) {
            Some(p) => remove_plans.push(p),
            None => return invalid_sku(ctx, sku),
        }
    }
    if add_plans.len() > 1 {
        return bad_request(
            ctx,
            "The emulated tenant holds one licence per user (T3): add one SKU at a time.",
        );
    }
    let _w = shared.write_lock.lock().await;
    let t = or_answer!(tenant(shared, ctx).await);
    let Some(u) = t.users.get(id) else {
        return not_found(ctx, id);
    };
    // As `user_json` shows it (the tenant's own users are located in its country).
    let located = usage_location(shared, u).is_some();
    if !add_plans.is_empty() && !located {
        return bad_request(
            ctx,
            "License assignment cannot be done for user with invalid usage location.",
        );
    }
    let op = match (add_plans.first(), u.license) {
        (Some(&plan), _) => Some(Op::AssignLicense {
            user: obj(id),
            plan,
        }),
        (None, Some(held)) if remove_plans.contains(&held) => {
            Some(Op::RemoveLicense { user: obj(id) })
        }
        (None, _) => None,
    };
    if let Some(op) = op {
        if let Err(a) = exec(shared, ctx, &op, id).await {
            return a;
        }
    }
    match tenant(shared, ctx).await {
        Ok(t) => t.users.get(id).map_or_else(
            || not_found(ctx, id),
            |u| Answer::json(200, user_json(shared, u, false)),
        ),
        Err(a) => a,
    }
}
