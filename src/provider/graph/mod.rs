//! The Microsoft Graph provider (issue 12 item 4): the directory half of a tenant.

pub mod skus;
