//! `POST /v1.0/$batch` (learn.microsoft.com/graph/json-batching): at most 20 requests
//! `{id, method, url (relative to /v1.0), headers?, body?, dependsOn?}`; the answer is
//! 200 `{responses:[{id, status, headers, body}]}` in any order (the emulator answers in
//! reverse, so that clients correlate by id); a request whose dependency failed answers
//! 424; each item may be throttled on its own (429 with `Retry-After`).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::graph::{bad_request, error, route, throttled, Ctx};
use super::server::{Answer, Shared};

/// At most 20 requests in one batch (json-batching, "Batch size limitations").
pub const MAX_BATCH: usize = 20;

struct Item<'a> {
    id: &'a str,
    method: &'a str,
    url: &'a str,
    body: Option<&'a Value>,
    depends_on: Vec<&'a str>,
}

fn parse<'a>(ctx: &Ctx, body: Option<&'a Value>) -> Result<Vec<Item<'a>>, Answer> {
    let requests = body
        .and_then(|b| b.get("requests"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request(ctx, "Invalid batch payload format: 'requests' is required."))?;
    if requests.len() > MAX_BATCH {
        return Err(error(
            ctx,
            400,
            "BadRequest",
            &format!("Invalid batch payload format: the number of requests ({}) exceeds the limit of {MAX_BATCH}.", requests.len()),
        ));
    }
    let mut items = Vec::with_capacity(requests.len());
    for r in requests {
        let field = |k: &str| r.get(k).and_then(Value::as_str);
        let (Some(id), Some(method), Some(url)) = (field("id"), field("method"), field("url"))
        else {
            return Err(bad_request(
                ctx,
                "Invalid batch payload format: every request needs id, method and url.",
            ));
        };
        let depends_on: Vec<&str> = r
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        items.push(Item {
            id,
            method,
            url,
            body: r.get("body"),
            depends_on,
        });
    }
    let ids: Vec<&str> = items.iter().map(|i| i.id).collect();
    for (n, item) in items.iter().enumerate() {
        if ids[..n].contains(&item.id) {
            return Err(bad_request(
                ctx,
                &format!(
                    "Invalid batch payload format: request id '{}' is repeated.",
                    item.id
                ),
            ));
        }
        if let Some(d) = item.depends_on.iter().find(|d| !ids.contains(d)) {
            return Err(bad_request(
                ctx,
                &format!(
                    "Invalid batch payload format: dependsOn names an unknown request id '{d}'."
                ),
            ));
        }
    }
    Ok(items)
}

pub(super) async fn batch(shared: &Shared, ctx: &Ctx, body: Option<&Value>) -> Answer {
    let items = or_answer!(parse(ctx, body));
    // Serve in dependency order: repeatedly every item whose dependencies are answered.
    let mut status: HashMap<&str, u16> = HashMap::new();
    let mut responses = Vec::with_capacity(items.len());
    while status.len() < items.len() {
        let ready: Vec<&Item> = items
            .iter()
            .filter(|i| {
                !status.contains_key(i.id) && i.depends_on.iter().all(|d| status.contains_key(d))
            })
            .collect();
        if ready.is_empty() {
            return bad_request(ctx, "Invalid batch payload format: dependsOn has a cycle.");
        }
        for item in ready {
            let failed = item
                .depends_on
                .iter()
                .any(|d| !(200..300).contains(&status[d]));
            let answer = if failed {
                error(
                    ctx,
                    424,
                    "FailedDependency",
                    "The request depends on a request that failed.",
                )
            } else if shared.draw_item_throttle() {
                throttled(shared, ctx)
            } else {
                let url = item.url.strip_prefix("/v1.0").unwrap_or(item.url);
                let url = if url.starts_with('/') {
                    url.to_string()
                } else {
                    format!("/{url}")
                };
                let (path, query) = url.split_once('?').unwrap_or((&url, ""));
                if path == "/$batch" {
                    bad_request(ctx, "A batch cannot contain a batch.")
                } else {
                    route(shared, ctx, item.method, path, query, item.body).await
                }
            };
            status.insert(item.id, answer.status);
            let mut headers = serde_json::Map::new();
            for (k, v) in &answer.headers {
                headers.insert(k.clone(), json!(v));
            }
            if answer.body.is_some() {
                headers.insert("Content-Type".into(), json!("application/json"));
            }
            let mut r = json!({"id": item.id, "status": answer.status, "headers": headers});
            if let Some(b) = answer.body {
                r["body"] = b;
            }
            responses.push(r);
        }
    }
    responses.reverse();
    Answer::json(200, json!({ "responses": responses }))
}
