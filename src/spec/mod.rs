//! The desired model, its loading (the only place that knows YAML) and its validation.

pub mod load;
pub mod model;

pub use model::Desired;
