//! The Power Platform backends (issue 13):
//! the Power Platform API's on-demand backups ([`backup`]) and the admin API's environments
//! ([`environments`]).

pub mod backup;
pub mod environments;
