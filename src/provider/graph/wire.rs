//! The Graph wire format: error bodies to [`ProviderError`] classes, paging through
//! `@odata.nextLink`, and JSON batching (`$batch`, 20 requests per batch).
//!
//! Sources (Microsoft Graph v1.0 reference, learn.microsoft.com/graph):
//! - errors: /graph/errors: `{"error":{"code","message","innerError"}}`; 429 with
//!   `Retry-After` (/graph/throttling); 409 conflict, 412 precondition failed;
//! - paging: /graph/paging: follow `@odata.nextLink` verbatim (an absolute URL);
//! - batching: /graph/json-batching: `POST /v1.0/$batch {"requests":[{id, method, url
//!   (relative to the version), headers, body}]}` (a body needs `Content-Type`), at most 20
//!   requests; `{"responses":[{id, status, headers, body}]}` in any order.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::provider::http::{Http, Request, Response, Service};
use crate::provider::ProviderError;

/// The version prefix of every Graph path crmctl sends.
pub const V1: &str = "/v1.0";

/// Requests one `$batch` carries at most (json-batching).
pub const BATCH_MAX: usize = 20;

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorInner,
}

#[derive(Deserialize, Default)]
struct ErrorInner {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The `error.code` and `error.message` of a Graph error body (empty when absent).
pub fn error_of(resp: &Response) -> (String, String) {
    let body: ErrorBody = serde_json::from_slice(&resp.body).unwrap_or_default();
    (body.error.code, body.error.message)
}

/// `Retry-After` in seconds (fractional allowed); an HTTP date is left to the transport.
pub fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.header("retry-after")?.trim().parse::<f64>().ok()?;
    (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v.min(3600.0)))
}

/// Whether the answer says an object the request names does not exist (yet): 404, or the
/// 400 "one of the objects being referenced do not exist" a recently created group gives
/// (group-post-members: "This request might have replication delays").
pub fn is_not_found(resp: &Response) -> bool {
    if resp.status == 404 {
        return true;
    }
    if resp.status == 400 {
        let (_, m) = error_of(resp);
        let m = m.to_ascii_lowercase();
        return m.contains("do not exist") || m.contains("does not exist");
    }
    false
}

/// Whether a 400 says that a reference (member, role member) is already there.
pub fn is_already_there(resp: &Response) -> bool {
    resp.status == 400 && {
        let (_, m) = error_of(resp);
        m.to_ascii_lowercase().contains("already exist")
    }
}

/// Whether a 400 says another object has the same `userPrincipalName` (P1).
pub fn is_duplicate_upn(resp: &Response) -> bool {
    resp.status == 400 && {
        let (_, m) = error_of(resp);
        let m = m.to_ascii_lowercase();
        m.contains("userprincipalname") && m.contains("already exists")
    }
}

/// The error class of a Graph error answer. `what` names the request for the message;
/// no request body ever goes into it.
pub fn graph_error(resp: &Response, what: &str) -> ProviderError {
    let (code, message) = error_of(resp);
    let said = if code.is_empty() && message.is_empty() {
        format!("{what}: HTTP {}", resp.status)
    } else {
        format!("{what}: HTTP {} {code}: {message}", resp.status)
    };
    match resp.status {
        429 => ProviderError::Throttled {
            message: said,
            retry_after: retry_after(resp),
        },
        409 | 412 | 423 => ProviderError::Conflict {
            message: said,
            retry_after: retry_after(resp),
        },
        404 => ProviderError::NotFound(said),
        400 if is_duplicate_upn(resp) => ProviderError::refused(
            "P1",
            format!("{said} (a user with this user principal name already exists: adopt it or choose another UPN)"),
        ),
        401 | 403 => ProviderError::Backend(format!(
            "{said} (the app registration lacks a Graph permission or admin consent: it needs User.ReadWrite.All, GroupMember.ReadWrite.All, Group.ReadWrite.All, Organization.Read.All and RoleManagement.ReadWrite.Directory)"
        )),
        408 | 500..=599 => ProviderError::Transient(said),
        400..=499 => ProviderError::Invalid(said),
        _ => ProviderError::Backend(said),
    }
}

/// A Graph request with a JSON body.
pub fn graph(method: &'static str, url: String, body: Value, idempotent: bool) -> Request {
    Request::with_body(method, Service::Graph, url, body, idempotent)
}

/// A Graph request without a body (`GET`, `DELETE`).
pub fn graph_bare(method: &'static str, url: String) -> Request {
    Request {
        method,
        service: Service::Graph,
        url,
        headers: vec![],
        body: None,
        idempotent: true,
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

/// Every item of a collection: `GET url`, then each `@odata.nextLink` verbatim (paging).
pub async fn get_all(
    http: &dyn Http,
    url: String,
    what: &str,
) -> Result<Vec<Value>, ProviderError> {
    let mut out = Vec::new();
    let mut next = Some(url);
    while let Some(url) = next.take() {
        let resp = http.send(graph_bare("GET", url)).await?;
        if !resp.ok() {
            return Err(graph_error(&resp, what));
        }
        let page: Page = resp.json()?;
        out.extend(page.value);
        next = page.next_link;
    }
    Ok(out)
}

/// The items of one page already read (a `$batch` answer), then the rest through
/// `@odata.nextLink`.
pub async fn rest_of(
    http: &dyn Http,
    first: Value,
    what: &str,
) -> Result<Vec<Value>, ProviderError> {
    let page: Page = serde_json::from_value(first)
        .map_err(|e| ProviderError::Backend(format!("{what}: unreadable page: {e}")))?;
    let mut out = page.value;
    if let Some(next) = page.next_link {
        out.extend(get_all(http, next, what).await?);
    }
    Ok(out)
}

/// One request inside a `$batch`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// `GET`, `POST`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// URL relative to the version (`/groups/{id}/members?$select=id`).
    pub url: String,
    /// JSON body.
    pub body: Option<Value>,
}

#[derive(Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    responses: Vec<BatchResponse>,
}

#[derive(Deserialize)]
struct BatchResponse {
    id: String,
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    #[serde(default)]
    body: Option<Value>,
}

/// Send `items` through `$batch`, [`BATCH_MAX`] per request; the answers are in the order
/// of `items`, each as a [`Response`] (so that [`graph_error`] maps it). A batch that fails
/// as a whole fails each of its items with that error.
pub async fn batch(http: &dyn Http, items: &[BatchItem]) -> Vec<Result<Response, ProviderError>> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(BATCH_MAX) {
        let requests: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let mut r = json!({"id": (i + 1).to_string(), "method": it.method, "url": it.url});
                if let Some(body) = &it.body {
                    r["body"] = body.clone();
                    r["headers"] = json!({"Content-Type": "application/json"});
                }
                r
            })
            .collect();
        let idempotent = chunk
            .iter()
            .all(|it| it.method == "GET" || it.method == "DELETE");
        let req = graph(
            "POST",
            format!("{V1}/$batch"),
            json!({ "requests": requests }),
            idempotent,
        );
        let answer = match http.send(req).await {
            Ok(resp) if resp.ok() => resp.json::<BatchAnswer>(),
            Ok(resp) => Err(graph_error(&resp, "$batch")),
            Err(e) => Err(e),
        };
        match answer {
            Ok(answer) => {
                let mut slots: Vec<Option<Response>> = vec![None; chunk.len()];
                for r in answer.responses {
                    let Some(i) = r.id.parse::<usize>().ok().and_then(|i| i.checked_sub(1)) else {
                        continue;
                    };
                    if i < slots.len() {
                        slots[i] = Some(Response {
                            status: r.status,
                            headers: r
                                .headers
                                .iter()
                                .map(|(k, v)| {
                                    let v = v
                                        .as_str()
                                        .map(str::to_string)
                                        .unwrap_or_else(|| v.to_string());
                                    (k.to_ascii_lowercase(), v)
                                })
                                .collect(),
                            body: r
                                .body
                                .map(|b| serde_json::to_vec(&b).unwrap_or_default())
                                .unwrap_or_default(),
                        });
                    }
                }
                out.extend(slots.into_iter().map(|s| {
                    s.ok_or_else(|| {
                        ProviderError::Transient("$batch: an item got no answer".into())
                    })
                }));
            }
            Err(e) => out.extend(chunk.iter().map(|_| Err(e.clone()))),
        }
    }
    out
}

/// Percent-encode a value for a query string (`$filter`); `'` is doubled (OData).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.replace('\'', "''").bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'\'' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
