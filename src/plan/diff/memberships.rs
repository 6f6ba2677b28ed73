//! Group memberships (I12): the members to add and remove per group. The common case (every
//! listed member a user of the file) compares ids through ranks, with no allocation when
//! nothing changes, on two threads for large files; the general case also takes tenant
//! users that the file does not declare.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{ch, HashMap, HashSet, Planner};
use crate::desired::index::UNDECLARED;
use crate::desired::model as m;
use crate::domain::op::{ActionKind, ObjRef, Op};
use crate::observed as t;

/// What the membership phase records for later ones (I12).
#[derive(Default)]
pub(super) struct Memberships<'a> {
    /// add_group_members per group key: an instance binds the group after it (I12).
    pub(super) added: HashMap<&'a str, usize>,
    /// remove_group_members actions per removed user id: a deleted user leaves its groups
    /// first.
    pub(super) removals: HashMap<&'a str, Vec<usize>>,
    /// Tenant users by UPN, built when first needed.
    upn_index: Option<HashMap<&'a str, &'a str>>,
}

/// What [`Planner::member_diff_fast`] compares ids through, built once per plan.
struct MemberIndex<'a> {
    /// The tenant's user ids, sorted.
    keys: Vec<&'a str>,
    /// Per desired position: the rank of the user's id in `keys` (`NO_RANK`: no id yet).
    rank: Vec<u32>,
}

/// The rank of a desired user that does not exist yet.
const NO_RANK: u32 = u32::MAX;

/// Reusable buffers of [`Planner::member_diff_fast`] (one per thread); per-user marks hold
/// the number of the last group that set them, so they never need clearing.
struct MemberMarks {
    /// Per desired position: listed by this group (users without an id).
    want: Vec<u32>,
    /// Per rank: listed by this group.
    want_rank: Vec<u32>,
    /// Per rank: already a member of this group.
    in_obs: Vec<u32>,
    /// The current group's listed ranks, sorted.
    sorted: Vec<u32>,
}

impl MemberMarks {
    fn new(index: &MemberIndex) -> MemberMarks {
        MemberMarks {
            want: vec![u32::MAX; index.rank.len()],
            want_rank: vec![u32::MAX; index.keys.len()],
            in_obs: vec![u32::MAX; index.keys.len()],
            sorted: Vec::new(),
        }
    }
}

/// The membership changes of one group, ready to become its actions.
#[derive(Default)]
struct MemberDiff<'a> {
    /// References of the users to add, in file order.
    users: Vec<ObjRef>,
    /// Their UPNs, as the change shows them.
    names: Vec<Value>,
    /// The actions that create users to add (their prerequisites).
    ready: Vec<usize>,
    /// Member ids to remove, in observed order.
    remove: Vec<&'a str>,
}

impl MemberDiff<'_> {
    fn add(&mut self, r: ObjRef, ready: Option<usize>, upn: &str) {
        self.users.push(r);
        self.names.push(Value::String(upn.to_string()));
        self.ready.extend(ready);
    }
}

impl<'a> Planner<'a> {
    /// The id of a user nobody declares in the file, by UPN (index built on first use).
    fn unmanaged_upn(&mut self, upn: &str) -> Option<&'a str> {
        let t = self.t;
        let index = self.mem.upn_index.get_or_insert_with(|| {
            t.users
                .values()
                .map(|u| (u.upn.as_str(), u.id.as_str()))
                .collect()
        });
        index.get(upn).copied()
    }

    #[inline(never)] // a phase: shows in profiles
    pub(super) fn group_members(&mut self) {
        let Some(groups) = &self.d.security_groups else {
            return;
        };
        let index = self.member_index();
        let mut marks = index.as_ref().map(MemberMarks::new);
        // Compared up front, on two threads when large (read-only work; the actions are
        // then made in file order as always).
        let mut done = self.member_diffs(groups, index.as_ref());
        for (gno, (key, g)) in groups.iter().enumerate() {
            let Some(members) = &g.members else { continue };
            let bound = self.groups[key.as_str()];
            let obs = bound.id.and_then(|id| self.t.groups.get(id));
            let fast = match done.get_mut(gno).and_then(Option::take) {
                Some(diff) => Some(diff),
                None => match (&index, &mut marks) {
                    (Some(index), Some(marks)) => {
                        self.member_diff_fast(members, obs, gno as u32, index, marks)
                    }
                    _ => None,
                },
            };
            let MemberDiff {
                users,
                names,
                ready,
                remove,
            } = match fast {
                Some(diff) => diff,
                None => self.member_diff(key, members, obs),
            };
            if users.is_empty() && remove.is_empty() {
                continue;
            }
            let address = format!("security_groups.{key}");
            let group = self.group_ref(key);
            if !users.is_empty() {
                let n = users.len();
                let deps = std::iter::once(bound.ready).chain(ready.into_iter().map(Some));
                let a = self.push(
                    ActionKind::AddGroupMembers,
                    address.clone(),
                    Op::AddGroupMembers {
                        group: group.clone(),
                        users,
                    },
                    vec![ch("members", Value::Null, Value::Array(names))],
                    format!("add {n} member(s) (I12)"),
                    deps,
                );
                self.mem.added.insert(key, a);
            }
            if !remove.is_empty() {
                let names: Vec<&str> = remove
                    .iter()
                    .map(|id| self.t.users.get(*id).map_or(*id, |u| u.upn.as_str()))
                    .collect();
                // I12: removed members are disabled in every instance the group stays
                // bound to.
                if let Some(gid) = bound.id {
                    let mut bound_to: Vec<String> = self
                        .d
                        .instances
                        .iter()
                        .flatten()
                        .filter(|(k, di)| {
                            di.security_group.as_deref() == Some(key.as_str())
                                && self.insts.get(k.as_str()).is_some_and(|s| s.obs.is_some())
                        })
                        .map(|(k, _)| format!("instances.{k}"))
                        .collect();
                    bound_to.extend(
                        self.t
                            .instances
                            .values()
                            .filter(|i| {
                                i.security_group.as_deref() == Some(gid)
                                    && !self.managed(&i.id)
                                    && !self.adopted.contains(i.id.as_str())
                            })
                            .map(|i| format!("unmanaged instance `{}`", i.url)),
                    );
                    if !bound_to.is_empty() {
                        let more = if names.len() > 10 {
                            format!(" and {} more", names.len() - 10)
                        } else {
                            String::new()
                        };
                        self.warn(
                            &address,
                            format!(
                                "removing {} member(s) from group `{key}` disables them in {} (I12): {}{more}",
                                names.len(),
                                bound_to.join(", "),
                                names.iter().take(10).copied().collect::<Vec<_>>().join(", ")
                            ),
                            "I12",
                        );
                    }
                }
                let changes = vec![ch("members", json!(names), Value::Null)];
                let users = remove.iter().map(|id| self.id_ref(id)).collect();
                let a = self.push(
                    ActionKind::RemoveGroupMembers,
                    address.clone(),
                    Op::RemoveGroupMembers {
                        group: group.clone(),
                        users,
                    },
                    changes,
                    format!("remove {} member(s) not in the file (I12: they lose access to the instances bound to the group)", remove.len()),
                    [bound.ready],
                );
                for id in remove {
                    self.mem.removals.entry(id).or_default().push(a);
                }
            }
        }
    }

    /// The membership changes of a group when every listed member is a desired user;
    /// `None` otherwise (then [`Self::member_diff`] works it out).
    ///
    /// Ids are compared as the original does (dedup by id, exact string match), but
    /// through ranks: a user's rank is the position of its id among the tenant's sorted
    /// user ids, so sorting the listed members' ranks sorts their ids, and one merge with
    /// the observed (sorted) member set finds what to add and remove. Per membership: one
    /// hash lookup (UPN) and one string comparison; no allocation when nothing changes.
    fn member_diff_fast(
        &self,
        members: &'a [String],
        obs: Option<&'a t::Group>,
        gno: u32,
        index: &MemberIndex<'a>,
        sc: &mut MemberMarks,
    ) -> Option<MemberDiff<'a>> {
        // The positions resolved at load (same order as `users.idx`).
        let pos = self.members.group(gno as usize)?;
        if pos.len() != members.len() || pos.contains(&UNDECLARED) {
            return None;
        }
        let mut diff = MemberDiff::default();
        if let Some(o) = obs {
            // The listed members' ids, sorted and without repeats, merged with the
            // observed members: observed ids that are not listed are removed.
            sc.sorted.clear();
            sc.sorted.extend(
                pos.iter()
                    .map(|&p| index.rank[p as usize])
                    .filter(|&r| r != NO_RANK),
            );
            sc.sorted.sort_unstable();
            sc.sorted.dedup();
            let mut want = sc.sorted.iter();
            let mut next = want.next();
            for id in &o.members {
                let id = id.as_str();
                // Skip listed ids below `id`; one comparison per step.
                let found = loop {
                    match next {
                        None => break false,
                        Some(&r) => match index.keys[r as usize].cmp(id) {
                            std::cmp::Ordering::Less => next = want.next(),
                            std::cmp::Ordering::Equal => {
                                sc.in_obs[r as usize] = gno;
                                next = want.next();
                                break true;
                            }
                            std::cmp::Ordering::Greater => break false,
                        },
                    }
                };
                if !found {
                    diff.remove.push(id);
                }
            }
        }
        for (upn, &i) in members.iter().zip(pos) {
            let i = i as usize;
            let b = &self.users.bound[i];
            match index.rank[i] {
                NO_RANK => {
                    if sc.want[i] == gno {
                        continue; // a new user listed twice
                    }
                    sc.want[i] = gno;
                }
                r => {
                    let r = r as usize;
                    if sc.want_rank[r] == gno {
                        continue; // listed twice
                    }
                    sc.want_rank[r] = gno;
                    if sc.in_obs[r] == gno {
                        continue;
                    }
                }
            }
            let r = ObjRef {
                address: self.users.address(i, upn),
                id: b.id.map(str::to_string),
            };
            diff.add(r, b.ready, upn);
        }
        Some(diff)
    }

    /// The ranks of the desired users' ids among the tenant's, or `None` when a desired
    /// user's id is not a key of the tenant's users (then groups take the general path).
    fn member_index(&self) -> Option<MemberIndex<'a>> {
        let keys: Vec<&'a str> = self.t.users.keys().map(String::as_str).collect();
        let rank_of: HashMap<&str, u32> = keys
            .iter()
            .enumerate()
            .map(|(r, k)| (*k, r as u32))
            .collect();
        let rank = self
            .users
            .bound
            .iter()
            .map(|b| match b.id {
                Some(id) => rank_of.get(id).copied(),
                None => Some(NO_RANK),
            })
            .collect::<Option<Vec<u32>>>()?;
        Some(MemberIndex { keys, rank })
    }

    /// [`Self::member_diff_fast`] of every group with members, by group number, computed
    /// on two threads when the groups hold many memberships (listed plus observed); empty
    /// when small (then each group is compared when its turn comes).
    fn member_diffs(
        &self,
        groups: &'a BTreeMap<String, m::SecurityGroup>,
        index: Option<&MemberIndex<'a>>,
    ) -> Vec<Option<MemberDiff<'a>>> {
        let Some(index) = index else {
            return Vec::new();
        };
        type Work<'a> = (u32, &'a [String], Option<&'a t::Group>, usize);
        let work: Vec<Work<'a>> = groups
            .iter()
            .enumerate()
            .filter_map(|(gno, (key, g))| {
                let members = g.members.as_deref()?;
                let obs = self.groups[key.as_str()]
                    .id
                    .and_then(|id| self.t.groups.get(id));
                let weight = members.len() + obs.map_or(0, |o| o.members.len());
                Some((gno as u32, members, obs, weight))
            })
            .collect();
        let total: usize = work.iter().map(|w| w.3).sum();
        if total < self.parallel.memberships.max(1) {
            return Vec::new();
        }
        // Split where half of the memberships are on each side.
        let mut acc = 0;
        let mid = work
            .iter()
            .position(|w| {
                acc += w.3;
                acc * 2 >= total
            })
            .map_or(work.len(), |p| p + 1);
        let (left, right) = work.split_at(mid);
        let run = |part: &[Work<'a>]| {
            let mut marks = MemberMarks::new(index);
            part.iter()
                .map(|&(gno, members, obs, _)| {
                    (
                        gno,
                        self.member_diff_fast(members, obs, gno, index, &mut marks),
                    )
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = std::thread::scope(|scope| {
            let other = scope.spawn(|| run(right));
            let mine = run(left);
            (mine, other.join().expect("comparing groups does not panic"))
        });
        let mut out: Vec<Option<MemberDiff<'a>>> = Vec::new();
        out.resize_with(groups.len(), || None);
        for (gno, diff) in a.into_iter().chain(b) {
            out[gno as usize] = diff;
        }
        out
    }

    /// The general form of [`Self::member_diff_fast`]: members may be users of the tenant
    /// that the file does not declare, or nobody at all (an error).
    fn member_diff(
        &mut self,
        key: &str,
        members: &'a [String],
        obs: Option<&'a t::Group>,
    ) -> MemberDiff<'a> {
        let address = format!("security_groups.{key}");
        let mut want_ids: HashSet<&str> =
            HashSet::with_capacity_and_hasher(members.len(), Default::default());
        let mut diff = MemberDiff::default();
        let mut new_seen: HashSet<&str> = HashSet::default();
        for upn in members {
            let (id, ready): (Option<&'a str>, Option<usize>) = match self.users.get(upn.as_str()) {
                Some(b) => (b.id, b.ready),
                None => match self.unmanaged_upn(upn) {
                    Some(id) => (Some(id), None),
                    None => {
                        self.error(
                            &address,
                            format!("member `{upn}` is neither declared under `users` nor a user of the tenant"),
                            "I12",
                            Some(format!("declare `users.{upn}` or remove it from the members")),
                        );
                        continue;
                    }
                },
            };
            if let Some(id) = id {
                if !want_ids.insert(id) {
                    continue; // listed twice
                }
                if obs.is_some_and(|o| o.members.contains(id)) {
                    continue;
                }
            }
            let r = match (self.users.contains_key(upn.as_str()), id) {
                (true, _) => self.user_ref(upn),
                (false, Some(id)) => self.id_ref(id),
                (false, None) => continue,
            };
            if id.is_none() && !new_seen.insert(upn.as_str()) {
                continue; // a new user listed twice
            }
            diff.add(r, ready, upn);
        }
        if let Some(o) = obs {
            diff.remove = o
                .members
                .iter()
                .map(String::as_str)
                .filter(|id| !want_ids.contains(id))
                .collect();
        }
        diff
    }
}
