//! The service's numeric limits, declared once (domain.md T6, T7, P1, P3): the planner,
//! validation and every provider read them from here.

/// Included storage of every account, in GB (T6).
pub const BASE_STORAGE_GB: f64 = 5.0;
/// Storage added per 20 paid Professional + Enterprise licenses, in GB (T6).
pub const STORAGE_PER_20_LICENSES_GB: f64 = 2.5;
/// Included storage cap, in GB (T6).
pub const MAX_INCLUDED_STORAGE_GB: f64 = 50.0;
/// Paid Professional + Enterprise licenses that include one extra sandbox (T6).
pub const LICENSES_FOR_INCLUDED_SANDBOX: u32 = 25;
/// At most this many production instances per tenant (T7).
pub const MAX_PRODUCTION_INSTANCES: u32 = 50;
/// At most this many sandbox instances per tenant (T7).
pub const MAX_SANDBOX_INSTANCES: u32 = 75;
/// At most this many non-interactive users per instance (P3).
pub const MAX_NON_INTERACTIVE_PER_INSTANCE: usize = 5;

/// Most characters in the local part of a user principal name (before `@`), and in the
/// whole name (P1; the directory's limits, those of an email address).
pub const MAX_UPN_LOCAL: usize = 64;
/// See [`MAX_UPN_LOCAL`].
pub const MAX_UPN: usize = 254;
