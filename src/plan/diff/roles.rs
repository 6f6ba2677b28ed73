//! Security roles per user and instance (P2), the non-interactive limit (P3); on two
//! threads for large files.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{ch, user_address, HashMap, Planner};
use crate::desired::model as m;
use crate::diag::Diagnostic;
use crate::domain::kinds::AccessMode;
use crate::domain::limits::MAX_NON_INTERACTIVE_PER_INSTANCE;
use crate::domain::op::{ActionKind, ObjRef, Op};
use crate::observed as t;
use crate::plan::action::Change;

/// An action worked out on a helper thread, pushed later in order.
struct Pending {
    kind: ActionKind,
    address: String,
    op: Op,
    changes: Vec<Change>,
    reason: &'static str,
    deps: [Option<usize>; 4],
}

/// What [`Planner::user_roles`] found for a run of users.
#[derive(Default)]
struct RolesOut<'a> {
    pushes: Vec<Pending>,
    diags: Vec<Diagnostic>,
    /// Instance keys where a user will be non-interactive with roles (P3), once per user
    /// and instance.
    ni: Vec<&'a str>,
}

impl<'a> Planner<'a> {
    /// Roles actions of every desired user (P2) and the P3 check. From `parallel_from`
    /// desired users on, the users' roles are worked out on two threads (read-only), then
    /// their actions pushed in file order, so the plan is the same either way.
    #[inline(never)] // a phase: shows in profiles
    pub(super) fn roles_with(&mut self, parallel_from: usize) {
        let Some(users) = &self.d.users else { return };
        let key_of_id: HashMap<&'a str, &'a str> = self
            .insts
            .iter()
            .filter_map(|(k, s)| s.obs.map(|o| (o.id.as_str(), *k)))
            .collect();
        // P3: non-interactive users with roles, per instance key, once the plan is done.
        let mut ni: BTreeMap<&str, usize> = BTreeMap::new();
        for u in self.t.users.values() {
            if u.access_mode != AccessMode::NonInteractive || self.users_contains_id(&u.id) {
                continue;
            }
            for (iid, r) in &u.roles {
                if let (false, Some(k)) = (r.is_empty(), key_of_id.get(iid.as_str())) {
                    *ni.entry(k).or_default() += 1;
                }
            }
        }
        let list: Vec<(usize, (&'a String, &'a m::User))> = users.iter().enumerate().collect();
        let parts: Vec<RolesOut<'a>> = if list.len() >= parallel_from.max(2) {
            let (left, right) = list.split_at(list.len() / 2);
            let this = &*self;
            let key_of_id = &key_of_id;
            std::thread::scope(|scope| {
                let other = scope.spawn(move || this.user_roles(right, key_of_id));
                let mine = this.user_roles(left, key_of_id);
                vec![mine, other.join().expect("planning roles does not panic")]
            })
        } else {
            vec![self.user_roles(&list, &key_of_id)]
        };
        for part in parts {
            for k in part.ni {
                *ni.entry(k).or_default() += 1;
            }
            self.diags.extend(part.diags);
            for p in part.pushes {
                self.push(p.kind, p.address, p.op, p.changes, p.reason, p.deps);
            }
        }
        for (k, n) in ni {
            if n > MAX_NON_INTERACTIVE_PER_INSTANCE {
                self.error(
                    &format!("instances.{k}"),
                    format!("{n} non-interactive users would have roles in this instance; at most {MAX_NON_INTERACTIVE_PER_INSTANCE} are allowed"),
                    "P3",
                    Some("use application users for integrations (they do not count)".into()),
                );
            }
        }
    }

    /// The roles actions, diagnostics and non-interactive counts of `users` (position, UPN,
    /// entry), in order. Pure: [`Self::roles_with`] applies the result.
    fn user_roles(
        &self,
        users: &[(usize, (&'a String, &'a m::User))],
        key_of_id: &HashMap<&'a str, &'a str>,
    ) -> RolesOut<'a> {
        let insts = self.d.instances.as_ref();
        let mut out = RolesOut::default();
        // One reference per instance, cloned into each roles action.
        let mut inst_refs: HashMap<&str, ObjRef> = HashMap::default();
        let (mut keys, mut want, mut have): (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) =
            Default::default();
        for &(i, (upn, u)) in users {
            let steps = self.users.steps[i];
            let bound = self.users.bound[i];
            let obs = bound.user;
            let final_ni = steps.final_mode == Some(AccessMode::NonInteractive);
            let Some(map) = &u.roles else {
                if final_ni {
                    if let Some(o) = obs {
                        for (iid, r) in &o.roles {
                            if let (false, Some(k)) = (r.is_empty(), key_of_id.get(iid.as_str())) {
                                out.ni.push(k);
                            }
                        }
                    }
                }
                continue;
            };
            // Fast path: the observed roles are those of the file (the common case).
            if !final_ni && obs.is_some_and(|o| self.roles_unchanged(map, o, key_of_id)) {
                continue;
            }
            let address = user_address(upn);
            for k in map.keys() {
                if !insts.is_some_and(|i| i.contains_key(k)) {
                    out.diags.push(
                        Diagnostic::error(
                            address.as_str(),
                            format!("roles are given for instance `{k}`, which is not in the file"),
                        )
                        .rule("P2"),
                    );
                }
            }
            let mut user: Option<ObjRef> = None;
            // Desired instances the user has roles in now, plus those the file lists
            // (sorted, once each; the lists are reused from user to user).
            keys.clear();
            keys.extend(
                map.keys()
                    .map(String::as_str)
                    .filter(|k| self.insts.contains_key(k)),
            );
            if let Some(o) = obs {
                keys.extend(
                    o.roles
                        .keys()
                        .filter_map(|iid| key_of_id.get(iid.as_str()).copied()),
                );
            }
            keys.sort_unstable();
            keys.dedup();
            for &ikey in &keys {
                let Some((ikey, s)) = self.insts.get_key_value(ikey) else {
                    continue;
                };
                let ikey: &'a str = ikey;
                want.clear();
                if let Some(v) = map.get(ikey) {
                    want.extend(v.iter().map(String::as_str));
                    want.sort_unstable();
                    want.dedup();
                }
                if final_ni && !want.is_empty() {
                    out.ni.push(ikey);
                }
                have.clear();
                if let (Some(o), Some(i)) = (obs, s.obs) {
                    if !s.roles_wiped {
                        // A set: sorted, once each.
                        have.extend(o.roles.get(&i.id).into_iter().flatten().map(String::as_str));
                    }
                }
                if want == have {
                    continue;
                }
                let user: &ObjRef = user.get_or_insert_with(|| self.user_ref(upn));
                let add = sorted_difference(&want, &have);
                let remove = sorted_difference(&have, &want);
                let content = s.content;
                let iref = inst_refs
                    .entry(ikey)
                    .or_insert_with(|| self.inst_ref(ikey))
                    .clone();
                let had_add = !add.is_empty();
                if had_add {
                    // P6: global and service admins need no license for roles.
                    if steps.final_mode == Some(AccessMode::ReadWrite)
                        && steps.final_license.is_none()
                        && !steps.license_free_admin
                    {
                        let mut d = Diagnostic::error(
                            address.as_str(),
                            format!("a read-write user needs a license to get security roles in `{ikey}`"),
                        )
                        .rule("P2");
                        d.hint = Some("give the user a `license`".into());
                        out.diags.push(d);
                    }
                    out.pushes.push(Pending {
                        kind: ActionKind::AssignRoles,
                        address: address.clone(),
                        op: Op::AssignRoles { user: user.clone(), instance: iref.clone(), roles: add },
                        changes: vec![ch(roles_path(ikey), str_array(&have), str_array(&want))],
                        reason: "security roles from the file (P2: after the user, the license and the instance exist)",
                        // P6: a license-free admin gets roles once it is admin.
                        deps: [bound.ready, steps.license.or(steps.admin), steps.mode, content],
                    });
                }
                if !remove.is_empty() {
                    out.pushes.push(Pending {
                        kind: ActionKind::RemoveRoles,
                        address: address.clone(),
                        op: Op::RemoveRoles {
                            user: user.clone(),
                            instance: iref,
                            roles: remove,
                        },
                        changes: if had_add {
                            vec![]
                        } else {
                            vec![ch(roles_path(ikey), str_array(&have), str_array(&want))]
                        },
                        reason: "security roles not in the file (P2)",
                        deps: [bound.ready, None, None, None],
                    });
                }
            }
        }
        out
    }

    /// Whether planning the roles of `map` for the existing user `o` gives no action and no
    /// diagnostic. `false` also when unsure: the caller then works the roles out in full.
    fn roles_unchanged(
        &self,
        map: &m::Roles,
        o: &t::User,
        key_of_id: &HashMap<&str, &str>,
    ) -> bool {
        for (k, want) in map {
            let Some(s) = self.insts.get(k.as_str()) else {
                return false; // an error to report
            };
            let have = match s.obs {
                Some(i) if !s.roles_wiped => o.roles.get(&i.id),
                _ => None,
            };
            if !same_set(want, have) {
                return false;
            }
        }
        // Roles held in a desired instance the file lists none for are removed.
        o.roles.iter().all(|(iid, r)| {
            r.is_empty()
                || key_of_id
                    .get(iid.as_str())
                    .is_none_or(|k| map.contains_key(k))
        })
    }

    fn users_contains_id(&self, id: &str) -> bool {
        self.addr_of_id
            .get(id)
            .is_some_and(|a| self.desired_user_address(a))
            || self.adopted.contains(id)
    }
}
/// Whether the list `want` holds exactly the roles of `have` (absent = none), ignoring
/// order and repeats.
fn same_set(want: &[String], have: Option<&BTreeSet<String>>) -> bool {
    let Some(have) = have.filter(|h| !h.is_empty()) else {
        return want.is_empty();
    };
    if want.len() < have.len() {
        return false;
    }
    if want.len() > 16 {
        return want.iter().map(String::as_str).collect::<BTreeSet<_>>()
            == have.iter().map(String::as_str).collect::<BTreeSet<_>>();
    }
    let mut distinct = 0;
    for (j, r) in want.iter().enumerate() {
        if !have.contains(r) {
            return false;
        }
        if !want[..j].contains(r) {
            distinct += 1;
        }
    }
    distinct == have.len()
}

/// `roles.<instance key>`.
fn roles_path(key: &str) -> String {
    let mut s = String::with_capacity(6 + key.len());
    s.push_str("roles.");
    s.push_str(key);
    s
}

/// A set of strings as a JSON array (what `json!` gives, without the serializer).
fn str_array(set: &[&str]) -> Value {
    Value::Array(set.iter().map(|s| Value::String(s.to_string())).collect())
}

/// The items of sorted `a` that are not in sorted `b`, owned.
fn sorted_difference(a: &[&str], b: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut b = b.iter().peekable();
    for x in a {
        while b.next_if(|y| **y < *x).is_some() {}
        if b.peek() != Some(&x) {
            out.push(x.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sorted_difference;

    #[test]
    fn sorted_difference_keeps_what_the_other_lacks() {
        for (a, b, want) in [
            (&[][..], &[][..], &[][..]),
            (&["a", "b"], &[], &["a", "b"]),
            (&[], &["a"], &[]),
            (&["a", "c", "e"], &["b", "c", "d"], &["a", "e"]),
            (&["b"], &["a", "b", "c"], &[]),
            (&["x", "y"], &["a"], &["x", "y"]),
        ] {
            assert_eq!(sorted_difference(a, b), want, "{a:?} - {b:?}");
        }
    }
}
