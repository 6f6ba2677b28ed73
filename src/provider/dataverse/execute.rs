//! `SetAccessMode`, `AssignRoles` and `RemoveRoles` in one instance (issue 13 item 2).
//!
//! Each op first finds the system user by its directory object id (waiting, bounded,
//! while the instance has not synchronised a new directory user yet), with its roles, so
//! that only the associations that are missing are made and only those that exist are
//! removed: running an op twice (after an unknown outcome) changes nothing the second
//! time. Role ids are looked up by name in the root business unit, all of an op's names in
//! one request.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::wire::{self, dataverse_error, get_all, key, literal, API, DUPLICATE_KEY};
use super::{
    access_mode_code, application_of, root_roles, DataverseClient, RawRole, SystemUser,
    ROLES_EXPAND, USER_SELECT,
};
use crate::domain::kinds::AccessMode;
use crate::domain::op::{ObjRef, Op};
use crate::provider::{Executed, ItemFailure, Outcome, ProviderError};

impl DataverseClient {
    /// Carry out `op` in the instance at `base` (its Dataverse base URL). Only
    /// `SetAccessMode`, `AssignRoles` and `RemoveRoles` are Dataverse's; any other op is
    /// refused as invalid.
    pub async fn execute(&self, op: &Op, base: &str) -> Result<Executed, ProviderError> {
        let base = base.trim_end_matches('/');
        match op {
            Op::SetAccessMode { user, mode } => self.set_access_mode(base, user, *mode).await,
            Op::AssignRoles {
                user,
                instance,
                roles,
            } => self.roles(base, user, instance, roles, true).await,
            Op::RemoveRoles {
                user,
                instance,
                roles,
            } => self.roles(base, user, instance, roles, false).await,
            other => Err(ProviderError::Invalid(format!(
                "{} is not carried out through Dataverse",
                other.kind().info().name
            ))),
        }
    }

    /// `SetAccessMode` in the instance at `base` if the user is in it now (no wait for a
    /// user not synchronised yet): `Ok(false)` when it is not. For an instance created in
    /// this run, which the last observe did not see (P4: the mode is set while the user
    /// holds its licence, so it must reach the instances that exist by then).
    pub async fn set_access_mode_if_present(
        &self,
        base: &str,
        user: &ObjRef,
        mode: AccessMode,
    ) -> Result<bool, ProviderError> {
        let base = base.trim_end_matches('/');
        match self.find_user_waiting(base, user, false).await {
            Ok(_) => self.set_access_mode(base, user, mode).await.map(|_| true),
            Err(ProviderError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn set_access_mode(
        &self,
        base: &str,
        user: &ObjRef,
        mode: AccessMode,
    ) -> Result<Executed, ProviderError> {
        let Some(code) = access_mode_code(mode) else {
            // P3: an application user is created as one; no user becomes one later.
            return Err(ProviderError::refused(
                "P3",
                format!(
                    "{}: application users are created as such; an access mode cannot make one",
                    user.address
                ),
            ));
        };
        let su = self.find_user(base, user).await?;
        if su.application_id.is_some() {
            return Err(ProviderError::refused(
                "P3",
                format!(
                    "{}: an application user's access mode cannot be changed",
                    user.address
                ),
            ));
        }
        if su.access_mode != code {
            let sid = key(&su.id, "system user")?;
            let resp = self
                .http
                .send(wire::write(
                    base,
                    "PATCH",
                    format!("{base}{API}/systemusers({sid})"),
                    Some(json!({ "accessmode": code })),
                ))
                .await?;
            if !resp.ok() {
                return Err(dataverse_error(
                    &resp,
                    &format!("setting the access mode of {}", user.address),
                ));
            }
        }
        Ok(Executed::Done(Outcome::default()))
    }

    async fn roles(
        &self,
        base: &str,
        user: &ObjRef,
        instance: &ObjRef,
        names: &[String],
        assign: bool,
    ) -> Result<Executed, ProviderError> {
        let su = self.find_user(base, user).await?;
        let sid = key(&su.id, "system user")?.to_string();
        // Role id by name: of the roles the user holds (for removals), or looked up.
        let todo: Vec<&String> = names
            .iter()
            .filter(|n| su.roles.contains_key(n.as_str()) != assign)
            .collect();
        let ids = if assign && !todo.is_empty() {
            self.role_ids(base, &todo).await?
        } else {
            su.roles.clone()
        };
        let mut done = names.len() - todo.len();
        let mut failed = Vec::new();
        for name in &todo {
            let Some(rid) = ids.get(name.as_str()) else {
                if assign {
                    failed.push(ItemFailure {
                        item: (*name).clone(),
                        error: ProviderError::Invalid(format!(
                            "the instance has no security role `{name}` in its root business unit: create it there or correct the name"
                        )),
                    });
                } else {
                    done += 1;
                }
                continue;
            };
            let rid = key(rid, "role")?;
            let what = format!(
                "{} role `{name}` {} {}",
                if assign { "assigning" } else { "removing" },
                if assign { "to" } else { "from" },
                user.address
            );
            let req = if assign {
                wire::write(
                    base,
                    "POST",
                    format!("{base}{API}/systemusers({sid})/systemuserroles_association/$ref"),
                    Some(json!({ "@odata.id": format!("{base}{API}/roles({rid})") })),
                )
            } else {
                wire::write(
                    base,
                    "DELETE",
                    format!(
                        "{base}{API}/systemusers({sid})/systemuserroles_association({rid})/$ref"
                    ),
                    None,
                )
            };
            let result = match self.http.send(req).await {
                Ok(resp) if resp.ok() => Ok(()),
                // Already associated (a repeated request) or already gone: done.
                Ok(resp) if assign && wire::error_of(&resp).0 == DUPLICATE_KEY => Ok(()),
                Ok(resp) if !assign && resp.status == 404 => Ok(()),
                Ok(resp) => Err(dataverse_error(&resp, &what)),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => done += 1,
                Err(error) => failed.push(ItemFailure {
                    item: (*name).clone(),
                    error,
                }),
            }
        }
        if !failed.is_empty() {
            if done == 0 && failed.len() == 1 {
                return Err(failed.remove(0).error);
            }
            return Err(ProviderError::Partial {
                done,
                total: names.len(),
                failed,
            });
        }
        let mut out = Outcome::default();
        if let Some(iid) = &instance.id {
            out.ids.insert(format!("instance:{iid}"), su.id.clone());
        }
        Ok(Executed::Done(out))
    }

    /// The system user whose directory object id is `user`'s id, with its roles; waited
    /// for (doubling delays, bounded by [`super::SyncWait`]) while the instance does not
    /// have it yet.
    pub(super) async fn find_user(
        &self,
        base: &str,
        user: &ObjRef,
    ) -> Result<SystemUser, ProviderError> {
        self.find_user_waiting(base, user, true).await
    }

    /// [`DataverseClient::find_user`], waiting for a user not synchronised yet only when
    /// `wait` (else `NotFound` at once).
    async fn find_user_waiting(
        &self,
        base: &str,
        user: &ObjRef,
        wait: bool,
    ) -> Result<SystemUser, ProviderError> {
        let oid = user
            .id
            .as_deref()
            .ok_or_else(|| ProviderError::Invalid(format!("{} has no remote id", user.address)))?;
        if let Some(app) = application_of(oid) {
            // P3: an application user is created in the instance, never synchronised into
            // it: no wait (the composed provider creates it before its roles).
            return self.find_app(base, app).await?.ok_or_else(|| {
                ProviderError::NotFound(format!(
                    "{}: the instance at {base} has no application user for the app registration {app}",
                    user.address
                ))
            });
        }
        let oid = key(oid, &user.address)?;
        let root = self.root_business_unit(base).await?;
        let url = format!(
            "{base}{API}/systemusers?$select={USER_SELECT}&$filter=azureactivedirectoryobjectid%20eq%20{oid}&$expand={ROLES_EXPAND}"
        );
        let started = tokio::time::Instant::now();
        let mut delay = self.sync.first_delay;
        loop {
            let rows = get_all(&*self.http, base, url.clone(), self.page, "finding a user").await?;
            if let Some(row) = rows.into_iter().next() {
                if let Some(su) = self.system_user(base, &root, row, &HashMap::new()).await? {
                    return Ok(su);
                }
            }
            if !wait || started.elapsed() + delay > self.sync.window {
                return Err(ProviderError::NotFound(format!(
                    "{} (directory object {oid}) is not in the instance at {base} after {}s: Dataverse adds a directory user when it is licensed and in the instance's security group; check both, or add the user in the Power Platform admin center (Settings > Users > Add user), then apply again",
                    user.address,
                    self.sync.window.as_secs()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }

    /// The application user (P3) bound to the app registration `app` in the instance at
    /// `base`, enabled or not, with its roles; `None` when there is none.
    pub async fn find_app(
        &self,
        base: &str,
        app: &str,
    ) -> Result<Option<SystemUser>, ProviderError> {
        let base = base.trim_end_matches('/');
        let app = key(app, "application id")?;
        let root = self.root_business_unit(base).await?;
        let url = format!(
            "{base}{API}/systemusers?$select={USER_SELECT}&$filter=applicationid%20eq%20{app}&$expand={ROLES_EXPAND}"
        );
        let rows = get_all(
            &*self.http,
            base,
            url,
            self.page,
            "finding an application user",
        )
        .await?;
        for row in rows {
            if let Some(su) = self.system_user(base, &root, row, &HashMap::new()).await? {
                if su
                    .application_id
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(app))
                {
                    return Ok(Some(su));
                }
            }
        }
        Ok(None)
    }

    /// The application user (P3) of the app registration `app` in the instance at `base`,
    /// created when there is none (`upn` its primary email, `name` its name) and enabled
    /// again when it was deactivated. Looked up first, so that running it twice creates
    /// one; a create whose answer is lost (or a server error) is looked up again, never
    /// sent twice by this call.
    pub async fn ensure_app_user(
        &self,
        base: &str,
        app: &str,
        upn: &str,
        name: &str,
    ) -> Result<SystemUser, ProviderError> {
        let base = base.trim_end_matches('/');
        if let Some(su) = self.find_app(base, app).await? {
            if su.disabled {
                self.patch_user(base, &su.id, json!({ "isdisabled": false }), upn)
                    .await?;
                return Ok(SystemUser {
                    disabled: false,
                    ..su
                });
            }
            return Ok(su);
        }
        let app = key(app, "application id")?;
        let root = self.root_business_unit(base).await?;
        let root = key(&root, "business unit")?;
        // Web API create of an application user: `applicationid` and the business unit
        // (the root), with its primary email and name (systemuser `lastname` is required).
        let last = if name.trim().is_empty() { upn } else { name };
        let mut req = wire::write(
            base,
            "POST",
            format!("{base}{API}/systemusers"),
            Some(json!({
                "applicationid": app,
                "businessunitid@odata.bind": format!("/businessunits({root})"),
                "internalemailaddress": upn,
                "lastname": last,
            })),
        );
        // A create is not repeated by the transport: a lost answer is looked up below.
        req.idempotent = false;
        let what = format!("creating the application user {upn}");
        let sent = self.http.send(req).await;
        let failure = match sent {
            Ok(resp) if resp.ok() => None,
            // "Duplicate key": the instance has an application user of this app already,
            // made since the lookup above (two steps creating it at once): that one.
            Ok(resp) if wire::error_of(&resp).0 == DUPLICATE_KEY => {
                return match self.find_app(base, app).await? {
                    Some(su) => Ok(su),
                    None => Err(dataverse_error(&resp, &what)),
                };
            }
            Ok(resp) => Some(dataverse_error(&resp, &what)),
            Err(e) => Some(e),
        };
        match failure {
            None => {}
            // Refused, invalid, throttled before it was served: nothing was created.
            Some(
                e @ (ProviderError::Refused { .. }
                | ProviderError::Invalid(_)
                | ProviderError::Throttled { .. }
                | ProviderError::Backend(_)),
            ) => return Err(e),
            // Lost or failed on the server's side: it may have been created.
            Some(e) => {
                return match self.find_app(base, app).await? {
                    Some(su) => Ok(su),
                    None => Err(e),
                }
            }
        }
        self.find_app(base, app).await?.ok_or_else(|| {
            ProviderError::Transient(format!(
                "{what}: created, but the instance at {base} does not list it yet"
            ))
        })
    }

    /// Deactivate the application user (P3) of `app` in the instance at `base`, if it has
    /// an enabled one (the admin center deletes only deactivated application users whose
    /// records were reassigned: that is left to a person).
    pub async fn deactivate_app_user(
        &self,
        base: &str,
        app: &str,
        address: &str,
    ) -> Result<(), ProviderError> {
        let base = base.trim_end_matches('/');
        match self.find_app(base, app).await? {
            Some(su) if !su.disabled => {
                self.patch_user(base, &su.id, json!({ "isdisabled": true }), address)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Change the application user (P3) of `app` in the instance at `base`, if it has one:
    /// `body` holds its `lastname` (the full name follows) and/or `internalemailaddress`.
    pub async fn update_app_user(
        &self,
        base: &str,
        app: &str,
        body: Value,
        address: &str,
    ) -> Result<(), ProviderError> {
        let base = base.trim_end_matches('/');
        match self.find_app(base, app).await? {
            Some(su) => self.patch_user(base, &su.id, body, address).await,
            None => Ok(()),
        }
    }

    /// `PATCH systemusers({id})` with `body` (`If-Match: *`: never creates a row).
    async fn patch_user(
        &self,
        base: &str,
        id: &str,
        body: Value,
        address: &str,
    ) -> Result<(), ProviderError> {
        let sid = key(id, "system user")?;
        let resp = self
            .http
            .send(wire::write(
                base,
                "PATCH",
                format!("{base}{API}/systemusers({sid})"),
                Some(body),
            ))
            .await?;
        if !resp.ok() {
            return Err(dataverse_error(&resp, &format!("updating {address}")));
        }
        Ok(())
    }

    /// Role ids by name of `names` in the root business unit (one request).
    async fn role_ids(
        &self,
        base: &str,
        names: &[&String],
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let root = self.root_business_unit(base).await?;
        let root = key(&root, "business unit")?;
        let any: Vec<String> = names
            .iter()
            .map(|n| format!("name%20eq%20{}", literal(n)))
            .collect();
        let url = format!(
            "{base}{API}/roles?$select=roleid,name&$filter=_businessunitid_value%20eq%20{root}%20and%20({})",
            any.join("%20or%20")
        );
        let rows = get_all(
            &*self.http,
            base,
            url,
            self.page,
            "looking up security roles",
        )
        .await?;
        Ok(by_name(rows, root))
    }
}

/// Role rows of the root business unit as name -> id (the first of equal names).
fn by_name(rows: Vec<Value>, root: &str) -> BTreeMap<String, String> {
    let roles: Vec<RawRole> = rows
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let mut out = BTreeMap::new();
    for r in root_roles(roles, root) {
        out.entry(r.name).or_insert(r.roleid);
    }
    out
}
