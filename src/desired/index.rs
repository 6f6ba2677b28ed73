//! Group members resolved to desired users, once per file.
//!
//! A member is written as a UPN and must be a key of `users` (I12). Both validation (is it
//! declared? listed twice?) and the planner (which users join or leave) need each
//! member's user; at the reference size that is 1,000,000 string lookups, so they are done
//! once, here, and shared: [`crate::desired::load`] keeps the result next to the file it read
//! and `crmctl plan` hands it to [`crate::plan::plan_resolved`].
//!
//! Pure and deterministic; large files are resolved on two threads (each resolves half of
//! the memberships into its own part of one buffer, so the result is the same).

use std::collections::HashMap;

use crate::desired::model::Desired;

/// The position of a member that is not a key of `users`.
pub const UNDECLARED: u32 = u32::MAX;

/// From this many memberships on, members are resolved on two threads.
const PARALLEL_FROM: usize = 100_000;

/// Every group's members as positions of users in `Desired::users` (key order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPositions {
    /// Per group, in key order: the range of its members in `pos`; `None` when the file
    /// omits `members`.
    spans: Vec<Option<(usize, usize)>>,
    /// Member positions, group after group, in file order ([`UNDECLARED`] for a UPN that
    /// `users` does not declare).
    pos: Vec<u32>,
    /// How many users the file declares (a check that the positions belong to it).
    users: usize,
}

impl MemberPositions {
    /// Resolve every group's members of `d`.
    pub fn resolve(d: &Desired) -> MemberPositions {
        let users = d.users.as_ref();
        let groups = d.security_groups.as_ref();
        let mut spans = Vec::with_capacity(groups.map_or(0, |g| g.len()));
        let mut total = 0;
        for g in groups.into_iter().flat_map(|g| g.values()) {
            spans.push(g.members.as_ref().map(|m| {
                let span = (total, total + m.len());
                total += m.len();
                span
            }));
        }
        let mut index: HashMap<&str, u32, foldhash::fast::RandomState> = HashMap::default();
        index.reserve(users.map_or(0, |u| u.len()));
        for (i, k) in users.into_iter().flat_map(|u| u.keys()).enumerate() {
            index.insert(k.as_str(), i as u32);
        }
        let mut pos = vec![UNDECLARED; total];
        let lists: Vec<&[String]> = groups
            .into_iter()
            .flat_map(|g| g.values())
            .filter_map(|g| g.members.as_deref())
            .collect();
        let fill = |lists: &[&[String]], out: &mut [u32]| {
            let mut at = 0;
            for list in lists {
                for m in *list {
                    if let Some(&i) = index.get(m.as_str()) {
                        out[at] = i;
                    }
                    at += 1;
                }
            }
        };
        if total < PARALLEL_FROM {
            fill(&lists, &mut pos);
        } else {
            // Split between groups where about half of the memberships are on each side.
            let (mut split, mut acc) = (lists.len(), 0);
            for (n, list) in lists.iter().enumerate() {
                if acc * 2 >= total {
                    split = n;
                    break;
                }
                acc += list.len();
            }
            let (left, right) = lists.split_at(split);
            let (mine, theirs) = pos.split_at_mut(acc);
            std::thread::scope(|scope| {
                scope.spawn(|| fill(right, theirs));
                fill(left, mine);
            });
        }
        MemberPositions {
            spans,
            pos,
            users: users.map_or(0, |u| u.len()),
        }
    }

    /// The members of the `n`-th group (key order) as user positions; `None` when the
    /// file omits its `members`.
    pub fn group(&self, n: usize) -> Option<&[u32]> {
        let (a, b) = self.spans.get(n).copied().flatten()?;
        Some(&self.pos[a..b])
    }

    /// Whether these positions were resolved from a file shaped like `d` (same number of
    /// users and groups, same number of members in each group). A cheap guard against
    /// handing the planner the positions of another file; it cannot see a member renamed
    /// in place, so resolve again after changing `d`.
    pub fn fits(&self, d: &Desired) -> bool {
        let groups = d.security_groups.as_ref();
        self.users == d.users.as_ref().map_or(0, |u| u.len())
            && self.spans.len() == groups.map_or(0, |g| g.len())
            && groups
                .into_iter()
                .flat_map(|g| g.values())
                .zip(&self.spans)
                .all(|(g, span)| match (&g.members, span) {
                    (None, None) => true,
                    (Some(m), Some((a, b))) => m.len() == b - a,
                    _ => false,
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::{SecurityGroup, User};

    fn desired(users: &[&str], groups: &[(&str, Option<&[&str]>)]) -> Desired {
        Desired {
            tenant: "t.onmicrosoft.com".into(),
            users: Some(
                users
                    .iter()
                    .map(|u| (u.to_string(), User::default()))
                    .collect(),
            ),
            security_groups: Some(
                groups
                    .iter()
                    .map(|(k, m)| {
                        (
                            k.to_string(),
                            SecurityGroup {
                                members: m.map(|m| m.iter().map(|s| s.to_string()).collect()),
                                ..SecurityGroup::default()
                            },
                        )
                    })
                    .collect(),
            ),
            ..Desired::default()
        }
    }

    #[test]
    fn members_resolve_to_user_positions_in_key_order() {
        let d = desired(
            &["b@x.com", "a@x.com", "c@x.com"],
            &[
                ("g1", Some(&["c@x.com", "zz@x.com", "a@x.com"])),
                ("g0", None),
                ("g2", Some(&[])),
            ],
        );
        let p = MemberPositions::resolve(&d);
        // Groups in key order: g0, g1, g2; users in key order: a, b, c.
        assert_eq!(p.group(0), None);
        assert_eq!(p.group(1), Some(&[2, UNDECLARED, 0][..]));
        assert_eq!(p.group(2), Some(&[][..]));
        assert_eq!(p.group(3), None);
        assert!(p.fits(&d));
        let mut other = d.clone();
        other
            .security_groups
            .as_mut()
            .unwrap()
            .get_mut("g1")
            .unwrap()
            .members = None;
        assert!(!p.fits(&other));
        let mut other = d.clone();
        other.users.as_mut().unwrap().remove("a@x.com");
        assert!(!p.fits(&other));
    }

    #[test]
    fn two_threads_give_the_same_positions_as_one() {
        let users: Vec<String> = (0..1000).map(|i| format!("u{i}@x.com")).collect();
        let refs: Vec<&str> = users.iter().map(String::as_str).collect();
        let lists: Vec<Vec<&str>> = (0..300)
            .map(|g| {
                (0..400)
                    .map(|k| refs[(g * 7 + k * 13) % refs.len()])
                    .collect()
            })
            .collect();
        let groups: Vec<(String, Vec<&str>)> = lists
            .iter()
            .enumerate()
            .map(|(g, l)| (format!("g{g:03}"), l.clone()))
            .collect();
        let spec: Vec<(&str, Option<&[&str]>)> = groups
            .iter()
            .map(|(k, l)| (k.as_str(), Some(l.as_slice())))
            .collect();
        let d = desired(&refs, &spec);
        let p = MemberPositions::resolve(&d); // 120,000 memberships: two threads
        assert!(p.pos.len() >= PARALLEL_FROM);
        let sorted: Vec<&str> = {
            let mut s = refs.clone();
            s.sort_unstable();
            s
        };
        for (n, (_, list)) in groups.iter().enumerate() {
            let got = p.group(n).unwrap();
            for (m, &i) in list.iter().zip(got) {
                assert_eq!(sorted[i as usize], *m);
            }
        }
    }
}
