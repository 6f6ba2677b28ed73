//! The Dataverse Web API v9.2 wire format: request headers, error bodies to
//! [`ProviderError`] classes, paging, and OData literals in a query string.
//!
//! Sources (learn.microsoft.com/power-apps/developer/data-platform/webapi/...):
//! - `compose-http-requests-handle-errors`: `Accept: application/json`,
//!   `OData-MaxVersion: 4.0`, `OData-Version: 4.0`; error body
//!   `{"error":{"code":"0x8004....","message"}}`;
//! - `query/page-results`: `Prefer: odata.maxpagesize=N` (at most 5,000), follow
//!   `@odata.nextLink` (with its `$skiptoken`) verbatim; `$skip` is not supported;
//! - `update-delete-entities-using-web-api` ("Prevent create in upsert"): a `PATCH` with
//!   `If-Match: *` updates an existing row or answers 404, never creates one;
//! - troubleshoot/power-platform/dataverse/.../client-errors and the "Web service error
//!   codes" reference: `0x80040237` (-2147220937) "Cannot insert duplicate key",
//!   `0x80040217` (-2147220969) a row that does not exist, `0x80040220` a missing
//!   privilege; service protection limits (api-limits) answer 429 with `Retry-After`.

use serde::Deserialize;
use serde_json::Value;

use crate::provider::http::transport::parse_retry_after;
use crate::provider::http::{Http, Request, Response, Service};
use crate::provider::ProviderError;

/// The path of the Web API under an instance's base URL.
pub const API: &str = "/api/data/v9.2";

/// The largest page Dataverse serves (query/page-results).
pub const MAX_PAGE: u32 = 5000;

/// "Cannot insert duplicate key": an association that is already there.
pub const DUPLICATE_KEY: &str = "0x80040237";

/// `error.code` and `error.message` of an error body (empty when absent): the same
/// OData error shape as Graph's.
pub use crate::provider::graph::wire::error_of;

/// The rule id a refusal's message ends with, `... (P2)`: how the emulator (and crmctl's
/// own providers) name the domain.md rule that refused.
pub fn rule_of(message: &str) -> Option<&str> {
    let inner = message.trim_end().strip_suffix(')')?;
    let open = inner.rfind('(')?;
    let id = &inner[open + 1..];
    let mut chars = id.chars();
    let letter = chars.next()?;
    let digits = chars.as_str();
    (letter.is_ascii_uppercase()
        && (1..=2).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit()))
    .then_some(id)
}

/// The error class of a Dataverse error answer. `what` names the request for the message;
/// no request body ever goes into it.
pub fn dataverse_error(resp: &Response, what: &str) -> ProviderError {
    let (code, message) = error_of(resp);
    let said = if code.is_empty() && message.is_empty() {
        format!("{what}: HTTP {}", resp.status)
    } else {
        format!("{what}: HTTP {} {code}: {message}", resp.status)
    };
    let retry_after = resp
        .header("retry-after")
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    if let Some(rule) = rule_of(&message).filter(|_| (400..500).contains(&resp.status)) {
        return ProviderError::refused(rule, said);
    }
    match resp.status {
        429 => ProviderError::Throttled {
            message: said,
            retry_after,
        },
        409 | 412 | 423 => ProviderError::Conflict {
            message: said,
            retry_after,
        },
        404 => ProviderError::NotFound(said),
        401 | 403 => ProviderError::Backend(format!(
            "{said} (crmctl's app needs an application user in this instance with the System Administrator role: Power Platform admin center > the environment > Settings > Users + permissions > Application users)"
        )),
        408 | 500..=599 => ProviderError::Transient(said),
        400..=499 => ProviderError::Invalid(said),
        _ => ProviderError::Backend(said),
    }
}

/// The headers every Web API request carries (compose-http-requests-handle-errors).
fn odata_headers() -> Vec<(String, String)> {
    vec![
        ("Accept".into(), "application/json".into()),
        ("OData-MaxVersion".into(), "4.0".into()),
        ("OData-Version".into(), "4.0".into()),
    ]
}

/// The service (token scope `{base}/.default`) of the instance at `base`.
pub fn service(base: &str) -> Service {
    Service::Dataverse(base.strip_prefix("https://").unwrap_or(base).to_string())
}

/// A `GET` of `url` (absolute) asking for pages of `page` rows.
pub fn get(base: &str, url: String, page: u32) -> Request {
    let mut r = Request::get(service(base), url);
    r.headers = odata_headers();
    r.headers.push((
        "Prefer".into(),
        format!("odata.maxpagesize={}", page.clamp(1, MAX_PAGE)),
    ));
    r
}

/// A write: `POST`/`PATCH` with a JSON body, or `DELETE` without. Every write crmctl sends
/// to Dataverse is idempotent: an association already made answers "duplicate key"
/// (taken as done), a removed one 404 (taken as done), a `PATCH` sets a value.
pub fn write(base: &str, method: &'static str, url: String, body: Option<Value>) -> Request {
    let mut headers = odata_headers();
    if method == "PATCH" {
        headers.push(("If-Match".into(), "*".into()));
    }
    Request {
        method,
        service: service(base),
        url,
        headers,
        body,
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

/// Every row of a collection: `GET url`, then each `@odata.nextLink` verbatim.
pub async fn get_all(
    http: &dyn Http,
    base: &str,
    url: String,
    page: u32,
    what: &str,
) -> Result<Vec<Value>, ProviderError> {
    get_all_with(http, base, url, page, what, false).await
}

/// The `Prefer` preference that asks for formatted values (a lookup's display name beside
/// its id, `_x_value@OData.Community.Display.V1.FormattedValue`; learn.microsoft.com/
/// power-apps/developer/data-platform/webapi/query/select-columns, "Formatted values").
pub const FORMATTED_VALUES: &str =
    "odata.include-annotations=\"OData.Community.Display.V1.FormattedValue\"";

/// [`get_all`]; with `formatted`, asking for formatted values too ([`FORMATTED_VALUES`]):
/// same requests, a few more bytes per row.
pub async fn get_all_with(
    http: &dyn Http,
    base: &str,
    url: String,
    page: u32,
    what: &str,
    formatted: bool,
) -> Result<Vec<Value>, ProviderError> {
    let mut out = Vec::new();
    let mut next = Some(url);
    while let Some(url) = next.take() {
        let mut req = get(base, url, page);
        if formatted {
            if let Some(p) = req.headers.iter_mut().find(|(k, _)| k == "Prefer") {
                p.1 = format!("{},{FORMATTED_VALUES}", p.1);
            }
        }
        let resp = http.send(req).await?;
        if !resp.ok() {
            return Err(dataverse_error(&resp, what));
        }
        let page: Page = resp.json()?;
        out.extend(page.value);
        next = page.next_link;
    }
    Ok(out)
}

/// An OData string literal for `$filter`: quoted, `'` doubled, then percent-encoded for
/// the query string (space as `%20`, never `+`).
pub fn literal(s: &str) -> String {
    let quoted = format!("'{}'", s.replace('\'', "''"));
    let mut out = String::with_capacity(quoted.len() + 8);
    for &b in quoted.as_bytes() {
        let plain = b.is_ascii_alphanumeric() || b"-._~'".contains(&b);
        if plain {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// Whether `id` is usable as a key in a URL or an unquoted `$filter` value (a GUID, or an
/// emulator's id: letters, digits and `-`).
pub fn is_key(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `id` checked with [`is_key`].
pub fn key<'a>(id: &'a str, what: &str) -> Result<&'a str, ProviderError> {
    if is_key(id) {
        Ok(id)
    } else {
        Err(ProviderError::Invalid(format!(
            "{what}: `{id}` is not a Dataverse or directory id"
        )))
    }
}
