//! Security roles and access modes through the Dataverse Web API of each instance
//! (issue 13 item 2): a [`DataverseClient`] over any [`Http`] (the real transport, the
//! emulator over loopback, a fake in unit tests).
//!
//! How the composite Microsoft provider uses it:
//! - observe: for each observed instance, [`DataverseClient::observe_instance`] (or
//!   [`DataverseClient::observe_base`] with the admin API's `instanceUrl`) gives an
//!   [`InstanceUsers`]; [`merge`] (pure) puts it into the [`Tenant`] that Graph and the
//!   admin API observed: each `observed::User` (keyed by its directory object id) gets
//!   its roles in that instance and its access mode, the instance its base currency and
//!   language;
//! - execute: [`DataverseClient::execute`] runs `SetAccessMode`, `AssignRoles` and
//!   `RemoveRoles` in one instance, given its base URL. `SetAccessMode` names no instance
//!   (P3/P4: the mode is the user's): the caller runs it in each instance the user is in.
//!
//! Requests (Web API reference, learn.microsoft.com/power-apps/developer/data-platform/
//! webapi/reference/{systemuser,role,businessunit,organization,transactioncurrency}):
//! - `GET businessunits?$select=businessunitid&$filter=_parentbusinessunitid_value eq null`
//!   (the root business unit: the one without a parent);
//! - `GET organizations?$select=languagecode,_basecurrencyid_value`, then
//!   `GET transactioncurrencies({id})?$select=isocurrencycode`;
//! - `GET systemusers?$select=systemuserid,azureactivedirectoryobjectid,accessmode,
//!   applicationid,isdisabled,domainname&$expand=systemuserroles_association($select=
//!   roleid,name,_businessunitid_value)` in pages of 5,000 (`Prefer: odata.maxpagesize`);
//! - roles by name: `GET roles?$select=roleid,name&$filter=_businessunitid_value eq {root}
//!   and (name eq '..' or ...)`;
//! - associate / disassociate (webapi/associate-disassociate-entities-using-web-api):
//!   `POST systemusers({id})/systemuserroles_association/$ref {"@odata.id":
//!   "{base}/api/data/v9.2/roles({roleid})"}`, `DELETE systemusers({id})/
//!   systemuserroles_association({roleid})/$ref`;
//! - access mode: `PATCH systemusers({id}) {"accessmode": n}` with `If-Match: *`
//!   (systemuser `accessmode`: 0 read-write, 1 administrative, 2 read, 3 support user,
//!   4 non-interactive, 5 delegated admin).
//!
//! Application users (P3; `execute.rs`, [`app_user_id`]): a system user bound to an app
//! registration by `applicationid` (the app's client id), not a directory user, holding no
//! licence. Created in each instance with `POST systemusers {applicationid,
//! "businessunitid@odata.bind": "/businessunits({root})", internalemailaddress, lastname}`
//! (learn.microsoft.com/power-platform/admin/manage-application-users: one application
//! user per app registration in an environment, and deletion only of a deactivated one; the
//! Web API create needs the business unit besides the application id and takes the primary
//! email and the name: inogic's "Programmatically Creating or Updating Application User in
//! Dynamics 365", inogic10.rssing.com/chan-6516215/article1743.html; systemuser `isdisabled`:
//! learn.microsoft.com/power-apps/developer/data-platform/reference/entities/systemuser);
//! looked up by `applicationid` first, so that a create is never sent twice. Removal
//! deactivates it (`PATCH {"isdisabled": true}`): the admin center deletes an application
//! user only once it is deactivated and its records are reassigned, which crmctl leaves
//! to a person. crmctl names an application user `app:{applicationid}` (lower case), its
//! principal name is the system user's primary email, its name the full name.

mod execute;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::domain::kinds::AccessMode;
use crate::observed::{Instance, LastChange, Tenant};
use crate::provider::http::Http;
use crate::provider::ProviderError;

use wire::{get_all, API};

/// The public cloud's default Dataverse template, whose host is per region (I6).
pub const PUBLIC_TEMPLATE: &str = "https://{url}.crm.dynamics.com";

/// The `$select` of a system user. `modifiedon` and `_modifiedby_value` (the system user
/// who last changed the row; issue 14 item 2) are columns of every Dataverse table
/// (webapi/reference/systemuser; recorded in terraform-provider-power-platform,
/// internal/services/authorization/tests/resource/user/Validate_Create/
/// get_systemuser_00000000-0000-0000-0000-000000000002.json): read in the same request.
pub const USER_SELECT: &str = "systemuserid,azureactivedirectoryobjectid,accessmode,applicationid,isdisabled,domainname,internalemailaddress,fullname,modifiedon,_modifiedby_value";

/// The prefix of crmctl's id of an application user: `app:{applicationid}`.
pub const APP_PREFIX: &str = "app:";

/// crmctl's id of the application user bound to the app registration `application_id`.
pub fn app_user_id(application_id: &str) -> String {
    format!("{APP_PREFIX}{}", application_id.to_ascii_lowercase())
}

/// The application id an `app:` user id stands for.
pub fn application_of(user_id: &str) -> Option<&str> {
    user_id.strip_prefix(APP_PREFIX)
}

/// The `$expand` of a system user's roles.
pub const ROLES_EXPAND: &str =
    "systemuserroles_association($select=roleid,name,_businessunitid_value)";

/// How long a user that the directory has and the instance not yet (Dataverse
/// synchronises new directory users into an instance with a delay) is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncWait {
    /// How long, in all.
    pub window: Duration,
    /// First wait; doubles each time.
    pub first_delay: Duration,
}

impl Default for SyncWait {
    fn default() -> Self {
        SyncWait {
            window: Duration::from_secs(300),
            first_delay: Duration::from_secs(2),
        }
    }
}

/// One system user of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemUser {
    /// `systemuserid`.
    pub id: String,
    /// `azureactivedirectoryobjectid`: the directory object id (a user's, or an
    /// application user's service principal's).
    pub object_id: String,
    /// `domainname` (the user principal name of a directory user).
    pub domain_name: String,
    /// `accessmode` as the service says it.
    pub access_mode: i64,
    /// `applicationid`: set for application users.
    pub application_id: Option<String>,
    /// `isdisabled`.
    pub disabled: bool,
    /// `internalemailaddress` (an application user's principal name in crmctl's terms).
    pub email: String,
    /// `fullname`.
    pub name: String,
    /// Its roles in the root business unit: name -> role id.
    pub roles: BTreeMap<String, String>,
    /// Who last changed the row and when (`modifiedby`, `modifiedon`; issue 14 item 2).
    pub changed: Option<LastChange>,
}

impl SystemUser {
    /// The access mode in crmctl's terms (P3); `None` for read, support user and delegated
    /// admin, which crmctl does not manage.
    pub fn mode(&self) -> Option<AccessMode> {
        if self.application_id.is_some() {
            return Some(AccessMode::Application);
        }
        match self.access_mode {
            0 => Some(AccessMode::ReadWrite),
            1 => Some(AccessMode::Administrative),
            4 => Some(AccessMode::NonInteractive),
            _ => None,
        }
    }
}

/// The value of `accessmode` for `mode` (`None` for application users: created as such, P3).
pub fn access_mode_code(mode: AccessMode) -> Option<i64> {
    match mode {
        AccessMode::ReadWrite => Some(0),
        AccessMode::Administrative => Some(1),
        AccessMode::NonInteractive => Some(4),
        AccessMode::Application => None,
    }
}

/// What one instance's Dataverse says of its users and itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceUsers {
    /// The instance's base URL.
    pub base: String,
    /// The root business unit's id.
    pub root_business_unit: String,
    /// The organisation's base currency (ISO 4217), when readable.
    pub currency: Option<String>,
    /// The organisation's base language (LCID).
    pub language: Option<u32>,
    /// System users with a directory object id, by that id (application users apart).
    pub users: BTreeMap<String, SystemUser>,
    /// Enabled application users (P3), by application id in lower case.
    pub apps: BTreeMap<String, SystemUser>,
}

/// What [`merge`] could not place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// System users whose object id is no user of the tenant (application users whose
    /// service principal Graph does not list as a user; users deleted from the directory).
    pub unknown: Vec<String>,
    /// Users whose access mode crmctl does not manage (read, support, delegated admin),
    /// with the service's value.
    pub unmanaged_modes: Vec<(String, i64)>,
}

/// Issue 14 item 2: a user is a row in each instance; its last change is the latest.
fn note_change(tenant: &mut Tenant, user_id: &str, c: &LastChange) {
    let latest = match tenant.changed.users.remove(user_id) {
        Some(had) => had.later(c.clone()),
        None => c.clone(),
    };
    tenant.changed.users.insert(user_id.to_string(), latest);
}

/// Put what `found` says of instance `instance_id` into `tenant` (pure, O(n log n)):
/// each system user's roles go to `User::roles[instance_id]` (an empty set removes the
/// entry), its access mode to `User::access_mode`, the organisation's currency and
/// language to the instance. A user is in several instances but has one access mode: the
/// most specific mode wins (application > non-interactive > administrative > read-write),
/// so that the order of merges does not matter and a mode set anywhere is seen.
pub fn merge(tenant: &mut Tenant, instance_id: &str, found: &InstanceUsers) -> MergeReport {
    let mut report = MergeReport::default();
    if let Some(inst) = tenant.instances.get_mut(instance_id) {
        if let Some(c) = &found.currency {
            inst.currency = c.clone();
        }
        if let Some(l) = found.language {
            inst.language = l;
        }
    }
    // P3: application users are no directory users: they come from the instances.
    for (app, su) in &found.apps {
        let user = tenant
            .users
            .entry(app_user_id(app))
            .or_insert_with(|| crate::observed::User {
                id: app_user_id(app),
                upn: if su.email.is_empty() {
                    su.domain_name.clone()
                } else {
                    su.email.clone()
                },
                name: su.name.clone(),
                license: None,
                access_mode: AccessMode::Application,
                roles: BTreeMap::new(),
                admin_roles: Default::default(),
                usage_location: None,
                synced: false,
                application_id: Some(app.clone()),
            });
        if !su.roles.is_empty() {
            user.roles
                .insert(instance_id.to_string(), su.roles.keys().cloned().collect());
        }
        if let Some(c) = &su.changed {
            note_change(tenant, &app_user_id(app), c);
        }
    }
    for (oid, su) in &found.users {
        let Some(user) = tenant.users.get_mut(oid) else {
            report.unknown.push(oid.clone());
            continue;
        };
        if su.roles.is_empty() {
            user.roles.remove(instance_id);
        } else {
            user.roles
                .insert(instance_id.to_string(), su.roles.keys().cloned().collect());
        }
        match su.mode() {
            Some(m) if rank(m) > rank(user.access_mode) => user.access_mode = m,
            Some(_) => {}
            None => report.unmanaged_modes.push((oid.clone(), su.access_mode)),
        }
        // Issue 14 item 2: a user is a row in each instance; its last change is the latest.
        if let Some(c) = &su.changed {
            note_change(tenant, oid, c);
        }
    }
    report
}

fn rank(m: AccessMode) -> u8 {
    match m {
        AccessMode::ReadWrite => 0,
        AccessMode::Administrative => 1,
        AccessMode::NonInteractive => 2,
        AccessMode::Application => 3,
    }
}

/// The Dataverse client. Build it with [`DataverseClient::new`].
pub struct DataverseClient {
    http: Arc<dyn Http>,
    template: String,
    page: u32,
    sync: SyncWait,
    /// Root business unit per base URL, read once.
    roots: Mutex<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct RawUser {
    #[serde(default)]
    systemuserid: String,
    #[serde(default)]
    azureactivedirectoryobjectid: Option<String>,
    #[serde(default)]
    domainname: Option<String>,
    #[serde(default)]
    accessmode: Option<i64>,
    #[serde(default)]
    applicationid: Option<String>,
    #[serde(default)]
    isdisabled: Option<bool>,
    #[serde(default)]
    modifiedon: Option<String>,
    #[serde(default, rename = "_modifiedby_value")]
    modified_by: Option<String>,
    #[serde(
        default,
        rename = "_modifiedby_value@OData.Community.Display.V1.FormattedValue"
    )]
    modified_by_name: Option<String>,
    #[serde(default)]
    internalemailaddress: Option<String>,
    #[serde(default)]
    fullname: Option<String>,
    #[serde(default)]
    systemuserroles_association: Vec<RawRole>,
    #[serde(default, rename = "systemuserroles_association@odata.nextLink")]
    roles_next: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct RawRole {
    #[serde(default)]
    pub roleid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "_businessunitid_value")]
    pub business_unit: Option<String>,
}

impl DataverseClient {
    /// A client sending through `http`; `template` is the Dataverse URL template of the
    /// cloud (`Endpoints::dataverse_template`, `{url}` standing for the URL name).
    pub fn new(http: Arc<dyn Http>, template: impl Into<String>) -> DataverseClient {
        DataverseClient {
            http,
            template: template.into().trim_end_matches('/').to_string(),
            page: wire::MAX_PAGE,
            sync: SyncWait::default(),
            roots: Mutex::new(HashMap::new()),
        }
    }

    /// Another page size (tests; the default is the service's largest, 5,000).
    pub fn with_page_size(mut self, page: u32) -> DataverseClient {
        self.page = page.clamp(1, wire::MAX_PAGE);
        self
    }

    /// Another wait for users not yet synchronised into an instance.
    pub fn with_sync_wait(mut self, sync: SyncWait) -> DataverseClient {
        self.sync = sync;
        self
    }

    /// The base URL of `inst`: the template with its URL name; the public cloud's default
    /// template takes the region's host (I6: `crm4` for EMEA, ...). Prefer the admin
    /// API's `instanceUrl` where it is known.
    pub fn base_of(&self, inst: &Instance) -> String {
        if self.template == PUBLIC_TEMPLATE {
            format!(
                "https://{}.{}.dynamics.com",
                inst.url,
                inst.region.url_suffix()
            )
        } else {
            self.template.replace("{url}", &inst.url)
        }
    }

    /// [`DataverseClient::observe_base`] of the instance's base URL.
    pub async fn observe_instance(&self, inst: &Instance) -> Result<InstanceUsers, ProviderError> {
        self.observe_base(&self.base_of(inst)).await
    }

    /// Read the users (object id, access mode, roles in the root business unit) and the
    /// organisation's currency and language of the instance at `base`: four requests and
    /// one per 5,000 users.
    pub async fn observe_base(&self, base: &str) -> Result<InstanceUsers, ProviderError> {
        let base = base.trim_end_matches('/');
        let root = self.root_business_unit(base).await?;
        let (language, currency) = self.organisation(base).await?;
        let rows = wire::get_all_with(
            &*self.http,
            base,
            format!("{base}{API}/systemusers?$select={USER_SELECT}&$expand={ROLES_EXPAND}"),
            self.page,
            "listing the instance's users",
            true,
        )
        .await?;
        // Who changed a row is a system user too: named by its principal name, read in the
        // same listing (issue 14 item 2).
        let names: HashMap<String, String> = rows
            .iter()
            .filter_map(|r| {
                let id = r["systemuserid"].as_str()?;
                let name = r["domainname"].as_str().filter(|n| !n.is_empty())?;
                Some((id.to_ascii_lowercase(), name.to_string()))
            })
            .collect();
        let mut users = BTreeMap::new();
        let mut apps = BTreeMap::new();
        for row in rows {
            let su = self.system_user(base, &root, row, &names).await?;
            match su {
                // P3: a deactivated application user is a removed one.
                Some(su) if su.application_id.is_some() && su.disabled => {}
                Some(su) if su.application_id.is_some() => {
                    let app = su.application_id.clone().unwrap_or_default();
                    apps.insert(app.to_ascii_lowercase(), su);
                }
                Some(su) => {
                    users.insert(su.object_id.clone(), su);
                }
                None => {}
            }
        }
        Ok(InstanceUsers {
            base: base.to_string(),
            root_business_unit: root,
            currency,
            language,
            users,
            apps,
        })
    }

    /// One row of `systemusers` (with its expanded roles); `None` for the instance's own
    /// accounts (neither a directory object id nor an application id).
    async fn system_user(
        &self,
        base: &str,
        root: &str,
        row: Value,
        names: &HashMap<String, String>,
    ) -> Result<Option<SystemUser>, ProviderError> {
        let raw: RawUser = serde_json::from_value(row).map_err(|e| {
            ProviderError::Backend(format!("a system user crmctl cannot read: {e}"))
        })?;
        let application_id = raw.applicationid.filter(|a| !a.is_empty());
        let oid = raw
            .azureactivedirectoryobjectid
            .filter(|o| !o.is_empty())
            .unwrap_or_default();
        if oid.is_empty() && application_id.is_none() {
            return Ok(None);
        }
        let mut roles = raw.systemuserroles_association;
        if let Some(next) = raw.roles_next {
            // A large expansion comes in pages of its own.
            for v in get_all(&*self.http, base, next, self.page, "listing a user's roles").await? {
                if let Ok(r) = serde_json::from_value::<RawRole>(v) {
                    roles.push(r);
                }
            }
        }
        // The modifier's principal name when it is a user of the listing, else the
        // service's formatted value (its full name), else its id.
        let by = raw
            .modified_by
            .as_deref()
            .and_then(|id| names.get(&id.to_ascii_lowercase()).cloned())
            .or(raw.modified_by_name.filter(|n| !n.trim().is_empty()))
            .or(raw.modified_by);
        let at = raw.modifiedon.filter(|t| !t.is_empty());
        let changed = (by.is_some() || at.is_some()).then_some(LastChange { by, at });
        Ok(Some(SystemUser {
            changed,
            id: raw.systemuserid,
            object_id: oid,
            domain_name: raw.domainname.unwrap_or_default(),
            access_mode: raw.accessmode.unwrap_or(0),
            application_id,
            disabled: raw.isdisabled.unwrap_or(false),
            email: raw.internalemailaddress.unwrap_or_default(),
            name: raw.fullname.unwrap_or_default(),
            roles: root_roles(roles, root)
                .map(|r| (r.name, r.roleid))
                .collect(),
        }))
    }

    /// The root business unit's id, read once per instance.
    async fn root_business_unit(&self, base: &str) -> Result<String, ProviderError> {
        if let Some(r) = self.lock_roots().get(base) {
            return Ok(r.clone());
        }
        let rows = get_all(
            &*self.http,
            base,
            format!("{base}{API}/businessunits?$select=businessunitid&$filter=_parentbusinessunitid_value%20eq%20null"),
            self.page,
            "reading the root business unit",
        )
        .await?;
        let root = rows
            .first()
            .and_then(|r| r["businessunitid"].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                ProviderError::Backend(format!("{base}: the instance has no root business unit"))
            })?;
        self.lock_roots().insert(base.to_string(), root.clone());
        Ok(root)
    }

    fn lock_roots(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.roots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The organisation's base language and base currency code.
    async fn organisation(
        &self,
        base: &str,
    ) -> Result<(Option<u32>, Option<String>), ProviderError> {
        let rows = get_all(
            &*self.http,
            base,
            format!("{base}{API}/organizations?$select=languagecode,_basecurrencyid_value"),
            self.page,
            "reading the organisation",
        )
        .await?;
        let Some(org) = rows.first() else {
            return Ok((None, None));
        };
        let language = org["languagecode"]
            .as_u64()
            .and_then(|l| u32::try_from(l).ok());
        let Some(cur) = org["_basecurrencyid_value"].as_str() else {
            return Ok((language, None));
        };
        let cur = wire::key(cur, "the base currency")?;
        let resp = self
            .http
            .send(wire::get(
                base,
                format!("{base}{API}/transactioncurrencies({cur})?$select=isocurrencycode"),
                1,
            ))
            .await?;
        if !resp.ok() {
            return Err(wire::dataverse_error(&resp, "reading the base currency"));
        }
        let v: Value = resp.json()?;
        Ok((language, v["isocurrencycode"].as_str().map(str::to_string)))
    }
}

/// The roles of the root business unit (a role without a business unit counts as one).
pub(crate) fn root_roles<'a>(
    roles: Vec<RawRole>,
    root: &'a str,
) -> impl Iterator<Item = RawRole> + 'a {
    roles.into_iter().filter(move |r| {
        r.business_unit
            .as_deref()
            .is_none_or(|b| b.eq_ignore_ascii_case(root))
    })
}
