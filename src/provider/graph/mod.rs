//! The Microsoft Graph provider (issue 12 item 4): the directory half of a tenant (users,
//! security groups and their members, licence counts and assignments, global admins)
//! through Graph v1.0, over any [`Http`] (the real transport, the emulator over loopback,
//! or a fake in tests). Instances, security roles, access modes, storage and slots are
//! the Power Platform half (the next issue): observe leaves them empty and execute refuses
//! their ops with what to do instead.
//!
//! Files: `skus.rs` (plan <-> SKU table), `wire.rs` (errors, paging, `$batch`),
//! `observe.rs`, `execute.rs`, `members.rs` (membership changes, batched).

pub mod skus;

mod delta;
mod execute;
mod manual;
mod members;
mod observe;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::domain::kinds::{AdminRole, LicensePlan};
use crate::domain::op::Op;
use crate::observed::Tenant;
use crate::provider::http::{Http, Request, Response};
use crate::provider::{
    BoxFuture, Executed, ObserveCursor, Provider, ProviderError, RequestFamily, Scope,
};

use skus::SkuTable;

/// The public cloud's Graph host: what `@odata.id` references name by default.
pub const PUBLIC_GRAPH: &str = "https://graph.microsoft.com";

/// Template id of the Global Administrator directory role (Graph: "Microsoft Entra
/// built-in roles", and the role's `roleTemplateId`).
pub const GLOBAL_ADMIN_TEMPLATE: &str = "62e90394-69f5-4237-9190-012177145e10";

/// The tenant admin roles of P6 as Microsoft Entra directory roles, by template id
/// ("Microsoft Entra built-in roles", MicrosoftDocs/entra-docs
/// `docs/identity/role-based-access-control/permissions-reference.md`, "All roles":
/// Global Administrator, Billing Administrator, Password Administrator, Dynamics 365
/// Administrator "Can manage all aspects of the Dynamics 365 product" (the CRM service
/// administrator of P6, System Administrator in every instance), User Administrator).
pub const ADMIN_ROLE_TEMPLATES: [(AdminRole, &str); 5] = [
    (AdminRole::GlobalAdmin, GLOBAL_ADMIN_TEMPLATE),
    (
        AdminRole::BillingAdmin,
        "b0f54661-2d74-4c50-afa3-1ec803f12efe",
    ),
    (
        AdminRole::PasswordAdmin,
        "966707d0-3269-4727-9be2-8c3a10f19b9d",
    ),
    (
        AdminRole::ServiceAdmin,
        "44367163-eba1-44c3-98af-f5787879f96a",
    ),
    (
        AdminRole::UserManagementAdmin,
        "fe930be7-5e62-47db-91af-98c3a49a38b1",
    ),
];

/// Membership changes: one `$batch` carries up to 20 of them (json-batching).
pub const MEMBERSHIP: RequestFamily = RequestFamily {
    name: "graph-membership",
    max_ops: wire::BATCH_MAX,
};

/// How long a request naming an object this process just created retries a "not found"
/// (the directory's eventual consistency), and its first delay (doubling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consistency {
    /// How long after the create a 404 is retried.
    pub window: Duration,
    /// First wait; doubles each time.
    pub first_delay: Duration,
}

impl Default for Consistency {
    fn default() -> Self {
        Consistency {
            window: Duration::from_secs(30),
            first_delay: Duration::from_millis(500),
        }
    }
}

/// The Graph provider. Build it with [`GraphProvider::new`] and the `with_*` methods.
pub struct GraphProvider {
    http: Arc<dyn Http>,
    graph_base: String,
    /// The table in use: the built-in one with the file's overrides, resolved against the
    /// tenant's `subscribedSkus` on each read of the tenant level.
    skus: RwLock<SkuTable>,
    /// The desired file's `skus:` (plan -> part number or GUID), not yet checked.
    overrides: Vec<(LicensePlan, String)>,
    /// Whether `overrides` were resolved against `subscribedSkus`.
    resolved: AtomicBool,
    consistency: Consistency,
    /// Objects this process created, and when (eventual consistency).
    recent: Mutex<HashMap<String, Instant>>,
    /// The tenant's `countryLetterCode`, read once (`GET /organization`).
    country: std::sync::OnceLock<Option<String>>,
}

impl GraphProvider {
    /// A provider sending through `http`: public cloud references, the built-in SKU
    /// table, the default consistency window.
    pub fn new(http: Arc<dyn Http>) -> GraphProvider {
        GraphProvider {
            http,
            graph_base: PUBLIC_GRAPH.to_string(),
            skus: RwLock::new(SkuTable::builtin()),
            overrides: Vec::new(),
            resolved: AtomicBool::new(true),
            consistency: Consistency::default(),
            recent: Mutex::new(HashMap::new()),
            country: std::sync::OnceLock::new(),
        }
    }

    /// The Graph host of the cloud (`https://graph.microsoft.us`, the emulator's
    /// `https://127.0.0.1:PORT`): the host of `@odata.id` references in member binds.
    /// Requests themselves are relative paths; the transport adds its base URL.
    pub fn with_graph_base(mut self, base: impl Into<String>) -> GraphProvider {
        self.graph_base = base.into().trim_end_matches('/').to_string();
        self
    }

    /// Another plan <-> SKU table (a tenant that bought other offers).
    pub fn with_skus(mut self, skus: SkuTable) -> GraphProvider {
        self.skus = RwLock::new(skus);
        self
    }

    /// The desired file's SKU overrides (`skus:`: plan -> `skuPartNumber` or `skuId`),
    /// resolved against the tenant's `subscribedSkus` when it is read (a part number the
    /// tenant does not list is an error naming `skus.<plan>`).
    pub fn with_sku_overrides(mut self, overrides: Vec<(LicensePlan, String)>) -> GraphProvider {
        self.resolved = AtomicBool::new(overrides.is_empty());
        self.overrides = overrides;
        self
    }

    /// The table in use (a read guard: never held across an `.await`).
    fn skus(&self) -> std::sync::RwLockReadGuard<'_, SkuTable> {
        self.skus.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolve the file's overrides against the tenant's SKUs (`skuId`, `skuPartNumber`)
    /// into the table in use.
    fn resolve_skus(&self, listed: &[(String, String)]) -> Result<(), ProviderError> {
        if self.overrides.is_empty() {
            return Ok(());
        }
        let table = skus::resolve(&self.overrides, listed)?;
        *self.skus.write().unwrap_or_else(|e| e.into_inner()) = table;
        self.resolved.store(true, Ordering::Release);
        Ok(())
    }

    /// Make sure the overrides were resolved (an op executed before any read).
    async fn ensure_skus(&self) -> Result<(), ProviderError> {
        if !self.resolved.load(Ordering::Acquire) {
            observe::tenant_level(self).await?;
        }
        Ok(())
    }

    /// Another eventual-consistency window.
    pub fn with_consistency(mut self, consistency: Consistency) -> GraphProvider {
        self.consistency = consistency;
        self
    }

    /// `@odata.id` of a directory object.
    fn object_ref(&self, id: &str) -> String {
        format!("{}{}/directoryObjects/{id}", self.graph_base, wire::V1)
    }

    /// Remember that this process created `id` now.
    fn remember(&self, id: &str) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= 4096 {
            let window = self.consistency.window;
            recent.retain(|_, t| t.elapsed() < window);
        }
        recent.insert(id.to_string(), Instant::now());
    }

    /// Until when a "not found" naming one of `ids` is retried: the latest create among
    /// them plus the window.
    fn retry_until(&self, ids: &[&str]) -> Option<Instant> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter()
            .filter_map(|id| recent.get(*id))
            .max()
            .map(|t| *t + self.consistency.window)
    }

    /// Send a request that names objects `ids`: a "not found" shortly after this process
    /// created one of them is retried (doubling delays) until the window ends.
    async fn send_dep(&self, req: Request, ids: &[&str]) -> Result<Response, ProviderError> {
        let until = self.retry_until(ids);
        let mut delay = self.consistency.first_delay;
        loop {
            let resp = self.http.send(req.clone()).await?;
            if wire::is_not_found(&resp) {
                if let Some(until) = until {
                    if Instant::now() + delay <= until {
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2);
                        continue;
                    }
                }
            }
            return Ok(resp);
        }
    }
}

impl Provider for GraphProvider {
    fn observe<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Tenant, ProviderError>> {
        Box::pin(observe::observe(self, scope))
    }

    fn observe_since<'a>(
        &'a self,
        scope: &'a Scope,
        cursor: Option<ObserveCursor>,
    ) -> BoxFuture<'a, Result<(Tenant, Option<ObserveCursor>), ProviderError>> {
        Box::pin(delta::observe_since(self, scope, cursor))
    }

    fn execute<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Result<Executed, ProviderError>> {
        Box::pin(async move {
            if self.family(op) == MEMBERSHIP {
                let mut out = members::membership(self, std::slice::from_ref(op)).await;
                return out.pop().unwrap_or_else(|| {
                    Err(ProviderError::Backend(
                        "membership change without a result".into(),
                    ))
                });
            }
            execute::execute(self, op).await
        })
    }

    fn execute_batch<'a>(
        &'a self,
        ops: &'a [Op],
    ) -> BoxFuture<'a, Vec<Result<Executed, ProviderError>>> {
        Box::pin(async move {
            if !ops.is_empty() && ops.iter().all(|op| self.family(op) == MEMBERSHIP) {
                return members::membership(self, ops).await;
            }
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                out.push(self.execute(op).await);
            }
            out
        })
    }

    fn manual(&self, op: &Op) -> Option<String> {
        manual::place(&self.skus(), op)
    }

    fn family(&self, op: &Op) -> RequestFamily {
        match op {
            Op::AddGroupMembers { .. } | Op::RemoveGroupMembers { .. } => MEMBERSHIP,
            _ => RequestFamily::SINGLE,
        }
    }
}

/// The remote id in `r`, checked to be a directory object id (no path characters).
fn id_of(r: &crate::domain::op::ObjRef) -> Result<&str, ProviderError> {
    let id =
        r.id.as_deref()
            .ok_or_else(|| ProviderError::Invalid(format!("{} has no remote id", r.address)))?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ProviderError::Invalid(format!(
            "{}: `{id}` is not a directory object id",
            r.address
        )));
    }
    Ok(id)
}
