//! The Dataverse Web API v9.2 of each instance, the subset crmctl uses (issue 13 item 5),
//! at `/dataverse/{url name}/api/data/v9.2/...`, so that the URL template
//! `https://127.0.0.1:PORT/dataverse/{url}` (`CRMCTL_DATAVERSE_URL`) reaches it:
//! `systemusers` (list with `$select`, `$filter`, `$expand=systemuserroles_association`,
//! paging; one by id; `PATCH` of `accessmode`), their `systemuserroles_association`
//! (`$ref` associate and disassociate), `roles`, `businessunits` (the root),
//! `organizations` and `transactioncurrencies` (the base currency).
//!
//! Backed by the emulator's provider: every write is an op (`SetAccessMode`,
//! `AssignRoles`, `RemoveRoles`), its refusals answered as Dataverse answers a plug-in's
//! (400, `0x80040265`, the rule id in the message). Every user of the tenant is a system
//! user of every instance (object id = the tenant's user id), except users created less
//! than the replication lag ago: the instance has not synchronised them yet.
//!
//! Application users (P3): the tenant's users with access mode `application`, with their
//! `applicationid` (the one they were created with, else one derived from their id), their
//! primary email (`internalemailaddress`) the principal name, and an object id of their
//! own (the app's service principal: no directory user). `POST systemusers
//! {applicationid, "businessunitid@odata.bind", internalemailaddress, lastname}` is the op
//! `CreateUser` (one application user per app registration: a second answers duplicate
//! key), answered 204 with `OData-EntityId`; `PATCH {"isdisabled": true}` deactivates one,
//! which the tenant (no deactivated users) records as `DeleteUser`; `PATCH {lastname,
//! internalemailaddress}` is `UpdateUser`. Deactivated users are never listed, so
//! `isdisabled` is always false. The local tenant has no table of roles, so the
//! emulator's catalogue of roles is open: a standard set, the names users hold, and any
//! name a `$filter` asks for. Ids are GUIDs derived from the instance and the key.
//!
//! Wire shapes: learn.microsoft.com/power-apps/developer/data-platform/webapi/
//! query/page-results (`Prefer: odata.maxpagesize`, `Preference-Applied`,
//! `@odata.nextLink` with `$skiptoken`), associate-disassociate-entities-using-web-api,
//! compose-http-requests-handle-errors (`{"error":{"code","message"}}`), the "Web service
//! error codes" reference (`0x80040217` missing row, `0x80040237` duplicate key,
//! `0x80040265` refused by a plug-in, `0x80072322` too many requests) and api-limits (429
//! with `Retry-After`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::graph::{self, Ctx};
use super::server::{Answer, Draw, Reply, Shared};
use crate::domain::kinds::AccessMode;
use crate::domain::op::Op;
use crate::observed::{Instance, Tenant, User};
use crate::provider::ProviderError;

/// The path prefix of the emulated instances.
pub const PREFIX: &str = "/dataverse/";
const API: &str = "/api/data/v9.2";
const MAX_PAGE: usize = 5000;

/// Roles every emulated instance has (the standard ones of a Dynamics 365 instance).
const STANDARD_ROLES: [&str; 8] = [
    "Basic User",
    "Customer Service Representative",
    "Delegate",
    "Sales Manager",
    "Salesperson",
    "Support User",
    "System Administrator",
    "System Customizer",
];

/// What a derived id names.
#[derive(Debug, Clone)]
enum Named {
    User(String),
    Role(String),
    Currency(String),
}

/// Ids handed out, so that a later request naming one finds what it stands for.
#[derive(Default)]
pub(super) struct Ids(Mutex<HashMap<String, Named>>);

impl Ids {
    fn issue(&self, instance: &str, named: Named) -> String {
        let (kind, key) = match &named {
            Named::User(k) => ("user", k),
            Named::Role(k) => ("role", k),
            Named::Currency(k) => ("currency", k),
        };
        let mut h = Sha256::new();
        for part in [kind, instance, key.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let d = h.finalize();
        let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
        let id = format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        );
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_insert(named);
        id
    }

    fn get(&self, id: &str) -> Option<Named> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id.to_ascii_lowercase())
            .cloned()
    }
}

/// A Dataverse error answer.
fn error(status: u16, code: &str, message: &str) -> Answer {
    Answer::json(status, json!({"error": {"code": code, "message": message}}))
}

fn not_found(message: &str) -> Answer {
    error(404, "0x80040217", message)
}

fn bad(message: &str) -> Answer {
    error(400, "0x80040203", message)
}

/// A provider's answer to an op, as Dataverse answers.
fn from_provider(e: &ProviderError) -> Answer {
    match e {
        ProviderError::Refused { rule, message } => {
            error(400, "0x80040265", &format!("{message} ({rule})"))
        }
        ProviderError::NotFound(m) => not_found(m),
        ProviderError::Invalid(m) => bad(m),
        ProviderError::Conflict { message, .. } => error(409, "0x80040237", message),
        ProviderError::Throttled { message, .. } => error(429, "0x80072322", message),
        ProviderError::Transient(m) | ProviderError::OutcomeUnknown(m) => {
            error(503, "0x80040216", m)
        }
        other => error(500, "0x80040216", &other.to_string()),
    }
}

/// The annotation of a formatted value (a lookup's display name).
const FORMATTED: &str = "OData.Community.Display.V1.FormattedValue";

/// The instance behind a request and the tenant it was read from.
struct Org<'a> {
    shared: &'a Shared,
    tenant: std::sync::Arc<Tenant>,
    inst: Instance,
    /// `https://127.0.0.1:PORT/dataverse/{url}`.
    base: String,
    root: String,
    /// The request's `Prefer` asked for formatted values (`odata.include-annotations`
    /// naming `OData.Community.Display.V1.FormattedValue`, or `*`).
    formatted: bool,
}

impl Org<'_> {
    fn user_id(&self, u: &User) -> String {
        self.shared
            .dataverse
            .issue(&self.inst.id, Named::User(u.id.clone()))
    }

    fn role_id(&self, name: &str) -> String {
        self.shared
            .dataverse
            .issue(&self.inst.id, Named::Role(name.to_string()))
    }

    fn role_row(&self, name: &str) -> Value {
        json!({"roleid": self.role_id(name), "name": name, "_businessunitid_value": self.root})
    }

    /// The users the instance has (synchronised: not within the replication lag).
    fn users(&self) -> impl Iterator<Item = &User> {
        self.tenant
            .users
            .values()
            .filter(|u| !self.shared.lagging(&u.id))
    }

    fn user_row(&self, u: &User) -> Value {
        let mode = match u.access_mode {
            AccessMode::ReadWrite | AccessMode::Application => 0,
            AccessMode::Administrative => 1,
            AccessMode::NonInteractive => 4,
        };
        let app = application_id(self.shared, u);
        // An application user's directory object is its app's service principal.
        let oid = match app {
            Some(_) => self
                .shared
                .dataverse
                .issue("serviceprincipals", Named::User(u.id.clone())),
            None => u.id.clone(),
        };
        let roles: Vec<Value> = u
            .roles
            .get(&self.inst.id)
            .into_iter()
            .flatten()
            .map(|r| self.role_row(r))
            .collect();
        let mut row = json!({
            "systemuserid": self.user_id(u),
            "azureactivedirectoryobjectid": oid,
            "domainname": u.upn,
            "internalemailaddress": u.upn,
            "fullname": u.name,
            "accessmode": mode,
            "applicationid": app,
            "isdisabled": false,
            "_businessunitid_value": self.root,
            "systemuserroles_association": roles,
        });
        // Issue 14 item 2: who last changed the row and when, as the backing tenant
        // recorded: `modifiedon`, `_modifiedby_value` (a system user's id: the user whose
        // principal name it is, else an id issued for the name), and its formatted value
        // (the name) when the request asked for formatted values.
        if let Some(c) = self.tenant.changed.users.get(&u.id) {
            row["modifiedon"] = json!(c.at);
            if let Some(by) = &c.by {
                let modifier = self
                    .tenant
                    .users
                    .values()
                    .find(|x| x.upn.eq_ignore_ascii_case(by));
                let id = match modifier {
                    Some(m) => self.user_id(m),
                    None => self
                        .shared
                        .dataverse
                        .issue(&self.inst.id, Named::User(format!("actor:{by}"))),
                };
                row["_modifiedby_value"] = json!(id);
                if self.formatted {
                    row[format!("_modifiedby_value@{FORMATTED}")] =
                        json!(modifier.map_or(by.as_str(), |m| m.name.as_str()));
                }
            }
        }
        row
    }

    /// The user a `systemusers({id})` key names.
    fn user_by_key(&self, id: &str) -> Result<&User, Answer> {
        let missing = || not_found(&format!("systemuser With Id = {id} Does Not Exist"));
        match self.shared.dataverse.get(id) {
            Some(Named::User(uid)) => self
                .tenant
                .users
                .get(&uid)
                .filter(|u| !self.shared.lagging(&u.id))
                .ok_or_else(missing),
            _ => Err(missing()),
        }
    }
}

/// The `applicationid` of an application user (P3): the one it was created with, else one
/// derived from its id; `None` for directory users.
fn application_id(shared: &Shared, u: &User) -> Option<String> {
    (u.access_mode == AccessMode::Application).then(|| {
        u.application_id
            .as_ref()
            .map(|a| a.to_ascii_lowercase())
            .unwrap_or_else(|| {
                shared
                    .dataverse
                    .issue("applications", Named::User(u.id.clone()))
            })
    })
}

/// Serve one request under [`PREFIX`]: token, faults, route, dropped answers.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve(
    shared: &Shared,
    ctx: &Ctx,
    auth: &str,
    method: &str,
    path: &str,
    query: &str,
    prefer: Option<&str>,
    body: &[u8],
) -> Reply {
    if !shared.knows(auth) {
        let mut a = Answer::empty(401);
        a.headers.push(("WWW-Authenticate".into(), "Bearer".into()));
        return Reply::Answer(a);
    }
    match shared.draw_before() {
        Draw::Throttle => {
            let mut a = error(
                429,
                "0x80072322",
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            );
            a.headers.push((
                "Retry-After".into(),
                shared.faults().retry_after_secs.to_string(),
            ));
            return Reply::Answer(a);
        }
        Draw::ServerError(s) => {
            let mut a = error(s, "0x80040216", "An unexpected error occurred.");
            a.headers.push(("Retry-After".into(), "1".into()));
            return Reply::Answer(a);
        }
        Draw::Pass => {}
    }
    let rest = path.strip_prefix(PREFIX).unwrap_or(path);
    let (url_name, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(resource) = format!("/{rest}")
        .strip_prefix(&format!("{API}/"))
        .map(str::to_string)
    else {
        return Reply::Answer(not_found(&format!("no Web API at /{rest} (use {API}/)")));
    };
    let tenant = or_answer!(graph::tenant(shared, ctx).await.map_err(Reply::Answer));
    let Some(inst) = tenant
        .instances
        .values()
        .find(|i| i.url.eq_ignore_ascii_case(url_name))
        .cloned()
    else {
        return Reply::Answer(not_found(&format!(
            "the organization `{url_name}` does not exist"
        )));
    };
    let root = shared
        .dataverse
        .issue(&inst.id, Named::User("root business unit".into()));
    let formatted = prefer.is_some_and(|p| {
        p.split(',').any(|x| {
            x.trim()
                .strip_prefix("odata.include-annotations=")
                .is_some_and(|v| {
                    let v = v.trim_matches('"');
                    v == "*" || v.split(' ').any(|t| t == FORMATTED)
                })
        })
    });
    let org = Org {
        shared,
        base: format!("{}{PREFIX}{}", shared.base, inst.url),
        tenant,
        inst,
        root,
        formatted,
    };
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let page = prefer
        .and_then(|p| {
            p.split(',')
                .find_map(|x| x.trim().strip_prefix("odata.maxpagesize="))
        })
        .and_then(|n| n.trim().parse::<usize>().ok())
        .map_or(MAX_PAGE, |n| n.clamp(1, MAX_PAGE));
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => Some(v),
            Err(e) => return Reply::Answer(bad(&format!("The request body is not JSON: {e}"))),
        }
    };
    let (entity, key, nav) = split_resource(&resource);
    let removed = nav.and_then(|n| {
        n.strip_prefix("systemuserroles_association(")?
            .strip_suffix(")/$ref")
    });
    // `n` rows, the `i`-th built by `row(i)`: only the page's rows are built when nothing
    // is filtered (a 100,000-user instance in pages of 5,000 builds each row once).
    let list = |n: usize, row: &dyn Fn(usize) -> Value, set: &str| {
        let filter = match param("$filter").map(parse_filter).transpose() {
            Ok(f) => f,
            Err(m) => return Reply::Answer(bad(&m)),
        };
        let sel = |r: Value| select(r, param("$select"), param("$expand"));
        let skip: usize = param("$skiptoken")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (rows, total): (Vec<Value>, usize) = match &filter {
            None => {
                let end = (skip + page).min(n);
                ((skip.min(end)..end).map(row).map(sel).collect(), n)
            }
            Some(f) => {
                let all: Vec<Value> = (0..n).map(row).filter(|r| matches(f, r)).collect();
                let total = all.len();
                (
                    all.into_iter().skip(skip).take(page).map(sel).collect(),
                    total,
                )
            }
        };
        let end = skip + rows.len();
        let mut out = json!({
            "@odata.context": format!("{}{API}/$metadata#{set}", org.base),
            "value": rows,
        });
        if end < total {
            let mut kept: Vec<(&str, String)> = params
                .iter()
                .filter(|(k, _)| k != "$skiptoken")
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            kept.push(("$skiptoken", end.to_string()));
            let q = serde_urlencoded::to_string(kept).unwrap_or_default();
            out["@odata.nextLink"] = json!(format!("{}{API}/{set}?{q}", org.base));
        }
        let mut a = Answer::json(200, out);
        a.headers.push((
            "Preference-Applied".into(),
            format!("odata.maxpagesize={page}"),
        ));
        Reply::Answer(a)
    };
    match (method, entity, key, nav) {
        ("GET", "systemusers", None, None) => {
            // A lookup by object id reads one user, not the whole tenant.
            let by_oid = param("$filter")
                .and_then(|f| parse_filter(f).ok())
                .and_then(|f| exact(&f, "azureactivedirectoryobjectid"));
            let users: Vec<&User> = match by_oid {
                Some(oid) => org
                    .tenant
                    .users
                    .get(&oid)
                    .filter(|u| !shared.lagging(&u.id))
                    .into_iter()
                    .collect(),
                None => org.users().collect(),
            };
            list(users.len(), &|i| org.user_row(users[i]), "systemusers")
        }
        ("GET", "systemusers", Some(id), None) => {
            let u = or_answer!(org.user_by_key(id).map_err(Reply::Answer));
            Reply::Answer(Answer::json(
                200,
                select(org.user_row(u), param("$select"), param("$expand")),
            ))
        }
        ("GET", "systemusers", Some(id), Some("systemuserroles_association")) => {
            let u = or_answer!(org.user_by_key(id).map_err(Reply::Answer));
            let rows = u
                .roles
                .get(&org.inst.id)
                .into_iter()
                .flatten()
                .map(|r| org.role_row(r))
                .collect::<Vec<Value>>();
            list(rows.len(), &|i| rows[i].clone(), "roles")
        }
        ("POST", "systemusers", None, None) => create_application_user(&org, ctx, body).await,
        ("PATCH", "systemusers", Some(id), None) => patch_user(&org, id, body).await,
        ("POST", "systemusers", Some(id), Some("systemuserroles_association/$ref")) => {
            let target = body
                .as_ref()
                .and_then(|b| b["@odata.id"].as_str())
                .unwrap_or_default()
                .to_string();
            let rid = target
                .rsplit_once("roles(")
                .map(|(_, r)| r.trim_end_matches(')').to_string())
                .unwrap_or_default();
            roles(&org, id, &rid, true).await
        }
        ("DELETE", "systemusers", Some(id), Some(_)) if removed.is_some() => {
            roles(&org, id, removed.unwrap_or_default(), false).await
        }
        ("GET", "roles", None, None) => {
            let mut names: BTreeSet<String> =
                STANDARD_ROLES.iter().map(|s| s.to_string()).collect();
            for u in org.tenant.users.values() {
                names.extend(u.roles.get(&org.inst.id).into_iter().flatten().cloned());
            }
            // The catalogue is open: a name asked for exists.
            if let Some(Ok(f)) = param("$filter").map(parse_filter) {
                for any in &f {
                    for (field, v) in any {
                        if let (true, Some(n)) = (field == "name", v) {
                            names.insert(n.clone());
                        }
                    }
                }
            }
            let rows: Vec<Value> = names.iter().map(|n| org.role_row(n)).collect();
            list(rows.len(), &|i| rows[i].clone(), "roles")
        }
        ("GET", "businessunits", None, None) => list(
            1,
            &|_| json!({"businessunitid": org.root, "name": org.inst.url, "_parentbusinessunitid_value": null}),
            "businessunits",
        ),
        ("GET", "organizations", None, None) => {
            let cur = org
                .shared
                .dataverse
                .issue(&org.inst.id, Named::Currency(org.inst.currency.clone()));
            let row = json!({
                "organizationid": org.shared.dataverse.issue(&org.inst.id, Named::User("organization".into())),
                "name": org.inst.name,
                "languagecode": org.inst.language,
                "_basecurrencyid_value": cur,
            });
            list(1, &|_| row.clone(), "organizations")
        }
        ("GET", "transactioncurrencies", Some(id), None) => match org.shared.dataverse.get(id) {
            Some(Named::Currency(code)) => Reply::Answer(Answer::json(
                200,
                json!({"transactioncurrencyid": id, "isocurrencycode": code}),
            )),
            _ => Reply::Answer(not_found(&format!(
                "transactioncurrency With Id = {id} Does Not Exist"
            ))),
        },
        _ => Reply::Answer(error(
            404,
            "0x80060888",
            &format!("Resource not found for the segment '{resource}'."),
        )),
    }
}

/// `entity(key)/navigation` -> its three parts.
fn split_resource(resource: &str) -> (&str, Option<&str>, Option<&str>) {
    let (head, nav) = match resource.split_once('/') {
        Some((h, n)) => (h, Some(n)),
        None => (resource, None),
    };
    match head.split_once('(') {
        Some((entity, key)) => (entity, Some(key.trim_end_matches(')')), nav),
        None => (head, None, nav),
    }
}

/// A `$filter` as a conjunction of disjunctions of `field eq value` (`None` for `null`):
/// what crmctl sends (`a eq x and (b eq 'y' or b eq 'z')`).
type Filter = Vec<Vec<(String, Option<String>)>>;

fn parse_filter(f: &str) -> Result<Filter, String> {
    let mut out = Vec::new();
    for part in split_outside_quotes(f, " and ") {
        let part = part.trim();
        let part = part
            .strip_prefix('(')
            .and_then(|p| p.strip_suffix(')'))
            .unwrap_or(part);
        let mut any = Vec::new();
        for term in split_outside_quotes(part, " or ") {
            let Some((field, value)) = term.trim().split_once(" eq ") else {
                return Err(format!(
                    "The emulator understands only `field eq value` in $filter, not `{term}`"
                ));
            };
            let value = value.trim();
            let value = if value == "null" {
                None
            } else if let Some(q) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(q.replace("''", "'"))
            } else {
                Some(value.to_string())
            };
            any.push((field.trim().to_string(), value));
        }
        out.push(any);
    }
    Ok(out)
}

/// `s` split at each `sep` that is not inside a quoted literal.
fn split_outside_quotes<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut i) = (0, false, 0);
    let bytes = s.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            quoted = !quoted;
        } else if !quoted && s[i..].starts_with(sep) {
            parts.push(&s[start..i]);
            i += sep.len();
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// The value of a conjunct `field eq value` that stands alone (no `or`).
fn exact(f: &Filter, field: &str) -> Option<String> {
    f.iter().find_map(|any| match any.as_slice() {
        [(name, Some(v))] if name == field => Some(v.clone()),
        _ => None,
    })
}

fn matches(f: &Filter, row: &Value) -> bool {
    f.iter().all(|any| {
        any.iter()
            .any(|(field, want)| match (&row[field.as_str()], want) {
                (Value::Null, None) => true,
                (Value::String(v), Some(w)) => v.eq_ignore_ascii_case(w),
                (Value::Number(n), Some(w)) => n.to_string() == *w,
                _ => false,
            })
    })
}

/// `row` with only the `$select`ed columns (ids and `@odata` annotations always), and its
/// roles only when `$expand`ed (with their own `$select`).
fn select(row: Value, sel: Option<&str>, expand: Option<&str>) -> Value {
    let Value::Object(map) = row else { return row };
    let keep: Option<BTreeSet<&str>> = sel.map(|s| s.split(',').map(str::trim).collect());
    let expanded = expand.and_then(|e| e.strip_prefix("systemuserroles_association"));
    let mut out = Map::new();
    for (k, v) in map {
        if k == "systemuserroles_association" {
            if let Some(inner) = expanded {
                let inner_sel = inner
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .strip_prefix("$select=");
                let roles = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| select(r.clone(), inner_sel, None))
                    .collect();
                out.insert(k, Value::Array(roles));
            }
            continue;
        }
        let always = k.ends_with("id") && !k.starts_with('_') && k != "applicationid";
        // An annotation (`_x_value@Term`) goes with its property.
        let property = k.split('@').next().unwrap_or(&k);
        if keep.as_ref().is_none_or(|s| s.contains(property)) || always {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

/// `POST systemusers {applicationid, "businessunitid@odata.bind", internalemailaddress,
/// lastname, firstname?}`: an application user (P3), the op `CreateUser`.
async fn create_application_user(org: &Org<'_>, ctx: &graph::Ctx, body: Option<Value>) -> Reply {
    let body = body.unwrap_or(Value::Null);
    let Some(app) = body["applicationid"]
        .as_str()
        .filter(|a| crate::domain::syntax::is_guid(a))
    else {
        return Reply::Answer(bad(
            "The emulator creates only application users: applicationid (a GUID) is required",
        ));
    };
    let unit = body["businessunitid@odata.bind"]
        .as_str()
        .unwrap_or_default();
    if !unit.eq_ignore_ascii_case(&format!("/businessunits({})", org.root)) {
        return Reply::Answer(bad(&format!(
            "businessunitid@odata.bind must name a business unit of the organization, not `{unit}`"
        )));
    }
    let Some(upn) = body["internalemailaddress"]
        .as_str()
        .filter(|e| !e.is_empty())
    else {
        return Reply::Answer(bad("internalemailaddress (Primary Email) is required"));
    };
    let name = [&body["firstname"], &body["lastname"]]
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|v| !v.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if name.is_empty() {
        return Reply::Answer(bad("lastname is required"));
    }
    // One application user per app registration in an environment.
    if org
        .users()
        .any(|u| application_id(org.shared, u).is_some_and(|a| a.eq_ignore_ascii_case(app)))
    {
        return Reply::Answer(error(400, "0x80040237", "Cannot insert duplicate key."));
    }
    let op = Op::CreateUser {
        upn: upn.to_string(),
        name,
        access_mode: AccessMode::Application,
        usage_location: None,
        application_id: Some(app.to_ascii_lowercase()),
    };
    let shared = org.shared;
    let result = {
        let _w = shared.write_lock.lock().await;
        // The tenant as it is now: this request's copy was read before the write lock, and
        // another instance may have created the app's user since (apply runs instances'
        // steps side by side). In the service each environment gets an application user of
        // its own, so that create succeeds; the tenant here holds one user per app
        // registration, every instance's, and it is answered as created (P3).
        let now = or_answer!(graph::tenant_fresh(shared, ctx)
            .await
            .map_err(Reply::Answer));
        let made = now
            .users
            .values()
            .find(|u| application_id(shared, u).is_some_and(|a| a.eq_ignore_ascii_case(app)));
        match made {
            Some(u) => Ok(crate::provider::Executed::Done(crate::provider::Outcome {
                created_id: Some(u.id.clone()),
                ..Default::default()
            })),
            None => {
                let result = shared.provider.execute(&op).await;
                graph::after_write(shared, &op, result.is_ok());
                result
            }
        }
    };
    let created = match result {
        Ok(crate::provider::Executed::Done(o)) => o.created_id.unwrap_or_default(),
        Ok(crate::provider::Executed::Accepted(_)) => String::new(),
        Err(e) => return Reply::Answer(from_provider(&e)),
    };
    if shared.draw_drop() {
        return Reply::Drop;
    }
    let sid = shared.dataverse.issue(&org.inst.id, Named::User(created));
    let mut a = Answer::empty(204);
    a.headers.push((
        "OData-EntityId".into(),
        format!("{}{API}/systemusers({sid})", org.base),
    ));
    Reply::Answer(a)
}

/// `PATCH systemusers({id})`: `accessmode` (the op `SetAccessMode`); an application
/// user's `isdisabled: true` (`DeleteUser`: the tenant keeps no deactivated users),
/// `lastname` / `internalemailaddress` (`UpdateUser`).
async fn patch_user(org: &Org<'_>, id: &str, body: Option<Value>) -> Reply {
    let u = or_answer!(org.user_by_key(id).map_err(Reply::Answer));
    let body = body.unwrap_or(Value::Null);
    if u.access_mode == AccessMode::Application {
        if body["isdisabled"] == json!(true) {
            return write(
                org,
                &Op::DeleteUser {
                    user: graph::obj(&u.id),
                },
            )
            .await;
        }
        if body["isdisabled"] == json!(false) {
            return Reply::Answer(Answer::empty(204));
        }
        let name = body["lastname"].as_str().map(str::to_string);
        let upn = body["internalemailaddress"].as_str().map(str::to_string);
        if name.is_some() || upn.is_some() {
            let op = Op::UpdateUser {
                user: graph::obj(&u.id),
                name,
                admin_roles: None,
                upn,
                usage_location: None,
            };
            return write(org, &op).await;
        }
    }
    set_access_mode(org, u, body).await
}

/// `PATCH systemusers({id}) {"accessmode": n}`: the op `SetAccessMode`.
async fn set_access_mode(org: &Org<'_>, u: &User, body: Value) -> Reply {
    let Some(code) = body.get("accessmode") else {
        return Reply::Answer(bad("The emulator changes only accessmode, isdisabled, lastname and internalemailaddress of a systemuser"));
    };
    let mode = match code.as_i64() {
        Some(0) => AccessMode::ReadWrite,
        Some(1) => AccessMode::Administrative,
        Some(4) => AccessMode::NonInteractive,
        _ => {
            return Reply::Answer(bad(&format!(
                "accessmode {code} is not one the emulator serves (0, 1 or 4)"
            )))
        }
    };
    let op = Op::SetAccessMode {
        user: graph::obj(&u.id),
        mode,
    };
    write(org, &op).await
}

/// Associate (`assign`) or disassociate the role `rid` and the system user `id`: the ops
/// `AssignRoles` / `RemoveRoles` of one role.
async fn roles(org: &Org<'_>, id: &str, rid: &str, assign: bool) -> Reply {
    let u = or_answer!(org.user_by_key(id).map_err(Reply::Answer));
    let Some(Named::Role(name)) = org.shared.dataverse.get(rid) else {
        return Reply::Answer(not_found(&format!("role With Id = {rid} Does Not Exist")));
    };
    let held = u.roles.get(&org.inst.id).is_some_and(|r| r.contains(&name));
    if assign && held {
        return Reply::Answer(error(400, "0x80040237", "Cannot insert duplicate key."));
    }
    if !assign && !held {
        return Reply::Answer(not_found(&format!(
            "The systemuser {id} has no role {rid} to disassociate"
        )));
    }
    let (user, instance, roles) = (graph::obj(&u.id), graph::obj(&org.inst.id), vec![name]);
    let op = if assign {
        Op::AssignRoles {
            user,
            instance,
            roles,
        }
    } else {
        Op::RemoveRoles {
            user,
            instance,
            roles,
        }
    };
    write(org, &op).await
}

/// Execute a write's op (serialised with the other writes); 204, or the refusal; the
/// answer dropped when the fault draw says so.
async fn write(org: &Org<'_>, op: &Op) -> Reply {
    let shared = org.shared;
    let result = {
        let _w = shared.write_lock.lock().await;
        let result = shared.provider.execute(op).await;
        // The cached tenant of the Graph endpoints is stale after any write.
        graph::after_write(shared, op, result.is_ok());
        result
    };
    if let Err(e) = result {
        return Reply::Answer(from_provider(&e));
    }
    if shared.draw_drop() {
        return Reply::Drop;
    }
    Reply::Answer(Answer::empty(204))
}
