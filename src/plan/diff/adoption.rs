//! Resolution: each object of the file is found in the tenant by the state first, then by
//! natural key (adoption: user UPN, group display name, instance URL name, compared
//! without regard to case); a managed object whose key changed is re-keyed, never deleted
//! and created again (issue 9 item 2). Also the replace guards: a delete waits for the
//! create of the same natural key.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{ch, state_under, user_address, Bound, HashMap, InstSteps, Planner};
use crate::desired::model as m;
use crate::domain::ident;
use crate::domain::op::{ActionKind, ObjKind, Op};
use crate::observed as t;

impl<'a> Planner<'a> {
    fn adopt(&mut self, kind: ObjKind, address: String, id: &'a str, what: &str) -> usize {
        self.adopted.insert(id);
        self.push(
            ActionKind::Adopt,
            address,
            Op::Adopt {
                kind,
                id: id.to_string(),
                from: None,
            },
            vec![ch("id", Value::Null, json!(id))],
            format!("{what} already exists in the tenant; take it under management"),
            [],
        )
    }

    /// Re-key a managed object: the state's `from` holds it, and the file declares it as
    /// `address` (issue 9 item 2: a key whose case changed is the same object, and so is an
    /// object found by its natural key under an address that left the file). Apply records
    /// the new address and drops `from`; nothing is deleted or created.
    fn rekey(
        &mut self,
        kind: ObjKind,
        from: &'a str,
        address: String,
        id: &'a str,
        why: String,
    ) -> usize {
        self.adopted.insert(id);
        self.moved.insert(from);
        self.push(
            ActionKind::Adopt,
            address.clone(),
            Op::Adopt {
                kind,
                id: id.to_string(),
                from: Some(from.to_string()),
            },
            vec![ch("address", json!(from), json!(address))],
            why,
            [],
        )
    }

    /// The file's `moved` entries (issue 14 item 3): an object the state manages at `from`
    /// that still exists is re-keyed to `to` (an adopt with `from`), and `to` resolves to
    /// it. Entries whose `from` the state no longer holds (they took effect), whose `to`
    /// it already holds, or whose kinds differ (a validation error) are ignored.
    pub(super) fn resolve_moves(&mut self) {
        let Some(moves) = &self.d.moved else {
            return;
        };
        for m in moves {
            let kind = match crate::desired::validate::moved::split(&m.to) {
                Some(("users", _)) => ObjKind::User,
                Some(("security_groups", _)) => ObjKind::Group,
                Some(("instances", _)) => ObjKind::Instance,
                _ => continue,
            };
            let Some((from, r)) = self.s.resources.get_key_value(m.from.as_str()) else {
                continue;
            };
            let exists = match kind {
                ObjKind::User => self.t.users.contains_key(&r.id),
                ObjKind::Group => self.t.groups.contains_key(&r.id),
                ObjKind::Instance => self.t.instances.contains_key(&r.id),
            };
            if r.kind != kind
                || !exists
                || self.s.resources.contains_key(m.to.as_str())
                || self.moves.contains_key(m.to.as_str())
                || self.adopted.contains(r.id.as_str())
            {
                continue;
            }
            self.rekey(
                kind,
                from,
                m.to.clone(),
                &r.id,
                format!("the file's `moved` renames `{from}` to `{}`: the same object, re-keyed, not deleted and created again", m.to),
            );
            self.moves.insert(&m.to, &r.id);
        }
    }

    #[inline(never)] // a phase: shows in profiles
    pub(super) fn resolve_groups(&mut self) {
        let Some(groups) = &self.d.security_groups else {
            return;
        };
        // Display names are compared without regard to case (issue 9 item 2, I12).
        let mut by_name: BTreeMap<Cow<'a, str>, Vec<&'a str>> = BTreeMap::new();
        for g in self.t.groups.values() {
            if !self.managed(&g.id) {
                by_name.entry(ident::fold(&g.name)).or_default().push(&g.id);
            }
        }
        // State addresses that left the file, by folded key: a key whose case changed is
        // the same group (issue 9 item 2), re-keyed rather than deleted and created again.
        let mut by_key: HashMap<Cow<'a, str>, Vec<(&'a str, &'a str)>> = HashMap::default();
        let in_state = state_under(self.s, "security_groups.");
        for (a, k, r) in in_state {
            if r.kind == ObjKind::Group
                && !groups.contains_key(k)
                && self.t.groups.contains_key(&r.id)
            {
                by_key
                    .entry(ident::fold(k))
                    .or_default()
                    .push((a, r.id.as_str()));
            }
        }
        for (key, g) in groups {
            let address = format!("security_groups.{key}");
            let name = g.name.as_deref().unwrap_or(key);
            let bound = match self.state_id(&address, ObjKind::Group) {
                Some(id) if self.t.groups.contains_key(id) => Bound {
                    id: Some(id),
                    ready: None,
                    user: None,
                },
                _ => match by_key.get(ident::fold(key).as_ref()).map(Vec::as_slice) {
                    Some(&[(from, id)]) if !self.adopted.contains(id) => {
                        let a = self.rekey(
                            ObjKind::Group,
                            from,
                            address,
                            id,
                            format!("the state manages this group as `{from}`; a key whose case changed names the same group: re-keyed, not deleted and created again"),
                        );
                        Bound {
                            id: Some(id),
                            ready: Some(a),
                            user: None,
                        }
                    }
                    _ => match by_name.get(ident::fold(name).as_ref()).map(Vec::as_slice) {
                        Some([id]) if !self.adopted.contains(id) => {
                            let a = self.adopt(
                                ObjKind::Group,
                                address.clone(),
                                id,
                                &format!("group `{name}`"),
                            );
                            Bound {
                                id: Some(id),
                                ready: Some(a),
                                user: None,
                            }
                        }
                        Some(ids) if ids.len() > 1 => {
                            self.error(
                                &address,
                                format!(
                                    "{} unmanaged groups are named `{name}` (compared without regard to case): {}; cannot tell which one to adopt",
                                    ids.len(),
                                    ids.join(", ")
                                ),
                                "I12",
                                Some("rename the duplicates in the admin center, or give this group another `name`".into()),
                            );
                            Bound::default()
                        }
                        _ => Bound::default(),
                    },
                },
            };
            self.groups.insert(key, bound);
        }
    }

    #[inline(never)] // a phase: shows in profiles
    pub(super) fn resolve_users(&mut self) {
        let Some(users) = &self.d.users else {
            return;
        };
        let n = users.len();
        self.users.init(n);
        let mut pending: Vec<(usize, &'a str)> = Vec::new();
        // The state's user addresses (`users.<upn>`) are sorted like the file's UPNs: walk
        // both in step instead of looking every address up.
        let mut state = state_under(self.s, "users.")
            .map(|(_, upn, r)| (upn, r))
            .peekable();
        for (i, upn) in users.keys().enumerate() {
            let upn: &'a str = upn;
            self.users.idx.insert(upn, i as u32);
            while state.next_if(|(s, _)| *s < upn).is_some() {}
            let found = state
                .next_if(|(s, _)| *s == upn)
                .filter(|(_, r)| r.kind == ObjKind::User)
                .and_then(|(_, r)| self.t.users.get_key_value(r.id.as_str()));
            match found {
                // Issue 9 item 1 (P1): the address names its user by UPN; an entry bound
                // to a user with another UPN (a state damaged by concurrent writers before
                // the fix, or edited) would change that other user to match the entry.
                Some((id, u)) if !ident::same(&u.upn, upn) => {
                    let address = user_address(upn);
                    self.error(
                        &address,
                        format!(
                            "the state binds `{address}` to `{id}`, whose UPN is `{}`: another user; the plan would change that user to match this entry",
                            u.upn
                        ),
                        "P1",
                        Some(format!(
                            "remove the entry `{address}` from the state file (the user is then found by its UPN, or created), or give `{id}` its UPN back in the admin center"
                        )),
                    );
                }
                Some((id, u)) => {
                    self.users.bound[i] = Bound {
                        id: Some(id),
                        ready: None,
                        user: Some(u),
                    };
                }
                None => pending.push((i, upn)),
            }
        }
        if pending.is_empty() {
            return;
        }
        // Issue 9 item 2: UPNs are compared without regard to case (P1). A state address
        // that left the file but spells a pending key in another case (`users.ana@x.com`
        // for `Ana@x.com`) is the same user, and so is a user whose address left the file
        // but whose UPN is the pending key: both are re-keyed. Deleting the one and
        // creating the other would be refused by the service (P1) after the delete ran.
        let mut by_key: HashMap<Cow<'a, str>, Vec<(&'a str, &'a t::User)>> = HashMap::default();
        // Natural key (P1): the UPN, among users nobody manages (adopted) and users whose
        // address left the file (re-keyed), folded once per user.
        let mut by_upn: HashMap<Cow<'a, str>, Vec<(&'a t::User, Option<&'a str>)>> =
            HashMap::default();
        for (from, id) in self.gone_users() {
            let Some(u) = self.t.users.get(id) else {
                continue;
            };
            if let Some(key) = from.strip_prefix("users.") {
                by_key.entry(ident::fold(key)).or_default().push((from, u));
            }
            by_upn
                .entry(ident::fold(&u.upn))
                .or_default()
                .push((u, Some(from)));
        }
        for u in self.t.users.values() {
            if !self.managed(&u.id) {
                by_upn
                    .entry(ident::fold(&u.upn))
                    .or_default()
                    .push((u, None));
            }
        }
        for (i, upn) in pending {
            let address = user_address(upn);
            let key = ident::fold(upn);
            if let Some(&[(from, u)]) = by_key.get(key.as_ref()).map(Vec::as_slice) {
                if !self.adopted.contains(u.id.as_str()) {
                    let a = self.rekey(
                        ObjKind::User,
                        from,
                        address,
                        &u.id,
                        format!("the state manages this user as `{from}`; user principal names are compared without regard to case (P1), so it is the same user: re-keyed, not deleted and created again"),
                    );
                    self.users.bound[i] = Bound {
                        id: Some(&u.id),
                        ready: Some(a),
                        user: Some(u),
                    };
                    continue;
                }
            }
            let bound = match by_upn.get(key.as_ref()).map(Vec::as_slice) {
                Some(&[(u, from)]) if !self.adopted.contains(u.id.as_str()) => {
                    let a = match from {
                        None => self.adopt(ObjKind::User, address, &u.id, &format!("user `{upn}`")),
                        Some(from) => self.rekey(
                            ObjKind::User,
                            from,
                            address,
                            &u.id,
                            format!("user `{}` is managed as `{from}`, which is no longer in the file; a UPN names one user (P1), so it is re-keyed, not deleted and created again", u.upn),
                        ),
                    };
                    Bound {
                        id: Some(&u.id),
                        ready: Some(a),
                        user: Some(u),
                    }
                }
                Some(us) if us.len() > 1 => {
                    let ids: Vec<&str> = us.iter().map(|(u, _)| u.id.as_str()).collect();
                    self.error(
                        &address,
                        format!(
                            "{} users have the UPN `{upn}` (compared without regard to case): {}; cannot tell which one to adopt",
                            ids.len(),
                            ids.join(", ")
                        ),
                        "P1",
                        Some("delete the duplicate in the admin center".into()),
                    );
                    Bound::default()
                }
                _ => Bound::default(),
            };
            self.users.bound[i] = bound;
        }
    }

    #[inline(never)] // a phase: shows in profiles
    pub(super) fn resolve_instances(&mut self) {
        let Some(insts) = &self.d.instances else {
            return;
        };
        // URL names are host name labels, compared without regard to case (I5; ASCII).
        let mut by_url: BTreeMap<Cow<'a, str>, Vec<&'a str>> = BTreeMap::new();
        for i in self.t.instances.values() {
            if !self.managed(&i.id) {
                by_url.entry(ident::fold(&i.url)).or_default().push(&i.id);
            }
        }
        // Issue 9 item 2: instances the state manages under an address that left the file,
        // by folded key and by URL name. A new entry whose key differs from one only in
        // case, or that wants its URL name, names the same instance: it is re-keyed. A
        // delete + configure would have to delete first (the URL name is unique, I5), and
        // a configure that then failed (no slot, T7, ...) would leave nothing.
        let mut by_key: HashMap<Cow<'a, str>, Vec<(&'a str, &'a t::Instance)>> = HashMap::default();
        let mut orphan_url: HashMap<Cow<'a, str>, Vec<(&'a str, &'a t::Instance)>> =
            HashMap::default();
        let in_state = state_under(self.s, "instances.");
        for (a, k, r) in in_state {
            if r.kind != ObjKind::Instance || insts.contains_key(k) {
                continue;
            }
            if let Some(o) = self.t.instances.get(&r.id) {
                by_key.entry(ident::fold(k)).or_default().push((a, o));
                orphan_url
                    .entry(ident::fold(&o.url))
                    .or_default()
                    .push((a, o));
            }
        }
        let mut pending: Vec<(&'a str, &'a m::Instance)> = Vec::new();
        for (key, di) in insts {
            let address = format!("instances.{key}");
            let mut steps = InstSteps::default();
            match self.state_id(&address, ObjKind::Instance) {
                Some(id) if self.t.instances.contains_key(id) => {
                    steps.obs = self.t.instances.get(id);
                }
                _ => match by_key.get(ident::fold(key).as_ref()).map(Vec::as_slice) {
                    Some(&[(from, o)]) if !self.adopted.contains(o.id.as_str()) => {
                        let a = self.rekey(
                            ObjKind::Instance,
                            from,
                            address,
                            &o.id,
                            format!("the state manages this instance as `{from}`; a key whose case changed names the same instance: re-keyed, not deleted and configured again"),
                        );
                        steps.obs = Some(o);
                        steps.ready = Some(a);
                        steps.content = Some(a);
                    }
                    _ => pending.push((key, di)),
                },
            }
            self.insts.insert(key, steps);
        }
        for (key, di) in pending {
            let address = format!("instances.{key}");
            let url = ident::fold(&di.url);
            let mut steps = InstSteps::default();
            match orphan_url.get(url.as_ref()).map(Vec::as_slice) {
                Some(&[(from, o)]) if !self.adopted.contains(o.id.as_str()) => {
                    let a = self.rekey(
                        ObjKind::Instance,
                        from,
                        address,
                        &o.id,
                        format!("the instance with URL name `{}` is managed as `{from}`, which is no longer in the file; a URL name names one instance (I5), so it is re-keyed, not deleted and configured again", o.url),
                    );
                    steps.obs = Some(o);
                    steps.ready = Some(a);
                    steps.content = Some(a);
                }
                _ => match by_url.get(url.as_ref()).map(Vec::as_slice) {
                    Some([id]) if !self.adopted.contains(id) => {
                        let a = self.adopt(
                            ObjKind::Instance,
                            address,
                            id,
                            &format!("instance with URL name `{}`", di.url),
                        );
                        steps.obs = self.t.instances.get(*id);
                        steps.ready = Some(a);
                        steps.content = Some(a);
                        // Issue 13 item 2: the create a killed run left pending made it,
                        // or the one it recorded the intent of before sending it and was
                        // killed before its handle or id was saved (I11: its copy follows).
                        steps.resumed_create = self
                            .s
                            .pending
                            .get(&address_of(key))
                            .is_some_and(|p| p.kind == ActionKind::ConfigureInstance)
                            || self.s.creating.contains(&address_of(key));
                    }
                    Some(ids) if ids.len() > 1 => {
                        self.error(
                            &address,
                            format!(
                                "{} unmanaged instances use the URL name `{}`: {}",
                                ids.len(),
                                di.url,
                                ids.join(", ")
                            ),
                            "I5",
                            None,
                        );
                    }
                    _ => {}
                },
            }
            self.insts.insert(key, steps);
        }
    }

    /// Issue 9 item 2: a plan that deletes an object and creates one with the same natural
    /// key (a user's UPN, a group's display name; compared without regard to case) replaces
    /// it, and the delete waits for the create: when the create fails, apply skips the
    /// delete and the old object stays.
    ///
    /// - Groups: display names need not be unique in the service (the provider creates a
    ///   second group with the same name), so nothing forces the delete first, and the
    ///   edge costs nothing but order.
    /// - Users: a UPN names one user (P1), so the create could never succeed before the
    ///   delete; such a pair is not planned at all (`resolve_users` re-keys the state's
    ///   user instead). The edge is the guarantee should one ever appear.
    /// - Instances: the URL name (I5) would force the delete first (`url_order`), which
    ///   could not be made safe; `resolve_instances` re-keys a managed instance whose key
    ///   (without regard to case) or URL name a new entry of the file wants, so no
    ///   delete + configure of the same instance is planned.
    #[inline(never)] // a phase: shows in profiles
    pub(super) fn replace_guards(&mut self) {
        let mut users: HashMap<String, Vec<usize>> = HashMap::default();
        let mut groups: HashMap<String, Vec<usize>> = HashMap::default();
        for d in &self.drafts {
            match &*d.op {
                Op::DeleteUser { user } => {
                    if let Some(u) = user.id.as_deref().and_then(|id| self.t.users.get(id)) {
                        users
                            .entry(ident::fold(&u.upn).into_owned())
                            .or_default()
                            .push(d.id);
                    }
                }
                Op::DeleteGroup { group } => {
                    if let Some(g) = group.id.as_deref().and_then(|id| self.t.groups.get(id)) {
                        groups
                            .entry(ident::fold(&g.name).into_owned())
                            .or_default()
                            .push(d.id);
                    }
                }
                _ => {}
            }
        }
        if users.is_empty() && groups.is_empty() {
            return;
        }
        let mut edges: Vec<(usize, usize)> = Vec::new();
        for d in &self.drafts {
            let deletes = match &*d.op {
                Op::CreateUser { upn, .. } if !users.is_empty() => {
                    users.get(ident::fold(upn).as_ref())
                }
                Op::CreateGroup { name, .. } if !groups.is_empty() => {
                    groups.get(ident::fold(name).as_ref())
                }
                _ => None,
            };
            edges.extend(deletes.into_iter().flatten().map(|&del| (del, d.id)));
        }
        for (del, create) in edges {
            self.dep(del, Some(create));
        }
    }
}

fn address_of(key: &str) -> String {
    format!("instances.{key}")
}
