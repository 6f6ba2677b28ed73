//! The Power Platform backends (issue 13): the admin API (BAP) client lives beside this on
//! branch `bap`; this branch adds the Power Platform API's on-demand backups.

pub mod backup;
