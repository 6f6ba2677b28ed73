//! The provider boundary: observe a tenant, execute one operation.
//!
//! Every backend (the embedded local tenant, and later Microsoft Graph / Power Platform
//! admin API / Dataverse) implements [`Provider`]. The trait knows nothing of files, state
//! or plans: it takes one [`Op`] whose references carry remote ids, and either does it
//! completely or refuses it with a [`ProviderError`] naming the service rule.

pub mod local;
pub mod memory;

use crate::domain::op::Op;
use crate::observed::Tenant;

/// Why a provider refused or failed an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The service refuses the request because it breaks a rule of domain.md.
    #[error("refused by the service ({rule}): {message}")]
    Refused {
        /// Rule id, e.g. `I8`.
        rule: String,
        /// What was wrong.
        message: String,
    },
    /// An object the op refers to does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The op was malformed (e.g. a reference without an id).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Storage or transport failure; the op was not done.
    #[error("backend failure: {0}")]
    Backend(String),
}

impl ProviderError {
    /// A refusal citing `rule`.
    pub fn refused(rule: &str, message: impl Into<String>) -> Self {
        ProviderError::Refused {
            rule: rule.to_string(),
            message: message.into(),
        }
    }
}

/// What an executed op produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The remote id of the object the op created, if it created one.
    pub created_id: Option<String>,
}

/// A tenant backend.
///
/// Contract: `execute` is atomic (all or nothing) and durable once it returns `Ok`.
/// It must check every rule of domain.md itself and never trust the caller's ordering.
/// Both methods take `&self` so that apply can run independent actions concurrently; a
/// provider that cannot serve requests in parallel serializes them internally.
pub trait Provider: Send + Sync {
    /// Read the whole tenant.
    fn observe(&self) -> Result<Tenant, ProviderError>;
    /// Execute one operation. References in `op` carry remote ids.
    fn execute(&self, op: &Op) -> Result<Outcome, ProviderError>;

    /// Execute several independent operations (none waits on another), e.g. as one batch
    /// request. Each op stays atomic on its own and succeeds or fails alone; the results
    /// are in the order of `ops`. The default executes them one by one.
    fn execute_batch(&self, ops: &[Op]) -> Vec<Result<Outcome, ProviderError>> {
        ops.iter().map(|op| self.execute(op)).collect()
    }

    /// How many ops one [`Provider::execute_batch`] call should carry (1: no batching).
    fn batch_size(&self) -> usize {
        1
    }
}
