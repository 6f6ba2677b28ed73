//! Users (P1-P6): the desired users' table, create and update (profile, admin roles,
//! access mode), delete, and the global admin count (P6). License steps are in
//! `licences.rs`, security roles in `roles.rs`.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};

use super::{ch, Bound, HashMap, Planner};
use crate::desired::model as m;
use crate::domain::ident;
use crate::domain::kinds::{AccessMode, AdminRole, LicensePlan};
use crate::domain::op::{ActionKind, ObjKind, ObjRef, Op};
use crate::observed as t;

/// Global admin changes (P6), checked and ordered by `global_admins`.
#[derive(Default)]
pub(super) struct GlobalAdmins {
    /// Actions that make a user global admin (P6): they run before every demotion.
    promotions: Vec<usize>,
    /// Actions that end a global admin (role removed, user deleted), with the address to
    /// report them at (P6).
    demotions: Vec<(usize, String)>,
}

/// Per desired user: what later steps depend on.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct UserSteps {
    /// The action that gives the user their final license, if any (P2).
    pub(super) license: Option<usize>,
    /// The set_access_mode action, if any (P3, P4).
    pub(super) mode: Option<usize>,
    /// Final access mode.
    pub(super) final_mode: Option<AccessMode>,
    /// Final license.
    pub(super) final_license: Option<LicensePlan>,
    /// The update_user that sets the tenant admin roles, if any (P6).
    pub(super) admin: Option<usize>,
    /// Global or service admin once the plan ran: needs no license for roles (P6).
    pub(super) license_free_admin: bool,
}

/// The desired users, in file (sorted) order: their resolution and steps, looked up by UPN
/// or by position.
#[derive(Default)]
pub(super) struct UserTable<'a> {
    /// UPN -> position.
    pub(super) idx: HashMap<&'a str, u32>,
    /// Per position: where the user is in the tenant.
    pub(super) bound: Vec<Bound<'a>>,
    /// Per position: what later steps depend on (filled by `users`).
    pub(super) steps: Vec<UserSteps>,
    /// Per position: the address `users.<upn>`, made when first referred to and shared
    /// by every reference (a user is a member of ten groups on average).
    addr: Vec<OnceLock<Arc<str>>>,
}

impl<'a> UserTable<'a> {
    /// Room for `n` desired users, each unresolved until `resolve_users` binds it.
    pub(super) fn init(&mut self, n: usize) {
        self.idx.reserve(n);
        self.bound = vec![Bound::default(); n];
        self.steps = vec![UserSteps::default(); n];
        self.addr = (0..n).map(|_| OnceLock::new()).collect();
    }

    /// The shared address of the user at `pos`, whose UPN is `upn`.
    pub(super) fn address(&self, pos: usize, upn: &str) -> Arc<str> {
        self.addr[pos]
            .get_or_init(|| user_address(upn).into())
            .clone()
    }

    pub(super) fn get(&self, upn: &str) -> Option<&Bound<'a>> {
        self.idx.get(upn).map(|&i| &self.bound[i as usize])
    }

    fn get_mut(&mut self, upn: &str) -> Option<&mut Bound<'a>> {
        self.idx.get(upn).map(|&i| &mut self.bound[i as usize])
    }

    pub(super) fn contains_key(&self, upn: &str) -> bool {
        self.idx.contains_key(upn)
    }
}

impl<'a> std::ops::Index<&str> for UserTable<'a> {
    type Output = Bound<'a>;
    fn index(&self, upn: &str) -> &Bound<'a> {
        self.get(upn).expect("a desired user")
    }
}

impl<'a> Planner<'a> {
    /// The state's users that the file no longer declares (address, id), in state order:
    /// resources of kind user whose address is not `users.<a desired UPN>` and that are
    /// not re-keyed to one. The state's
    /// addresses and the file's UPNs are both sorted, so one walk over both finds them.
    pub(super) fn gone_users(&self) -> Vec<(&'a str, &'a str)> {
        let s = self.s;
        let mut desired = self.d.users.iter().flat_map(|u| u.keys()).peekable();
        s.resources
            .iter()
            .filter(|(_, r)| r.kind == ObjKind::User)
            .filter(|(a, _)| {
                let Some(upn) = a.strip_prefix("users.") else {
                    return true;
                };
                while desired.next_if(|d| d.as_str() < upn).is_some() {}
                desired.peek().is_none_or(|d| d.as_str() != upn)
            })
            // Re-keyed to a desired key (issue 9 item 2): kept, not gone.
            .filter(|(a, _)| !self.moved.contains(a.as_str()))
            .map(|(a, r)| (a.as_str(), r.id.as_str()))
            .collect()
    }

    pub(super) fn desired_user_address(&self, address: &str) -> bool {
        address
            .strip_prefix("users.")
            .is_some_and(|upn| self.users.contains_key(upn))
    }

    #[inline(never)] // a phase: shows in profiles
    pub(super) fn users(&mut self) {
        let Some(users) = &self.d.users else {
            return;
        };
        let finals = self.final_assigned();
        // P4: the plan with the most spare licenses lends one temporarily.
        let temp_plan = LicensePlan::ALL
            .iter()
            .map(|p| {
                let avail = i64::from(self.t.purchased(*p).max(self.lic.target[p]));
                (avail - finals[p], *p)
            })
            .filter(|(spare, _)| *spare > 0)
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, p)| p);
        for (i, (upn, u)) in users.iter().enumerate() {
            let bound = self.users.bound[i];
            // Fast path: nothing to change (the common case on large tenants).
            if let Some(steps) = bound
                .user
                .filter(|o| o.upn == *upn)
                .and_then(|o| unchanged_user(u, o))
            {
                self.users.steps[i] = steps;
                continue;
            }
            let address = user_address(upn);
            let steps = match bound.user {
                None => self.new_user(upn, u, &address, temp_plan),
                Some(o) => self.existing_user(upn, u, o, &address, bound.ready, temp_plan),
            };
            self.users.steps[i] = steps;
        }
    }

    fn new_user(
        &mut self,
        upn: &str,
        u: &m::User,
        address: &str,
        temp_plan: Option<LicensePlan>,
    ) -> UserSteps {
        let final_mode = u.access_mode.unwrap_or(AccessMode::ReadWrite);
        let create_mode = if final_mode == AccessMode::Application {
            AccessMode::Application
        } else {
            AccessMode::ReadWrite
        };
        let name = u.name.clone().unwrap_or_default();
        let mut changes = Vec::with_capacity(3);
        changes.push(ch("upn", Value::Null, json!(upn)));
        if !name.is_empty() {
            changes.push(ch("name", Value::Null, json!(name)));
        }
        changes.push(ch("access_mode", Value::Null, json!(create_mode.as_str())));
        // Issue 12 item 4: the file's usage location (none: the backend's default).
        if let Some(loc) = &u.usage_location {
            changes.push(ch("usage_location", Value::Null, json!(loc)));
        }
        if let Some(app) = u
            .application_id
            .as_ref()
            .filter(|_| final_mode == AccessMode::Application)
        {
            changes.push(ch("application_id", Value::Null, json!(app)));
        }
        let c = self.push(
            ActionKind::CreateUser,
            address.to_string(),
            Op::CreateUser {
                upn: upn.to_string(),
                name,
                access_mode: create_mode,
                usage_location: u.usage_location.clone(),
                // P3: the app registration an application user is bound to.
                application_id: u
                    .application_id
                    .clone()
                    .filter(|_| final_mode == AccessMode::Application),
            },
            changes,
            "the user is in the file but not in the tenant",
            [],
        );
        self.users.get_mut(upn).expect("resolved").ready = Some(c);
        let user = self.user_ref(upn);
        let mut steps = UserSteps {
            final_mode: Some(final_mode),
            final_license: u.license,
            license_free_admin: license_free_admin(u.admin_roles.as_deref(), &BTreeSet::new()),
            ..UserSteps::default()
        };
        if final_mode == AccessMode::Application {
            if u.license.is_some() {
                self.error(
                    address,
                    "application users are never licensed".into(),
                    "P3",
                    Some("remove `license` from this user".into()),
                );
            }
        } else if let Some(plan) = u.license {
            steps.license = Some(self.assign_license(address, &user, Some(c), None, plan));
        }
        if matches!(
            final_mode,
            AccessMode::Administrative | AccessMode::NonInteractive
        ) {
            steps.mode = Some(match steps.license {
                Some(l) => self.set_mode(
                    address,
                    &user,
                    Some(l),
                    Some(AccessMode::ReadWrite),
                    final_mode,
                ),
                None => self.temp_license(address, &user, Some(c), final_mode, temp_plan),
            });
        }
        if let Some(roles) = u.admin_roles.as_ref().filter(|r| !r.is_empty()) {
            let mut roles = roles.clone();
            roles.sort();
            roles.dedup();
            let promotes = roles.contains(&AdminRole::GlobalAdmin);
            let a = self.push(
                ActionKind::UpdateUser,
                address.to_string(),
                Op::UpdateUser {
                    user: user.clone(),
                    name: None,
                    admin_roles: Some(roles.clone()),
                    upn: None,
                    usage_location: None,
                },
                vec![ch("admin_roles", Value::Null, json!(roles))],
                "tenant admin roles from the file (P6)",
                [Some(c)],
            );
            steps.admin = Some(a);
            if promotes {
                self.ga.promotions.push(a);
            }
        }
        steps
    }

    fn existing_user(
        &mut self,
        upn: &str,
        u: &m::User,
        o: &t::User,
        address: &str,
        ready: Option<usize>,
        temp_plan: Option<LicensePlan>,
    ) -> UserSteps {
        if o.upn == upn {
            if let Some(steps) = unchanged_user(u, o) {
                return steps;
            }
        }
        let user = self.user_ref(upn);
        // Profile and tenant admin roles.
        let mut changes = Vec::new();
        // Issue 9 item 2: the same user (P1 compares UPNs without regard to case) spelled
        // another way in the file: the file's spelling is shown in the directory.
        let mut new_upn = (o.upn != upn && ident::same(&o.upn, upn)).then(|| upn.to_string());
        let mut new_name = u.name.as_ref().filter(|n| **n != o.name).cloned();
        if o.synced {
            // Issue 12 item 4, P1: the on-premises directory masters a synchronised user's
            // name and principal name (Graph refuses a cloud change): said, not planned.
            if new_upn.take().is_some() {
                self.synced_warning(address.to_string(), upn, "user principal name", "the key");
            }
            if new_name.take().is_some() {
                self.synced_warning(format!("{address}.name"), upn, "name", "`name`");
            }
        }
        if let Some(n) = &new_upn {
            changes.push(ch("upn", json!(o.upn), json!(n)));
        }
        if let Some(n) = &new_name {
            changes.push(ch("name", json!(o.name), json!(n)));
        }
        // Issue 12 item 4: managed only when the file gives it; cloud-managed also for a
        // synchronised user (it is what licences need).
        let new_location = u
            .usage_location
            .as_ref()
            .filter(|l| o.usage_location.as_ref() != Some(*l))
            .cloned();
        if let Some(l) = &new_location {
            changes.push(ch("usage_location", json!(o.usage_location), json!(l)));
        }
        let new_roles = u.admin_roles.as_ref().and_then(|r| {
            let want: BTreeSet<_> = r.iter().copied().collect();
            (want != o.admin_roles).then(|| want.into_iter().collect::<Vec<_>>())
        });
        if let Some(r) = &new_roles {
            changes.push(ch("admin_roles", json!(o.admin_roles), json!(r)));
        }
        let mut admin_update = None;
        if !changes.is_empty() {
            let was_ga = o.admin_roles.contains(&AdminRole::GlobalAdmin);
            let will_be_ga = new_roles
                .as_ref()
                .map(|r| r.contains(&AdminRole::GlobalAdmin));
            let a = self.push(
                ActionKind::UpdateUser,
                address.to_string(),
                Op::UpdateUser {
                    user: user.clone(),
                    name: new_name,
                    admin_roles: new_roles,
                    upn: new_upn,
                    usage_location: new_location,
                },
                changes,
                "the user's profile differs from the file (P1, P6)",
                [ready],
            );
            // P6: promotions run before demotions, so that two global admins remain at
            // every moment.
            match (was_ga, will_be_ga) {
                (false, Some(true)) => self.ga.promotions.push(a),
                (true, Some(false)) => self
                    .ga
                    .demotions
                    .push((a, format!("{address}.admin_roles"))),
                _ => {}
            }
            if will_be_ga.is_some() {
                admin_update = Some(a);
            }
        }
        let cur_mode = o.access_mode;
        let final_mode = u.access_mode.unwrap_or(cur_mode);
        let cur = o.license;
        let want = u.license;
        let mut steps = UserSteps {
            final_mode: Some(final_mode),
            final_license: want,
            admin: admin_update,
            license_free_admin: license_free_admin(u.admin_roles.as_deref(), &o.admin_roles),
            ..UserSteps::default()
        };
        if final_mode == AccessMode::Application && want.is_some() {
            self.error(
                address,
                "application users are never licensed".into(),
                "P3",
                Some("remove `license` from this user".into()),
            );
            return steps;
        }
        if other_application(u, o) {
            self.error(
                &format!("{address}.application_id"),
                format!(
                    "application user `{upn}` is bound to the app registration {}; an application user's app registration cannot change",
                    o.application_id.as_deref().unwrap_or_default()
                ),
                "P3",
                Some("give the new app registration its own application user (another key), and remove this one, or put back the application id the tenant has".into()),
            );
            return steps;
        }
        if (final_mode == AccessMode::Application) != (cur_mode == AccessMode::Application) {
            self.error(
                address,
                format!(
                    "the access mode cannot change from {} to {}: application users are created as such",
                    cur_mode.as_str(),
                    final_mode.as_str()
                ),
                "P3",
                Some("delete the user and create a new one with the wanted access mode".into()),
            );
            steps.final_mode = Some(cur_mode);
            return steps;
        }
        let to_limited = final_mode != cur_mode
            && matches!(
                final_mode,
                AccessMode::Administrative | AccessMode::NonInteractive
            );
        if to_limited {
            // P4: the access mode is set while the user holds a license.
            if let Some(c) = cur {
                let m = self.set_mode(address, &user, ready, Some(cur_mode), final_mode);
                steps.mode = Some(m);
                match want {
                    Some(p) if p != c => {
                        steps.license = Some(self.assign_license(address, &user, Some(m), cur, p));
                    }
                    Some(_) => {}
                    None => {
                        self.remove_license(
                            address,
                            &user,
                            Some(m),
                            c,
                            "the user needs no license after setup (P4)",
                        );
                    }
                }
            } else if let Some(p) = want {
                let a = self.assign_license(address, &user, ready, None, p);
                steps.license = Some(a);
                steps.mode =
                    Some(self.set_mode(address, &user, Some(a), Some(cur_mode), final_mode));
            } else {
                steps.mode = Some(self.temp_license(address, &user, ready, final_mode, temp_plan));
            }
            return steps;
        }
        // License first (a read-write user needs it), then the access mode.
        let mut la = None;
        if want != cur {
            la = Some(match want {
                Some(p) => {
                    let a = self.assign_license(address, &user, ready, cur, p);
                    steps.license = Some(a);
                    a
                }
                None => self.remove_license(
                    address,
                    &user,
                    ready,
                    cur.expect("differs from None"),
                    "the file gives the user no license (P5)",
                ),
            });
        }
        if final_mode != cur_mode {
            steps.mode =
                Some(self.set_mode(address, &user, la.or(ready), Some(cur_mode), final_mode));
        }
        steps
    }

    #[inline(never)] // a phase: shows in profiles
    pub(super) fn delete_users(&mut self) {
        let gone = self.gone_users();
        for (address, id) in gone {
            let Some(obs) = self.t.users.get(id) else {
                continue;
            };
            if obs.synced {
                // Issue 12 item 4, P1: only the on-premises directory deletes it.
                self.error(
                    address,
                    format!(
                        "`{}` is no longer in the file, so crmctl would delete it, but it is synchronised from an on-premises directory: only that directory deletes it",
                        obs.upn
                    ),
                    "P1",
                    Some("delete the user in the on-premises directory, or keep it in the file".into()),
                );
                continue;
            }
            let deps: Vec<Option<usize>> = self
                .mem
                .removals
                .get(id)
                .map(|v| v.iter().map(|a| Some(*a)).collect())
                .unwrap_or_default();
            let a = self.push(
                ActionKind::DeleteUser,
                address.to_string(),
                Op::DeleteUser {
                    user: ObjRef {
                        address: address.into(),
                        id: Some(id.to_string()),
                    },
                },
                vec![ch("upn", json!(obs.upn), Value::Null)],
                "the user was removed from the file (P5: deleting frees the license)",
                deps,
            );
            if let Some(l) = obs.license {
                self.release(l, a, None);
            }
            if obs.admin_roles.contains(&AdminRole::GlobalAdmin) {
                self.ga.demotions.push((a, address.to_string()));
            }
        }
    }

    /// Issue 12 item 4, P1: a change the file asks of what the on-premises directory
    /// masters on a synchronised user: a warning at the file's line, nothing planned.
    fn synced_warning(&mut self, at: String, upn: &str, what: &str, field: &str) {
        let mut d = crate::diag::Diagnostic::warning(
            at,
            format!("user `{upn}` is synchronised from an on-premises directory: its {what} is managed there; crmctl leaves it"),
        )
        .rule("P1");
        d.hint = Some(format!(
            "change it in the on-premises directory, or make {field} match what the directory has"
        ));
        self.diags.push(d);
    }

    /// P6: keep at least two global admins. Every promotion runs before every demotion
    /// (the service refuses to end one of two); a plan that ends with fewer than two while
    /// it demotes or deletes a global admin is an error at that admin role (the service
    /// refuses the demotion); one that ends with fewer than two without demoting anyone
    /// (the tenant already had fewer) is a warning.
    #[inline(never)] // a phase: shows in profiles
    pub(super) fn global_admins(&mut self) {
        let promotions = std::mem::take(&mut self.ga.promotions);
        let demotions = std::mem::take(&mut self.ga.demotions);
        let models_admins = self
            .d
            .users
            .as_ref()
            .is_some_and(|u| u.values().any(|u| u.admin_roles.is_some()));
        if demotions.is_empty() && !models_admins {
            return;
        }
        let now = self
            .t
            .users
            .values()
            .filter(|u| u.admin_roles.contains(&AdminRole::GlobalAdmin))
            .count();
        let after = (now + promotions.len()).saturating_sub(demotions.len());
        if after < 2 {
            if demotions.is_empty() {
                self.warn(
                    "users",
                    format!("the tenant has {now} global admin(s) and keeps {after} after this plan; keep at least two"),
                    "P6",
                );
            } else {
                for (_, address) in &demotions {
                    let upn = address
                        .strip_prefix("users.")
                        .map(|a| a.strip_suffix(".admin_roles").unwrap_or(a))
                        .unwrap_or(address);
                    self.error(
                        address,
                        format!("`{upn}` stops being a global admin, which leaves {after} global admin(s) in the tenant (it has {now}); the service keeps at least two"),
                        "P6",
                        Some("make another user global admin in the file (`admin_roles: [global_admin]`), or keep this one".into()),
                    );
                }
            }
            return;
        }
        for &(d, _) in &demotions {
            for &p in &promotions {
                self.dep(d, Some(p));
            }
        }
    }
}
/// The steps of an existing user whose file entry asks for no change, or `None` when
/// something differs (then [`Planner::existing_user`] works it out).
fn unchanged_user(u: &m::User, o: &t::User) -> Option<UserSteps> {
    let final_mode = u.access_mode.unwrap_or(o.access_mode);
    (u.name.as_ref().is_none_or(|n| *n == o.name)
        && u.usage_location
            .as_ref()
            .is_none_or(|l| o.usage_location.as_ref() == Some(l))
        && u.admin_roles.as_ref().is_none_or(|r| {
            r.iter().all(|x| o.admin_roles.contains(x))
                && o.admin_roles.iter().all(|x| r.contains(x))
        })
        && final_mode == o.access_mode
        && u.license == o.license
        && !(final_mode == AccessMode::Application && u.license.is_some())
        && !other_application(u, o))
    .then_some(UserSteps {
        final_mode: Some(final_mode),
        final_license: u.license,
        license_free_admin: license_free_admin(None, &o.admin_roles),
        ..UserSteps::default()
    })
}

/// P3: the file names another app registration than the application user observed is bound
/// to (compared without case; unknown on either side is no difference).
fn other_application(u: &m::User, o: &t::User) -> bool {
    matches!(
        (&u.application_id, &o.application_id),
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b)
    )
}

/// P6: global and service admins get System Administrator in every instance without a
/// license. `want` is the file's list (None: not managed, the observed `have` stays).
fn license_free_admin(want: Option<&[AdminRole]>, have: &BTreeSet<AdminRole>) -> bool {
    let free = |r: &AdminRole| matches!(r, AdminRole::GlobalAdmin | AdminRole::ServiceAdmin);
    match want {
        Some(w) => w.iter().any(free),
        None => have.iter().any(free),
    }
}

/// `users.<upn>`, built without the formatting machinery (it runs once per user).
pub(super) fn user_address(upn: &str) -> String {
    let mut s = String::with_capacity(6 + upn.len());
    s.push_str("users.");
    s.push_str(upn);
    s
}
