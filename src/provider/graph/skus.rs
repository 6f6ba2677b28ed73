//! The plan <-> SKU table in use by the Graph provider (issue 12 item 4): the built-in rows
//! and the add-ons of [`crate::domain::skus`] (where their sources are cited), with the
//! desired file's overrides (`skus:`) applied. No I/O.

pub use crate::domain::skus::*;

use crate::domain::kinds::LicensePlan;

/// One plan's SKU: what Graph calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku {
    /// The license plan.
    pub plan: LicensePlan,
    /// `skuPartNumber` ("String ID"), e.g. `CRMSTANDARD`.
    pub part_number: String,
    /// `skuId` ("GUID"), lower case.
    pub sku_id: String,
}

/// Why an override is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkuError {
    /// The `skuId` is not a GUID.
    #[error("sku id `{0}` of plan `{1}` is not a GUID (8-4-4-4-12 hexadecimal digits, as `subscribedSkus` lists it)")]
    NotAGuid(String, &'static str),
    /// The part number is empty or has characters Graph never uses.
    #[error("sku part number `{0}` of plan `{1}` is not a part number (letters, digits and `_`, as `subscribedSkus` lists it)")]
    BadPartNumber(String, &'static str),
    /// Two plans would share one SKU, so an observed licence could not tell its plan.
    #[error("plans `{0}` and `{1}` both map to sku `{2}`: give each plan its own SKU")]
    Shared(&'static str, &'static str, String),
}

/// The table in use: one SKU per plan, looked up both ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuTable {
    /// In the order of [`LicensePlan::ALL`].
    rows: Vec<Sku>,
}

impl Default for SkuTable {
    fn default() -> Self {
        SkuTable::builtin()
    }
}

impl SkuTable {
    /// The built-in table ([`BUILTIN`]).
    pub fn builtin() -> SkuTable {
        SkuTable {
            rows: BUILTIN
                .iter()
                .map(|(plan, part, id)| Sku {
                    plan: *plan,
                    part_number: (*part).to_string(),
                    sku_id: (*id).to_string(),
                })
                .collect(),
        }
    }

    /// The table with `plan` mapped to another SKU (a tenant that bought another offer).
    /// The id is stored in lower case; two plans may not share a SKU.
    pub fn with_override(
        mut self,
        plan: LicensePlan,
        part_number: &str,
        sku_id: &str,
    ) -> Result<SkuTable, SkuError> {
        if !is_guid(sku_id) {
            return Err(SkuError::NotAGuid(sku_id.to_string(), plan.as_str()));
        }
        if !is_part_number(part_number) {
            return Err(SkuError::BadPartNumber(
                part_number.to_string(),
                plan.as_str(),
            ));
        }
        let id = sku_id.to_ascii_lowercase();
        for row in &self.rows {
            if row.plan != plan
                && (row.sku_id == id || row.part_number.eq_ignore_ascii_case(part_number))
            {
                return Err(SkuError::Shared(
                    row.plan.as_str(),
                    plan.as_str(),
                    part_number.to_string(),
                ));
            }
        }
        if let Some(row) = self.rows.iter_mut().find(|r| r.plan == plan) {
            row.part_number = part_number.to_string();
            row.sku_id = id;
        }
        Ok(self)
    }

    /// The SKU of `plan`.
    pub fn sku(&self, plan: LicensePlan) -> &Sku {
        // Every plan has a row: built from BUILTIN, which lists each plan once (tested).
        self.rows
            .iter()
            .find(|r| r.plan == plan)
            .unwrap_or(&self.rows[0])
    }

    /// The `skuId` of `plan`.
    pub fn sku_id(&self, plan: LicensePlan) -> &str {
        &self.sku(plan).sku_id
    }

    /// The `skuPartNumber` of `plan`.
    pub fn part_number(&self, plan: LicensePlan) -> &str {
        &self.sku(plan).part_number
    }

    /// The plan whose `skuId` is `sku_id` (any case), if any: other SKUs of the tenant
    /// (Office, Entra) are not crmctl's.
    pub fn plan_of_sku_id(&self, sku_id: &str) -> Option<LicensePlan> {
        self.rows
            .iter()
            .find(|r| r.sku_id.eq_ignore_ascii_case(sku_id))
            .map(|r| r.plan)
    }

    /// The plan whose `skuPartNumber` is `part_number` (any case), if any.
    pub fn plan_of_part_number(&self, part_number: &str) -> Option<LicensePlan> {
        self.rows
            .iter()
            .find(|r| r.part_number.eq_ignore_ascii_case(part_number))
            .map(|r| r.plan)
    }

    /// Every row, in the order of [`LicensePlan::ALL`].
    pub fn rows(&self) -> &[Sku] {
        &self.rows
    }
}

/// The built-in table with the desired file's overrides (`skus:` plan -> `skuPartNumber` or
/// `skuId`), resolved against the tenant's SKUs `listed` as (`skuId`, `skuPartNumber`)
/// pairs from `subscribedSkus`: each override takes the other half of the SKU the tenant
/// lists for it. One the tenant does not list is an error naming the file's entry and what
/// the tenant holds (no licence of that offer could be read or assigned).
pub fn resolve(
    overrides: &[(LicensePlan, String)],
    listed: &[(String, String)],
) -> Result<SkuTable, crate::provider::ProviderError> {
    use crate::provider::ProviderError;
    let mut table = SkuTable::builtin();
    for (plan, value) in overrides {
        let at = format!("skus.{}", plan.as_str());
        let (what, found) = if is_guid(value) {
            let found = listed.iter().find(|(id, _)| id.eq_ignore_ascii_case(value));
            ("id", found)
        } else {
            let found = listed
                .iter()
                .find(|(_, part)| part.eq_ignore_ascii_case(value));
            ("part number", found)
        };
        let Some((id, part)) = found else {
            let mut names: Vec<String> = listed
                .iter()
                .map(|(id, part)| format!("{part} ({id})"))
                .collect();
            names.sort_unstable();
            return Err(ProviderError::Invalid(format!(
                "{at}: the tenant holds no SKU with {what} `{value}` (its subscribedSkus: {}); write the skuPartNumber or skuId of an offer the tenant holds",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )));
        };
        table = table
            .with_override(*plan, part, id)
            .map_err(|e| ProviderError::Invalid(format!("{at}: {e}")))?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 12 item 4: lookups both ways, case-insensitive, other SKUs are not plans.
    #[test]
    fn lookups_both_ways() {
        let t = SkuTable::builtin();
        for plan in LicensePlan::ALL {
            let id = t.sku_id(plan).to_ascii_uppercase();
            assert_eq!(t.plan_of_sku_id(&id), Some(plan));
            assert_eq!(builtin_plan_of_sku_id(&id), Some(plan));
            let part = t.part_number(plan).to_ascii_lowercase();
            assert_eq!(t.plan_of_part_number(&part), Some(plan));
            assert_eq!(builtin_plan_of_part_number(&part), Some(plan));
        }
        // Office 365 E3 (ENTERPRISEPACK) is a SKU of the tenant, not a crmctl plan.
        assert_eq!(
            t.plan_of_sku_id("6fd2c87f-b296-42f0-b197-1e91e994b900"),
            None
        );
        assert_eq!(t.plan_of_part_number("ENTERPRISEPACK"), None);
    }

    // issue 12 item 4 (T2): the file's overrides are resolved against subscribedSkus: a part
    // number takes the listed id, a GUID the listed part number; an unlisted part number
    // is an error naming the file's entry and what the tenant holds.
    #[test]
    fn overrides_resolve_against_the_listed_skus() {
        let listed = vec![
            (
                "1E1A282C-9C54-43A2-9310-98EF728FAACE".to_string(),
                "DYN365_ENTERPRISE_SALES".to_string(),
            ),
            (
                "d17b27af-3f49-4822-99f9-56a661538792".to_string(),
                "CRMSTANDARD".to_string(),
            ),
        ];
        let t = resolve(
            &[(LicensePlan::Enterprise, "dyn365_enterprise_sales".into())],
            &listed,
        )
        .unwrap();
        assert_eq!(
            t.sku_id(LicensePlan::Enterprise),
            "1e1a282c-9c54-43a2-9310-98ef728faace"
        );
        let t = resolve(
            &[(
                LicensePlan::Enterprise,
                "1e1a282c-9c54-43a2-9310-98ef728faace".into(),
            )],
            &listed,
        )
        .unwrap();
        assert_eq!(
            t.part_number(LicensePlan::Enterprise),
            "DYN365_ENTERPRISE_SALES"
        );
        let e = resolve(&[(LicensePlan::Basic, "NOT_HELD".into())], &listed)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("skus.basic") && e.contains("NOT_HELD") && e.contains("CRMSTANDARD"),
            "{e}"
        );
        // Two plans on one SKU are refused here too (the file's validation says where).
        let e = resolve(&[(LicensePlan::Basic, "CRMSTANDARD".into())], &listed).unwrap_err();
        assert!(e.to_string().contains("skus.basic"), "{e}");
    }

    // issue 12 item 4: overrides replace one plan's row and are checked.
    #[test]
    fn overrides_are_checked() {
        let t = SkuTable::builtin()
            .with_override(
                LicensePlan::Enterprise,
                "DYN365_ENTERPRISE_SALES",
                "1E1A282C-9C54-43A2-9310-98EF728FAACE",
            )
            .unwrap();
        assert_eq!(
            t.part_number(LicensePlan::Enterprise),
            "DYN365_ENTERPRISE_SALES"
        );
        assert_eq!(
            t.sku_id(LicensePlan::Enterprise),
            "1e1a282c-9c54-43a2-9310-98ef728faace"
        );
        assert_eq!(
            t.plan_of_sku_id("ea126fc5-a19e-42e2-a731-da9d437bffcf"),
            None
        );
        assert_eq!(
            t.sku_id(LicensePlan::Basic),
            builtin_sku_id(LicensePlan::Basic)
        );

        type Want = fn(&SkuError) -> bool;
        let cases: [(&str, &str, Want); 3] = [
            ("X", "not-a-guid", |e| matches!(e, SkuError::NotAGuid(..))),
            ("", "1e1a282c-9c54-43a2-9310-98ef728faace", |e| {
                matches!(e, SkuError::BadPartNumber(..))
            }),
            ("CRMSTANDARD", "1e1a282c-9c54-43a2-9310-98ef728faace", |e| {
                matches!(e, SkuError::Shared(..))
            }),
        ];
        for (part, id, want) in cases {
            let e = SkuTable::builtin()
                .with_override(LicensePlan::Basic, part, id)
                .unwrap_err();
            assert!(want(&e), "{part} {id}: {e}");
        }
    }
}
