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
//! - manual steps (Graph's [`Provider::manual`]) for what has no public API;
//! - application users (P3) through each instance's Dataverse only: an application user
//!   is a system user bound to an app registration by `applicationid`, never a directory
//!   user (Graph neither creates, licenses nor deletes one): created in every ready
//!   instance and in any instance where it gets roles later, renamed there, deactivated
//!   there when removed. Its id is `app:{application id}`. The plan refuses
//!   ([`check_plan`]) an application user to create without `application_id`, and one
//!   listed as a security group member (its directory object is the app's service
//!   principal, which crmctl does not manage).
//!
//! All of them over the one HTTP transport of `provider::http` (sign-in from the
//! environment, the cloud's endpoints with their overrides, `CRMCTL_CA_FILE`). Observe
//! reads Graph, then the environments, then each ready instance's Dataverse (a few at a
//! time) and merges the halves; each op is routed to the service that carries it out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::desired::model::Desired;
use crate::diag::Diagnostic;
use crate::domain::kinds::{AccessMode, LicensePlan};
use crate::domain::op::{ObjKind, ObjRef, Op};
use crate::observed::{InstanceStatus, Tenant, Unreadable};
use crate::ops::backend::{Backend, Presence};
use crate::ops::OpsError;
use crate::plan::Plan;
use crate::provider::dataverse::{app_user_id, application_of, DataverseClient};
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
    /// Application users (P3) by application id (lower case): principal name and name,
    /// from the last observe and this run's creates and renames, for a create in an
    /// instance where one gets roles later.
    apps: BTreeMap<String, (String, String)>,
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
    /// An application user's create, rename or removal (P3): each instance's Dataverse.
    App,
    /// Adopting an instance: checked against the admin API's list.
    AdoptInstance,
}

/// Whether `user` is an application user (P3): crmctl's id `app:{application id}`.
fn is_app(user: &ObjRef) -> bool {
    user.id.as_deref().and_then(application_of).is_some()
}

fn route(op: &Op) -> Route {
    match op {
        Op::CreateUser {
            access_mode: AccessMode::Application,
            ..
        } => Route::App,
        Op::UpdateUser { user, .. }
        | Op::DeleteUser { user }
        | Op::AssignLicense { user, .. }
        | Op::RemoveLicense { user }
        | Op::SetAccessMode { user, .. }
            if is_app(user) =>
        {
            Route::App
        }
        Op::AddGroupMembers { users, .. } | Op::RemoveGroupMembers { users, .. }
            if users.iter().any(is_app) =>
        {
            Route::App
        }
        Op::Adopt {
            kind: ObjKind::User,
            id,
            ..
        } if application_of(id).is_some() => Route::App,
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
            // I10: the admin API carries administration mode and background operations,
            // not the sign-in message (environments.rs).
            admin_mode_message: true,
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
        for u in t.users.values() {
            if let Some(app) = &u.application_id {
                seen.apps
                    .insert(app.to_ascii_lowercase(), (u.upn.clone(), u.name.clone()));
            }
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
                // P3: an application user is created in an instance before its roles there
                // (an instance created in this run, or one it was never in); there is
                // nothing to remove where it is not.
                if let Some(app) = user.id.as_deref().and_then(application_of) {
                    if matches!(op, Op::RemoveRoles { .. }) {
                        if self.dataverse.find_app(&base, app).await?.is_none() {
                            return Ok(Executed::Done(Outcome::default()));
                        }
                    } else {
                        let (upn, name) = self.app_names(app, user);
                        self.dataverse
                            .ensure_app_user(&base, app, &upn, &name)
                            .await?;
                    }
                    return self.dataverse.execute(op, &base).await;
                }
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
                for id in &ids {
                    let base = self.base(id).await?;
                    last = self.dataverse.execute(op, &base).await?;
                }
                // P4: the instances created in this run (the planner orders the mode after
                // the instances the user has roles in): set where the user is already, while
                // it still holds its licence; elsewhere it is set before its roles.
                for (id, base) in self.ready_bases().await? {
                    if !ids.contains(&id)
                        && self
                            .dataverse
                            .set_access_mode_if_present(&base, user, *mode)
                            .await?
                    {
                        self.seen()
                            .user_instances
                            .entry(oid.clone())
                            .or_default()
                            .insert(id);
                    }
                }
                Ok(last)
            }
            _ => Err(ProviderError::Invalid(format!(
                "{} is not carried out through Dataverse",
                op.kind().info().name
            ))),
        }
    }

    /// The principal name and name of the application user of `app` (P3): as observed or
    /// created in this run; else the address's principal name for both.
    fn app_names(&self, app: &str, user: &ObjRef) -> (String, String) {
        if let Some(known) = self.seen().apps.get(&app.to_ascii_lowercase()) {
            return known.clone();
        }
        let upn = user
            .address
            .strip_prefix("users.")
            .unwrap_or(&user.address)
            .to_string();
        (upn.clone(), upn)
    }

    /// The ready instances' environment ids and Dataverse base URLs, from the admin API.
    async fn ready_bases(&self) -> Result<Vec<(String, String)>, ProviderError> {
        let envs = environments::list(self.http.as_ref()).await?;
        let mut seen = self.seen();
        let mut out = vec![];
        for listed in &envs {
            let inst = &listed.instance;
            let b = self.dataverse.base_of(inst);
            seen.bases.insert(inst.id.clone(), b.clone());
            if inst.status == InstanceStatus::Ready {
                out.push((inst.id.clone(), b));
            }
        }
        Ok(out)
    }

    /// An application user's create, rename or removal in every ready instance (P3).
    async fn execute_app(&self, op: &Op) -> Result<Executed, ProviderError> {
        let p3 = |m: String| ProviderError::refused("P3", m);
        match op {
            Op::CreateUser {
                upn,
                name,
                application_id,
                ..
            } => {
                let Some(app) = application_id.as_deref() else {
                    return Err(p3(format!(
                        "{upn}: an application user is bound to an app registration; the file gives no `application_id`"
                    )));
                };
                self.seen()
                    .apps
                    .insert(app.to_ascii_lowercase(), (upn.clone(), name.clone()));
                let mut out = Outcome {
                    created_id: Some(app_user_id(app)),
                    ..Outcome::default()
                };
                for (id, base) in self.ready_bases().await? {
                    let su = self
                        .dataverse
                        .ensure_app_user(&base, app, upn, name)
                        .await?;
                    out.ids.insert(format!("instance:{id}"), su.id);
                }
                Ok(Executed::Done(out))
            }
            Op::UpdateUser {
                user,
                name,
                admin_roles,
                upn,
                usage_location,
            } => {
                let app = user.id.as_deref().and_then(application_of).unwrap_or("");
                if admin_roles.as_ref().is_some_and(|r| !r.is_empty()) || usage_location.is_some()
                {
                    return Err(p3(format!(
                        "{}: an application user is no directory user: it has no tenant admin roles and no usage location",
                        user.address
                    )));
                }
                let mut body = serde_json::Map::new();
                if let Some(n) = name {
                    body.insert("lastname".into(), serde_json::json!(n));
                }
                if let Some(u) = upn {
                    body.insert("internalemailaddress".into(), serde_json::json!(u));
                }
                if !body.is_empty() {
                    {
                        let mut seen = self.seen();
                        let entry = seen
                            .apps
                            .entry(app.to_ascii_lowercase())
                            .or_default();
                        if let Some(n) = name {
                            entry.1 = n.clone();
                        }
                        if let Some(u) = upn {
                            entry.0 = u.clone();
                        }
                    }
                    for (_, base) in self.ready_bases().await? {
                        self.dataverse
                            .update_app_user(
                                &base,
                                app,
                                serde_json::Value::Object(body.clone()),
                                &user.address,
                            )
                            .await?;
                    }
                }
                Ok(Executed::Done(Outcome::default()))
            }
            Op::Adopt { id, .. } => {
                // Adopting an application user found by its principal name: one of the
                // instances has it.
                let app = application_of(id).unwrap_or("");
                for (_, base) in self.ready_bases().await? {
                    if self
                        .dataverse
                        .find_app(&base, app)
                        .await?
                        .is_some_and(|su| !su.disabled)
                    {
                        return Ok(Executed::Done(Outcome::default()));
                    }
                }
                Err(ProviderError::NotFound(format!(
                    "application user {id} (to adopt): no instance has it"
                )))
            }
            Op::DeleteUser { user } => {
                let app = user.id.as_deref().and_then(application_of).unwrap_or("");
                for (_, base) in self.ready_bases().await? {
                    match self
                        .dataverse
                        .deactivate_app_user(&base, app, &user.address)
                        .await
                    {
                        // An instance being deleted has no users left to deactivate.
                        Ok(()) | Err(ProviderError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Executed::Done(Outcome::default()))
            }
            other => Err(p3(format!(
                "{}: application users hold no licence, keep their access mode and are no security group members on a Microsoft tenant",
                other.kind().info().name
            ))),
        }
    }

    async fn execute_one(&self, op: &Op) -> Result<Executed, ProviderError> {
        match route(op) {
            Route::App => self.execute_app(op).await,
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
        // P3: an application user's create looks it up by application id in each instance
        // first, its removal only deactivates: both are safe to run again.
        matches!(route(op), Route::App) || self.graph.replay_safe(op)
    }
    fn manual(&self, op: &Op) -> Option<String> {
        self.graph.manual(op)
    }
}

/// What a Microsoft tenant cannot do of a valid file (P3), as plan errors located in the
/// file: an application user to create without the app registration's id (the system user
/// is bound to it: POST systemusers needs `applicationid`), and an application user listed
/// as a security group member (its directory object is the app's service principal, which
/// crmctl does not manage; the instance's security group does not gate application users).
pub fn check_plan(desired: &Desired, plan: &Plan) -> Vec<Diagnostic> {
    let mut out = vec![];
    for a in &plan.actions {
        if let Op::CreateUser {
            upn,
            access_mode: AccessMode::Application,
            application_id: None,
            ..
        } = &*a.op
        {
            out.push(
                Diagnostic::error(
                    a.address.clone(),
                    format!("application user `{upn}` has no `application_id`: on a Microsoft tenant an application user is each instance's system user bound to an app registration, and crmctl needs its client id to create it"),
                )
                .rule("P3")
                .hint("add `application_id: <the app registration's Application (client) ID>` to this user (Microsoft Entra admin center > App registrations > the app > Overview)"),
            );
        }
    }
    let apps: BTreeSet<String> = desired
        .users
        .iter()
        .flatten()
        .filter(|(_, u)| u.access_mode == Some(AccessMode::Application))
        .map(|(k, _)| crate::domain::ident::fold(k).into_owned())
        .collect();
    if apps.is_empty() {
        return out;
    }
    for (key, g) in desired.security_groups.iter().flatten() {
        for (i, m) in g.members.iter().flatten().enumerate() {
            if apps.contains(crate::domain::ident::fold(m).as_ref()) {
                out.push(
                    Diagnostic::error(
                        format!("security_groups.{key}.members[{i}]"),
                        format!("application user `{m}` is listed as a member of `{key}`: on a Microsoft tenant an application user is no directory user (its directory object is the app's service principal, which crmctl does not manage)"),
                    )
                    .rule("P3")
                    .hint("remove it from `members`: an instance's security group does not gate application users; their roles give them access"),
                );
            }
        }
    }
    out
}

impl Backend for MicrosoftBackend {
    fn check_plan(&self, desired: &Desired, plan: &Plan) -> Vec<Diagnostic> {
        check_plan(desired, plan)
    }
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
