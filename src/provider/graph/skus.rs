//! The built-in table between crmctl's license plans (T2) and the Microsoft Graph SKUs of
//! the Dynamics CRM Online / Dynamics 365 offers (issue 12 item 4): `skuPartNumber` (the
//! "String ID") and `skuId` (the "GUID") of `subscribedSkus`, `assignedLicenses` and
//! `assignLicense`.
//!
//! Source: Microsoft's "Product names and service plan identifiers for licensing"
//! (learn.microsoft.com/entra/identity/users/licensing-service-plan-reference; the file
//! `docs/identity/users/licensing-service-plan-reference.md` of MicrosoftDocs/entra-docs,
//! "last updated on October 29, 2025"). Rows used:
//! - "Microsoft Dynamics CRM Online Basic | CRMPLAN2 | 906af65a-2970-46d5-9b58-4e9aa50f0657"
//! - "Microsoft Dynamics CRM Online | CRMSTANDARD | d17b27af-3f49-4822-99f9-56a661538792"
//!   (its service plan CRMSTANDARD is "MICROSOFT DYNAMICS CRM ONLINE PROFESSIONAL")
//! - "Dynamics 365 Plan 1 Enterprise Edition | DYN365_ENTERPRISE_PLAN1 |
//!   ea126fc5-a19e-42e2-a731-da9d437bffcf" (its service plan is "Dynamics 365 Customer
//!   Engagement Plan")
//! - "Dynamics 365 for Team Members Enterprise Edition | DYN365_ENTERPRISE_TEAM_MEMBERS |
//!   8e7a3d30-d97d-43ab-837c-d7701cef83dc"
//!
//! Plans without a single SKU of their own on that page:
//! - **essential**: the CRM Online Essential offer is not listed any more; its successor,
//!   Dynamics 365 Team Members (Enterprise Edition), is the documented closest.
//! - **enterprise**: "CRM Online Enterprise" is not listed; the Dynamics 365 Customer
//!   Engagement Plan (SKU `DYN365_ENTERPRISE_PLAN1`) is the documented closest.
//!
//! Tenants buy different offers: a [`SkuTable`] starts from [`BUILTIN`] and takes
//! overrides (the desired file's, once it has the field). No I/O.

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

/// The built-in rows: plan, `skuPartNumber`, `skuId` (see the module's sources).
pub const BUILTIN: [(LicensePlan, &str, &str); 4] = [
    (
        LicensePlan::Essential,
        "DYN365_ENTERPRISE_TEAM_MEMBERS",
        "8e7a3d30-d97d-43ab-837c-d7701cef83dc",
    ),
    (
        LicensePlan::Basic,
        "CRMPLAN2",
        "906af65a-2970-46d5-9b58-4e9aa50f0657",
    ),
    (
        LicensePlan::Professional,
        "CRMSTANDARD",
        "d17b27af-3f49-4822-99f9-56a661538792",
    ),
    (
        LicensePlan::Enterprise,
        "DYN365_ENTERPRISE_PLAN1",
        "ea126fc5-a19e-42e2-a731-da9d437bffcf",
    ),
];

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
        if part_number.is_empty()
            || !part_number
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
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

/// The `skuId` of `plan` in the built-in table.
pub fn builtin_sku_id(plan: LicensePlan) -> &'static str {
    BUILTIN
        .iter()
        .find(|(p, _, _)| *p == plan)
        .map(|(_, _, id)| *id)
        .unwrap_or(BUILTIN[0].2)
}

/// The `skuPartNumber` of `plan` in the built-in table.
pub fn builtin_part_number(plan: LicensePlan) -> &'static str {
    BUILTIN
        .iter()
        .find(|(p, _, _)| *p == plan)
        .map(|(_, part, _)| *part)
        .unwrap_or(BUILTIN[0].1)
}

/// The plan of a `skuId` (any case) in the built-in table.
pub fn builtin_plan_of_sku_id(sku_id: &str) -> Option<LicensePlan> {
    BUILTIN
        .iter()
        .find(|(_, _, id)| id.eq_ignore_ascii_case(sku_id))
        .map(|(p, _, _)| *p)
}

/// The plan of a `skuPartNumber` (any case) in the built-in table.
pub fn builtin_plan_of_part_number(part_number: &str) -> Option<LicensePlan> {
    BUILTIN
        .iter()
        .find(|(_, part, _)| part.eq_ignore_ascii_case(part_number))
        .map(|(p, _, _)| *p)
}

/// Whether `s` is a GUID: 8-4-4-4-12 hexadecimal digits.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 12 item 4: every plan has exactly one row, and the rows are distinct GUIDs.
    #[test]
    fn builtin_has_one_row_per_plan_with_distinct_guids() {
        for plan in LicensePlan::ALL {
            assert_eq!(BUILTIN.iter().filter(|(p, _, _)| *p == plan).count(), 1);
        }
        for (i, (_, part, id)) in BUILTIN.iter().enumerate() {
            assert!(is_guid(id), "{id}");
            assert_eq!(id.to_ascii_lowercase(), *id);
            for (_, part2, id2) in &BUILTIN[i + 1..] {
                assert_ne!(id, id2);
                assert_ne!(part, part2);
            }
        }
    }

    // issue 12 item 4: the documented rows (Product names and service plan identifiers).
    #[test]
    fn builtin_rows_are_the_documented_skus() {
        let table = [
            (
                LicensePlan::Basic,
                "CRMPLAN2",
                "906af65a-2970-46d5-9b58-4e9aa50f0657",
            ),
            (
                LicensePlan::Professional,
                "CRMSTANDARD",
                "d17b27af-3f49-4822-99f9-56a661538792",
            ),
            (
                LicensePlan::Enterprise,
                "DYN365_ENTERPRISE_PLAN1",
                "ea126fc5-a19e-42e2-a731-da9d437bffcf",
            ),
            (
                LicensePlan::Essential,
                "DYN365_ENTERPRISE_TEAM_MEMBERS",
                "8e7a3d30-d97d-43ab-837c-d7701cef83dc",
            ),
        ];
        let t = SkuTable::builtin();
        for (plan, part, id) in table {
            assert_eq!(t.part_number(plan), part);
            assert_eq!(t.sku_id(plan), id);
            assert_eq!(builtin_part_number(plan), part);
            assert_eq!(builtin_sku_id(plan), id);
        }
    }

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
