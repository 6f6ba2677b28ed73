//! Instances through the Power Platform admin API (BAP) (issue 13 item 1): observe the
//! environments that have a Dataverse database, and run the instance lifecycle ops (create,
//! update, administration mode, switch type, delete, copy, reset) as long-running
//! operations.
//!
//! Requests (relative to the admin API's base URL, [`Service::Bap`]); paths, bodies and
//! api-versions as the maintained microsoft/terraform-provider-power-platform sends them
//! (checked @57ba091: `internal/services/environment/api_environment.go` for the paths, the
//! 2023-06-01 / 2021-04-01 api-versions, `validateEnvironmentDetails` before a create or a
//! URL change, the 202 + `Location` answers and the 409 "operation in progress";
//! `internal/api/lifecycle.go` for the lifecycle operation's `state.id` and
//! `links.environment.path`); copy and reset bodies from the PowerShell module's
//! Copy-PowerAppEnvironment / Reset-PowerAppEnvironment reference on learn.microsoft.com:
//!
//! | op | request |
//! | --- | --- |
//! | observe | `GET /scopes/admin/environments` (pages: `nextLink`, absolute) |
//! | `ConfigureInstance` | `POST /validateEnvironmentDetails {domainName, environmentLocation}`, then `POST /environments {location, properties:{displayName, description, environmentSku, databaseType, linkedEnvironmentMetadata:{baseLanguage, currency:{code}, domainName, securityGroupId}}}` |
//! | `UpdateInstance` | (URL change: `validateEnvironmentDetails {domainName, environmentName}`) `PATCH /scopes/admin/environments/{id} {properties:{displayName, description, linkedEnvironmentMetadata:{domainName, securityGroupId}}}` |
//! | `SetAdminMode` | `PATCH ... {properties:{states:{runtime:{id: AdminMode \| Enabled}}, linkedEnvironmentMetadata:{backgroundOperationsState}}}` |
//! | `SwitchInstance` | `POST /scopes/admin/environments/{id}/modifySku {environmentSku}` |
//! | `DeleteInstance` | `DELETE /scopes/admin/environments/{id}` |
//! | `CopyInstance` | `POST /scopes/admin/environments/{target}/copyTo {sourceEnvironmentId, copyType: FullCopy \| MinimalCopy}` |
//! | `ResetInstance` | `POST /scopes/admin/environments/{id}/reset {baseLanguageCode, currency:{code}}` |
//!
//! Every write answered 202 becomes [`Executed::Accepted`] whose handle holds the operation
//! kind and the `Location` (else `Operation-Location`) URL, so that apply records it in the
//! state before it waits (a killed apply polls the same operation again, never starts a
//! second create or copy). [`poll`] reads the lifecycle operation (`state.id`: `Running` /
//! `NotStarted` -> running, `Succeeded`, `Failed`), then waits until the environment is
//! ready (`states.management.id == Ready`, not provisioning) before it says done. A 409 is
//! [`ProviderError::Conflict`] with the server's `Retry-After` (apply waits and retries);
//! 429/5xx are retried by the transport. What BAP does not carry: the sign-in message of
//! administration mode (kept as observed), the base currency (read from the instance's
//! Dataverse and merged by the composite provider), notification recipients and update
//! schedules (manual steps).

use serde_json::{json, Value};

use crate::domain::kinds::{CopyKind, InstanceType, Region};
use crate::domain::op::{ObjRef, Op};
use crate::observed::{AdminModeState, Instance, InstanceStatus, LastChange};
use crate::provider::http::{Http, Request, Response, Service};
use crate::provider::powerplatform::backup::error_class;
use crate::provider::{Executed, OperationHandle, Outcome, Polled, ProviderError};

/// The resource provider every path starts with.
pub const RP: &str = "/providers/Microsoft.BusinessAppPlatform";
/// api-version of the environment list, create, delete, copy, reset and lifecycle reads.
pub const API_VERSION: &str = "2023-06-01";
/// api-version of validate, modifySku and PATCH (the Terraform provider's `BAP_2021`).
pub const API_VERSION_2021: &str = "2021-04-01";
/// The all-zero GUID: no security group.
pub const NO_GROUP: &str = "00000000-0000-0000-0000-000000000000";
/// Prefix of the handles this client makes (the composite provider routes polls by it).
pub const HANDLE_PREFIX: &str = "bap:";

/// The BAP location of a region (an environment's `location`), per
/// /work/shared/microsoft-apis.md's table.
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
pub fn region(loc: &str) -> Option<Region> {
    [
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
    ]
    .into_iter()
    .find(|r| location(*r).eq_ignore_ascii_case(loc))
}

fn sku(k: InstanceType) -> &'static str {
    match k {
        InstanceType::Production => "Production",
        InstanceType::Sandbox => "Sandbox",
    }
}

fn env_path(id: &str) -> Result<String, ProviderError> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ProviderError::Invalid(format!(
            "environment id `{}` is not an id (letters, digits, '-' and '_')",
            crate::domain::escape::escape(id)
        )));
    }
    Ok(format!("{RP}/scopes/admin/environments/{id}"))
}

fn remote(r: &ObjRef) -> Result<&str, ProviderError> {
    r.id.as_deref().ok_or_else(|| {
        ProviderError::Invalid(format!("reference to `{}` carries no remote id", r.address))
    })
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// The observed instance of one environment of the list, `None` when it has no Dataverse
/// database (crmctl's instances are Dataverse organisations, I1) or an unknown location.
/// The currency is left empty: the instance's Dataverse says it.
pub fn instance_of(env: &Value) -> Option<Instance> {
    let id = env.get("name")?.as_str()?.to_string();
    let p = env.get("properties")?;
    let meta = p.get("linkedEnvironmentMetadata")?;
    let url = meta.get("domainName")?.as_str()?.to_string();
    let region = region(env.get("location")?.as_str()?)?;
    let kind = match str_at(p, &["environmentSku"]) {
        Some(s) if s.eq_ignore_ascii_case("Production") => InstanceType::Production,
        _ => InstanceType::Sandbox,
    };
    let runtime = str_at(p, &["states", "runtime", "id"]).unwrap_or("Enabled");
    let provisioning =
        str_at(p, &["provisioningState"]).is_some_and(|s| !s.eq_ignore_ascii_case("Succeeded"));
    // I4: provisioning / disabled / ready.
    let status = if provisioning {
        InstanceStatus::Provisioning
    } else if runtime.eq_ignore_ascii_case("Disabled") {
        InstanceStatus::Disabled
    } else {
        InstanceStatus::Ready
    };
    let group = str_at(meta, &["securityGroupId"])
        .filter(|g| !g.is_empty() && *g != NO_GROUP)
        .map(str::to_string);
    let admin = runtime.eq_ignore_ascii_case("AdminMode");
    let background = str_at(meta, &["backgroundOperationsState"])
        .is_none_or(|s| s.eq_ignore_ascii_case("Enabled"));
    Some(Instance {
        id,
        name: str_at(p, &["displayName"]).unwrap_or_default().to_string(),
        url,
        kind,
        slot: kind,
        purpose: str_at(p, &["description"]).unwrap_or_default().to_string(),
        region,
        currency: String::new(),
        language: meta
            .get("baseLanguage")
            .and_then(Value::as_u64)
            .and_then(|l| u32::try_from(l).ok())
            .unwrap_or(1033),
        security_group: group,
        status,
        version: str_at(meta, &["version"]).unwrap_or_default().to_string(),
        admin_mode: AdminModeState {
            enabled: admin,
            background_operations: background,
            message: None,
        },
        notification_recipients: vec![],
        update: None,
    })
}

/// Who last changed an environment and when (issue 14 item 2): `properties.lastModifiedTime`
/// and `properties.lastModifiedBy` (its `userPrincipalName`, else `displayName`, else `id`),
/// as the admin API returns them in the list and get of environments (recorded in
/// terraform-provider-power-platform, internal/services/environment/tests/resource/
/// Validate_Create_Environment_And_Dataverse/get_lifecycle_new_dataverse.json; the
/// `Validate_Read` recordings have `lastModifiedTime` without `lastModifiedBy`, so either
/// may be missing). `None` when neither is there.
pub fn last_change_of(env: &Value) -> Option<LastChange> {
    let p = env.get("properties")?;
    let at = str_at(p, &["lastModifiedTime"])
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let by = ["userPrincipalName", "displayName", "id"]
        .iter()
        .find_map(|k| str_at(p, &["lastModifiedBy", k]).filter(|v| !v.trim().is_empty()))
        .map(str::to_string);
    (at.is_some() || by.is_some()).then_some(LastChange { by, at })
}

/// One environment of [`list`].
#[derive(Debug, Clone)]
pub struct Listed {
    /// The observed instance.
    pub instance: Instance,
    /// Its `instanceUrl` (the Dataverse base), when given.
    pub base: Option<String>,
    /// Who last changed it and when ([`last_change_of`]).
    pub changed: Option<LastChange>,
}

/// Every environment with a Dataverse database, following `nextLink`, with its
/// `instanceUrl` (the Dataverse base) and its last change, read from the same pages.
pub async fn list(http: &dyn Http) -> Result<Vec<Listed>, ProviderError> {
    let mut url = format!("{RP}/scopes/admin/environments?api-version={API_VERSION}");
    let mut out = vec![];
    loop {
        let resp = http.send(Request::get(Service::Bap, url)).await?;
        if !resp.ok() {
            return Err(error_class(&resp, "list of environments"));
        }
        let page: Value = resp.json()?;
        for env in page
            .get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(instance) = instance_of(env) {
                let base = str_at(
                    env,
                    &["properties", "linkedEnvironmentMetadata", "instanceUrl"],
                )
                .map(|u| u.trim_end_matches('/').to_string());
                out.push(Listed {
                    instance,
                    base,
                    changed: last_change_of(env),
                });
            }
        }
        match page.get("nextLink").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => url = next.to_string(),
            _ => return Ok(out),
        }
    }
}

/// Check a URL name with the validation endpoint (I5): `Ok` when free. `environment` is
/// the environment being renamed (its own name is not "taken").
pub async fn validate_url(
    http: &dyn Http,
    url: &str,
    region: Option<Region>,
    environment: Option<&str>,
) -> Result<(), ProviderError> {
    let mut body = json!({ "domainName": url });
    if let Some(r) = region {
        body["environmentLocation"] = json!(location(r));
    }
    if let Some(e) = environment {
        body["environmentName"] = json!(e);
    }
    let req = Request::with_body(
        "POST",
        Service::Bap,
        format!("{RP}/validateEnvironmentDetails?api-version={API_VERSION_2021}"),
        body,
        true,
    );
    let resp = http.send(req).await?;
    if resp.ok() {
        return Ok(());
    }
    let err = error_class(&resp, &format!("validation of the URL name `{url}`"));
    if resp.status == 400 && String::from_utf8_lossy(&resp.body).contains("InvalidDomainName") {
        return Err(ProviderError::refused(
            "I5",
            format!("the URL name `{url}` is taken or not valid ({err})"),
        ));
    }
    Err(err)
}

/// The request that carries out `op`, or `None` when the op is not an instance lifecycle op.
pub fn request(op: &Op) -> Result<Option<Request>, ProviderError> {
    let post = |url: String, body: Value, idempotent: bool| {
        Ok(Some(Request::with_body(
            "POST",
            Service::Bap,
            url,
            body,
            idempotent,
        )))
    };
    match op {
        Op::ConfigureInstance {
            name,
            url,
            kind,
            purpose,
            region,
            currency,
            language,
            security_group,
        } => {
            let mut meta = json!({
                "baseLanguage": language,
                "currency": {"code": currency},
                "domainName": url,
            });
            if let Some(g) = security_group {
                meta["securityGroupId"] = json!(remote(g)?);
            }
            post(
                format!("{RP}/environments?api-version={API_VERSION}"),
                json!({
                    "location": location(*region),
                    "properties": {
                        "displayName": name,
                        "description": purpose,
                        "environmentSku": sku(*kind),
                        "databaseType": "CommonDataService",
                        "linkedEnvironmentMetadata": meta,
                    }
                }),
                false,
            )
        }
        Op::UpdateInstance {
            instance,
            name,
            url,
            purpose,
            security_group,
        } => {
            let mut props = json!({});
            let mut meta = json!({});
            if let Some(n) = name {
                props["displayName"] = json!(n);
            }
            if let Some(p) = purpose {
                props["description"] = json!(p);
            }
            if let Some(u) = url {
                meta["domainName"] = json!(u);
            }
            match security_group {
                None => {}
                Some(None) => meta["securityGroupId"] = json!(NO_GROUP),
                Some(Some(g)) => meta["securityGroupId"] = json!(remote(g)?),
            }
            if meta.as_object().is_some_and(|m| !m.is_empty()) {
                props["linkedEnvironmentMetadata"] = meta;
            }
            Ok(Some(Request::with_body(
                "PATCH",
                Service::Bap,
                format!(
                    "{}?api-version={API_VERSION_2021}",
                    env_path(remote(instance)?)?
                ),
                json!({ "properties": props }),
                true,
            )))
        }
        // I10. The sign-in message has no field in the admin API: it is left as it is.
        Op::SetAdminMode {
            instance,
            enabled,
            background_operations,
            ..
        } => Ok(Some(Request::with_body(
            "PATCH",
            Service::Bap,
            format!(
                "{}?api-version={API_VERSION_2021}",
                env_path(remote(instance)?)?
            ),
            json!({"properties": {
                "states": {"runtime": {"id": if *enabled { "AdminMode" } else { "Enabled" }}},
                "linkedEnvironmentMetadata": {
                    "backgroundOperationsState": if *background_operations { "Enabled" } else { "Disabled" }
                }
            }}),
            true,
        ))),
        // I7.
        Op::SwitchInstance { instance, to } => post(
            format!(
                "{}/modifySku?api-version={API_VERSION_2021}",
                env_path(remote(instance)?)?
            ),
            json!({ "environmentSku": sku(*to) }),
            true,
        ),
        // I8.
        Op::DeleteInstance { instance } => Ok(Some(Request {
            method: "DELETE",
            service: Service::Bap,
            url: format!("{}?api-version={API_VERSION}", env_path(remote(instance)?)?),
            headers: vec![],
            body: None,
            idempotent: true,
        })),
        // I11.
        Op::CopyInstance {
            source,
            target,
            kind,
        } => post(
            format!(
                "{}/copyTo?api-version={API_VERSION}",
                env_path(remote(target)?)?
            ),
            json!({
                "sourceEnvironmentId": remote(source)?,
                "copyType": match kind { CopyKind::Full => "FullCopy", CopyKind::Minimal => "MinimalCopy" },
            }),
            false,
        ),
        // I9.
        Op::ResetInstance {
            instance,
            currency,
            language,
        } => post(
            format!(
                "{}/reset?api-version={API_VERSION}",
                env_path(remote(instance)?)?
            ),
            json!({ "baseLanguageCode": language, "currency": {"code": currency} }),
            false,
        ),
        _ => Ok(None),
    }
}

/// The handle kind of an op: `create` (the outcome names the new environment) or the
/// environment the op is about.
fn handle_subject(op: &Op) -> String {
    match op {
        Op::ConfigureInstance { .. } => "create".into(),
        Op::CopyInstance { target, .. } => target.id.clone().unwrap_or_default(),
        other => other
            .clone()
            .refs_mut()
            .first()
            .and_then(|r| r.id.clone())
            .unwrap_or_default(),
    }
}

/// What the answer to `op`'s request means.
fn read_start(op: &Op, resp: &Response) -> Result<Executed, ProviderError> {
    let what = format!("{} (admin API)", op.kind().info().name);
    if !resp.ok() {
        return Err(error_class(resp, &what));
    }
    let retry_after = resp.header("retry-after").and_then(|v| {
        crate::provider::http::transport::parse_retry_after(v, std::time::SystemTime::now())
    });
    let loc = resp
        .header("location")
        .or_else(|| resp.header("operation-location"));
    match (resp.status, loc) {
        (202, Some(loc)) => Ok(Executed::Accepted(OperationHandle {
            id: format!("{HANDLE_PREFIX}{}|{loc}", handle_subject(op)),
            retry_after,
        })),
        (202, None) => Err(ProviderError::Backend(format!(
            "{what}: accepted without a Location or Operation-Location to follow"
        ))),
        _ => {
            // Done at once (some updates answer 200/204).
            let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            let mut out = Outcome::default();
            if let (Op::ConfigureInstance { .. }, Some(id)) =
                (op, body.get("name").and_then(Value::as_str))
            {
                out = Outcome::created(id).with_id("environment", id);
            }
            Ok(Executed::Done(out))
        }
    }
}

/// Execute an instance lifecycle op: `Ok(None)` when `op` is not one. A create (and a URL
/// change) first checks the URL name with the validation endpoint.
///
/// A copy or a reset (not safe to send twice, I9/I11) first checks that its environment
/// is ready (no lifecycle operation running on it: a conflict to wait for otherwise); when
/// the answer to the request is lost, the environment is read again: busy now, the
/// operation this request started runs on it, and the handle follows the environment
/// until it is ready again (`ready:` handles), never sending the request again; still
/// ready, the outcome stays unknown.
pub async fn execute(http: &dyn Http, op: &Op) -> Result<Option<Executed>, ProviderError> {
    let Some(req) = request(op)? else {
        return Ok(None);
    };
    let guarded = match op {
        Op::ConfigureInstance { url, region, .. } => {
            validate_url(http, url, Some(*region), None).await?;
            None
        }
        Op::UpdateInstance {
            instance,
            url: Some(u),
            ..
        } => {
            validate_url(http, u, None, Some(remote(instance)?)).await?;
            None
        }
        Op::CopyInstance { target: env, .. } | Op::ResetInstance { instance: env, .. } => {
            let env = remote(env)?;
            if !environment_ready(http, env).await? {
                return Err(ProviderError::Conflict {
                    message: format!(
                        "{} (admin API): environment {env} is busy with another lifecycle operation; waiting for it to end",
                        op.kind().info().name
                    ),
                    retry_after: Some(std::time::Duration::from_secs(1)),
                });
            }
            Some(env)
        }
        _ => None,
    };
    let resp = match (http.send(req).await, guarded) {
        (Ok(resp), _) => resp,
        (Err(ProviderError::OutcomeUnknown(m)), Some(env)) => {
            return match environment_ready(http, env).await {
                Ok(false) => Ok(Some(Executed::Accepted(OperationHandle {
                    id: format!("{HANDLE_PREFIX}{env}|{READY}{env}|{}", lifecycle_type(op)),
                    retry_after: None,
                }))),
                Ok(true) => Err(ProviderError::OutcomeUnknown(format!(
                    "{m}; environment {env} shows no operation running: not sent again"
                ))),
                Err(e) => Err(ProviderError::OutcomeUnknown(format!(
                    "{m}; reading environment {env} again failed ({e}): not sent again"
                ))),
            };
        }
        (Err(e), _) => return Err(e),
    };
    read_start(op, &resp).map(Some)
}

/// Marks a handle that follows an environment until it is ready, not a lifecycle
/// operation (the answer that named the operation was lost): `ready:{env}|{type}`.
const READY: &str = "ready:";

/// The lifecycle operation type (`type.id`) a copy or a reset starts; the emulator and the
/// recorded answers of microsoft/terraform-provider-power-platform
/// (`internal/services/environment/tests/**/get_lifecycle.json`: `"type": {"id":
/// "Create"}`) name the kinds so.
fn lifecycle_type(op: &Op) -> &'static str {
    match op {
        Op::CopyInstance { .. } => "Copy",
        Op::ResetInstance { .. } => "Reset",
        _ => "",
    }
}

/// api-version of the environment's lifecycle operation list. Not in the public
/// reference; the admin center's tooling reads it so (d365bap.tools,
/// `Get-BapEnvironmentOperation`: `GET /providers/Microsoft.BusinessAppPlatform/
/// lifecycleOperations?api-version=2024-05-01&$filter=environment eq '{id}'`, answering
/// `value[]` of the lifecycle DTO, the first being the latest).
const OPERATIONS_API_VERSION: &str = "2024-05-01";

/// Once a `ready:` handle's environment is ready again: whether the operation the lost
/// request started succeeded. The latest lifecycle operation of that type on the
/// environment tells; `Failed` is the outcome (never reported done). When the list cannot
/// be read (not served, or no operation of that type listed) the environment's readiness
/// stands, as before.
async fn lost_operation_outcome(
    http: &dyn Http,
    env: &str,
    kind: &str,
) -> Result<Option<ProviderError>, ProviderError> {
    let filter = format!("environment eq '{env}'");
    let query = serde_urlencoded::to_string([
        ("api-version", OPERATIONS_API_VERSION),
        ("$filter", filter.as_str()),
    ])
    .map_err(|e| ProviderError::Invalid(format!("environment id `{env}`: {e}")))?;
    let url = format!("{RP}/lifecycleOperations?{query}");
    let resp = http.send(Request::get(Service::Bap, url)).await?;
    if resp.status == 404 || resp.status == 400 {
        tracing::debug!(
            env,
            status = resp.status,
            "lifecycle operation list not served"
        );
        return Ok(None);
    }
    if !resp.ok() {
        return Err(error_class(
            &resp,
            &format!("lifecycle operations of {env}"),
        ));
    }
    let body: Value = resp.json()?;
    let latest = body
        .get("value")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|o| {
            kind.is_empty()
                || str_at(o, &["type", "id"]).is_some_and(|t| t.eq_ignore_ascii_case(kind))
        })
        .max_by(|a, b| {
            let at = |o: &Value| {
                str_at(o, &["createdDateTime"])
                    .unwrap_or_default()
                    .to_string()
            };
            at(a).cmp(&at(b))
        });
    let Some(op) = latest else {
        return Ok(None);
    };
    if str_at(op, &["state", "id"]).is_some_and(|s| s.eq_ignore_ascii_case("Failed")) {
        let m = str_at(op, &["error", "message"]).unwrap_or("the operation failed");
        return Ok(Some(ProviderError::Backend(format!(
            "admin API lifecycle operation {} ({} of environment {env}, whose answer was lost): {m}",
            str_at(op, &["id"]).unwrap_or_default(),
            if kind.is_empty() { "operation" } else { kind },
        ))));
    }
    Ok(None)
}

/// Whether environment `env` is ready: no lifecycle operation running on it
/// (`states.management.id` Ready) and provisioned.
async fn environment_ready(http: &dyn Http, env: &str) -> Result<bool, ProviderError> {
    let resp = http
        .send(Request::get(
            Service::Bap,
            format!("{}?api-version={API_VERSION}", env_path(env)?),
        ))
        .await?;
    if !resp.ok() {
        return Err(error_class(&resp, &format!("environment {env}")));
    }
    let e: Value = resp.json()?;
    Ok(ready(&e))
}

fn ready(e: &Value) -> bool {
    str_at(e, &["properties", "states", "management", "id"])
        .is_none_or(|s| s.eq_ignore_ascii_case("Ready"))
        && str_at(e, &["properties", "provisioningState"])
            .is_none_or(|s| s.eq_ignore_ascii_case("Succeeded"))
}

/// Split a handle of this client into (subject, lifecycle URL).
fn parse_handle(h: &OperationHandle) -> Result<(&str, &str), ProviderError> {
    h.id.strip_prefix(HANDLE_PREFIX)
        .and_then(|r| r.split_once('|'))
        .ok_or_else(|| ProviderError::Invalid(format!("`{}` is not an admin API operation", h.id)))
}

/// Poll a lifecycle operation this client started; done only once the environment is
/// ready again (or gone, after a delete).
pub async fn poll(http: &dyn Http, h: &OperationHandle) -> Result<Polled, ProviderError> {
    let (subject, url) = parse_handle(h)?;
    if let Some(rest) = url.strip_prefix(READY) {
        let (env, kind) = rest.split_once('|').unwrap_or((rest, ""));
        let polled = environment_done(http, subject, env, h.retry_after).await?;
        if let Polled::Done(_) = polled {
            if let Some(e) = lost_operation_outcome(http, env, kind).await? {
                return Ok(Polled::Failed(e));
            }
        }
        return Ok(polled);
    }
    let resp = http.send(Request::get(Service::Bap, url)).await?;
    if !resp.ok() {
        return Err(error_class(&resp, "lifecycle operation"));
    }
    let retry_after = resp.header("retry-after").and_then(|v| {
        crate::provider::http::transport::parse_retry_after(v, std::time::SystemTime::now())
    });
    let body: Value = resp.json()?;
    let state = str_at(&body, &["state", "id"]).unwrap_or("Running");
    if state.eq_ignore_ascii_case("Failed") {
        let m = str_at(&body, &["error", "message"]).unwrap_or("the operation failed");
        return Ok(Polled::Failed(ProviderError::Backend(format!(
            "admin API lifecycle operation {}: {m}",
            str_at(&body, &["id"]).unwrap_or_default()
        ))));
    }
    if !state.eq_ignore_ascii_case("Succeeded") {
        return Ok(Polled::Running { retry_after });
    }
    let env = str_at(&body, &["links", "environment", "path"])
        .and_then(|p| p.rsplit('/').next())
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .or_else(|| (subject != "create").then(|| subject.to_string()));
    let Some(env) = env else {
        return Err(ProviderError::Backend(
            "the create succeeded but its operation names no environment".into(),
        ));
    };
    environment_done(http, subject, &env, retry_after).await
}

/// Done once environment `env` is ready (its Dataverse answers) or gone (a delete);
/// running otherwise. A create's outcome names the new environment.
async fn environment_done(
    http: &dyn Http,
    subject: &str,
    env: &str,
    retry_after: Option<std::time::Duration>,
) -> Result<Polled, ProviderError> {
    let env = env.to_string();
    let resp = http
        .send(Request::get(
            Service::Bap,
            format!("{}?api-version={API_VERSION}", env_path(&env)?),
        ))
        .await?;
    if resp.status == 404 {
        // Deleted: done.
        return Ok(Polled::Done(Outcome::default()));
    }
    if !resp.ok() {
        return Err(error_class(&resp, &format!("environment {env}")));
    }
    let e: Value = resp.json()?;
    if !ready(&e) {
        return Ok(Polled::Running { retry_after });
    }
    let mut out = Outcome::default();
    if subject == "create" {
        out = Outcome::created(env.clone()).with_id("environment", env.clone());
        if let Some(u) = str_at(
            &e,
            &["properties", "linkedEnvironmentMetadata", "instanceUrl"],
        ) {
            out = out.with_id("org_url", u.trim_end_matches('/'));
        }
    }
    Ok(Polled::Done(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kinds::Region;

    fn obj(id: &str) -> ObjRef {
        ObjRef {
            address: id.into(),
            id: Some(id.into()),
        }
    }

    #[test]
    fn requests_have_the_documented_shapes() {
        let create = Op::ConfigureInstance {
            name: "Dev".into(),
            url: "contoso-dev".into(),
            kind: InstanceType::Sandbox,
            purpose: "dev".into(),
            region: Region::EMEA,
            currency: "EUR".into(),
            language: 1031,
            security_group: Some(obj("g1")),
        };
        let r = request(&create).unwrap().unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, format!("{RP}/environments?api-version=2023-06-01"));
        assert!(!r.idempotent, "a second create makes a second environment");
        let b = r.body.unwrap();
        assert_eq!(b["location"], "europe");
        assert_eq!(b["properties"]["environmentSku"], "Sandbox");
        let meta = &b["properties"]["linkedEnvironmentMetadata"];
        assert_eq!(meta["domainName"], "contoso-dev");
        assert_eq!(meta["currency"]["code"], "EUR");
        assert_eq!(meta["baseLanguage"], 1031);
        assert_eq!(meta["securityGroupId"], "g1");

        let unbind = Op::UpdateInstance {
            instance: obj("e1"),
            name: None,
            url: None,
            purpose: None,
            security_group: Some(None),
        };
        let r = request(&unbind).unwrap().unwrap();
        assert_eq!(r.method, "PATCH");
        assert_eq!(
            r.body.unwrap()["properties"]["linkedEnvironmentMetadata"]["securityGroupId"],
            NO_GROUP
        );
        let copy = Op::CopyInstance {
            source: obj("p"),
            target: obj("s"),
            kind: CopyKind::Minimal,
        };
        let r = request(&copy).unwrap().unwrap();
        assert!(r
            .url
            .starts_with(&format!("{RP}/scopes/admin/environments/s/copyTo?")));
        assert_eq!(r.body.unwrap()["copyType"], "MinimalCopy");
        assert!(matches!(
            request(&Op::DeleteInstance {
                instance: obj("../x")
            }),
            Err(ProviderError::Invalid(_))
        ));
    }

    #[test]
    fn an_environment_reads_as_an_instance() {
        let env = json!({
            "name": "e1", "location": "unitedkingdom",
            "properties": {
                "displayName": "Prod", "description": "p", "environmentSku": "Production",
                "provisioningState": "Succeeded",
                "linkedEnvironmentMetadata": {"domainName": "contoso", "version": "9.2.1",
                    "baseLanguage": 2057, "securityGroupId": NO_GROUP,
                    "backgroundOperationsState": "Disabled"},
                "states": {"runtime": {"id": "AdminMode"}}
            }
        });
        let i = instance_of(&env).unwrap();
        assert_eq!(i.region, Region::UK);
        assert_eq!(i.kind, InstanceType::Production);
        assert_eq!(i.language, 2057);
        assert_eq!(i.security_group, None);
        assert!(i.admin_mode.enabled && !i.admin_mode.background_operations);
        assert_eq!(i.status, InstanceStatus::Ready);
        let mut no_db = env.clone();
        no_db["properties"]
            .as_object_mut()
            .unwrap()
            .remove("linkedEnvironmentMetadata");
        assert!(instance_of(&no_db).is_none(), "no Dataverse, no instance");
    }

    // Issue 14 item 2: `lastModifiedBy` / `lastModifiedTime` in the recorded shape (the
    // principal name first, then the display name, then the id); either may be missing.
    #[test]
    fn an_environment_says_who_changed_it_last() {
        let env = json!({"name": "e1", "properties": {
            "lastModifiedTime": "2024-04-11T19:54:00.9475745Z",
            "lastModifiedBy": {"id": "f99f", "displayName": "admin", "email": "user@contoso.com",
                "type": "User", "tenantId": "123", "userPrincipalName": "user@contoso.com"}
        }});
        let c = last_change_of(&env).unwrap();
        assert_eq!(c.by.as_deref(), Some("user@contoso.com"));
        assert_eq!(c.at.as_deref(), Some("2024-04-11T19:54:00.9475745Z"));
        let by_name =
            json!({"properties": {"lastModifiedBy": {"id": "f99f", "displayName": "admin"}}});
        let c = last_change_of(&by_name).unwrap();
        assert_eq!((c.by.as_deref(), c.at), (Some("admin"), None));
        let time_only = json!({"properties": {"lastModifiedTime": "2023-09-27T07:08:34Z"}});
        assert_eq!(last_change_of(&time_only).unwrap().by, None);
        assert_eq!(last_change_of(&json!({"properties": {}})), None);
    }
}
