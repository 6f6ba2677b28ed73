//! The file's SKU overrides (`skus:`, issue 12 item 4; T2: one SKU per licence plan): each
//! value is a `skuId` GUID or a `skuPartNumber`, and no two plans share a SKU, counting the
//! built-in SKU of every plan the file does not override (an observed licence must tell
//! its plan).

use std::collections::BTreeMap;

use super::err;
use crate::desired::model::Desired;
use crate::diag::Diagnostic;
use crate::domain::kinds::LicensePlan;
use crate::domain::skus;

pub(super) fn skus(d: &Desired, out: &mut Vec<Diagnostic>) {
    let Some(map) = &d.skus else { return };
    // Every plan's SKU names after the overrides: (plan, name, overridden by the file).
    let mut names: Vec<(LicensePlan, String, bool)> = Vec::new();
    for plan in LicensePlan::ALL {
        match map.get(&plan) {
            Some(v) => names.push((plan, v.to_ascii_lowercase(), true)),
            None => {
                names.push((
                    plan,
                    skus::builtin_part_number(plan).to_ascii_lowercase(),
                    false,
                ));
                names.push((plan, skus::builtin_sku_id(plan).to_string(), false));
            }
        }
    }
    let mut seen: BTreeMap<&str, (LicensePlan, bool)> = BTreeMap::new();
    for (plan, value) in map {
        let address = format!("skus.{}", plan.as_str());
        if !skus::is_guid(value) && !skus::is_part_number(value) {
            out.push(
                err(
                    address,
                    "T2",
                    format!(
                        "`{value}` is neither a SKU id (a GUID, 8-4-4-4-12 hexadecimal digits) nor a SKU part number (letters, digits, `_`, `-`)"
                    ),
                )
                .hint("copy `skuId` or `skuPartNumber` of the offer from the tenant's `GET /subscribedSkus` (Microsoft 365 admin center > Billing > Licenses)"),
            );
            continue;
        }
        if let Some(addon) = skus::ADDONS.iter().find(|(_, part, id)| {
            part.eq_ignore_ascii_case(value) || id.eq_ignore_ascii_case(value)
        }) {
            out.push(err(
                address,
                "T2",
                format!(
                    "`{value}` is the add-on SKU {} (instance slots or storage), not a user licence",
                    addon.1
                ),
            ));
        }
    }
    for (plan, name, from_file) in &names {
        if let Some((other, other_from_file)) = seen.get(name.as_str()) {
            // Reported at the file's entry (the later one when both are the file's).
            let (at, with) = if *from_file {
                (plan, other)
            } else {
                (other, plan)
            };
            let how = if *from_file && *other_from_file {
                format!("`skus.{}` maps it too", with.as_str())
            } else {
                format!("it is the built-in SKU of `{}`", with.as_str())
            };
            out.push(
                err(
                    format!("skus.{}", at.as_str()),
                    "T2",
                    format!(
                        "plans `{}` and `{}` both map to SKU `{}` ({how}): an observed licence could not tell its plan",
                        other.as_str(),
                        plan.as_str(),
                        map.get(at).map(String::as_str).unwrap_or(name.as_str())
                    ),
                )
                .hint(format!(
                    "give `{}` and `{}` each its own SKU",
                    other.as_str(),
                    plan.as_str()
                )),
            );
            continue;
        }
        seen.insert(name.as_str(), (*plan, *from_file));
    }
}
