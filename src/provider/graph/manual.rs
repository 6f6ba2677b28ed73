//! Where a person does what Microsoft offers no public API for (issue 13 item 4): the
//! plan shows these as manual steps and apply waits for the tenant to show them done.
//!
//! Sources: "No API buys licences (subscriptions are read-only in Graph)" and "No public
//! API: approving/scheduling customer-engagement updates, update notification recipients,
//! buying licences, instance add-ons or storage" (docs/…/microsoft-apis.md of the project
//! brief, from the Graph v1.0 subscribedSku reference and the Power Platform admin API
//! reference); the admin center paths from Microsoft 365's "Buy or remove licenses for a
//! Microsoft business subscription" (MicrosoftDocs/microsoft-365-docs, commerce/licenses)
//! and the Power Platform admin documentation (MicrosoftDocs/power-platform,
//! admin/admin-documentation.md); additional notification emails are what
//! `Set-AdminPowerAppCdsAdditionalNotificationEmails` (Microsoft.PowerApps.Administration.
//! PowerShell) sets.

use super::skus::SkuTable;
use crate::domain::kinds::InstanceType;
use crate::domain::op::Op;

const M365: &str = "Microsoft 365 admin center (admin.microsoft.com)";
const PPAC: &str = "Power Platform admin center (admin.powerplatform.microsoft.com)";

/// The place of `op` when a person must do it; `None` when Graph does it.
pub(super) fn place(skus: &SkuTable, op: &Op) -> Option<String> {
    Some(match op {
        Op::PurchaseLicenses { plan, .. } => format!(
            "{M365} > Billing > Your products > the subscription with SKU {} > Buy licenses",
            skus.part_number(*plan)
        ),
        Op::ReduceLicenses { plan, .. } => format!(
            "{M365} > Billing > Your products > the subscription with SKU {} > Remove licenses",
            skus.part_number(*plan)
        ),
        Op::PurchaseStorage { .. } | Op::ReduceStorage { .. } => format!(
            "{M365} > Billing > Purchase services (add-on \"Dynamics 365 - Additional Database Storage\", quantity in GB)"
        ),
        Op::PurchaseInstance { kind } => format!(
            "{M365} > Billing > Purchase services (add-on \"{}\")",
            match kind {
                InstanceType::Production => "Dynamics 365 - Additional Production Instance",
                InstanceType::Sandbox => "Dynamics 365 - Additional Non-Production Instance",
            }
        ),
        Op::ScheduleUpdate { .. } => {
            format!("{PPAC} > Environments > the environment > Updates")
        }
        Op::SetNotificationRecipients { .. } => format!(
            "{PPAC} > Environments > the environment > Edit > additional notification recipients (or PowerShell: Set-AdminPowerAppCdsAdditionalNotificationEmails)"
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kinds::LicensePlan;

    // Issue 13 item 4: what has no public API is manual, with the place and the SKU; what
    // Graph does is not.
    #[test]
    fn purchases_updates_and_recipients_are_manual_the_directory_is_not() {
        let skus = SkuTable::builtin();
        let buy = place(
            &skus,
            &Op::PurchaseLicenses {
                plan: LicensePlan::Professional,
                to: 3,
            },
        )
        .expect("manual");
        assert!(
            buy.contains("Buy licenses") && buy.contains("CRMSTANDARD"),
            "{buy}"
        );
        for op in [
            Op::ReduceStorage { to_gb: 0 },
            Op::PurchaseInstance {
                kind: InstanceType::Sandbox,
            },
        ] {
            assert!(place(&skus, &op).is_some(), "{op:?}");
        }
        let group = Op::CreateGroup {
            name: "g".into(),
            description: String::new(),
        };
        assert_eq!(place(&skus, &group), None);
    }
}
