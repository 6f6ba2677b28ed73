//! The service's vocabulary, shared by every layer and depending on none: the kinds and
//! enums of the service (`kinds`), its limits (`limits`), the syntax of names, currencies
//! and versions (`syntax`, `iso4217`), identity without case (`ident`), and the operations
//! a provider executes (`op`). No I/O;
//! nothing here imports the desired file, the observed tenant, the planner, the state or a
//! provider.

pub mod escape;
pub mod ident;
pub mod iso3166;
pub mod iso4217;
pub mod kinds;
pub mod limits;
pub mod op;
pub mod skus;
pub mod syntax;
