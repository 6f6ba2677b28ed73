//! The one integration test binary (issue 11 item 6): a module per area, with the shared
//! builders in `common` (planner inputs) and `support` (running the `crmctl` binary).
#![allow(dead_code)]

mod common;
mod support;

mod apply_cli;
mod apply_crash;
mod apply_engine;
mod apply_faults;
mod apply_proptest;
mod appusers;
mod bap_client;
mod bap_emulator;
mod cert_signin;
mod ci_kit;
mod dataverse;
mod delta;
mod drift;
mod drift_followups;
mod driftwho;
mod emulator;
mod import;
mod intent;
mod json_output;
mod layers;
mod local_provider;
mod mem;
mod microsoft_e2e;
mod microsoft_examples;
mod microsoft_lifecycle;
mod plan_cli;
mod plan_props;
mod plan_render;
mod plan_semantics;
mod plan_smoke;
mod plan_storage;
mod remote_state;
mod schema;
mod schema_ajv;
mod setup_cli;
mod skus;
mod state_store;
mod targeting;
mod transport;
mod validate_cli;
mod validate_rules;
