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
//! Add-ons (I2, T6, T8: instance slots and storage are SKUs of `subscribedSkus` where the
//! tenant holds them), rows of the same page ([`ADDONS`]):
//! - "Dynamics 365 - Additional Production Instance (Qualified Offer) | CRMINSTANCE |
//!   9d776713-14cb-4697-a21d-9a52455c738a"
//! - "Dynamics 365 - Additional Non-Production Instance (Qualified Offer) | CRMTESTINSTANCE |
//!   e06abcc2-7ec5-4a79-b08b-d9c282376f72"
//! - "Dynamics 365 - Additional Database Storage (Qualified Offer) | CRMSTORAGE |
//!   328dc228-00bc-48c6-8b09-1fbc8bc3435d"
//! - "Common Data Service Database Capacity | CDS_DB_CAPACITY |
//!   e612d426-6bc3-4181-9658-91aa906b0ac0"
//! - "Common Data Service for Apps File Capacity | CDS_FILE_CAPACITY |
//!   631d5fb1-a668-4c2a-9427-8830665a742e"
//! - "Common Data Service Log Capacity | CDS_LOG_CAPACITY |
//!   448b063f-9cc6-42fc-a0e6-40e08724a395"
//!
//! One unit of a storage add-on is 1 GB (MicrosoftDocs/power-platform,
//! `power-platform/admin/whats-new-storage.md`: "You can purchase more storage in 1-GB
//! increments"; the 2015 guide [000] sells the CRM Online storage add-on by the GB). One
//! unit of an instance add-on is one slot (I2). The tenant's storage (T6, T8) is the database
//! storage every instance shares: database add-ons count in it; file and log capacity are
//! read (so that they are never taken for licences) but the model has no figure for them.
//!
//! Tenants buy different offers: the desired file's `skus:` maps a plan to another SKU
//! (validated here and in `desired::validate`), and `provider::graph::skus::SkuTable` is the
//! table in use. No I/O.

use crate::domain::kinds::LicensePlan;

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

/// What an add-on SKU adds to the tenant's capacity (I2, T6, T8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOn {
    /// One production instance slot per unit (I2).
    ProductionSlot,
    /// One sandbox (non-production) instance slot per unit (I2).
    SandboxSlot,
    /// Database storage, `GB_PER_UNIT` per unit: the shared storage of T6/T8.
    DatabaseStorage,
    /// File capacity (Dataverse's capacity model): not a figure of the tenant's model.
    FileStorage,
    /// Log capacity (Dataverse's capacity model): not a figure of the tenant's model.
    LogStorage,
}

/// GB per unit of a storage add-on (see the module's sources).
pub const GB_PER_UNIT: u32 = 1;

/// The add-on rows: what it adds, `skuPartNumber`, `skuId` (see the module's sources). The
/// first row of each kind is the one the emulator lists.
pub const ADDONS: [(AddOn, &str, &str); 6] = [
    (
        AddOn::ProductionSlot,
        "CRMINSTANCE",
        "9d776713-14cb-4697-a21d-9a52455c738a",
    ),
    (
        AddOn::SandboxSlot,
        "CRMTESTINSTANCE",
        "e06abcc2-7ec5-4a79-b08b-d9c282376f72",
    ),
    (
        AddOn::DatabaseStorage,
        "CRMSTORAGE",
        "328dc228-00bc-48c6-8b09-1fbc8bc3435d",
    ),
    (
        AddOn::DatabaseStorage,
        "CDS_DB_CAPACITY",
        "e612d426-6bc3-4181-9658-91aa906b0ac0",
    ),
    (
        AddOn::FileStorage,
        "CDS_FILE_CAPACITY",
        "631d5fb1-a668-4c2a-9427-8830665a742e",
    ),
    (
        AddOn::LogStorage,
        "CDS_LOG_CAPACITY",
        "448b063f-9cc6-42fc-a0e6-40e08724a395",
    ),
];

/// The add-on of a `skuId` (any case), if it is one.
pub fn addon_of_sku_id(sku_id: &str) -> Option<AddOn> {
    ADDONS
        .iter()
        .find(|(_, _, id)| id.eq_ignore_ascii_case(sku_id))
        .map(|(a, _, _)| *a)
}

/// The `skuPartNumber` and `skuId` the emulator lists for `addon` (its first row).
pub fn addon_sku(addon: AddOn) -> (&'static str, &'static str) {
    ADDONS
        .iter()
        .find(|(a, _, _)| *a == addon)
        .map(|(_, part, id)| (*part, *id))
        .unwrap_or((ADDONS[0].1, ADDONS[0].2))
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

/// Whether `s` is a GUID: 8-4-4-4-12 hexadecimal digits (the one matcher, in `syntax`).
pub use crate::domain::syntax::is_guid;

/// What the JSON Schema accepts for a SKU in the desired file: a GUID or a part number
/// (validation then tells a mistyped GUID from a part number: [`is_guid`],
/// [`is_part_number`]).
pub const SKU_PATTERN: &str = r"^[A-Za-z0-9_()+. -]+$";

/// Whether `s` is written as a `skuPartNumber`: letters, digits, `_`, `-`, `(`, `)`, `+`,
/// `.` and spaces (the page lists e.g. `Microsoft_365_Business_Basic_(no Teams)`), with a
/// letter, and not a mistyped GUID (only hexadecimal digits and `-`, with a `-`).
pub fn is_part_number(s: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_()+. -".contains(&b);
    let guid_like = s.contains('-') && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    !s.is_empty()
        && s.bytes().all(allowed)
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && !guid_like
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
        for (plan, part, id) in table {
            assert_eq!(builtin_part_number(plan), part);
            assert_eq!(builtin_sku_id(plan), id);
        }
    }

    // issue 12 item 4 (I2, T6, T8): the documented add-on rows; none is a plan's SKU, so an
    // add-on is never read as a licence.
    #[test]
    fn addon_rows_are_the_documented_skus_and_not_plans() {
        let want = [
            (
                "CRMINSTANCE",
                "9d776713-14cb-4697-a21d-9a52455c738a",
                AddOn::ProductionSlot,
            ),
            (
                "CRMTESTINSTANCE",
                "e06abcc2-7ec5-4a79-b08b-d9c282376f72",
                AddOn::SandboxSlot,
            ),
            (
                "CRMSTORAGE",
                "328dc228-00bc-48c6-8b09-1fbc8bc3435d",
                AddOn::DatabaseStorage,
            ),
            (
                "CDS_DB_CAPACITY",
                "e612d426-6bc3-4181-9658-91aa906b0ac0",
                AddOn::DatabaseStorage,
            ),
            (
                "CDS_FILE_CAPACITY",
                "631d5fb1-a668-4c2a-9427-8830665a742e",
                AddOn::FileStorage,
            ),
            (
                "CDS_LOG_CAPACITY",
                "448b063f-9cc6-42fc-a0e6-40e08724a395",
                AddOn::LogStorage,
            ),
        ];
        for (part, id, addon) in want {
            assert!(ADDONS.contains(&(addon, part, id)), "{part}");
            assert!(is_guid(id));
            assert_eq!(addon_of_sku_id(&id.to_ascii_uppercase()), Some(addon));
            assert_eq!(builtin_plan_of_sku_id(id), None, "{part} is not a plan");
        }
        assert_eq!(addon_sku(AddOn::DatabaseStorage).0, "CRMSTORAGE");
        assert_eq!(addon_of_sku_id(builtin_sku_id(LicensePlan::Basic)), None);
    }
}
