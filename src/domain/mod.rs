//! The service's vocabulary, shared by every layer and depending on none: the kinds and
//! enums of the service (`kinds`) and the operations a provider executes (`op`). No I/O;
//! nothing here imports the desired file, the observed tenant, the planner, the state or a
//! provider.

pub mod kinds;
pub mod op;
