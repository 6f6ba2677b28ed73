//! The desired model, its loading (the only place that knows YAML) and its validation.

pub mod ident;
pub mod index;
pub mod iso4217;
pub mod load;
pub mod model;
pub mod patterns;
pub mod schema;
pub mod validate;

pub use model::Desired;
