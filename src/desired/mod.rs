//! The desired model, its loading (the only place that knows YAML) and its validation.

pub mod index;
pub mod load;
pub mod model;
pub mod schema;
pub mod validate;

pub use model::Desired;
