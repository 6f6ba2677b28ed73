//! Microsoft Graph v1.0, the subset crmctl uses, in its wire formats: authentication,
//! faults, routing, error bodies, paging and users. Groups, members, directory roles and
//! `$batch` are in `groups.rs` and `batch.rs`.
//!
//! Error body (learn.microsoft.com/graph/errors):
//! `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.
//! Paging (learn.microsoft.com/graph/paging): `@odata.nextLink` is an absolute URL with
//! an opaque `$skiptoken`, followed verbatim; `$top` 1..=999 for users, groups and
//! members (learn.microsoft.com/graph/api/user-list).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::server::{Answer, Reply, Shared, UserExtra};
use super::{groups, licences};
use crate::domain::kinds::AccessMode;
use crate::domain::op::{ObjRef, Op};
use crate::observed::{Tenant, User};
use crate::provider::{Executed, ProviderError, Scope};

/// Graph's default page size (learn.microsoft.com/graph/api/user-list: 100).
pub const DEFAULT_PAGE: usize = 100;
/// The largest `$top` for users, groups and members.
pub const MAX_TOP: usize = 999;

/// Ids of one request, echoed in error bodies.
pub(super) struct Ctx {
    pub request_id: String,
    pub client_request_id: String,
}

/// A Graph error answer.
pub(super) fn error(ctx: &Ctx, status: u16, code: &str, message: &str) -> Answer {
    Answer::json(
        status,
        json!({"error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                "request-id": ctx.request_id,
                "client-request-id": ctx.client_request_id,
            }
        }}),
    )
}

/// 404 as Graph words it for an id it does not know (also during replication lag).
pub(super) fn not_found(ctx: &Ctx, id: &str) -> Answer {
    error(
        ctx,
        404,
        "Request_ResourceNotFound",
        &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
    )
}

pub(super) fn bad_request(ctx: &Ctx, message: &str) -> Answer {
    error(ctx, 400, "Request_BadRequest", message)
}

/// A 429 as Graph sends it (learn.microsoft.com/graph/throttling: `Retry-After` in
/// seconds, code `TooManyRequests`).
pub(super) fn throttled(shared: &Shared, ctx: &Ctx) -> Answer {
    let mut a = error(
        ctx,
        429,
        "TooManyRequests",
        "Too many requests. Please retry after the time given in Retry-After.",
    );
    a.headers.push((
        "Retry-After".into(),
        shared.faults().retry_after_secs.to_string(),
    ));
    a
}

/// A provider's refusal as Graph's answer. Rule ids stay in the message.
pub(super) fn from_provider(ctx: &Ctx, e: &ProviderError, what: &str) -> Answer {
    match e {
        // P1: Graph's words for a duplicate userPrincipalName (user-post-users).
        ProviderError::Refused { rule, message }
            if rule == "P1" && message.contains("already exists") =>
        {
            bad_request(
                ctx,
                "Another object with the same value for property userPrincipalName already exists.",
            )
        }
        ProviderError::Refused { rule, message } => {
            bad_request(ctx, &format!("{message} ({rule})"))
        }
        ProviderError::NotFound(_) => not_found(ctx, what),
        ProviderError::Invalid(m) => bad_request(ctx, m),
        ProviderError::Conflict { message, .. } => {
            error(ctx, 409, "Request_MultipleObjectsWithSameKeyValue", message)
        }
        ProviderError::Throttled { message, .. } => error(ctx, 429, "TooManyRequests", message),
        ProviderError::Transient(m) | ProviderError::OutcomeUnknown(m) => {
            error(ctx, 503, "serviceNotAvailable", m)
        }
        other => error(ctx, 500, "generalException", &other.to_string()),
    }
}

/// The tenant as last observed: the cached copy, or a fresh read from the provider (the
/// one source of truth) when a write changed it since ([`exec`] keeps the cache right).
pub(super) async fn tenant(shared: &Shared, ctx: &Ctx) -> Result<Arc<Tenant>, Answer> {
    if let Some(t) = shared
        .cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        return Ok(t);
    }
    tenant_fresh(shared, ctx).await
}

/// The tenant read again from the provider (the start of a listing or a delta round: a
/// change made behind the emulator's back, e.g. to its local tenant file, is seen there).
pub(super) async fn tenant_fresh(shared: &Shared, ctx: &Ctx) -> Result<Arc<Tenant>, Answer> {
    let t = Arc::new(
        shared
            .provider
            .observe(&Scope::all())
            .await
            .map_err(|e| from_provider(ctx, &e, ""))?,
    );
    *shared.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.clone());
    Ok(t)
}

/// Keep the cached tenant right after `op` was executed: a membership change the tenant
/// accepted is the same set change on the copy (so that 1% drift of a million
/// memberships does not observe the tenant once per request); any other write, or a
/// failure, drops the copy.
pub(super) fn after_write(shared: &Shared, op: &Op, ok: bool) {
    let mut cache = shared.cache.lock().unwrap_or_else(|p| p.into_inner());
    let (true, Some(t)) = (ok, cache.as_mut()) else {
        *cache = None;
        return;
    };
    match op {
        Op::AddGroupMembers { group, users } | Op::RemoveGroupMembers { group, users } => {
            let add = matches!(op, Op::AddGroupMembers { .. });
            let gid = group.id.as_deref().unwrap_or_default();
            let Some(g) = Arc::make_mut(t).groups.get_mut(gid) else {
                *cache = None;
                return;
            };
            for uid in users.iter().filter_map(|u| u.id.as_deref()) {
                if add {
                    g.members.insert(uid.to_string());
                } else {
                    g.members.remove(uid);
                }
            }
        }
        _ => *cache = None,
    }
}

/// Execute one op; the created id, if any.
pub(super) async fn exec(
    shared: &Shared,
    ctx: &Ctx,
    op: &Op,
    what: &str,
) -> Result<Option<String>, Answer> {
    let r = shared.provider.execute(op).await;
    after_write(shared, op, r.is_ok());
    match r {
        Ok(Executed::Done(out)) => Ok(out.created_id),
        Ok(Executed::Accepted(_)) => Ok(None),
        Err(e) => Err(from_provider(ctx, &e, what)),
    }
}

/// The id a create returned (a 500 when the tenant gave none).
pub(super) fn created(ctx: &Ctx, r: Result<Option<String>, Answer>) -> Result<String, Answer> {
    r?.ok_or_else(|| error(ctx, 500, "generalException", "the tenant returned no id"))
}

pub(super) fn obj(id: &str) -> ObjRef {
    ObjRef {
        address: id.into(),
        id: Some(id.to_string()),
    }
}

/// Serve one Graph request (outside `$batch`): token, faults, route, dropped answers.
pub(super) async fn serve(
    shared: &Shared,
    ctx: &Ctx,
    auth: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Reply {
    if !shared.knows(auth) {
        let message = if auth.strip_prefix("Bearer ").unwrap_or("").is_empty() {
            "Access token is empty."
        } else {
            "Access token validation failure. Invalid audience."
        };
        let mut a = error(ctx, 401, "InvalidAuthenticationToken", message);
        a.headers.push(("WWW-Authenticate".into(), "Bearer".into()));
        return Reply::Answer(a);
    }
    match shared.draw_before() {
        super::server::Draw::Throttle => return Reply::Answer(throttled(shared, ctx)),
        super::server::Draw::ServerError(500) => {
            return Reply::Answer(error(
                ctx,
                500,
                "generalException",
                "An internal server error occurred.",
            ))
        }
        super::server::Draw::ServerError(s) => {
            let mut a = error(
                ctx,
                s,
                "serviceNotAvailable",
                "The service is temporarily unavailable.",
            );
            a.headers.push(("Retry-After".into(), "1".into()));
            return Reply::Answer(a);
        }
        super::server::Draw::Pass => {}
    }
    let Some(rest) = path.strip_prefix("/v1.0") else {
        return Reply::Answer(bad_request(ctx, &format!("Invalid version: {path}")));
    };
    let body = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => Some(v),
            Err(e) => {
                return Reply::Answer(bad_request(
                    ctx,
                    &format!("Unable to read JSON request payload: {e}"),
                ))
            }
        }
    };
    let answer = if rest == "/$batch" && method == "POST" {
        super::batch::batch(shared, ctx, body.as_ref()).await
    } else {
        route(shared, ctx, method, rest, query, body.as_ref()).await
    };
    if method != "GET" && shared.draw_drop() {
        return Reply::Drop;
    }
    Reply::Answer(answer)
}

/// One request by method and path (below `/v1.0`), as served alone or inside `$batch`.
pub(super) async fn route(
    shared: &Shared,
    ctx: &Ctx,
    method: &str,
    path: &str,
    query: &str,
    body: Option<&Value>,
) -> Answer {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let empty = Value::Object(Map::new());
    let body = body.unwrap_or(&empty);
    match (method, segs.as_slice()) {
        ("GET", ["users"]) => list_users(shared, ctx, query).await,
        ("GET", ["users", "delta"]) => super::delta::users(shared, ctx, query).await,
        ("POST", ["users"]) => create_user(shared, ctx, body).await,
        (_, ["users", id]) if shared.lagging(id) => not_found(ctx, id),
        ("GET", ["users", id]) => get_user(shared, ctx, id, query).await,
        ("PATCH", ["users", id]) => update_user(shared, ctx, id, body).await,
        ("DELETE", ["users", id]) => {
            let _w = shared.write_lock.lock().await;
            match exec(shared, ctx, &Op::DeleteUser { user: obj(id) }, id).await {
                Ok(_) => Answer::empty(204),
                Err(a) => a,
            }
        }
        ("POST", ["users", id, "assignLicense"]) if shared.lagging(id) => not_found(ctx, id),
        ("POST", ["users", id, "assignLicense"]) => {
            licences::assign_license(shared, ctx, id, body).await
        }
        ("GET", ["subscribedSkus"]) => licences::subscribed_skus(shared, ctx).await,
        ("GET", ["organization"]) => organization(shared, ctx).await,
        _ => groups::route(shared, ctx, method, &segs, query, body).await,
    }
}

/// The tenant for one page of a listing: read afresh for the first page, the cached copy
/// for the pages that follow.
pub(super) async fn tenant_for_list(
    shared: &Shared,
    ctx: &Ctx,
    q: &ListQuery,
) -> Result<Arc<Tenant>, Answer> {
    if q.after.is_none() {
        tenant_fresh(shared, ctx).await
    } else {
        tenant(shared, ctx).await
    }
}

/// `$select`, `$top` and `$skiptoken` of a query string.
pub(super) struct ListQuery {
    pub select: Option<Vec<String>>,
    pub top: usize,
    pub after: Option<String>,
    /// `$filter` clauses `property eq value`, joined by `and`.
    pub filter: Vec<(String, Value)>,
    /// The `$filter` as given, for the next link.
    pub filter_text: Option<String>,
}

pub(super) fn list_query(shared: &Shared, ctx: &Ctx, query: &str) -> Result<ListQuery, Answer> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let mut q = ListQuery {
        select: None,
        top: shared.faults().page_size.clamp(1, MAX_TOP),
        after: None,
        filter: vec![],
        filter_text: None,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "$select" => q.select = Some(v.split(',').map(|s| s.trim().to_string()).collect()),
            "$top" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_TOP).contains(&n) => q.top = n,
                _ => return Err(bad_request(ctx, &format!("Invalid page size specified: '{v}'. Must be between 1 and {MAX_TOP} inclusive."))),
            },
            "$filter" => match parse_filter(&v) {
                Some(f) => {
                    q.filter = f;
                    q.filter_text = Some(v.clone());
                }
                None => return Err(bad_request(ctx, &format!("Unsupported query: $filter={v} (the emulator serves `property eq value` joined by `and`)."))),
            },
            "$skiptoken" => match decode_token(&v) {
                Some(after) => q.after = Some(after),
                None => return Err(bad_request(ctx, "Invalid skip token.")),
            },
            _ => {}
        }
    }
    Ok(q)
}

/// `a eq 'x' and b eq true` (learn.microsoft.com/graph/filter-query-parameter); string
/// values compare without case, as the directory does for names and UPNs.
fn parse_filter(f: &str) -> Option<Vec<(String, Value)>> {
    f.split(" and ")
        .map(|clause| {
            let (prop, value) = clause.trim().split_once(" eq ")?;
            let value = value.trim();
            let v = match value {
                "true" => json!(true),
                "false" => json!(false),
                "null" => Value::Null,
                _ => json!(value
                    .strip_prefix('\'')?
                    .strip_suffix('\'')?
                    .replace("''", "'")),
            };
            Some((prop.trim().to_string(), v))
        })
        .collect()
}

fn matches(v: &Value, filter: &[(String, Value)]) -> bool {
    filter.iter().all(|(k, want)| match (v.get(k), want) {
        (Some(Value::String(a)), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Some(a), b) => a == b,
        (None, b) => b.is_null(),
    })
}

/// The opaque `$skiptoken`: the hex of the last id served (keyset paging, so that a page
/// is stable while objects are created or deleted).
fn encode_token(last: &str) -> String {
    let mut s = String::from("RU1V");
    for b in last.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn decode_token(token: &str) -> Option<String> {
    let hex = token.strip_prefix("RU1V")?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    String::from_utf8(bytes?).ok()
}

/// One page of `items` (sorted by id) after `q.after`, as Graph's collection body with
/// `@odata.context` and, when more remain, `@odata.nextLink`.
pub(super) fn page<'a, T: 'a>(
    shared: &Shared,
    path: &str,
    context: &str,
    q: &ListQuery,
    items: impl Iterator<Item = (&'a String, T)>,
    to_json: impl Fn(T) -> Value,
) -> Answer {
    let mut value = Vec::new();
    let mut last = None;
    let mut more = false;
    for (id, item) in items.filter(|(id, _)| q.after.as_ref().is_none_or(|a| *id > a)) {
        let v = to_json(item);
        if !matches(&v, &q.filter) {
            continue;
        }
        if value.len() == q.top {
            more = true;
            break;
        }
        value.push(select(v, q.select.as_deref()));
        last = Some(id.clone());
    }
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{}/v1.0/$metadata#{context}", shared.base)),
    );
    if let (true, Some(last)) = (more, last) {
        let mut link = format!("{}/v1.0{path}?$top={}", shared.base, q.top);
        if let Some(sel) = &q.select {
            link.push_str(&format!("&$select={}", sel.join(",")));
        }
        if let Some(f) = &q.filter_text {
            let enc = serde_urlencoded::to_string([("$filter", f)]).unwrap_or_default();
            link.push('&');
            link.push_str(&enc);
        }
        link.push_str(&format!("&$skiptoken={}", encode_token(&last)));
        body.insert("@odata.nextLink".into(), json!(link));
    }
    body.insert("value".into(), Value::Array(value));
    Answer::json(200, Value::Object(body))
}

/// Keep only the `$select`ed properties (all of them when none was given).
pub(super) fn select(v: Value, select: Option<&[String]>) -> Value {
    match (v, select) {
        (Value::Object(m), Some(sel)) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| k.starts_with("@odata") || sel.iter().any(|s| s == k))
                .collect(),
        ),
        (v, _) => v,
    }
}

/// A user as Graph shows it (learn.microsoft.com/graph/api/resources/user): the default
/// properties, and `accountEnabled`, `usageLocation`, `mailNickname`,
/// `onPremisesSyncEnabled` and `assignedLicenses` only when `$select`ed.
pub(super) fn user_json(shared: &Shared, u: &User, selected: bool) -> Value {
    let extra = shared
        .extra
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&u.id)
        .cloned()
        .unwrap_or_else(|| UserExtra {
            account_enabled: true,
            mail_nickname: u.upn.split('@').next().unwrap_or_default().to_string(),
        });
    let location = usage_location(shared, u);
    let mut v = json!({
        "id": u.id,
        "displayName": u.name,
        "userPrincipalName": u.upn,
        "givenName": null,
        "surname": null,
        "mail": null,
        "jobTitle": null,
        "businessPhones": [],
    });
    if selected {
        let m = v.as_object_mut().expect("object");
        m.insert("accountEnabled".into(), json!(extra.account_enabled));
        m.insert("usageLocation".into(), json!(location));
        m.insert("mailNickname".into(), json!(extra.mail_nickname));
        // user resource: `true` when synced from on-premises, else null.
        m.insert(
            "onPremisesSyncEnabled".into(),
            json!(u.synced.then_some(true)),
        );
        m.insert(
            "assignedLicenses".into(),
            licences::assigned(&shared.config.skus, u.license),
        );
    }
    v
}

/// A user's `usageLocation`: the tenant's own field; a user the emulator did not create (the
/// tenant's own) without one is located in the tenant's country.
pub(super) fn usage_location(shared: &Shared, u: &User) -> Option<String> {
    u.usage_location.clone().or_else(|| {
        let created_here = shared
            .extra
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&u.id);
        (!created_here).then(|| shared.config.country.clone())
    })
}

/// Whether the tenant's user `u` is a directory user: application users (P3) are each
/// instance's system users bound to an app registration, never listed by Graph.
pub(super) fn in_directory(u: &crate::observed::User) -> bool {
    u.access_mode != crate::domain::kinds::AccessMode::Application
}

async fn list_users(shared: &Shared, ctx: &Ctx, query: &str) -> Answer {
    let q = or_answer!(list_query(shared, ctx, query));
    let t = or_answer!(tenant_for_list(shared, ctx, &q).await);
    let selected = q.select.is_some();
    page(
        shared,
        "/users",
        "users",
        &q,
        t.users.iter().filter(|(_, u)| in_directory(u)),
        |u| user_json(shared, u, selected),
    )
}

async fn get_user(shared: &Shared, ctx: &Ctx, id: &str, query: &str) -> Answer {
    let q = or_answer!(list_query(shared, ctx, query));
    let t = or_answer!(tenant(shared, ctx).await);
    match t.users.get(id).filter(|u| in_directory(u)) {
        Some(u) => Answer::json(
            200,
            select(
                user_json(shared, u, q.select.is_some()),
                q.select.as_deref(),
            ),
        ),
        None => not_found(ctx, id),
    }
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// POST /users (learn.microsoft.com/graph/api/user-post-users): accountEnabled,
/// displayName, mailNickname, userPrincipalName and passwordProfile are required; 201
/// with the user; a UPN already taken answers 400 (P1).
async fn create_user(shared: &Shared, ctx: &Ctx, body: &Value) -> Answer {
    for key in [
        "accountEnabled",
        "displayName",
        "mailNickname",
        "userPrincipalName",
        "passwordProfile",
    ] {
        if body.get(key).is_none_or(Value::is_null) {
            return bad_request(
                ctx,
                &format!("Property '{key}' is required when creating the resource 'User'."),
            );
        }
    }
    let upn = str_field(body, "userPrincipalName")
        .unwrap_or_default()
        .to_string();
    let name = str_field(body, "displayName")
        .unwrap_or_default()
        .to_string();
    let op = Op::CreateUser {
        upn,
        name,
        access_mode: AccessMode::ReadWrite,
        usage_location: str_field(body, "usageLocation").map(str::to_string),
        application_id: None,
    };
    let _w = shared.write_lock.lock().await;
    let id = or_answer!(created(ctx, exec(shared, ctx, &op, "").await));
    shared
        .extra
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            id.clone(),
            UserExtra {
                mail_nickname: str_field(body, "mailNickname")
                    .unwrap_or_default()
                    .to_string(),
                account_enabled: body
                    .get("accountEnabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            },
        );
    shared.record_birth(&id);
    let t = or_answer!(tenant(shared, ctx).await);
    match t.users.get(&id) {
        Some(u) => {
            let mut v = user_json(shared, u, false);
            v["@odata.context"] = json!(format!("{}/v1.0/$metadata#users/$entity", shared.base));
            Answer::json(201, v)
        }
        None => not_found(ctx, &id),
    }
}

/// PATCH /users/{id} (user-update): displayName, userPrincipalName, usageLocation,
/// accountEnabled; 204.
async fn update_user(shared: &Shared, ctx: &Ctx, id: &str, body: &Value) -> Answer {
    let _w = shared.write_lock.lock().await;
    let name = str_field(body, "displayName").map(str::to_string);
    let upn = str_field(body, "userPrincipalName").map(str::to_string);
    let op = Op::UpdateUser {
        user: obj(id),
        name,
        admin_roles: None,
        upn,
        usage_location: str_field(body, "usageLocation").map(str::to_string),
    };
    if let Err(a) = exec(shared, ctx, &op, id).await {
        return a;
    }
    let mut extra = shared.extra.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = body.get("accountEnabled").and_then(Value::as_bool) {
        let e = extra.entry(id.to_string()).or_insert_with(|| UserExtra {
            account_enabled: true,
            ..UserExtra::default()
        });
        e.account_enabled = b;
    }
    Answer::empty(204)
}

/// GET /organization (organization-list): one organization with `countryLetterCode`.
/// Every observe begins here, so the tenant is read afresh: licence counts and global
/// admins read next (from the cached copy) see a change made behind the emulator's back.
async fn organization(shared: &Shared, ctx: &Ctx) -> Answer {
    let t = or_answer!(tenant_fresh(shared, ctx).await);
    Answer::json(
        200,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#organization", shared.base),
            "value": [{
                "id": shared.config.tenant_id,
                "displayName": t.domain.split('.').next().unwrap_or_default(),
                "countryLetterCode": shared.config.country,
                "verifiedDomains": [{"name": t.domain, "isDefault": true, "isInitial": true, "type": "Managed"}],
            }]
        }),
    )
}
