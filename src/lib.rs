//! crmctl: manage a Dynamics CRM Online (Dynamics 365) tenant as code.
//!
//! See ARCHITECTURE.md for the code map and the invariants between modules.
#![deny(missing_docs)]

pub mod alloc;
pub mod apply;
pub mod cli;
pub mod desired;
pub mod diag;
pub mod domain;
pub mod emulator;
pub mod observed;
pub mod ops;
pub mod plan;
pub mod provider;
pub mod render;
pub mod state;
pub mod synth;
