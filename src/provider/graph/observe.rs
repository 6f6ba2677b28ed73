//! Reading the directory half of a tenant (issue 12 item 4).
//!
//! Requests (Graph v1.0 reference):
//! - `GET /organization?$select=id,countryLetterCode,verifiedDomains` (organization-get:
//!   `verifiedDomains[].isInitial` names the `*.onmicrosoft.com` domain);
//! - `GET /subscribedSkus` (subscribedsku-list: `skuId`, `skuPartNumber`,
//!   `prepaidUnits.enabled`, `consumedUnits`);
//! - `GET /users?$select=...&$top=999` (user-list: `assignedLicenses` only when selected;
//!   `$top` 1..999), each `@odata.nextLink` followed verbatim;
//! - `GET /groups?$filter=securityEnabled eq true and mailEnabled eq false&$select=...&$top=999`
//!   (group-list; security groups are mail-disabled and security-enabled);
//! - `GET /groups/{id}/members?$select=id&$top=999` for each group, 20 to a `$batch`
//!   (group-list-members, json-batching);
//! - `GET /directoryRoles/roleTemplateId={template}/members?$select=id` for each admin role of
//!   P6, the five in one `$batch` (directoryrole-list-members: "You can use both the object
//!   ID and template ID of the directoryRole").
//!
//! Who last changed a user or a group (issue 14 item 2) is not read: Graph v1.0's `user`
//! has no last-modified property, and a `group`'s `renewedDateTime` is only moved by the
//! renew action of the expiration policy (learn.microsoft.com/graph/api/resources/group,
//! group-renew), not by a change; `Tenant::changed` stays empty for them (the directory
//! audit log would tell, at the price of more requests and permissions).
//!
//! Instance slots and storage bought are add-on SKUs of `subscribedSkus` (`skus::ADDONS`).
//! Not read here (the next issue, Power Platform admin API and Dataverse): instances,
//! security roles, access modes (every user is `read-write`), storage in use, versions.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use super::skus::{self, AddOn};
use super::wire::{self, BatchItem, V1};
use super::{GraphProvider, ADMIN_ROLE_TEMPLATES};
use crate::domain::kinds::{AccessMode, AdminRole, LicensePlan};
use crate::domain::op::ObjKind;
use crate::observed::{Group, Tenant, User};
use crate::provider::{ProviderError, Scope};

/// What crmctl reads of a user (the fields it manages, and what decides whether it may).
pub const USER_SELECT: &str =
    "id,userPrincipalName,displayName,assignedLicenses,accountEnabled,usageLocation,onPremisesSyncEnabled";

#[derive(Deserialize)]
struct Organization {
    #[serde(default, rename = "countryLetterCode")]
    country: Option<String>,
    #[serde(default, rename = "verifiedDomains")]
    domains: Vec<Domain>,
}

#[derive(Deserialize)]
struct Domain {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "isInitial")]
    initial: bool,
}

#[derive(Deserialize)]
struct Sku {
    #[serde(rename = "skuId")]
    sku_id: String,
    #[serde(default, rename = "skuPartNumber")]
    part: String,
    #[serde(default, rename = "prepaidUnits")]
    prepaid: Prepaid,
}

#[derive(Deserialize, Default)]
struct Prepaid {
    #[serde(default)]
    enabled: u32,
}

#[derive(Deserialize)]
struct GraphUser {
    id: String,
    #[serde(default, rename = "userPrincipalName")]
    upn: String,
    #[serde(default, rename = "displayName")]
    name: Option<String>,
    #[serde(default, rename = "assignedLicenses")]
    licenses: Vec<Assigned>,
    #[serde(default, rename = "usageLocation")]
    usage_location: Option<String>,
    /// user resource: "true if this user object is currently being synced from an
    /// on-premises Active Directory (AD); otherwise the user isn't being synced and can be
    /// managed in Microsoft Entra ID" (null for cloud users).
    #[serde(default, rename = "onPremisesSyncEnabled")]
    synced: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct Assigned {
    #[serde(rename = "skuId")]
    pub(super) sku_id: String,
}

#[derive(Deserialize)]
struct GraphGroup {
    id: String,
    #[serde(default, rename = "displayName")]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// `GET /organization`: the initial domain and the country (cached for creates).
async fn organization(p: &GraphProvider) -> Result<(String, Option<String>), ProviderError> {
    let url = format!("{V1}/organization?$select=id,countryLetterCode,verifiedDomains");
    let orgs = wire::get_all(&*p.http, url, "reading the organization").await?;
    let org: Organization = match orgs.into_iter().next() {
        Some(v) => serde_json::from_value(v)
            .map_err(|e| ProviderError::Backend(format!("unreadable organization: {e}")))?,
        None => {
            return Err(ProviderError::Backend(
                "GET /organization listed no organization".into(),
            ))
        }
    };
    let domain = org
        .domains
        .iter()
        .find(|d| d.initial)
        .map(|d| d.name.clone())
        .unwrap_or_default();
    let country = org.country.filter(|c| !c.is_empty());
    let _ = p.country.set(country.clone());
    Ok((domain, country))
}

/// The tenant's country (`countryLetterCode`), read once: a new user's `usageLocation`.
pub(super) async fn country(p: &GraphProvider) -> Result<Option<String>, ProviderError> {
    if let Some(c) = p.country.get() {
        return Ok(c.clone());
    }
    Ok(organization(p).await?.1)
}

pub(super) async fn observe(p: &GraphProvider, scope: &Scope) -> Result<Tenant, ProviderError> {
    let mut tenant = tenant_level(p).await?;
    if scope.has_kind(ObjKind::User) {
        let admins = admin_roles(p).await?;
        for v in user_values(p).await? {
            let u = user_from(p, &v, &admins)?;
            tenant.users.insert(u.id.clone(), u);
        }
    }
    if scope.has_kind(ObjKind::Group) {
        for g in security_groups(p).await? {
            tenant.groups.insert(g.id.clone(), g);
        }
    }
    Ok(tenant)
}

/// The tenant without users and groups: its domain and licence counts (read on every
/// observe, also an incremental one).
pub(super) async fn tenant_level(p: &GraphProvider) -> Result<Tenant, ProviderError> {
    let http = &*p.http;
    let (domain, _) = organization(p).await?;
    let mut tenant = Tenant {
        domain,
        ..Tenant::default()
    };

    // Licence counts: prepaidUnits.enabled of each SKU the table maps to a plan; instance
    // slots and database storage: prepaidUnits.enabled of each add-on SKU (I2, T6, T8),
    // times its unit (one slot, `GB_PER_UNIT` GB). An add-on the tenant does not hold is
    // not listed: 0 bought.
    let skus = wire::get_all(
        http,
        format!("{V1}/subscribedSkus"),
        "reading subscribedSkus",
    )
    .await?;
    let skus: Vec<Sku> = skus
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Sku>(v).ok())
        .collect();
    // The file's overrides (`skus:`) take their ids or part numbers from this list.
    let listed: Vec<(String, String)> = skus
        .iter()
        .map(|s| (s.sku_id.clone(), s.part.clone()))
        .collect();
    p.resolve_skus(&listed)?;
    let table = p.skus().clone();
    for sku in skus {
        if let Some(plan) = table.plan_of_sku_id(&sku.sku_id) {
            *tenant.licenses.entry(plan).or_insert(0) += sku.prepaid.enabled;
            continue;
        }
        let units = sku.prepaid.enabled;
        match skus::addon_of_sku_id(&sku.sku_id) {
            Some(AddOn::ProductionSlot) => tenant.slots.production += units,
            Some(AddOn::SandboxSlot) => tenant.slots.sandbox += units,
            Some(AddOn::DatabaseStorage) => {
                tenant.storage.additional_gb += units.saturating_mul(skus::GB_PER_UNIT)
            }
            // File and log capacity, and SKUs that are not crmctl's (Office, Entra).
            Some(AddOn::FileStorage | AddOn::LogStorage) | None => {}
        }
    }
    Ok(tenant)
}

/// The tenant admin roles (P6) of each user that holds one: the members of each role of
/// [`ADMIN_ROLE_TEMPLATES`], the five reads in one `$batch` (one request; also on
/// incremental reads). A role the tenant never activated answers 404: no members.
pub(super) async fn admin_roles(
    p: &GraphProvider,
) -> Result<BTreeMap<String, BTreeSet<AdminRole>>, ProviderError> {
    let http = &*p.http;
    let items: Vec<BatchItem> = ADMIN_ROLE_TEMPLATES
        .iter()
        .map(|(_, t)| BatchItem {
            method: "GET",
            url: format!("/directoryRoles/roleTemplateId={t}/members?$select=id"),
            body: None,
        })
        .collect();
    let answers = wire::batch(http, &items).await;
    let mut out: BTreeMap<String, BTreeSet<AdminRole>> = BTreeMap::new();
    for ((role, _), (item, answer)) in ADMIN_ROLE_TEMPLATES.iter().zip(items.iter().zip(answers)) {
        let what = format!("reading the members of the {role:?} role");
        let members = match answer {
            Ok(resp) if resp.ok() => {
                let page: Value = resp.json()?;
                wire::rest_of(http, page, &what).await?
            }
            Ok(resp) if resp.status == 404 => vec![],
            // An item the batch could not serve (throttled, failed): read it alone, the
            // transport retries it.
            _ => match wire::get_all(http, format!("{V1}{}", item.url), &what).await {
                Err(ProviderError::NotFound(_)) => vec![],
                other => other?,
            },
        };
        for id in members.iter().filter_map(user_member) {
            out.entry(id).or_default().insert(*role);
        }
    }
    Ok(out)
}

/// Every user as Graph gives it (the `$select`ed properties).
pub(super) async fn user_values(p: &GraphProvider) -> Result<Vec<Value>, ProviderError> {
    let url = format!("{V1}/users?$select={USER_SELECT}&$top=999");
    wire::get_all(&*p.http, url, "reading users").await
}

/// A user of the observed tenant from its Graph JSON.
pub(super) fn user_from(
    p: &GraphProvider,
    v: &Value,
    admins: &BTreeMap<String, BTreeSet<AdminRole>>,
) -> Result<User, ProviderError> {
    let u = GraphUser::deserialize(v)
        .map_err(|e| ProviderError::Backend(format!("unreadable user: {e}")))?;
    Ok(user(p, u, admins))
}

/// Every security group with its direct user members.
pub(super) async fn security_groups(p: &GraphProvider) -> Result<Vec<Group>, ProviderError> {
    let http = &*p.http;
    let url = format!(
        "{V1}/groups?$filter=securityEnabled%20eq%20true%20and%20mailEnabled%20eq%20false&$select=id,displayName,description&$top=999"
    );
    let groups: Vec<GraphGroup> = wire::get_all(http, url, "reading groups")
        .await?
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .map_err(|e| ProviderError::Backend(format!("unreadable group: {e}")))?;
    let items: Vec<BatchItem> = groups
        .iter()
        .map(|g| BatchItem {
            method: "GET",
            url: format!("/groups/{}/members?$select=id&$top=999", g.id),
            body: None,
        })
        .collect();
    let answers = wire::batch(http, &items).await;
    let mut out = Vec::with_capacity(groups.len());
    for (g, answer) in groups.into_iter().zip(answers) {
        let what = format!("reading the members of group {}", g.id);
        let members = match answer {
            Ok(resp) if resp.ok() => {
                let page: Value = resp.json()?;
                wire::rest_of(http, page, &what).await?
            }
            // An item the batch could not serve (throttled, failed): read it alone, the
            // transport retries it.
            _ => wire::get_all(http, format!("{V1}{}", items_url(&g.id)), &what).await?,
        };
        out.push(Group {
            id: g.id,
            name: g.name.unwrap_or_default(),
            description: g.description.unwrap_or_default(),
            members: members.iter().filter_map(user_member).collect(),
        });
    }
    Ok(out)
}

fn items_url(gid: &str) -> String {
    format!("/groups/{gid}/members?$select=id&$top=999")
}

/// A member that is a user (groups may also hold devices, groups, service principals).
pub(super) fn user_member(v: &Value) -> Option<String> {
    let kind = v.get("@odata.type").and_then(Value::as_str);
    if kind.is_some_and(|k| k != "#microsoft.graph.user") {
        return None;
    }
    v.get("id").and_then(Value::as_str).map(str::to_string)
}

fn user(p: &GraphProvider, u: GraphUser, admins: &BTreeMap<String, BTreeSet<AdminRole>>) -> User {
    let license: Option<LicensePlan> = u
        .licenses
        .iter()
        .find_map(|a| p.skus().plan_of_sku_id(&a.sku_id));
    let admin_roles = admins.get(&u.id).cloned().unwrap_or_default();
    User {
        id: u.id,
        upn: u.upn,
        name: u.name.unwrap_or_default(),
        license,
        access_mode: AccessMode::ReadWrite,
        roles: BTreeMap::new(),
        admin_roles,
        usage_location: u.usage_location.filter(|l| !l.is_empty()),
        synced: u.synced == Some(true),
        application_id: None,
    }
}
