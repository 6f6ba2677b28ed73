//! Incremental reads of the directory through Graph delta queries (issue 12 item 4).
//!
//! The first observe asks for "sync from now" delta links (`GET /users/delta?$select=...
//! &$deltatoken=latest`, `GET /groups/delta?$select=...,members&$deltatoken=latest`: "a
//! response that contains an `@odata.deltaLink` and no resource data", supported by
//! Microsoft Entra resources such as users and groups: learn.microsoft.com/graph/
//! delta-query-overview), *then* reads everything the usual way (`$top=999` pages and
//! member lists 20 to a `$batch`, far fewer requests than delta pages, whose size the
//! service chooses). A change made between the two is in the read and again in the next
//! round, where applying it a second time changes nothing. The cursor holds both links and
//! the directory read (the users' Graph JSON, the groups with their members).
//!
//! A later observe with the cursor follows each link (`@odata.nextLink` pages until an
//! `@odata.deltaLink`, learn.microsoft.com/graph/delta-query-users, delta-query-groups) and
//! applies the changes:
//! - a user or group item carries its id and at least its changed properties; they replace
//!   those of the copy (a new object is created from them);
//! - `@removed` (reason `changed`: restorable, `deleted`: gone) removes the object;
//! - a group's `members@delta` lists members added, and removed ones with `@removed`; a
//!   group may come in several items (pages), the later ones with its id and members only;
//! - groups/delta lists every kind of group (it has no `$filter`): security groups are
//!   kept client-side (`securityEnabled` and not `mailEnabled`, as the full read's filter);
//! - members that are not users (devices, groups, service principals) are skipped, as in
//!   the full read.
//!
//! Licence counts and the domain (`subscribedSkus`, `organization`) and the admin roles
//! (one small request) are read every time. A token the service refuses (400
//! `syncStateNotFound`, 410 `resyncRequired`: links expire after 7 days) means a full read,
//! silently; so does a cursor of another Graph host, another tenant or format.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::observe::{self, USER_SELECT};
use super::wire::{self, V1};
use super::GraphProvider;
use crate::observed::{Group, Tenant};
use crate::provider::http::Response;
use crate::provider::{ObserveCursor, ProviderError, Scope};

/// Properties of groups read through delta (group-delta; `members` gives `members@delta`).
pub const GROUP_SELECT: &str = "displayName,description,securityEnabled,mailEnabled,members";

/// Format of the cursor; another one is ignored.
const FORMAT: u32 = 1;

/// What the cursor holds.
#[derive(Serialize, Deserialize)]
struct Cursor {
    format: u32,
    /// The Graph host the links point at.
    graph_base: String,
    /// The tenant's initial domain.
    domain: String,
    users_link: String,
    groups_link: String,
    /// Each user's Graph JSON (the `$select`ed properties), by id.
    users: BTreeMap<String, Map<String, Value>>,
    /// Security groups by id.
    groups: BTreeMap<String, SnapGroup>,
}

#[derive(Serialize, Deserialize, Clone)]
struct SnapGroup {
    name: String,
    description: String,
    members: BTreeSet<String>,
}

pub(super) async fn observe_since(
    p: &GraphProvider,
    scope: &Scope,
    cursor: Option<ObserveCursor>,
) -> Result<(Tenant, Option<ObserveCursor>), ProviderError> {
    use crate::domain::op::ObjKind;
    if !(scope.has_kind(ObjKind::User) && scope.has_kind(ObjKind::Group)) {
        return Ok((observe::observe(p, scope).await?, None));
    }
    let mut tenant = observe::tenant_level(p).await?;
    let admins = observe::admin_roles(p).await?;
    let usable = cursor
        .and_then(|c| serde_json::from_slice::<Cursor>(&c.0).ok())
        .filter(|c| {
            c.format == FORMAT && c.graph_base == p.graph_base && c.domain == tenant.domain
        });
    let cur = match usable {
        Some(c) => match incremental(p, c).await? {
            Some(c) => c,
            None => full(p, &tenant.domain).await?,
        },
        None => full(p, &tenant.domain).await?,
    };
    for v in cur.users.values() {
        let u = observe::user_from(p, &Value::Object(v.clone()), &admins)?;
        tenant.users.insert(u.id.clone(), u);
    }
    for (id, g) in &cur.groups {
        tenant.groups.insert(
            id.clone(),
            Group {
                id: id.clone(),
                name: g.name.clone(),
                description: g.description.clone(),
                members: g.members.clone(),
            },
        );
    }
    let bytes = serde_json::to_vec(&cur)
        .map_err(|e| ProviderError::Backend(format!("writing the observe cursor: {e}")))?;
    Ok((tenant, Some(ObserveCursor(bytes))))
}

/// "Sync from now" links first, then the full read.
async fn full(p: &GraphProvider, domain: &str) -> Result<Cursor, ProviderError> {
    let users_link = latest(p, &format!("{V1}/users/delta?$select={USER_SELECT}")).await?;
    let groups_link = latest(p, &format!("{V1}/groups/delta?$select={GROUP_SELECT}")).await?;
    let mut users = BTreeMap::new();
    for v in observe::user_values(p).await? {
        if let Value::Object(m) = v {
            if let Some(id) = m.get("id").and_then(Value::as_str) {
                users.insert(id.to_string(), m);
            }
        }
    }
    let groups = observe::security_groups(p)
        .await?
        .into_iter()
        .map(|g| {
            (
                g.id,
                SnapGroup {
                    name: g.name,
                    description: g.description,
                    members: g.members,
                },
            )
        })
        .collect();
    Ok(Cursor {
        format: FORMAT,
        graph_base: p.graph_base.clone(),
        domain: domain.to_string(),
        users_link,
        groups_link,
        users,
        groups,
    })
}

/// The delta link of `url` with `$deltatoken=latest` (no data expected; any is skipped:
/// the full read that follows has it).
async fn latest(p: &GraphProvider, url: &str) -> Result<String, ProviderError> {
    let what = "reading a delta link";
    match round(p, format!("{url}&$deltatoken=latest"), what).await? {
        Some((_, link)) => Ok(link),
        None => Err(ProviderError::Backend(format!(
            "{what}: the service refused `$deltatoken=latest`"
        ))),
    }
}

#[derive(Deserialize)]
struct DeltaPage {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

/// Whether the service refuses a delta or skip token: read everything again.
fn sync_state_lost(resp: &Response) -> bool {
    let (code, _) = wire::error_of(resp);
    resp.status == 410
        || (resp.status == 400
            && matches!(
                code.as_str(),
                "syncStateNotFound" | "syncStateInvalid" | "resyncRequired"
            ))
}

/// One delta round from `url`: its items and the next delta link; `None` when the service
/// refuses the token.
async fn round(
    p: &GraphProvider,
    url: String,
    what: &str,
) -> Result<Option<(Vec<Value>, String)>, ProviderError> {
    let mut items = Vec::new();
    let mut next = url;
    loop {
        let resp = p.http.send(wire::graph_bare("GET", next)).await?;
        if !resp.ok() {
            if sync_state_lost(&resp) {
                return Ok(None);
            }
            return Err(wire::graph_error(&resp, what));
        }
        let page: DeltaPage = resp.json()?;
        items.extend(page.value);
        match (page.next_link, page.delta_link) {
            (Some(n), _) => next = n,
            (None, Some(d)) => return Ok(Some((items, d))),
            (None, None) => {
                return Err(ProviderError::Backend(format!(
                    "{what}: a delta page without @odata.nextLink or @odata.deltaLink"
                )))
            }
        }
    }
}

/// The changes since the cursor, applied to it; `None` when a token was refused.
async fn incremental(p: &GraphProvider, mut c: Cursor) -> Result<Option<Cursor>, ProviderError> {
    let Some((users, users_link)) = round(p, c.users_link.clone(), "reading user changes").await?
    else {
        return Ok(None);
    };
    let Some((groups, groups_link)) =
        round(p, c.groups_link.clone(), "reading group changes").await?
    else {
        return Ok(None);
    };
    for item in users {
        apply_user(&mut c.users, item);
    }
    let mut not_security = BTreeSet::new();
    for item in groups {
        apply_group(&mut c.groups, &mut not_security, item);
    }
    c.users_link = users_link;
    c.groups_link = groups_link;
    Ok(Some(c))
}

/// An item's id and properties (items without an id are skipped).
fn with_id(item: Value) -> Option<(String, Map<String, Value>)> {
    let Value::Object(item) = item else {
        return None;
    };
    let id = item.get("id").and_then(Value::as_str)?.to_string();
    Some((id, item))
}

fn removed(item: &Map<String, Value>) -> bool {
    item.contains_key("@removed")
}

/// A user item: removed, or its properties over the copy's.
fn apply_user(users: &mut BTreeMap<String, Map<String, Value>>, item: Value) {
    let Some((id, item)) = with_id(item) else {
        return;
    };
    if removed(&item) {
        users.remove(&id);
        return;
    }
    let user = users.entry(id).or_default();
    for (k, v) in item {
        if !k.starts_with('@') {
            user.insert(k, v);
        }
    }
}

/// A group item: removed, no longer (or never) a security group, or its properties and
/// member changes over the copy's.
fn apply_group(
    groups: &mut BTreeMap<String, SnapGroup>,
    not_security: &mut BTreeSet<String>,
    item: Value,
) {
    let Some((id, item)) = with_id(item) else {
        return;
    };
    if removed(&item) {
        groups.remove(&id);
        return;
    }
    let flag = |k: &str| item.get(k).and_then(Value::as_bool);
    match (flag("securityEnabled"), flag("mailEnabled")) {
        (Some(true), Some(false)) => {
            not_security.remove(&id);
            groups.entry(id.clone()).or_insert_with(|| SnapGroup {
                name: String::new(),
                description: String::new(),
                members: BTreeSet::new(),
            });
        }
        (None, None) => {}
        _ => {
            groups.remove(&id);
            not_security.insert(id);
            return;
        }
    }
    // Items without the flags (a group's later items) belong to a group already seen.
    let Some(g) = groups.get_mut(&id) else { return };
    if let Some(name) = item.get("displayName") {
        g.name = name.as_str().unwrap_or_default().to_string();
    }
    if let Some(d) = item.get("description") {
        g.description = d.as_str().unwrap_or_default().to_string();
    }
    if let Some(Value::Array(members)) = item.get("members@delta") {
        for m in members {
            let Some(uid) = observe::user_member(m) else {
                continue;
            };
            if m.get("@removed").is_some() {
                g.members.remove(&uid);
            } else {
                g.members.insert(uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply_all(items: Vec<Value>) -> BTreeMap<String, SnapGroup> {
        let mut groups = BTreeMap::new();
        groups.insert(
            "g1".to_string(),
            SnapGroup {
                name: "Old".into(),
                description: "d".into(),
                members: ["u1", "u2"].iter().map(|s| s.to_string()).collect(),
            },
        );
        let mut seen = BTreeSet::new();
        for i in items {
            apply_group(&mut groups, &mut seen, i);
        }
        groups
    }

    // issue 12 item 4: members@delta adds and removes (with @removed), over several items
    // of one group; properties replace the copy's; non-user members are skipped.
    #[test]
    fn group_items_apply_member_changes_over_several_items() {
        let g = apply_all(vec![
            json!({"id": "g1", "displayName": "New", "securityEnabled": true, "mailEnabled": false,
                   "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u3"},
                                     {"@odata.type": "#microsoft.graph.user", "id": "u1", "@removed": {"reason": "deleted"}}]}),
            json!({"id": "g1", "members@delta": [{"@odata.type": "#microsoft.graph.device", "id": "d1"},
                                                 {"@odata.type": "#microsoft.graph.user", "id": "u4"}]}),
        ]);
        let g1 = &g["g1"];
        assert_eq!(g1.name, "New");
        assert_eq!(g1.description, "d", "absent properties are kept");
        let members: Vec<&str> = g1.members.iter().map(String::as_str).collect();
        assert_eq!(members, ["u2", "u3", "u4"]);
    }

    // issue 12 item 4: a group removed, a group that became mail-enabled, and a new
    // Microsoft 365 group (not a security group, with later member items) are not kept.
    #[test]
    fn removed_and_non_security_groups_are_dropped() {
        let g = apply_all(vec![
            json!({"id": "g1", "@removed": {"reason": "deleted"}}),
            json!({"id": "g2", "displayName": "M365", "securityEnabled": false, "mailEnabled": true}),
            json!({"id": "g2", "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u1"}]}),
            json!({"id": "g3", "displayName": "S", "description": null, "securityEnabled": true, "mailEnabled": false}),
        ]);
        assert_eq!(g.keys().collect::<Vec<_>>(), ["g3"]);
        assert_eq!(g["g3"].description, "");
    }

    // issue 12 item 4: a user item replaces only the properties it carries; @removed
    // (restorable: reason "changed") removes it.
    #[test]
    fn user_items_merge_and_remove() {
        let mut users = BTreeMap::new();
        let Value::Object(u) = json!({"id": "u1", "displayName": "A", "userPrincipalName": "a@x"})
        else {
            unreachable!()
        };
        users.insert("u1".to_string(), u);
        apply_user(&mut users, json!({"id": "u1", "displayName": "B"}));
        assert_eq!(users["u1"]["userPrincipalName"], "a@x");
        assert_eq!(users["u1"]["displayName"], "B");
        apply_user(&mut users, json!({"id": "u2", "displayName": "C"}));
        apply_user(
            &mut users,
            json!({"id": "u1", "@removed": {"reason": "changed"}}),
        );
        assert_eq!(users.keys().collect::<Vec<_>>(), ["u2"]);
    }
}
