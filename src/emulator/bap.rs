//! The Power Platform admin API (BAP) of environments, the subset crmctl uses (issue 13
//! item 5), at `/bap/providers/Microsoft.BusinessAppPlatform/...`, so that the base URL
//! `https://127.0.0.1:PORT/bap` (`CRMCTL_BAP_URL`) reaches it:
//!
//! | request | op on the backing provider |
//! | --- | --- |
//! | `GET /scopes/admin/environments` (paged, `nextLink`) and `GET .../{id}` | none (observe) |
//! | `POST /validateEnvironmentDetails` `{domainName, environmentLocation \| environmentName}` | none: 200, or 400 `InvalidDomainName` |
//! | `POST /environments` `{location, properties:{displayName, description, environmentSku, databaseType, linkedEnvironmentMetadata:{baseLanguage, currency:{code}, domainName, securityGroupId}}}` | `ConfigureInstance` |
//! | `PATCH /scopes/admin/environments/{id}` `{properties:{displayName, description, linkedEnvironmentMetadata:{domainName, securityGroupId, backgroundOperationsState}, states:{runtime:{id: Enabled \| AdminMode}}}}` | `UpdateInstance`, `SetAdminMode` |
//! | `POST .../{id}/modifySku` `{environmentSku}` | `SwitchInstance` |
//! | `DELETE /scopes/admin/environments/{id}` | `DeleteInstance` |
//! | `POST .../{target}/copyTo` `{sourceEnvironmentId, targetEnvironmentName, targetSecurityGroupId, copyType: FullCopy \| MinimalCopy}` | `CopyInstance` (+ `UpdateInstance` of the group) |
//! | `POST .../{id}/reset` `{baseLanguageCode, currency:{code}}` (PowerShell's Pascal case too) | `ResetInstance` |
//! | `GET /lifecycleOperations/{id}` | none (the operation's state) |
//! | `GET /lifecycleOperations?$filter=environment eq '{id}'` | none (an environment's operations, newest first) |
//!
//! Environment routes answer with and without `/scopes/admin`; every request needs an
//! `api-version` (400 `MissingApiVersionParameter` otherwise), as the service does.
//!
//! Every write is an [`Op`] executed on the backing provider when the request arrives, so
//! domain.md's rules answer at once: a refusal is 400 `{"error":{"code":"BadRequest",
//! "message":"... (RULE)"}}` (the rule id last, in parentheses), a malformed body 400
//! `ValidationError`, an unknown environment 404 `EnvironmentNotFound`. Accepted writes
//! answer 202 with `Location` (absolute URL of the lifecycle operation) and `Retry-After`
//! (seconds); the operation reports `Running` until its duration passes
//! ([`Faults::lifecycle_duration`], copies [`Faults::copy_duration`]), then `Succeeded`
//! (or `Failed` when the backing provider's own long-running operation failed). While it
//! runs the environment shows `states.management.id = "Running"` (and
//! `instanceState: "NotReady"`), and any other mutation of it answers 409
//! `OperationNotStartable`. Environment ids are the backing tenant's instance ids.
//!
//! Wire shapes (verified 2026-12 in microsoft/terraform-provider-power-platform @57ba091):
//! `internal/api/lifecycle.go` (the lifecycle DTO `{id, links:{self:{path},
//! environment:{path}}, type:{id}, state:{id}, createdDateTime, lastActionDateTime,
//! requestedBy, stages[]}`; `Location` else `Operation-Location`; polling accepts 200, 409
//! and 404), `internal/services/environment/api_environment.go` (paths, api-versions
//! 2023-06-01 and 2021-04-01 for validate/modifySku/PATCH, the 202/409 handling, the
//! `states.management.id` Ready/Running wait after an update), `dto.go` (create, modifySku,
//! validate and delete bodies), and the recorded answers under
//! `internal/services/environment/tests/` (`get_environment_*.json`, `get_lifecycle.json`,
//! `post_environment_operation_in_progress.json` for 409 `OperationNotStartable`,
//! `resource_environment_test.go` for 400 `InvalidDomainName`); `EnvironmentNotFound` from
//! `internal/services/application/tests/.../get_environment.json`. Copy and reset bodies:
//! learn.microsoft.com/powershell/module/microsoft.powerapps.administration.powershell
//! (Copy-PowerAppEnvironment, Reset-PowerAppEnvironment) and the Power Platform REST
//! reference "Environment Reset - Reset Environment" (`baseLanguageCode`, `currency`). The
//! list's `nextLink` paging follows the ARM convention (the emulator's page size is a knob,
//! [`Faults::environment_page_size`]).
//!
//! [`Op`]: crate::domain::op::Op
//! [`Faults::lifecycle_duration`]: super::Faults::lifecycle_duration
//! [`Faults::copy_duration`]: super::Faults::copy_duration
//! [`Faults::environment_page_size`]: super::Faults::environment_page_size

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::graph::{self, Ctx};
use super::server::{Answer, Draw, Reply, Shared};
use crate::domain::kinds::{CopyKind, InstanceType, Region};
use crate::domain::op::{ObjRef, Op};
use crate::domain::syntax::is_url_name;
use crate::observed::{Instance, InstanceStatus, Tenant};
use crate::provider::{Executed, OperationHandle, Polled, ProviderError};

/// The path prefix of the admin API (`CRMCTL_BAP_URL` = `https://127.0.0.1:PORT/bap`).
pub const PREFIX: &str = "/bap";
/// The resource provider every path starts with.
pub const RP: &str = "/providers/Microsoft.BusinessAppPlatform";
/// The all-zero GUID: no security group.
pub const NO_GROUP: &str = "00000000-0000-0000-0000-000000000000";

/// The BAP location of a region (`location` of an environment), per
/// /work/shared/microsoft-apis.md's table (location names <-> URL suffixes).
pub fn location(r: Region) -> &'static str {
    match r {
        Region::NA => "unitedstates",
        Region::SAM => "southamerica",
        Region::CAN => "canada",
        Region::EMEA => "europe",
        Region::APAC => "asia",
        Region::OCE => "australia",
        Region::JPN => "japan",
        Region::IND => "india",
        Region::GCC => "usgov",
        Region::UK => "unitedkingdom",
    }
}

/// The region of a BAP location (case-insensitive).
pub fn region(location: &str) -> Option<Region> {
    const ALL: [Region; 10] = [
        Region::NA,
        Region::SAM,
        Region::CAN,
        Region::EMEA,
        Region::APAC,
        Region::OCE,
        Region::JPN,
        Region::IND,
        Region::GCC,
        Region::UK,
    ];
    ALL.into_iter()
        .find(|r| self::location(*r).eq_ignore_ascii_case(location))
}

/// One lifecycle operation.
struct Operation {
    kind: &'static str,
    /// The environment it is about (a create's is known once the backing provider said).
    env: Option<String>,
    /// The environments it holds: no other mutation of them until it ends.
    holds: Vec<String>,
    started: Instant,
    created: SystemTime,
    duration: Duration,
    /// The backing provider's own long-running operation, when it answered "accepted".
    handle: Option<OperationHandle>,
    /// Final state, once known: `Ok(())` Succeeded, `Err(message)` Failed.
    end: Option<Result<(), String>>,
}

/// The lifecycle operations started through the emulator.
#[derive(Default)]
pub(super) struct Lifecycle(Mutex<HashMap<String, Operation>>);

impl Lifecycle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Operation>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The id of an operation still running on `env` (its duration not yet over, or its
    /// backing operation not yet finished).
    pub(super) fn running_on(&self, env: &str) -> Option<String> {
        self.lock()
            .iter()
            .find(|(_, o)| {
                o.holds.iter().any(|h| h.eq_ignore_ascii_case(env))
                    && (o.started.elapsed() < o.duration || (o.handle.is_some() && o.end.is_none()))
            })
            .map(|(id, _)| id.clone())
    }
}

/// A BAP error answer (`{"error":{"code","message"}}`).
pub(super) fn error(status: u16, code: &str, message: &str) -> Answer {
    Answer::json(status, json!({"error": {"code": code, "message": message}}))
}

fn env_not_found(id: &str) -> Answer {
    error(
        404,
        "EnvironmentNotFound",
        &format!("The environment '{id}' could not be found in the tenant."),
    )
}

fn invalid(message: &str) -> Answer {
    error(400, "ValidationError", message)
}

/// 409 while another lifecycle operation runs on the environment.
pub(super) fn not_startable(shared: &Shared, env: &str) -> Answer {
    let mut a = error(
        409,
        "OperationNotStartable",
        &format!("This operation cannot be performed because there is an active lifecycle operation on the environment {env}."),
    );
    a.headers
        .push(("Retry-After".into(), retry_secs(shared).to_string()));
    a
}

fn retry_secs(shared: &Shared) -> u64 {
    let d = shared.faults().lifecycle_duration;
    (d.as_secs() / 4).clamp(1, 10)
}

/// A provider's refusal as the admin API answers it. Rule ids stay in the message.
pub(super) fn from_provider(e: &ProviderError, env: &str) -> Answer {
    match e {
        ProviderError::Refused { rule, message } => {
            error(400, "BadRequest", &format!("{message} ({rule})"))
        }
        ProviderError::NotFound(_) => env_not_found(env),
        ProviderError::Invalid(m) => invalid(m),
        ProviderError::Conflict { message, .. } => error(409, "Conflict", message),
        ProviderError::Throttled { message, .. } => error(429, "TooManyRequests", message),
        ProviderError::Transient(m) | ProviderError::OutcomeUnknown(m) => {
            error(503, "ServiceUnavailable", m)
        }
        other => error(500, "InternalServerError", &other.to_string()),
    }
}

/// Authentication and the fault draws before a request is served (shared with the Power
/// Platform API routes): `None` = go on.
pub(super) fn gate(shared: &Shared, auth: &str) -> Option<Answer> {
    if !shared.knows(auth) {
        let mut a = error(
            401,
            "MissingAuthorization",
            "The request is missing a valid bearer token.",
        );
        a.headers.push(("WWW-Authenticate".into(), "Bearer".into()));
        return Some(a);
    }
    match shared.draw_before() {
        Draw::Throttle => {
            let mut a = error(
                429,
                "TooManyRequests",
                "The request was throttled. Retry after the time given in Retry-After.",
            );
            a.headers.push((
                "Retry-After".into(),
                shared.faults().retry_after_secs.to_string(),
            ));
            Some(a)
        }
        Draw::ServerError(s) => {
            let mut a = error(
                s,
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
            );
            a.headers.push(("Retry-After".into(), "1".into()));
            Some(a)
        }
        Draw::Pass => None,
    }
}

/// Serve one request under [`PREFIX`].
pub(super) async fn serve(
    shared: &Shared,
    ctx: &Ctx,
    auth: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Reply {
    if let Some(a) = gate(shared, auth) {
        return Reply::Answer(a);
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    if !params.iter().any(|(k, _)| k == "api-version") {
        return Reply::Answer(error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    }
    let rest = path.strip_prefix(PREFIX).unwrap_or(path);
    let Some(rest) = rest.strip_prefix(RP) else {
        return Reply::Answer(error(
            404,
            "NotFound",
            &format!("no admin API resource at {path} (paths start with {PREFIX}{RP})"),
        ));
    };
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => Some(v),
            Err(e) => {
                return Reply::Answer(invalid(&format!("The request body is not valid JSON: {e}")))
            }
        }
    };
    let rest = rest.strip_prefix("/scopes/admin").unwrap_or(rest);
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let answer = match (method, segs.as_slice()) {
        ("GET", ["environments"]) => list(shared, ctx, &params).await,
        ("GET", ["environments", id]) => get(shared, ctx, id).await,
        ("POST", ["validateEnvironmentDetails"]) => validate(shared, ctx, body.as_ref()).await,
        ("GET", ["lifecycleOperations"]) => operations_of(shared, &params).await,
        ("GET", ["lifecycleOperations", id]) => operation(shared, id).await,
        ("POST", ["environments"]) => create(shared, body.as_ref()).await,
        ("PATCH", ["environments", id]) => update(shared, ctx, id, body.as_ref()).await,
        ("DELETE", ["environments", id]) => delete(shared, ctx, id).await,
        ("POST", ["environments", id, "modifySku"]) => {
            modify_sku(shared, ctx, id, body.as_ref()).await
        }
        ("POST", ["environments", id, "copyTo"]) => copy(shared, ctx, id, body.as_ref()).await,
        ("POST", ["environments", id, "reset"]) => reset(shared, ctx, id, body.as_ref()).await,
        _ => error(
            404,
            "NotFound",
            &format!("no admin API route for {method} {path}"),
        ),
    };
    if method != "GET" && shared.draw_drop() {
        return Reply::Drop;
    }
    Reply::Answer(answer)
}

fn api_version(params: &[(String, String)]) -> &str {
    params
        .iter()
        .find(|(k, _)| k == "api-version")
        .map_or("2023-06-01", |(_, v)| v.as_str())
}

/// The environments, in pages of [`Faults::environment_page_size`]
/// (`$skiptoken` = the index of the page's first environment, in id order).
///
/// [`Faults::environment_page_size`]: super::Faults::environment_page_size
async fn list(shared: &Shared, ctx: &Ctx, params: &[(String, String)]) -> Answer {
    let skip: usize = params
        .iter()
        .find(|(k, _)| k == "$skiptoken")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    // A listing starts from the tenant as it is (a change made behind the emulator's back
    // is seen); its further pages use the cached copy.
    let tenant = if skip == 0 {
        graph::tenant_fresh(shared, ctx).await
    } else {
        graph::tenant(shared, ctx).await
    };
    let tenant = or_answer!(tenant.map_err(|_| error(
        503,
        "ServiceUnavailable",
        "the tenant could not be read"
    )));
    let page = shared.faults().environment_page_size.max(1);
    let value: Vec<Value> = tenant
        .instances
        .values()
        .skip(skip)
        .take(page)
        .map(|i| environment(shared, &tenant, i))
        .collect();
    let mut out = json!({ "value": value });
    let end = skip + page;
    if end < tenant.instances.len() {
        let q = serde_urlencoded::to_string([
            ("api-version", api_version(params)),
            ("$skiptoken", &end.to_string()),
        ])
        .unwrap_or_default();
        out["nextLink"] = json!(format!(
            "{}{PREFIX}{RP}/scopes/admin/environments?{q}",
            shared.base
        ));
    }
    Answer::json(200, out)
}

async fn get(shared: &Shared, ctx: &Ctx, id: &str) -> Answer {
    let tenant = or_answer!(read(shared, ctx).await);
    match find(&tenant, id) {
        Some(i) => Answer::json(200, environment(shared, &tenant, i)),
        None => env_not_found(id),
    }
}

async fn read(shared: &Shared, ctx: &Ctx) -> Result<Arc<Tenant>, Answer> {
    graph::tenant(shared, ctx)
        .await
        .map_err(|_| error(503, "ServiceUnavailable", "the tenant could not be read"))
}

fn find<'t>(t: &'t Tenant, id: &str) -> Option<&'t Instance> {
    t.instances
        .get(id)
        .or_else(|| t.instances.values().find(|i| i.id.eq_ignore_ascii_case(id)))
}

/// An environment in the admin API's JSON shape (the recorded `get_environment_*.json`
/// of terraform-provider-power-platform; fields crmctl does not use are left out).
fn environment(shared: &Shared, t: &Tenant, i: &Instance) -> Value {
    let busy = shared.bap.running_on(&i.id).is_some();
    let provisioning = i.status == InstanceStatus::Provisioning;
    let ready = !busy && !provisioning;
    let runtime = if i.status == InstanceStatus::Disabled {
        "Disabled"
    } else if i.admin_mode.enabled {
        "AdminMode"
    } else {
        "Enabled"
    };
    let group = i
        .security_group
        .clone()
        .unwrap_or_else(|| NO_GROUP.to_string());
    let host = format!("{}.{}.dynamics.com", i.url, i.region.url_suffix());
    let mut env = json!({
        "id": format!("{RP}/scopes/admin/environments/{}", i.id),
        "type": "Microsoft.BusinessAppPlatform/scopes/environments",
        "location": location(i.region),
        "name": i.id,
        "properties": {
            "tenantId": t.domain,
            "displayName": i.name,
            "description": i.purpose,
            "provisioningState": if provisioning { "Creating" } else { "Succeeded" },
            "environmentSku": sku(i.kind),
            "isDefault": false,
            "databaseType": "CommonDataService",
            "linkedEnvironmentMetadata": {
                "resourceId": i.id,
                "friendlyName": i.name,
                "uniqueName": i.id,
                "domainName": i.url,
                "version": i.version,
                "instanceUrl": format!("https://{host}/"),
                "instanceApiUrl": format!("https://{}.api.{}.dynamics.com", i.url, i.region.url_suffix()),
                "baseLanguage": i.language,
                "instanceState": if ready { "Ready" } else { "NotReady" },
                "backgroundOperationsState": if i.admin_mode.background_operations { "Enabled" } else { "Disabled" },
                "securityGroupId": group,
                "platformSku": "Standard",
                "schemaType": "Standard",
            },
            "states": {
                "management": { "id": if ready { "Ready" } else { "Running" } },
                "runtime": { "id": runtime },
            },
        },
    });
    // Who last changed it and when, as the backing tenant recorded (issue 14 item 2), in
    // the admin API's fields: `lastModifiedTime` and `lastModifiedBy {id, displayName,
    // email, type, tenantId, userPrincipalName}` (terraform-provider-power-platform,
    // internal/services/environment/tests/resource/Validate_Create_Environment_And_Dataverse/
    // get_lifecycle_new_dataverse.json). A name that is a user's UPN is that user.
    if let Some(c) = t.changed.instances.get(&i.id) {
        let props = &mut env["properties"];
        if let Some(at) = &c.at {
            props["lastModifiedTime"] = json!(at);
        }
        if let Some(by) = &c.by {
            let user = t.users.values().find(|u| u.upn.eq_ignore_ascii_case(by));
            props["lastModifiedBy"] = json!({
                "id": user.map_or(NO_GROUP, |u| u.id.as_str()),
                "displayName": user.map_or(by.as_str(), |u| u.name.as_str()),
                "email": user.map_or("", |u| u.upn.as_str()),
                "type": "User",
                "tenantId": t.domain,
                "userPrincipalName": user.map_or(by.as_str(), |u| u.upn.as_str()),
            });
        }
    }
    env
}

fn sku(k: InstanceType) -> &'static str {
    match k {
        InstanceType::Production => "Production",
        InstanceType::Sandbox => "Sandbox",
    }
}

fn parse_sku(s: &str) -> Result<InstanceType, Answer> {
    match s {
        s if s.eq_ignore_ascii_case("Production") => Ok(InstanceType::Production),
        s if s.eq_ignore_ascii_case("Sandbox") => Ok(InstanceType::Sandbox),
        other => Err(invalid(&format!(
            "environmentSku `{other}` is not served by this tenant: use Production or Sandbox"
        ))),
    }
}

/// A field of `v` by name without regard to case (PowerShell sends Pascal case).
fn field<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    let o = v.as_object()?;
    o.get(name).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn text<'v>(v: &'v Value, name: &str) -> Option<&'v str> {
    field(v, name).and_then(Value::as_str)
}

/// A security group id of a body: `None` absent, `Some(None)` none (empty or all-zero).
fn group_of(v: &Value, name: &str) -> Option<Option<ObjRef>> {
    let g = field(v, name)?;
    let id = g.as_str().unwrap_or_default();
    Some((!id.is_empty() && id != NO_GROUP).then(|| graph::obj(id)))
}

async fn validate(shared: &Shared, ctx: &Ctx, body: Option<&Value>) -> Answer {
    let Some(b) = body else {
        return invalid("the request needs a body {domainName, environmentLocation}");
    };
    let Some(domain) = text(b, "domainName") else {
        return invalid("domainName is required");
    };
    let except = text(b, "environmentName");
    let tenant = or_answer!(read(shared, ctx).await);
    // I5: the same check the tenant makes on configure and rename: syntax, and unique
    // without regard to case.
    let taken = tenant
        .instances
        .values()
        .any(|i| i.url.eq_ignore_ascii_case(domain) && Some(i.id.as_str()) != except);
    if !is_url_name(domain) || taken {
        return error(
            400,
            "InvalidDomainName",
            &format!("The specified domain name with a value of '{domain}' is invalid."),
        );
    }
    if let Some(loc) = text(b, "environmentLocation") {
        if region(loc).is_none() {
            return invalid(&format!("environmentLocation `{loc}` is not a location"));
        }
    }
    Answer::json(200, json!({}))
}

/// Start a lifecycle operation: refuse when one runs on any environment it holds, execute
/// `ops` in order on the backing provider, record the operation and answer 202.
async fn start(
    shared: &Shared,
    kind: &'static str,
    env: Option<&str>,
    holds: Vec<String>,
    ops: Vec<Op>,
    duration: Duration,
) -> Answer {
    let _w = shared.write_lock.lock().await;
    for h in &holds {
        if shared.bap.running_on(h).is_some() {
            return not_startable(shared, h);
        }
    }
    let mut created = None;
    let mut handle = None;
    // Faults::failing_operations: the operation fails without changing the tenant.
    let fails = shared
        .faults()
        .failing_operations
        .iter()
        .any(|k| k.eq_ignore_ascii_case(kind));
    let ops = if fails { vec![] } else { ops };
    for op in &ops {
        let r = shared.provider.execute(op).await;
        graph::after_write(shared, op, r.is_ok());
        match r {
            Ok(Executed::Done(out)) => created = created.or(out.created_id),
            Ok(Executed::Accepted(h)) => handle = Some(h),
            Err(e) => return from_provider(&e, env.unwrap_or_default()),
        }
    }
    let env = env.map(str::to_string).or(created);
    let mut holds = holds;
    if let Some(e) = &env {
        if !holds.contains(e) {
            holds.push(e.clone());
        }
    }
    let id = shared.guid();
    shared.stats.count_operation(kind);
    shared.bap.lock().insert(
        id.clone(),
        Operation {
            kind,
            env,
            holds,
            started: Instant::now(),
            created: SystemTime::now(),
            duration,
            handle,
            end: fails.then(|| {
                Err(format!(
                    "The {kind} operation failed and left the environment unchanged (emulator fault)."
                ))
            }),
        },
    );
    let mut a = Answer::empty(202);
    a.headers.push((
        "Location".into(),
        format!(
            "{}{PREFIX}{RP}/lifecycleOperations/{id}?api-version=2023-06-01",
            shared.base
        ),
    ));
    a.headers
        .push(("Retry-After".into(), retry_secs(shared).to_string()));
    a
}

/// `GET /lifecycleOperations/{id}`: Running until the duration passed (and the backing
/// provider's own operation, if any, finished), then Succeeded or Failed.
async fn operation(shared: &Shared, id: &str) -> Answer {
    match operation_state(shared, id).await {
        Ok((body, running)) => {
            let mut a = Answer::json(200, body);
            if running {
                a.headers
                    .push(("Retry-After".into(), retry_secs(shared).to_string()));
            }
            a
        }
        Err(a) => a,
    }
}

/// `GET /lifecycleOperations?$filter=environment eq '{id}'`: the operations about that
/// environment (all of them without a filter), newest first, in `value`. Not in the
/// public reference: the shape is the one the admin center's own tooling reads
/// (d365bap.tools, `Get-BapEnvironmentOperation`: `lifecycleOperations?api-version=
/// 2024-05-01&$filter=environment eq '{id}'`, `value[]` of the lifecycle DTO, first is
/// the latest).
async fn operations_of(shared: &Shared, params: &[(String, String)]) -> Answer {
    let env = match params.iter().find(|(k, _)| k == "$filter") {
        None => None,
        Some((_, f)) => match environment_filter(f) {
            Some(e) => Some(e),
            None => {
                return error(
                    400,
                    "InvalidFilter",
                    &format!("The filter `{f}` is not supported: give environment eq '{{id}}'."),
                )
            }
        },
    };
    let mut ids: Vec<(SystemTime, String)> = shared
        .bap
        .lock()
        .iter()
        .filter(|(_, o)| {
            env.as_deref()
                .is_none_or(|e| o.env.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(e)))
        })
        .map(|(id, o)| (o.created, id.clone()))
        .collect();
    ids.sort_by(|a, b| b.cmp(a));
    let mut value = Vec::with_capacity(ids.len());
    for (_, id) in ids {
        if let Ok((body, _)) = operation_state(shared, &id).await {
            value.push(body);
        }
    }
    Answer::json(200, json!({ "value": value }))
}

/// The environment id of a filter `environment eq '{id}'`.
fn environment_filter(f: &str) -> Option<String> {
    let (field, rest) = f.trim().split_once(' ')?;
    let rest = rest.trim_start().strip_prefix("eq")?.trim();
    let id = rest.strip_prefix('\'')?.strip_suffix('\'')?;
    (field.eq_ignore_ascii_case("environment") && !id.is_empty()).then(|| id.to_string())
}

/// An operation's DTO and whether it still runs (an error answer when unknown).
async fn operation_state(shared: &Shared, id: &str) -> Result<(Value, bool), Answer> {
    let (handle, elapsed) = {
        let ops = shared.bap.lock();
        let Some(o) = ops.get(id) else {
            return Err(error(
                404,
                "LifecycleOperationNotFound",
                &format!("The lifecycle operation '{id}' was not found."),
            ));
        };
        (
            o.handle.clone().filter(|_| o.end.is_none()),
            o.started.elapsed() >= o.duration,
        )
    };
    if elapsed {
        if let Some(h) = handle {
            let end = match shared.provider.poll(&h).await {
                Ok(Polled::Running { .. }) => None,
                Ok(Polled::Done(out)) => {
                    if let Some(o) = shared.bap.lock().get_mut(id) {
                        if o.env.is_none() {
                            o.env = out.created_id.clone();
                        }
                    }
                    Some(Ok(()))
                }
                Ok(Polled::Failed(e)) | Err(e) => Some(Err(e.to_string())),
            };
            if end.is_some() {
                // The backing operation changed the tenant.
                *shared.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            if let Some(o) = shared.bap.lock().get_mut(id) {
                o.end = end;
            }
        }
    }
    let ops = shared.bap.lock();
    let Some(o) = ops.get(id) else {
        return Err(error(404, "LifecycleOperationNotFound", id));
    };
    let running = o.started.elapsed() < o.duration || (o.handle.is_some() && o.end.is_none());
    let state = match (&o.end, running) {
        (_, true) => "Running",
        (Some(Err(_)), false) => "Failed",
        _ => "Succeeded",
    };
    let stamp = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
    let created = stamp(o.created);
    let last = stamp(SystemTime::now().min(o.created + o.duration));
    let stages: Vec<Value> = ["Validate", "Prepare", "Run", "Finalize"]
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let stage_state = if !running {
                state
            } else if n < 2 {
                "Succeeded"
            } else if n == 2 {
                "Running"
            } else {
                "NotStarted"
            };
            json!({"id": s, "name": s, "state": {"id": stage_state}, "firstActionDateTime": created, "lastActionDateTime": last})
        })
        .collect();
    let mut body = json!({
        "id": id,
        "links": {
            "self": {"path": format!("{RP}/lifecycleOperations/{id}")},
            "environment": {"path": format!("{RP}/environments/{}", o.env.clone().unwrap_or_default())},
        },
        "type": {"id": o.kind},
        "typeDisplayName": o.kind,
        "state": {"id": state},
        "createdDateTime": created,
        "lastActionDateTime": last,
        "requestedBy": {"id": "emulator", "displayName": "ServicePrincipal", "type": "ServicePrincipal"},
        "stages": stages,
    });
    if let (Some(Err(m)), false) = (&o.end, running) {
        body["error"] = json!({"code": "LifecycleOperationFailed", "message": m});
    }
    Ok((body, running))
}

async fn create(shared: &Shared, body: Option<&Value>) -> Answer {
    let Some(b) = body else {
        return invalid("the request needs a body {location, properties}");
    };
    let loc = text(b, "location").unwrap_or_default();
    let Some(region) = region(loc) else {
        return invalid(&format!("location `{loc}` is not a location crmctl serves"));
    };
    let p = field(b, "properties").cloned().unwrap_or(Value::Null);
    let kind = or_answer!(parse_sku(text(&p, "environmentSku").unwrap_or("Sandbox")));
    let Some(meta) = field(&p, "linkedEnvironmentMetadata") else {
        return invalid("properties.linkedEnvironmentMetadata is required: every environment of this tenant has a Dataverse database");
    };
    let Some(url) = text(meta, "domainName") else {
        return invalid("properties.linkedEnvironmentMetadata.domainName is required");
    };
    let currency = field(meta, "currency")
        .and_then(|c| text(c, "code"))
        .unwrap_or("USD");
    let language = field(meta, "baseLanguage")
        .and_then(Value::as_u64)
        .unwrap_or(1033);
    let op = Op::ConfigureInstance {
        name: text(&p, "displayName").unwrap_or(url).to_string(),
        url: url.to_string(),
        kind,
        purpose: text(&p, "description").unwrap_or_default().to_string(),
        region,
        currency: currency.to_string(),
        language: u32::try_from(language).unwrap_or(u32::MAX),
        security_group: group_of(meta, "securityGroupId").flatten(),
    };
    let d = shared.faults().lifecycle_duration;
    start(shared, "Create", None, vec![], vec![op], d).await
}

/// The instance `id` names, or the answer.
async fn existing(shared: &Shared, ctx: &Ctx, id: &str) -> Result<Instance, Answer> {
    let tenant = read(shared, ctx).await?;
    find(&tenant, id).cloned().ok_or_else(|| env_not_found(id))
}

async fn update(shared: &Shared, ctx: &Ctx, id: &str, body: Option<&Value>) -> Answer {
    let i = or_answer!(existing(shared, ctx, id).await);
    let Some(b) = body else {
        return invalid("the request needs a body {properties}");
    };
    let p = field(b, "properties").cloned().unwrap_or(Value::Null);
    let meta = field(&p, "linkedEnvironmentMetadata")
        .cloned()
        .unwrap_or(Value::Null);
    let r = graph::obj(&i.id);
    let mut ops = vec![];
    let name = text(&p, "displayName").map(str::to_string);
    let url = text(&meta, "domainName").map(str::to_string);
    let purpose = text(&p, "description").map(str::to_string);
    let group = group_of(&meta, "securityGroupId");
    if name.is_some() || url.is_some() || purpose.is_some() || group.is_some() {
        ops.push(Op::UpdateInstance {
            instance: r.clone(),
            name,
            url,
            purpose,
            security_group: group,
        });
    }
    let runtime = field(&p, "states")
        .and_then(|s| field(s, "runtime"))
        .and_then(|r| text(r, "id"));
    let background = text(&meta, "backgroundOperationsState");
    if runtime.is_some() || background.is_some() {
        let enabled = match runtime {
            None => i.admin_mode.enabled,
            Some(s) if s.eq_ignore_ascii_case("AdminMode") => true,
            Some(s) if s.eq_ignore_ascii_case("Enabled") => false,
            Some(other) => {
                return invalid(&format!(
                    "states.runtime.id `{other}` is not served: use Enabled or AdminMode"
                ))
            }
        };
        let background_operations = match background {
            None => i.admin_mode.background_operations || !enabled,
            Some(s) if s.eq_ignore_ascii_case("Enabled") => true,
            Some(s) if s.eq_ignore_ascii_case("Disabled") => false,
            Some(other) => {
                return invalid(&format!(
                    "backgroundOperationsState `{other}` is not valid: use Enabled or Disabled"
                ))
            }
        };
        ops.push(Op::SetAdminMode {
            instance: r,
            enabled,
            background_operations,
            message: i.admin_mode.message.clone(),
        });
    }
    if ops.is_empty() {
        return invalid("the request changes nothing the emulator serves");
    }
    let d = shared.faults().lifecycle_duration;
    start(shared, "Update", Some(&i.id), vec![i.id.clone()], ops, d).await
}

async fn delete(shared: &Shared, ctx: &Ctx, id: &str) -> Answer {
    let i = or_answer!(existing(shared, ctx, id).await);
    let op = Op::DeleteInstance {
        instance: graph::obj(&i.id),
    };
    let d = shared.faults().lifecycle_duration;
    start(
        shared,
        "Delete",
        Some(&i.id),
        vec![i.id.clone()],
        vec![op],
        d,
    )
    .await
}

async fn modify_sku(shared: &Shared, ctx: &Ctx, id: &str, body: Option<&Value>) -> Answer {
    let i = or_answer!(existing(shared, ctx, id).await);
    let Some(s) = body.and_then(|b| text(b, "environmentSku")) else {
        return invalid("environmentSku is required");
    };
    let to = or_answer!(parse_sku(s));
    let op = Op::SwitchInstance {
        instance: graph::obj(&i.id),
        to,
    };
    let d = shared.faults().lifecycle_duration;
    start(
        shared,
        "ModifySku",
        Some(&i.id),
        vec![i.id.clone()],
        vec![op],
        d,
    )
    .await
}

async fn copy(shared: &Shared, ctx: &Ctx, target: &str, body: Option<&Value>) -> Answer {
    let t = or_answer!(existing(shared, ctx, target).await);
    let Some(b) = body else {
        return invalid("the request needs a body {sourceEnvironmentId, copyType}");
    };
    let Some(source) = text(b, "sourceEnvironmentId") else {
        return invalid("sourceEnvironmentId is required");
    };
    let s = or_answer!(existing(shared, ctx, source).await);
    let kind = match text(b, "copyType").unwrap_or("FullCopy") {
        k if k.eq_ignore_ascii_case("FullCopy") => CopyKind::Full,
        k if k.eq_ignore_ascii_case("MinimalCopy") => CopyKind::Minimal,
        other => {
            return invalid(&format!(
                "copyType `{other}` is not valid: use FullCopy or MinimalCopy"
            ))
        }
    };
    let mut ops = vec![Op::CopyInstance {
        source: graph::obj(&s.id),
        target: graph::obj(&t.id),
        kind,
    }];
    // The target's name and security group may be set as part of the copy.
    let name = text(b, "targetEnvironmentName")
        .filter(|n| !n.is_empty() && *n != t.name)
        .map(str::to_string);
    let group = group_of(b, "targetSecurityGroupId")
        .filter(|g| g.as_ref().and_then(|g| g.id.clone()) != t.security_group);
    if name.is_some() || group.is_some() {
        ops.push(Op::UpdateInstance {
            instance: graph::obj(&t.id),
            name,
            url: None,
            purpose: None,
            security_group: group,
        });
    }
    let f = shared.faults();
    let d = if f.copy_duration.is_zero() {
        f.lifecycle_duration
    } else {
        f.copy_duration
    };
    start(
        shared,
        "Copy",
        Some(&t.id),
        vec![t.id.clone(), s.id.clone()],
        ops,
        d,
    )
    .await
}

async fn reset(shared: &Shared, ctx: &Ctx, id: &str, body: Option<&Value>) -> Answer {
    let i = or_answer!(existing(shared, ctx, id).await);
    let empty = json!({});
    let b = body.unwrap_or(&empty);
    let currency = field(b, "currency")
        .and_then(|c| text(c, "code"))
        .unwrap_or(&i.currency)
        .to_string();
    let language = field(b, "baseLanguageCode")
        .or_else(|| field(b, "baseLanguage"))
        .and_then(Value::as_u64)
        .map_or(i.language, |l| u32::try_from(l).unwrap_or(u32::MAX));
    let op = Op::ResetInstance {
        instance: graph::obj(&i.id),
        currency,
        language,
    };
    let d = shared.faults().lifecycle_duration;
    start(
        shared,
        "Reset",
        Some(&i.id),
        vec![i.id.clone()],
        vec![op],
        d,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_list_filter_names_one_environment() {
        assert_eq!(
            environment_filter("environment eq 'e-1'").as_deref(),
            Some("e-1")
        );
        assert_eq!(
            environment_filter("  Environment  eq  'E2' ").as_deref(),
            Some("E2")
        );
        for bad in [
            "environment eq e-1",
            "state eq 'x'",
            "environment ne 'x'",
            "environment eq ''",
        ] {
            assert_eq!(environment_filter(bad), None, "{bad}");
        }
    }

    #[test]
    fn locations_and_regions_round_trip() {
        for r in [Region::NA, Region::EMEA, Region::UK, Region::GCC] {
            assert_eq!(region(location(r)), Some(r));
        }
        assert_eq!(region("Europe"), Some(Region::EMEA));
        assert_eq!(region("mars"), None);
    }

    #[test]
    fn fields_are_found_without_case() {
        let v = json!({"BaseLanguageCode": 1031, "currency": {"Code": "EUR"}});
        assert_eq!(field(&v, "baseLanguageCode"), Some(&json!(1031)));
        assert_eq!(
            field(&v, "currency").and_then(|c| text(c, "code")),
            Some("EUR")
        );
        assert_eq!(
            group_of(&json!({"securityGroupId": NO_GROUP}), "securityGroupId"),
            Some(None)
        );
        assert_eq!(group_of(&json!({}), "securityGroupId"), None);
    }
}
