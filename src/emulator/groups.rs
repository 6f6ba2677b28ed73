//! Security groups, their members, and the directory roles of P6's admin roles.
//! Shapes: learn.microsoft.com/graph/api/group-list, group-post-groups, group-update
//! (`members@odata.bind`: at most 20 references per request, all or nothing),
//! group-delete, group-list-members, group-post-members (400 when already a member),
//! group-delete-members (`.../members/{id}/$ref`), directoryrole-list,
//! directoryrole-list-members, directoryrole-post-members, directoryrole-delete-member.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::graph::{
    bad_request, created, exec, list_query, not_found, obj, page, tenant, user_json, Ctx,
};
use super::server::{Answer, Shared};
use crate::domain::kinds::AdminRole;
use crate::domain::op::Op;
use crate::observed::{Group, Tenant};
use crate::provider::graph::ADMIN_ROLE_TEMPLATES;

/// At most 20 references in one `members@odata.bind` (group-update).
pub const MAX_BIND: usize = 20;

pub(super) fn group_json(shared: &Shared, g: &Group) -> Value {
    let _ = shared;
    json!({
        "id": g.id,
        "displayName": g.name,
        "description": if g.description.is_empty() { Value::Null } else { json!(g.description) },
        "mailEnabled": false,
        "mailNickname": g.name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>(),
        "securityEnabled": true,
        "groupTypes": [],
    })
}

/// The object id in a reference URL (`https://graph.microsoft.com/v1.0/directoryObjects/{id}`
/// or `.../users/{id}`).
fn ref_id(url: &str) -> Option<&str> {
    let id = url.trim_end_matches('/').rsplit('/').next()?;
    let id = id
        .strip_prefix("directoryObjects('")
        .map(|s| s.trim_end_matches("')"))
        .unwrap_or(id);
    (!id.is_empty()).then_some(id)
}

fn bind_ids<'a>(ctx: &Ctx, body: &'a Value) -> Result<Vec<&'a str>, Answer> {
    let Some(refs) = body.get("members@odata.bind") else {
        return Ok(vec![]);
    };
    let refs = refs
        .as_array()
        .ok_or_else(|| bad_request(ctx, "members@odata.bind must be an array of URLs."))?;
    if refs.len() > MAX_BIND {
        return Err(bad_request(
            ctx,
            &format!(
                "Cannot add more than {MAX_BIND} references in one request ({} given).",
                refs.len()
            ),
        ));
    }
    refs.iter()
        .map(|r| {
            r.as_str()
                .and_then(ref_id)
                .ok_or_else(|| bad_request(ctx, "Invalid object identifier in members@odata.bind."))
        })
        .collect()
}

/// Every referenced user exists (and is past its replication lag) and none is already a
/// member: checked before anything changes (all or nothing).
fn check_new_members(
    shared: &Shared,
    ctx: &Ctx,
    t: &Tenant,
    group: Option<&Group>,
    ids: &[&str],
) -> Result<(), Answer> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !t.users.contains_key(*id) || shared.lagging(id) {
            return Err(not_found(ctx, id));
        }
        if group.is_some_and(|g| g.members.contains(*id)) || !seen.insert(*id) {
            return Err(bad_request(
                ctx,
                "One or more added object references already exist for the following modified properties: 'members'.",
            ));
        }
    }
    Ok(())
}

fn add_members(group: &str, ids: &[&str]) -> Op {
    Op::AddGroupMembers {
        group: obj(group),
        users: ids.iter().map(|i| obj(i)).collect(),
    }
}

pub(super) async fn route(
    shared: &Shared,
    ctx: &Ctx,
    method: &str,
    segs: &[&str],
    query: &str,
    body: &Value,
) -> Answer {
    match (method, segs) {
        ("GET", ["groups"]) => {
            let q = or_answer!(list_query(shared, ctx, query));
            let t = or_answer!(super::graph::tenant_for_list(shared, ctx, &q).await);
            page(shared, "/groups", "groups", &q, t.groups.iter(), |g| {
                group_json(shared, g)
            })
        }
        ("GET", ["groups", "delta"]) => super::delta::groups(shared, ctx, query).await,
        ("POST", ["groups"]) => create_group(shared, ctx, body).await,
        (_, ["groups", id, ..]) if shared.lagging(id) => not_found(ctx, id),
        ("GET", ["groups", id]) => match tenant(shared, ctx).await {
            Ok(t) => t.groups.get(*id).map_or_else(
                || not_found(ctx, id),
                |g| Answer::json(200, group_json(shared, g)),
            ),
            Err(a) => a,
        },
        ("PATCH", ["groups", id]) => update_group(shared, ctx, id, body).await,
        ("DELETE", ["groups", id]) => {
            let _w = shared.write_lock.lock().await;
            match exec(shared, ctx, &Op::DeleteGroup { group: obj(id) }, id).await {
                Ok(_) => Answer::empty(204),
                Err(a) => a,
            }
        }
        ("GET", ["groups", id, "members"]) => {
            let q = or_answer!(list_query(shared, ctx, query));
            let t = or_answer!(tenant(shared, ctx).await);
            let Some(g) = t.groups.get(*id) else {
                return not_found(ctx, id);
            };
            let members = g
                .members
                .iter()
                .filter_map(|m| t.users.get(m).map(|u| (m, u)))
                .filter(|(_, u)| super::graph::in_directory(u));
            page(
                shared,
                &format!("/groups/{id}/members"),
                "directoryObjects",
                &q,
                members,
                |u| member_json(shared, u),
            )
        }
        ("POST", ["groups", id, "members", "$ref"]) => {
            let Some(uid) = body
                .get("@odata.id")
                .and_then(Value::as_str)
                .and_then(ref_id)
            else {
                return bad_request(ctx, "Invalid object identifier in @odata.id.");
            };
            let _w = shared.write_lock.lock().await;
            let t = or_answer!(tenant(shared, ctx).await);
            let Some(g) = t.groups.get(*id) else {
                return not_found(ctx, id);
            };
            if let Err(a) = check_new_members(shared, ctx, &t, Some(g), &[uid]) {
                return a;
            }
            // The cached tenant is not held across the write (it is then changed in place).
            drop(t);
            match exec(shared, ctx, &add_members(id, &[uid]), id).await {
                Ok(_) => Answer::empty(204),
                Err(a) => a,
            }
        }
        ("DELETE", ["groups", gid, "members", oid, "$ref"]) => {
            let _w = shared.write_lock.lock().await;
            let t = or_answer!(tenant(shared, ctx).await);
            match t.groups.get(*gid) {
                None => return not_found(ctx, gid),
                Some(g) if !g.members.contains(*oid) => return not_found(ctx, oid),
                Some(_) => {}
            }
            drop(t);
            let op = Op::RemoveGroupMembers {
                group: obj(gid),
                users: vec![obj(oid)],
            };
            match exec(shared, ctx, &op, gid).await {
                Ok(_) => Answer::empty(204),
                Err(a) => a,
            }
        }
        _ => roles(shared, ctx, method, segs, query, body).await,
    }
}

fn member_json(shared: &Shared, u: &crate::observed::User) -> Value {
    let mut v = user_json(shared, u, false);
    v["@odata.type"] = json!("#microsoft.graph.user");
    v
}

/// POST /groups: a security group (mailEnabled false, securityEnabled true), with
/// optional `members@odata.bind`; 201 with the group.
async fn create_group(shared: &Shared, ctx: &Ctx, body: &Value) -> Answer {
    for key in [
        "displayName",
        "mailEnabled",
        "mailNickname",
        "securityEnabled",
    ] {
        if body.get(key).is_none_or(Value::is_null) {
            return bad_request(
                ctx,
                &format!("Property '{key}' is required when creating the resource 'Group'."),
            );
        }
    }
    if body.get("mailEnabled") != Some(&json!(false))
        || body.get("securityEnabled") != Some(&json!(true))
    {
        return bad_request(
            ctx,
            "Only security groups (mailEnabled false, securityEnabled true) are served.",
        );
    }
    let ids = or_answer!(bind_ids(ctx, body));
    let _w = shared.write_lock.lock().await;
    let t = or_answer!(tenant(shared, ctx).await);
    if let Err(a) = check_new_members(shared, ctx, &t, None, &ids) {
        return a;
    }
    let op = Op::CreateGroup {
        name: body["displayName"].as_str().unwrap_or_default().to_string(),
        description: body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    };
    let id = or_answer!(created(ctx, exec(shared, ctx, &op, "").await));
    if !ids.is_empty() {
        if let Err(a) = exec(shared, ctx, &add_members(&id, &ids), &id).await {
            return a;
        }
    }
    shared.record_birth(&id);
    match tenant(shared, ctx).await {
        Ok(t) => t.groups.get(&id).map_or_else(
            || not_found(ctx, &id),
            |g| {
                let mut v = group_json(shared, g);
                v["@odata.context"] =
                    json!(format!("{}/v1.0/$metadata#groups/$entity", shared.base));
                Answer::json(201, v)
            },
        ),
        Err(a) => a,
    }
}

/// PATCH /groups/{id}: displayName, description, `members@odata.bind` (at most 20, all
/// or nothing); 204.
async fn update_group(shared: &Shared, ctx: &Ctx, id: &str, body: &Value) -> Answer {
    let ids = or_answer!(bind_ids(ctx, body));
    let _w = shared.write_lock.lock().await;
    let t = or_answer!(tenant(shared, ctx).await);
    let Some(g) = t.groups.get(id) else {
        return not_found(ctx, id);
    };
    if let Err(a) = check_new_members(shared, ctx, &t, Some(g), &ids) {
        return a;
    }
    drop(t);
    let name = body
        .get("displayName")
        .and_then(Value::as_str)
        .map(str::to_string);
    let description = body
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    if name.is_some() || description.is_some() {
        let op = Op::UpdateGroup {
            group: obj(id),
            name,
            description,
        };
        if let Err(a) = exec(shared, ctx, &op, id).await {
            return a;
        }
    }
    if !ids.is_empty() {
        if let Err(a) = exec(shared, ctx, &add_members(id, &ids), id).await {
            return a;
        }
    }
    Answer::empty(204)
}

/// The admin role (P6) a path segment names: `roleTemplateId={template}` or the role's
/// object id (`role-` and the template's first group), for the five roles crmctl manages
/// (`provider::graph::ADMIN_ROLE_TEMPLATES`), all served as activated.
fn admin_role(seg: &str) -> Option<(AdminRole, &'static str)> {
    ADMIN_ROLE_TEMPLATES
        .iter()
        .copied()
        .find(|(_, t)| seg == format!("roleTemplateId={t}") || seg == role_object_id(t))
}

fn role_object_id(template: &str) -> String {
    format!("role-{}", template.split('-').next().unwrap_or(template))
}

fn role_name(role: AdminRole) -> &'static str {
    match role {
        AdminRole::GlobalAdmin => "Global Administrator",
        AdminRole::BillingAdmin => "Billing Administrator",
        AdminRole::PasswordAdmin => "Password Administrator",
        AdminRole::ServiceAdmin => "Dynamics 365 Administrator",
        AdminRole::UserManagementAdmin => "User Administrator",
    }
}

fn role_json(role: AdminRole, template: &str) -> Value {
    json!({
        "id": role_object_id(template),
        "displayName": role_name(role),
        "roleTemplateId": template,
    })
}

/// The directory roles of P6's admin roles: list, get, members, add and remove a member.
/// P6 (the last global admins) is the tenant's rule and refuses like any other.
async fn roles(
    shared: &Shared,
    ctx: &Ctx,
    method: &str,
    segs: &[&str],
    query: &str,
    body: &Value,
) -> Answer {
    match (method, segs) {
        ("GET", ["directoryRoles"]) => Answer::json(
            200,
            json!({"@odata.context": format!("{}/v1.0/$metadata#directoryRoles", shared.base),
                "value": ADMIN_ROLE_TEMPLATES.iter().map(|(r, t)| role_json(*r, t)).collect::<Vec<_>>()}),
        ),
        ("GET", ["directoryRoles", r]) => match admin_role(r) {
            Some((role, t)) => Answer::json(200, role_json(role, t)),
            None => not_found(ctx, r),
        },
        ("GET", ["directoryRoles", r, "members"]) if admin_role(r).is_some() => {
            let (role, _) = admin_role(r).expect("checked");
            let q = or_answer!(list_query(shared, ctx, query));
            let t = or_answer!(tenant(shared, ctx).await);
            let holders = t
                .users
                .iter()
                .filter(|(_, u)| u.admin_roles.contains(&role));
            page(
                shared,
                &format!("/directoryRoles/{r}/members"),
                "directoryObjects",
                &q,
                holders,
                |u| member_json(shared, u),
            )
        }
        ("POST", ["directoryRoles", r, "members", "$ref"]) if admin_role(r).is_some() => {
            let (role, _) = admin_role(r).expect("checked");
            let Some(uid) = body
                .get("@odata.id")
                .and_then(Value::as_str)
                .and_then(ref_id)
            else {
                return bad_request(ctx, "Invalid object identifier in @odata.id.");
            };
            set_admin_role(shared, ctx, uid, role, true).await
        }
        ("DELETE", ["directoryRoles", r, "members", uid, "$ref"]) if admin_role(r).is_some() => {
            let (role, _) = admin_role(r).expect("checked");
            set_admin_role(shared, ctx, uid, role, false).await
        }
        _ => super::graph::error(
            ctx,
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                segs.first().copied().unwrap_or_default()
            ),
        ),
    }
}

async fn set_admin_role(
    shared: &Shared,
    ctx: &Ctx,
    uid: &str,
    role: AdminRole,
    on: bool,
) -> Answer {
    let _w = shared.write_lock.lock().await;
    let t = or_answer!(tenant(shared, ctx).await);
    let Some(u) = t.users.get(uid).filter(|_| !shared.lagging(uid)) else {
        return not_found(ctx, uid);
    };
    let mut roles = u.admin_roles.clone();
    let changed = if on {
        roles.insert(role)
    } else {
        roles.remove(&role)
    };
    if !changed {
        return if on {
            bad_request(ctx, "One or more added object references already exist for the following modified properties: 'members'.")
        } else {
            not_found(ctx, uid)
        };
    }
    let op = Op::UpdateUser {
        user: obj(uid),
        name: None,
        admin_roles: Some(roles.into_iter().collect()),
        upn: None,
        usage_location: None,
    };
    match exec(shared, ctx, &op, uid).await {
        Ok(_) => Answer::empty(204),
        Err(a) => a,
    }
}
