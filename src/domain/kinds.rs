//! The service's kinds: license plans, access modes, admin roles, instance types, regions
//! and copy kinds. Shared by the desired file (`desired::model`), the observed tenant
//! (`observed`), the operations and the planner; no I/O.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A user license plan (T2).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LicensePlan {
    /// Essential.
    Essential,
    /// Basic.
    Basic,
    /// Professional: counts towards included capacity (T6) and allows add-on purchases (T5).
    Professional,
    /// Enterprise: counts towards included capacity (T6) and allows add-on purchases (T5).
    Enterprise,
}

impl LicensePlan {
    /// Every plan, in a fixed order.
    pub const ALL: [LicensePlan; 4] = [
        LicensePlan::Essential,
        LicensePlan::Basic,
        LicensePlan::Professional,
        LicensePlan::Enterprise,
    ];
    /// The name used in files and addresses.
    pub fn as_str(self) -> &'static str {
        match self {
            LicensePlan::Essential => "essential",
            LicensePlan::Basic => "basic",
            LicensePlan::Professional => "professional",
            LicensePlan::Enterprise => "enterprise",
        }
    }
    /// Whether the plan counts as a paid Professional/Enterprise license (T5, T6).
    pub fn is_pro_or_enterprise(self) -> bool {
        matches!(self, LicensePlan::Professional | LicensePlan::Enterprise)
    }
}

/// A user's access mode (P3).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    /// Normal use; needs a license.
    ReadWrite,
    /// Settings areas only; no license needed after setup (P4).
    Administrative,
    /// Programmatic access; no license needed; at most 5 per instance (P3).
    NonInteractive,
    /// Application user: non-interactive, unlimited, never licensed (P3).
    Application,
}

impl AccessMode {
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadWrite => "read-write",
            AccessMode::Administrative => "administrative",
            AccessMode::NonInteractive => "non-interactive",
            AccessMode::Application => "application",
        }
    }
}

/// A tenant administrator role (P6).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Global administrator: System Administrator in every instance without a license.
    GlobalAdmin,
    /// Billing administrator.
    BillingAdmin,
    /// Password administrator.
    PasswordAdmin,
    /// Service administrator: System Administrator in every instance without a license.
    ServiceAdmin,
    /// User management administrator.
    UserManagementAdmin,
}

/// Instance type (I7).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum InstanceType {
    /// A production instance (cannot be deleted, I8).
    Production,
    /// A sandbox instance (can be reset, copied onto, deleted; admin mode).
    Sandbox,
}

impl InstanceType {
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceType::Production => "production",
            InstanceType::Sandbox => "sandbox",
        }
    }
}

/// Datacenter region (I6).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Region {
    /// North America, `crm`.
    NA,
    /// South America / LATAM, `crm2`.
    #[serde(alias = "LATAM")]
    SAM,
    /// Canada, `crm3`.
    CAN,
    /// Europe, Middle East, Africa, `crm4`.
    EMEA,
    /// Asia Pacific, `crm5`.
    APAC,
    /// Oceania, `crm6`.
    OCE,
    /// Japan, `crm7`.
    JPN,
    /// India, `crm8`.
    IND,
    /// US government community cloud, `crm9`.
    GCC,
    /// United Kingdom, `crm11`.
    UK,
}

impl Region {
    /// The URL host suffix of the region (I6): `https://<url>.<suffix>.dynamics.com`.
    pub fn url_suffix(self) -> &'static str {
        match self {
            Region::NA => "crm",
            Region::SAM => "crm2",
            Region::CAN => "crm3",
            Region::EMEA => "crm4",
            Region::APAC => "crm5",
            Region::OCE => "crm6",
            Region::JPN => "crm7",
            Region::IND => "crm8",
            Region::GCC => "crm9",
            Region::UK => "crm11",
        }
    }
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Region::NA => "NA",
            Region::SAM => "SAM",
            Region::CAN => "CAN",
            Region::EMEA => "EMEA",
            Region::APAC => "APAC",
            Region::OCE => "OCE",
            Region::JPN => "JPN",
            Region::IND => "IND",
            Region::GCC => "GCC",
            Region::UK => "UK",
        }
    }
}

/// Kind of copy (I11).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CopyKind {
    /// All data, users and customizations.
    Full,
    /// Users, customizations and schema only.
    Minimal,
}
