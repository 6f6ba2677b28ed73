//! Delta queries (issue 12 item 5): `GET /users/delta` and `GET /groups/delta` in Graph's
//! wire format, so that a client reads only what changed since its last round.
//!
//! Shapes (learn.microsoft.com/graph/delta-query-overview, /graph/delta-query-users,
//! /graph/delta-query-groups, /graph/api/user-delta, /graph/api/group-delta):
//! - a round is a series of pages: each but the last carries `@odata.nextLink` (an opaque
//!   `$skiptoken`), the last `@odata.deltaLink` (an opaque `$deltatoken`) for the next round;
//!   query parameters of the first request (`$select`) are kept in the tokens;
//! - `$deltatoken=latest` answers a deltaLink and no data ("sync from now", Microsoft Entra
//!   resources such as users and groups);
//! - a created or changed object is given with its properties (at least the changed ones);
//!   a removed one as `{"id", "@removed": {"reason": "changed"|"deleted"}}`: users go to the
//!   deleted items and can be restored ("changed"), security groups are deleted for good
//!   (group-delete) ("deleted");
//! - groups carry `members@delta`: in an initial round every member, in a later one the
//!   members added, and those removed with `@removed`; a group with many members appears
//!   in several items (and pages), the later ones with its id and more members only;
//! - `$top` is not honoured by delta (the service sizes pages; here the page-size knob);
//! - a token the service no longer knows (delta links expire after 7 days, or the sync
//!   state was dropped) answers 400 `syncStateNotFound` ("The sync state generation is not
//!   found. The delta token is expired and data must be synchronized again.",
//!   devblogs.microsoft.com/microsoft365dev/duration-of-change-tracking-tokens-for-identity-and-education-resources):
//!   the client reads everything again.
//!
//! The emulator keeps, per issued delta token, the tenant as it was when the round began
//! (an `Arc` of the cached observed tenant: no copy) and the hash of each user's JSON, and
//! answers a later round by walking both sorted maps once (O(n log n) with the hashing).
//! Only the last few tokens are kept; older ones answer `syncStateNotFound`.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::graph::{error, select, tenant_fresh, user_json, Ctx, MAX_TOP};
use super::groups::group_json;
use super::server::{Answer, Shared};
use crate::observed::{Group, Tenant};

/// Delta tokens (snapshots) kept; an older token answers `syncStateNotFound`.
const KEEP_SNAPSHOTS: usize = 4;
/// Rounds whose pages can still be read through their `$skiptoken`.
const KEEP_ROUNDS: usize = 8;
/// Members one group item carries at most; a group with more appears in several items.
pub const MEMBERS_PER_ITEM: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Users,
    Groups,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Users => "users",
            Kind::Groups => "groups",
        }
    }
}

/// The directory as a delta token saw it.
struct Snapshot {
    kind: Kind,
    select: Option<Vec<String>>,
    tenant: Arc<Tenant>,
    /// Users: the hash of each user's JSON (also what the tenant does not hold: account
    /// enabled, usage location).
    users: BTreeMap<String, u64>,
}

/// One round's answer, read page by page.
struct Round {
    kind: Kind,
    items: Arc<Vec<Value>>,
    token: u64,
}

/// Rounds and snapshots (in `Shared`).
#[derive(Default)]
pub(super) struct DeltaState {
    next: u64,
    rounds: BTreeMap<u64, Round>,
    snapshots: BTreeMap<u64, Snapshot>,
}

impl DeltaState {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// `GET /users/delta`.
pub(super) async fn users(shared: &Shared, ctx: &Ctx, query: &str) -> Answer {
    serve(shared, ctx, query, Kind::Users).await
}

/// `GET /groups/delta`.
pub(super) async fn groups(shared: &Shared, ctx: &Ctx, query: &str) -> Answer {
    serve(shared, ctx, query, Kind::Groups).await
}

fn sync_state_not_found(ctx: &Ctx) -> Answer {
    error(
        ctx,
        400,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
    )
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, DeltaState> {
    shared.delta.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a round starts from.
enum Since {
    Nothing,
    Latest,
    Token(u64),
}

async fn serve(shared: &Shared, ctx: &Ctx, query: &str, kind: Kind) -> Answer {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let param = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(skip) = param("$skiptoken") {
        return match decode(skip, 'S') {
            Some((round, offset)) => page(shared, ctx, kind, round, offset as usize),
            None => sync_state_not_found(ctx),
        };
    }
    let since = match param("$deltatoken") {
        None => Since::Nothing,
        Some("latest") => Since::Latest,
        Some(t) => match decode(t, 'D') {
            Some((token, _)) => Since::Token(token),
            None => return sync_state_not_found(ctx),
        },
    };
    let mut select: Option<Vec<String>> =
        param("$select").map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let old = match since {
        Since::Token(token) => {
            let state = lock(shared);
            match state.snapshots.get(&token).filter(|s| s.kind == kind) {
                Some(s) => {
                    select = s.select.clone();
                    Some((s.tenant.clone(), s.users.clone()))
                }
                None => return sync_state_not_found(ctx),
            }
        }
        _ => None,
    };
    let t = or_answer!(tenant_fresh(shared, ctx).await);
    let sel = select.as_deref();
    let hashes = match kind {
        Kind::Users => t
            .users
            .values()
            .filter(|u| super::graph::in_directory(u))
            .map(|u| (u.id.clone(), hash(&user_item(shared, u, sel))))
            .collect(),
        Kind::Groups => BTreeMap::new(),
    };
    let items = match (&since, old, kind) {
        (Since::Latest, _, _) => vec![],
        (_, None, Kind::Users) => t
            .users
            .values()
            .filter(|u| super::graph::in_directory(u))
            .map(|u| user_item(shared, u, sel))
            .collect(),
        (_, None, Kind::Groups) => {
            let mut out = vec![];
            for g in t.groups.values() {
                let members: Vec<Value> = g.members.iter().map(|m| member(m, false)).collect();
                group_items(&mut out, group_props(shared, g, sel), members, sel);
            }
            out
        }
        (_, Some((_, old)), Kind::Users) => users_diff(shared, &t, &old, &hashes, sel),
        (_, Some((old, _)), Kind::Groups) => groups_diff(shared, &old, &t, sel),
    };
    let round = {
        let mut state = lock(shared);
        let token = state.id();
        state.snapshots.insert(
            token,
            Snapshot {
                kind,
                select,
                tenant: t,
                users: hashes,
            },
        );
        while state.snapshots.len() > KEEP_SNAPSHOTS {
            state.snapshots.pop_first();
        }
        let round = state.id();
        state.rounds.insert(
            round,
            Round {
                kind,
                items: Arc::new(items),
                token,
            },
        );
        while state.rounds.len() > KEEP_ROUNDS {
            state.rounds.pop_first();
        }
        round
    };
    page(shared, ctx, kind, round, 0)
}

/// One page of a round: `@odata.nextLink` while items remain, else `@odata.deltaLink`.
fn page(shared: &Shared, ctx: &Ctx, kind: Kind, round: u64, offset: usize) -> Answer {
    let (items, token) = {
        let state = lock(shared);
        match state.rounds.get(&round).filter(|r| r.kind == kind) {
            Some(r) => (r.items.clone(), r.token),
            None => return sync_state_not_found(ctx),
        }
    };
    let size = shared.faults().page_size.clamp(1, MAX_TOP);
    let end = (offset + size).min(items.len());
    let value: Vec<Value> = items.get(offset..end).unwrap_or_default().to_vec();
    let base = format!("{}/v1.0/{}/delta", shared.base, kind.path());
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{}/v1.0/$metadata#{}", shared.base, kind.path())),
    );
    if end < items.len() {
        body.insert(
            "@odata.nextLink".into(),
            json!(format!(
                "{base}?$skiptoken={}",
                encode('S', round, end as u64)
            )),
        );
    } else {
        body.insert(
            "@odata.deltaLink".into(),
            json!(format!("{base}?$deltatoken={}", encode('D', token, 0))),
        );
    }
    body.insert("value".into(), Value::Array(value));
    Answer::json(200, Value::Object(body))
}

/// Opaque tokens: a letter, then two numbers in hex.
fn encode(tag: char, a: u64, b: u64) -> String {
    format!("{tag}{a:x}x{b:x}")
}

fn decode(s: &str, tag: char) -> Option<(u64, u64)> {
    let (a, b) = s.strip_prefix(tag)?.split_once('x')?;
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

fn hash(v: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

/// A user as its delta item shows it: the `$select`ed properties and always the id.
fn user_item(shared: &Shared, u: &crate::observed::User, sel: Option<&[String]>) -> Value {
    let mut v = select(user_json(shared, u, sel.is_some()), sel);
    v["id"] = json!(u.id);
    v
}

/// A group's `$select`ed properties (members aside) and its id.
fn group_props(shared: &Shared, g: &Group, sel: Option<&[String]>) -> Value {
    let mut v = select(group_json(shared, g), sel);
    v["id"] = json!(g.id);
    v
}

fn member(id: &str, removed: bool) -> Value {
    let mut v = json!({"@odata.type": "#microsoft.graph.user", "id": id});
    if removed {
        v["@removed"] = json!({"reason": "deleted"});
    }
    v
}

fn removed(id: &str, reason: &str) -> Value {
    json!({"id": id, "@removed": {"reason": reason}})
}

/// The items of one group: its properties with the first members, then its id with the
/// next members, [`MEMBERS_PER_ITEM`] at a time. Without `members` in `$select`, no
/// `members@delta`.
fn group_items(out: &mut Vec<Value>, props: Value, members: Vec<Value>, sel: Option<&[String]>) {
    let with_members = sel.is_none_or(|s| s.iter().any(|p| p == "members"));
    if !with_members || members.is_empty() {
        out.push(props);
        return;
    }
    let id = props["id"].clone();
    for (i, chunk) in members.chunks(MEMBERS_PER_ITEM).enumerate() {
        let mut item = if i == 0 {
            props.clone()
        } else {
            json!({"id": id})
        };
        item["members@delta"] = Value::Array(chunk.to_vec());
        out.push(item);
    }
}

/// Users created or changed since `old` (their JSON), and removed ones.
fn users_diff(
    shared: &Shared,
    t: &Tenant,
    old: &BTreeMap<String, u64>,
    new: &BTreeMap<String, u64>,
    sel: Option<&[String]>,
) -> Vec<Value> {
    let mut out = vec![];
    for (id, h) in new {
        if old.get(id) != Some(h) {
            if let Some(u) = t.users.get(id) {
                out.push(user_item(shared, u, sel));
            }
        }
    }
    out.extend(
        old.keys()
            .filter(|id| !new.contains_key(*id))
            .map(|id| removed(id, "changed")),
    );
    out
}

/// Groups created, changed (properties, or members added and removed) or deleted since
/// `old`.
fn groups_diff(shared: &Shared, old: &Tenant, t: &Tenant, sel: Option<&[String]>) -> Vec<Value> {
    let mut out = vec![];
    for g in t.groups.values() {
        let props = group_props(shared, g, sel);
        match old.groups.get(&g.id) {
            None => {
                let members = g.members.iter().map(|m| member(m, false)).collect();
                group_items(&mut out, props, members, sel);
            }
            Some(o) => {
                let mut members: Vec<Value> = g
                    .members
                    .difference(&o.members)
                    .map(|m| member(m, false))
                    .collect();
                members.extend(o.members.difference(&g.members).map(|m| member(m, true)));
                if !members.is_empty() || group_props(shared, o, sel) != props {
                    group_items(&mut out, props, members, sel);
                }
            }
        }
    }
    out.extend(
        old.groups
            .keys()
            .filter(|id| !t.groups.contains_key(*id))
            .map(|id| removed(id, "deleted")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_other_kinds() {
        assert_eq!(decode(&encode('S', 42, 999), 'S'), Some((42, 999)));
        assert_eq!(decode(&encode('D', 7, 0), 'S'), None);
        assert_eq!(decode("Dzz", 'D'), None);
    }

    // issue 12 item 5: a group with more members than one item carries appears in several
    // items, the later ones with its id and members only.
    #[test]
    fn a_large_group_is_split_into_items() {
        let mut out = vec![];
        let members: Vec<Value> = (0..(MEMBERS_PER_ITEM * 2 + 1))
            .map(|i| member(&format!("u{i}"), false))
            .collect();
        let sel = vec!["displayName".to_string(), "members".to_string()];
        group_items(
            &mut out,
            json!({"id": "g1", "displayName": "G"}),
            members,
            Some(&sel),
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["displayName"], "G");
        assert!(out[1].get("displayName").is_none());
        assert_eq!(out[2]["members@delta"].as_array().unwrap().len(), 1);
    }
}
