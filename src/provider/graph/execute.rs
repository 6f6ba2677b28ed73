//! Executing the directory's ops (issue 12 item 4); membership changes are in `members.rs`.
//!
//! Requests (Graph v1.0 reference):
//! - user-post-users: `POST /users {accountEnabled, displayName, mailNickname,
//!   userPrincipalName, passwordProfile{forceChangePasswordNextSignIn, password},
//!   usageLocation}` -> 201 with the user; a duplicate UPN answers 400;
//! - user-update: `PATCH /users/{id}` -> 204; user-delete: `DELETE /users/{id}` -> 204;
//! - group-post-groups: `POST /groups {displayName, mailEnabled:false, mailNickname,
//!   securityEnabled:true, description}` -> 201; group-update `PATCH /groups/{id}`;
//!   group-delete `DELETE /groups/{id}` (security groups are deleted for good);
//! - user-assignlicense: `POST /users/{id}/assignLicense {addLicenses:[{skuId,
//!   disabledPlans}], removeLicenses:[skuId]}` -> 200 (needs the user's usageLocation);
//! - directoryrole-post-members: `POST /directoryRoles/roleTemplateId={t}/members/$ref
//!   {"@odata.id"}` -> 204; directoryrole-delete-member: `DELETE
//!   /directoryRoles/roleTemplateId={t}/members/{id}/$ref` -> 204;
//! - a lost answer to a create is looked up by natural key (`$filter=userPrincipalName eq`,
//!   `$filter=displayName eq` among security groups) before anything is retried.
//!
//! Graph has no API that buys licences, storage or instances (subscriptions are read-only),
//! and instances, security roles and access modes are the next issue's (Power Platform):
//! those ops are refused with what to do instead.

use serde_json::{json, Map, Value};

use super::observe::{country, Assigned};
use super::wire::{self, query_value, V1};
use super::{id_of, GraphProvider, ADMIN_ROLE_TEMPLATES};
use crate::domain::kinds::{AccessMode, AdminRole, LicensePlan};
use crate::domain::op::{ObjKind, ObjRef, Op};
use crate::provider::{Executed, Outcome, ProviderError};

pub(super) async fn execute(p: &GraphProvider, op: &Op) -> Result<Executed, ProviderError> {
    match op {
        // P3: an application user is no directory user; on a Microsoft tenant it is each
        // instance's system user bound to an app registration (the composed provider sends
        // it to Dataverse). Graph never creates one.
        Op::CreateUser {
            upn,
            access_mode: AccessMode::Application,
            ..
        } => Err(ProviderError::Invalid(format!(
            "{upn} is an application user: it is no directory user; it is created in each instance's Dataverse, never in the directory"
        ))),
        Op::CreateUser {
            upn,
            name,
            usage_location,
            ..
        } => create_user(p, upn, name, usage_location.as_deref()).await,
        Op::UpdateUser {
            user,
            name,
            admin_roles,
            upn,
            usage_location,
        } => {
            let id = id_of(user)?;
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("displayName".into(), json!(name));
            }
            if let Some(upn) = upn {
                body.insert("userPrincipalName".into(), json!(upn));
            }
            // user-update: `usageLocation` is writable (learn.microsoft.com/graph/api/user-update).
            if let Some(loc) = usage_location {
                body.insert("usageLocation".into(), json!(loc));
            }
            if !body.is_empty() {
                let req = wire::graph("PATCH", format!("{V1}/users/{id}"), Value::Object(body), true);
                expect_ok(p.send_dep(req, &[id]).await?, &format!("updating user {id}"))?;
            }
            if let Some(roles) = admin_roles {
                // P6: each admin role is a directory role, added or removed by one
                // idempotent request each.
                for (role, template) in ADMIN_ROLE_TEMPLATES {
                    set_admin_role(p, id, role, template, roles.contains(&role)).await?;
                }
            }
            done()
        }
        Op::DeleteUser { user } => delete(p, format!("{V1}/users/{}", id_of(user)?), id_of(user)?).await,
        Op::CreateGroup { name, description } => create_group(p, name, description).await,
        Op::UpdateGroup {
            group,
            name,
            description,
        } => {
            let id = id_of(group)?;
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("displayName".into(), json!(name));
            }
            if let Some(d) = description {
                // Graph refuses an empty description: clear it with null.
                let d = if d.is_empty() { Value::Null } else { json!(d) };
                body.insert("description".into(), d);
            }
            if !body.is_empty() {
                let req = wire::graph("PATCH", format!("{V1}/groups/{id}"), Value::Object(body), true);
                expect_ok(p.send_dep(req, &[id]).await?, &format!("updating group {id}"))?;
            }
            done()
        }
        Op::DeleteGroup { group } => delete(p, format!("{V1}/groups/{}", id_of(group)?), id_of(group)?).await,
        Op::AssignLicense { user, plan } => set_license(p, user, Some(*plan)).await,
        Op::RemoveLicense { user } => set_license(p, user, None).await,
        Op::Adopt { kind, id, .. } => {
            let path = match kind {
                ObjKind::User => "users",
                ObjKind::Group => "groups",
                ObjKind::Instance => return Err(next_issue("adopting an instance")),
            };
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(ProviderError::Invalid(format!("`{id}` is not a directory object id")));
            }
            let req = wire::graph_bare("GET", format!("{V1}/{path}/{id}?$select=id"));
            let resp = p.send_dep(req, &[id]).await?;
            if resp.status == 404 {
                return Err(ProviderError::NotFound(format!("{kind:?} {id} (to adopt)")));
            }
            expect_ok(resp, &format!("reading {path}/{id}"))?;
            done()
        }
        Op::PurchaseLicenses { plan, to } | Op::ReduceLicenses { plan, to } => {
            Err(ProviderError::Invalid(format!(
                "Microsoft Graph has no API to buy or cancel licences: in the Microsoft 365 admin center (Billing > Your products), set the subscription of {} (SKU {}) to {to} licences, then plan again",
                plan.as_str(),
                p.skus().part_number(*plan)
            )))
        }
        Op::PurchaseStorage { to_gb } | Op::ReduceStorage { to_gb } => Err(ProviderError::Invalid(format!(
            "no Microsoft API buys storage: in the Microsoft 365 admin center, set the storage add-on to {to_gb} GB, then plan again"
        ))),
        Op::PurchaseInstance { kind } => Err(ProviderError::Invalid(format!(
            "no Microsoft API buys an instance slot: buy a {} instance add-on in the Microsoft 365 admin center, then plan again",
            kind.as_str()
        ))),
        other => Err(next_issue(other.kind().as_str())),
    }
}

fn next_issue(what: &str) -> ProviderError {
    ProviderError::Invalid(format!(
        "{what}: instances, security roles and access modes go through the Power Platform admin API and Dataverse, which the Microsoft backend does not reach yet; manage them in the Power Platform admin center"
    ))
}

fn done() -> Result<Executed, ProviderError> {
    Ok(Executed::Done(Outcome::default()))
}

fn expect_ok(resp: crate::provider::http::Response, what: &str) -> Result<(), ProviderError> {
    if resp.ok() {
        Ok(())
    } else {
        Err(wire::graph_error(&resp, what))
    }
}

async fn delete(p: &GraphProvider, url: String, id: &str) -> Result<Executed, ProviderError> {
    let resp = p.send_dep(wire::graph_bare("DELETE", url), &[id]).await?;
    expect_ok(resp, &format!("deleting {id}"))?;
    done()
}

/// `mailNickname` from the UPN's local part: ASCII letters, digits, `.`, `_`, `-`.
pub(super) fn mail_nickname(s: &str) -> String {
    let local = s.split('@').next().unwrap_or("");
    let nick: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    let nick = nick.trim_matches('.').to_string();
    if nick.is_empty() {
        "crmctl".to_string()
    } else {
        nick
    }
}

/// A temporary password: 20 characters from the OS's random source, with upper and lower
/// case letters, digits and symbols (Graph's password policy needs 3 of the 4). It lives
/// only in the request body: never in a message, log, outcome or state.
pub(super) fn temporary_password() -> Result<String, ProviderError> {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"!#%+-=?_";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| {
        ProviderError::Backend(format!("no random source for a temporary password: {e}"))
    })?;
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SYMBOL].concat();
    let out: String = bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let set = match i {
                0 => UPPER,
                1 => LOWER,
                2 => DIGIT,
                3 => SYMBOL,
                _ => &all[..],
            };
            set[*b as usize % set.len()] as char
        })
        .collect();
    Ok(out)
}

async fn create_user(
    p: &GraphProvider,
    upn: &str,
    name: &str,
    usage_location: Option<&str>,
) -> Result<Executed, ProviderError> {
    let mut body = json!({
        "accountEnabled": true,
        "displayName": name,
        "mailNickname": mail_nickname(upn),
        "userPrincipalName": upn,
        "passwordProfile": {
            "forceChangePasswordNextSignIn": true,
            "password": temporary_password()?,
        },
    });
    // Licences need a usage location (user resource: `usageLocation`, "required for users
    // who will be assigned licenses"): the file's, else the tenant's country.
    let location = match usage_location {
        Some(l) => Some(l.to_string()),
        None => country(p).await?,
    };
    if let Some(c) = location {
        body["usageLocation"] = json!(c);
    }
    let lookup_url = format!(
        "{V1}/users?$filter=userPrincipalName%20eq%20'{}'&$select=id",
        query_value(upn)
    );
    create(p, "users", body, format!("creating user {upn}"), lookup_url).await
}

async fn create_group(
    p: &GraphProvider,
    name: &str,
    description: &str,
) -> Result<Executed, ProviderError> {
    let mut body = json!({
        "displayName": name,
        "mailEnabled": false,
        "mailNickname": mail_nickname(name),
        "securityEnabled": true,
    });
    if !description.is_empty() {
        body["description"] = json!(description);
    }
    let lookup_url = format!(
        "{V1}/groups?$filter=displayName%20eq%20'{}'%20and%20securityEnabled%20eq%20true&$select=id",
        query_value(name)
    );
    create(
        p,
        "groups",
        body,
        format!("creating group {name}"),
        lookup_url,
    )
    .await
}

/// `POST /{collection}` a new object; a lost answer is looked up at `lookup_url` (its
/// natural key) before anything else.
async fn create(
    p: &GraphProvider,
    collection: &str,
    body: Value,
    what: String,
    lookup_url: String,
) -> Result<Executed, ProviderError> {
    let req = wire::graph("POST", format!("{V1}/{collection}"), body, false);
    match p.http.send(req).await {
        Ok(resp) if resp.ok() => created(p, resp, &what),
        Ok(resp) => Err(wire::graph_error(&resp, &what)),
        Err(ProviderError::OutcomeUnknown(why)) => lookup(p, lookup_url, why, &what).await,
        Err(e) => Err(e),
    }
}

fn created(
    p: &GraphProvider,
    resp: crate::provider::http::Response,
    what: &str,
) -> Result<Executed, ProviderError> {
    let v: Value = resp.json()?;
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::Backend(format!("{what}: the answer has no id")))?;
    p.remember(id);
    Ok(Executed::Done(Outcome::created(id)))
}

/// After a create whose answer was lost: found by its natural key = created (once);
/// not found = still unknown (the directory may not show it yet), never a second create.
async fn lookup(
    p: &GraphProvider,
    url: String,
    why: String,
    what: &str,
) -> Result<Executed, ProviderError> {
    let found = match wire::get_all(&*p.http, url, what).await {
        Ok(found) => found,
        Err(_) => return Err(ProviderError::OutcomeUnknown(why)),
    };
    match found.as_slice() {
        [one] => match one.get("id").and_then(Value::as_str) {
            Some(id) => {
                p.remember(id);
                Ok(Executed::Done(Outcome::created(id)))
            }
            None => Err(ProviderError::OutcomeUnknown(why)),
        },
        _ => Err(ProviderError::OutcomeUnknown(why)),
    }
}

/// Make user `id` a member of the directory role `template` (P6), or not: `POST
/// .../members/$ref` (400 "already exist" is done), `DELETE .../members/{id}/$ref` (404 is
/// done). A role the tenant never activated answers 404 to the add: it is activated first
/// (directoryrole-post-directoryroles: `POST /directoryRoles {roleTemplateId}`).
async fn set_admin_role(
    p: &GraphProvider,
    id: &str,
    role: AdminRole,
    template: &str,
    on: bool,
) -> Result<(), ProviderError> {
    let base = format!("{V1}/directoryRoles/roleTemplateId={template}/members");
    if on {
        let add = || {
            wire::graph(
                "POST",
                format!("{base}/$ref"),
                json!({"@odata.id": p.object_ref(id)}),
                false,
            )
        };
        let mut resp = p.send_dep(add(), &[id]).await?;
        if resp.status == 404 {
            let activate = wire::graph(
                "POST",
                format!("{V1}/directoryRoles"),
                json!({"roleTemplateId": template}),
                false,
            );
            let r = p.http.send(activate).await?;
            if !r.ok() && !wire::is_already_there(&r) && r.status != 409 {
                return Err(wire::graph_error(
                    &r,
                    &format!("activating the {role:?} role"),
                ));
            }
            resp = p.send_dep(add(), &[id]).await?;
        }
        if resp.ok() || wire::is_already_there(&resp) {
            return Ok(());
        }
        Err(wire::graph_error(
            &resp,
            &format!("giving {id} the {role:?} role"),
        ))
    } else {
        let resp = p
            .send_dep(wire::graph_bare("DELETE", format!("{base}/{id}/$ref")), &[])
            .await?;
        if resp.ok() || resp.status == 404 {
            return Ok(());
        }
        Err(wire::graph_error(
            &resp,
            &format!("removing the {role:?} role from {id}"),
        ))
    }
}

/// Give user `id` the licence of `plan` (or none): read its `assignedLicenses`, then one
/// `assignLicense` that adds the plan's SKU and removes crmctl's other SKUs (T3: one).
async fn set_license(
    p: &GraphProvider,
    user: &ObjRef,
    plan: Option<LicensePlan>,
) -> Result<Executed, ProviderError> {
    let id = id_of(user)?;
    // The file's SKU overrides name the offer the tenant holds (issue 12 item 4).
    p.ensure_skus().await?;
    let table = p.skus().clone();
    let req = wire::graph_bare(
        "GET",
        format!("{V1}/users/{id}?$select=id,assignedLicenses"),
    );
    let resp = p.send_dep(req, &[id]).await?;
    if !resp.ok() {
        return Err(wire::graph_error(
            &resp,
            &format!("reading the licences of {id}"),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Licensed {
        #[serde(default, rename = "assignedLicenses")]
        licenses: Vec<Assigned>,
    }
    let held: Licensed = resp.json()?;
    let want = plan.map(|pl| table.sku_id(pl).to_string());
    let has_want = want.as_ref().is_some_and(|w| {
        held.licenses
            .iter()
            .any(|a| a.sku_id.eq_ignore_ascii_case(w))
    });
    let remove: Vec<&str> = held
        .licenses
        .iter()
        .filter(|a| table.plan_of_sku_id(&a.sku_id).is_some())
        .filter(|a| {
            want.as_ref()
                .is_none_or(|w| !a.sku_id.eq_ignore_ascii_case(w))
        })
        .map(|a| a.sku_id.as_str())
        .collect();
    let add: Vec<Value> = match &want {
        Some(w) if !has_want => vec![json!({"skuId": w, "disabledPlans": []})],
        _ => vec![],
    };
    if add.is_empty() && remove.is_empty() {
        return done();
    }
    let body = json!({"addLicenses": add, "removeLicenses": remove});
    let req = wire::graph("POST", format!("{V1}/users/{id}/assignLicense"), body, true);
    let resp = p.send_dep(req, &[id]).await?;
    if resp.ok() {
        return done();
    }
    let (_, message) = wire::error_of(&resp);
    if resp.status == 400 && message.to_ascii_lowercase().contains("usage location") {
        return Err(ProviderError::Invalid(format!(
            "assigning a licence to {} ({id}): the user has no usage location and the tenant has no country to default to (Graph needs one for licences): give the user `usage_location` in the file (e.g. `usage_location: US`), then apply again",
            user.address
        )));
    }
    Err(wire::graph_error(
        &resp,
        &format!("assigning licences to {id}"),
    ))
}
