//! `--backend microsoft[:TENANT]` (issues 12 and 13): one provider composed of
//! - the directory (users, groups, licences) through Microsoft Graph ([`GraphProvider`]);
//! - the instances through the Power Platform admin API
//!   ([`crate::provider::powerplatform::environments`]): observe, and the lifecycle ops as
//!   long-running operations whose handles (prefix `bap:`) go to the state;
//! - each instance's security roles, access modes and base currency through its Dataverse
//!   Web API ([`DataverseClient`], base URL from the cloud's template, overridable with
//!   `CRMCTL_DATAVERSE_URL`);
//! - on-demand backups through the Power Platform API
//!   ([`crate::provider::powerplatform::backup`]);
//! - manual steps (Graph's [`Provider::manual`]) for what has no public API.
//!
//! All of them over the one HTTP transport of `provider::http` (sign-in from the
//! environment, the cloud's endpoints with their overrides, `CRMCTL_CA_FILE`). Observe
//! reads Graph, then the environments, then each ready instance's Dataverse (a few at a
//! time) and merges the halves; each op is routed to the service that carries it out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::domain::kinds::{AccessMode, LicensePlan};
use crate::domain::op::{ObjKind, Op};
use crate::observed::{InstanceStatus, Tenant, Unreadable};
use crate::ops::backend::{Backend, Presence};
use crate::ops::OpsError;
use crate::provider::dataverse::DataverseClient;
use crate::provider::graph::GraphProvider;
use crate::provider::http::cloud::Cloud;
use crate::provider::http::Http;
use crate::provider::powerplatform::{backup, environments};
use crate::provider::{
    BoxFuture, Executed, OperationHandle, Outcome, Polled, Provider, ProviderError, RequestFamily,
    Scope,
};

/// How many instances' Dataverse are read at once while observing.
const DATAVERSE_PARALLEL: usize = 8;

/// A Microsoft tenant as the workflows see it: the composed provider, plus where it is.
pub struct MicrosoftBackend {
    graph: GraphProvider,
    http: Arc<dyn Http>,
    dataverse: Arc<DataverseClient>,
    /// What the last observe learnt: each instance's Dataverse base URL by environment id,
    /// and the instances each directory user is a system user of (where `SetAccessMode`,
    /// P3/P4, is carried out).
    seen: Mutex<Seen>,
    tenant: String,
    cloud: Cloud,
    graph_url: String,
}

#[derive(Default)]
struct Seen {
    bases: BTreeMap<String, String>,
    user_instances: BTreeMap<String, BTreeSet<String>>,
    /// Access modes set by this run (P3/P4), by directory object id: the mode is the
    /// user's, but Dataverse keeps it per instance, and a user may reach an instance only
    /// after the op ran (a new instance, a user not yet synchronised). Set in an instance
    /// before roles are assigned there.
    modes: BTreeMap<String, AccessMode>,
}

/// Sign in (from the environment) and open `tenant` in `cloud`, the Graph provider taking
/// the desired file's SKU overrides `skus` (plan -> part number or GUID).
pub fn open(
    tenant: &str,
    cloud: Cloud,
    skus: Vec<(LicensePlan, String)>,
) -> Result<MicrosoftBackend, OpsError> {
    let transport = crate::provider::http::connect(cloud, tenant, |k| std::env::var(k).ok(), None)
        .map_err(|e| OpsError::BadBackend {
            spec: format!("microsoft:{tenant}"),
            problem: e.to_string(),
        })?;
    let graph_url = transport.endpoints().graph.clone();
    let template = transport.endpoints().dataverse_template.clone();
    let http: Arc<dyn Http> = Arc::new(transport);
    let mut backend = compose(http, &graph_url, &template, tenant, cloud);
    backend.graph = backend.graph.with_sku_overrides(skus);
    Ok(backend)
}

/// The composed provider over `http`, Graph at `graph_url`, Dataverse at `template`.
pub fn compose(
    http: Arc<dyn Http>,
    graph_url: &str,
    template: &str,
    tenant: &str,
    cloud: Cloud,
) -> MicrosoftBackend {
    let graph = GraphProvider::new(http.clone()).with_graph_base(graph_url.to_string());
    MicrosoftBackend {
        graph,
        dataverse: Arc::new(DataverseClient::new(http.clone(), template)),
        http,
        seen: Mutex::new(Seen::default()),
        tenant: tenant.to_string(),
        cloud,
        graph_url: graph_url.to_string(),
    }
}

/// Which service carries out an op.
enum Route {
    Graph,
    Bap,
    Backup,
    Dataverse,
    /// Adopting an instance: checked against the admin API's list.
    AdoptInstance,
}

fn route(op: &Op) -> Route {
    match op {
        Op::ConfigureInstance { .. }
        | Op::UpdateInstance { .. }
        | Op::SwitchInstance { .. }
        | Op::SetAdminMode { .. }
        | Op::CopyInstance { .. }
        | Op::ResetInstance { .. }
        | Op::DeleteInstance { .. } => Route::Bap,
        Op::BackupInstance { .. } => Route::Backup,
        Op::SetAccessMode { .. } | Op::AssignRoles { .. } | Op::RemoveRoles { .. } => {
            Route::Dataverse
        }
        Op::Adopt {
            kind: ObjKind::Instance,
            ..
        } => Route::AdoptInstance,
        _ => Route::Graph,
    }
}

impl MicrosoftBackend {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Graph's half, then the environments and each ready instance's Dataverse, merged.
    async fn observe_all(&self, mut t: Tenant, scope: &Scope) -> Result<Tenant, ProviderError> {
        // Issue 13 item 4: no public API reads update approvals, the versions offered or the
        // extra notification recipients; the planner leaves them to a person and says so.
        t.unreadable = Unreadable {
            updates: true,
            notification_recipients: true,
        };
        let want_instances = scope.has_kind(ObjKind::Instance);
        let want_roles = scope.has_kind(ObjKind::User);
        if !want_instances && !want_roles {
            return Ok(t);
        }
        let envs = environments::list(self.http.as_ref()).await?;
        let mut to_read = vec![];
        for listed in envs {
            let inst = listed.instance;
            if !scope.has_instance(&inst.id) {
                continue;
            }
            // Issue 14 item 2: who last changed the environment, from the same page.
            if let Some(c) = listed.changed {
                t.changed.instances.insert(inst.id.clone(), c);
            }
            // The Dataverse base from the cloud's template (CRMCTL_DATAVERSE_URL), so that
            // an override reaches the emulator as it reaches the service.
            let base = self.dataverse.base_of(&inst);
            self.seen().bases.insert(inst.id.clone(), base.clone());
            if inst.status == InstanceStatus::Ready {
                to_read.push((inst.id.clone(), base));
            }
            t.instances.insert(inst.id.clone(), inst);
        }
        // Each instance's users, roles and currency: a few instances at a time.
        let mut set = tokio::task::JoinSet::new();
        let mut pending = to_read.into_iter();
        let mut found = vec![];
        loop {
            while set.len() < DATAVERSE_PARALLEL {
                let Some((id, base)) = pending.next() else {
                    break;
                };
                let dv = self.dataverse.clone();
                set.spawn(async move { (id, dv.observe_base(&base).await) });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (id, r) = joined.map_err(|e| ProviderError::Backend(e.to_string()))?;
            found.push((id, r?));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut seen = self.seen();
        seen.user_instances.clear();
        for (id, users) in &found {
            for oid in users.users.keys() {
                seen.user_instances
                    .entry(oid.clone())
                    .or_default()
                    .insert(id.clone());
            }
            crate::provider::dataverse::merge(&mut t, id, users);
        }
        // Without users in the scope, the roles were read for the currency only.
        if let (true, Some(only)) = (want_roles, &scope.instances) {
            for u in t.users.values_mut() {
                u.roles.retain(|iid, _| only.contains(iid));
            }
        }
        Ok(t)
    }

    /// The Dataverse base URL of the instance with environment id `id`.
    async fn base(&self, id: &str) -> Result<String, ProviderError> {
        if let Some(b) = self.seen().bases.get(id) {
            return Ok(b.clone());
        }
        let envs = environments::list(self.http.as_ref()).await?;
        let mut seen = self.seen();
        for listed in &envs {
            let b = self.dataverse.base_of(&listed.instance);
            seen.bases.insert(listed.instance.id.clone(), b);
        }
        seen.bases
            .get(id)
            .cloned()
            .ok_or_else(|| ProviderError::NotFound(format!("environment {id}")))
    }

    async fn execute_dataverse(&self, op: &Op) -> Result<Executed, ProviderError> {
        match op {
            Op::AssignRoles { instance, user, .. } | Op::RemoveRoles { instance, user, .. } => {
                let id = instance.id.as_deref().ok_or_else(|| {
                    ProviderError::Invalid(format!(
                        "reference to `{}` carries no remote id",
                        instance.address
                    ))
                })?;
                let base = self.base(id).await?;
                // P3/P4: a mode this run set reaches this instance before its roles (a
                // non-interactive user holds roles without a licence).
                let mode = user
                    .id
                    .as_deref()
                    .and_then(|oid| self.seen().modes.get(oid).copied());
                if let (Some(mode), Op::AssignRoles { .. }) = (mode, op) {
                    let set = Op::SetAccessMode {
                        user: user.clone(),
                        mode,
                    };
                    self.dataverse.execute(&set, &base).await?;
                }
                self.dataverse.execute(op, &base).await
            }
            Op::SetAccessMode { user, mode } => {
                // P3/P4: the mode is the user's; it is set in every instance they are in,
                // and in those they reach later in this run (before their roles there).
                let oid = user.id.clone().unwrap_or_default();
                self.seen().modes.insert(oid.clone(), *mode);
                let ids: Vec<String> = self
                    .seen()
                    .user_instances
                    .get(&oid)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                let mut last = Executed::Done(Outcome::default());
                for id in ids {
                    let base = self.base(&id).await?;
                    last = self.dataverse.execute(op, &base).await?;
                }
                Ok(last)
            }
            _ => Err(ProviderError::Invalid(format!(
                "{} is not carried out through Dataverse",
                op.kind().info().name
            ))),
        }
    }

    async fn execute_one(&self, op: &Op) -> Result<Executed, ProviderError> {
        match route(op) {
            Route::Graph => self.graph.execute(op).await,
            Route::Bap => environments::execute(self.http.as_ref(), op)
                .await?
                .ok_or_else(|| ProviderError::Invalid("not an admin API op".into())),
            Route::Backup => backup::execute(self.http.as_ref(), op).await,
            Route::Dataverse => self.execute_dataverse(op).await,
            Route::AdoptInstance => {
                let Op::Adopt { id, .. } = op else {
                    unreachable!("routed by kind")
                };
                let envs = environments::list(self.http.as_ref()).await?;
                if envs.iter().any(|l| l.instance.id.eq_ignore_ascii_case(id)) {
                    Ok(Executed::Done(Outcome::default()))
                } else {
                    Err(ProviderError::NotFound(format!("instance {id} (to adopt)")))
                }
            }
        }
    }
}

impl Provider for MicrosoftBackend {
    fn observe<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Tenant, ProviderError>> {
        Box::pin(async move {
            let t = self.graph.observe(scope).await?;
            self.observe_all(t, scope).await
        })
    }
    fn observe_since<'a>(
        &'a self,
        scope: &'a Scope,
        cursor: Option<crate::provider::ObserveCursor>,
    ) -> BoxFuture<'a, Result<(Tenant, Option<crate::provider::ObserveCursor>), ProviderError>>
    {
        Box::pin(async move {
            let (t, c) = self.graph.observe_since(scope, cursor).await?;
            Ok((self.observe_all(t, scope).await?, c))
        })
    }
    fn execute<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Result<Executed, ProviderError>> {
        Box::pin(self.execute_one(op))
    }
    fn execute_batch<'a>(
        &'a self,
        ops: &'a [Op],
    ) -> BoxFuture<'a, Vec<Result<Executed, ProviderError>>> {
        if ops.iter().all(|o| matches!(route(o), Route::Graph)) {
            return self.graph.execute_batch(ops);
        }
        Box::pin(async move {
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                out.push(self.execute_one(op).await);
            }
            out
        })
    }
    fn family(&self, op: &Op) -> RequestFamily {
        match route(op) {
            Route::Graph => self.graph.family(op),
            _ => RequestFamily::SINGLE,
        }
    }
    fn poll<'a>(
        &'a self,
        handle: &'a OperationHandle,
    ) -> BoxFuture<'a, Result<Polled, ProviderError>> {
        if handle.id.starts_with(environments::HANDLE_PREFIX) {
            return Box::pin(environments::poll(self.http.as_ref(), handle));
        }
        self.graph.poll(handle)
    }
    fn replay_safe(&self, op: &Op) -> bool {
        self.graph.replay_safe(op)
    }
    fn manual(&self, op: &Op) -> Option<String> {
        self.graph.manual(op)
    }
}

impl Backend for MicrosoftBackend {
    fn identity(&self) -> String {
        format!(
            "microsoft:{}@{}",
            crate::domain::ident::fold(&self.tenant),
            self.cloud.name()
        )
    }
    fn presence(&self) -> Presence {
        // A real tenant always exists; reading it is what tells whether crmctl may use it.
        Presence::Present
    }
    fn location(&self) -> String {
        format!(
            "the Microsoft tenant {} ({} cloud, Graph {})",
            self.tenant,
            self.cloud.name(),
            self.graph_url
        )
    }
}
