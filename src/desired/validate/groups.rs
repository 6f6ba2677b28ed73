//! Security group members (I12): declared under `users`, each listed once.

use super::{closest, err, warn};
use crate::desired::index::{MemberPositions, UNDECLARED};
use crate::desired::model::Desired;
use crate::diag::Diagnostic;
use crate::domain::ident;

pub(super) fn groups(d: &Desired, members: &MemberPositions, out: &mut Vec<Diagnostic>) {
    let Some(groups) = &d.security_groups else {
        return;
    };
    // The last group that listed each user: O(1) per membership.
    let users = d.users.as_ref();
    let mut seen_in: Vec<u32> = vec![u32::MAX; users.map_or(0, |u| u.len())];
    for (gi, (gkey, g)) in groups.iter().enumerate() {
        let (Some(names), Some(positions)) = (&g.members, members.group(gi)) else {
            continue;
        };
        let gi = gi as u32;
        let mut undeclared = 0usize;
        for (i, (m, &ui)) in names.iter().zip(positions).enumerate() {
            match ui {
                UNDECLARED => {
                    undeclared += 1;
                    // One diagnostic per undeclared member, but not thousands for one group.
                    if undeclared <= 20 {
                        // Issue 9 item 2: the same UPN in another case (P1) is named as such.
                        let same = users.and_then(|u| u.keys().find(|k| ident::same(k, m)));
                        let hint = if let Some(k) = same {
                            format!("members are user keys, written as declared: `{k}` (a UPN names one user whatever its case, P1)")
                        } else if users.is_none() {
                            format!("declare `{m}` under `users:` (an empty entry `{m}: {{}}` is enough)")
                        } else {
                            match users.and_then(|u| closest(m, u.keys().map(String::as_str))) {
                                Some(c) if undeclared == 1 => format!("did you mean `{c}`? members must be declared under `users:`"),
                                _ => format!("declare `{m}` under `users:` (an empty entry `{m}: {{}}` is enough)"),
                            }
                        };
                        out.push(
                            err(
                                format!("security_groups.{gkey}.members[{i}]"),
                                "I12",
                                format!(
                                    "member `{m}` of group `{gkey}` is not declared under `users`"
                                ),
                            )
                            .hint(hint),
                        );
                    }
                }
                ui => {
                    let slot = &mut seen_in[ui as usize];
                    if *slot == gi {
                        out.push(
                            warn(
                                format!("security_groups.{gkey}.members[{i}]"),
                                "I12",
                                format!("`{m}` is listed twice in group `{gkey}`"),
                            )
                            .hint("remove the duplicate entry"),
                        );
                    }
                    *slot = gi;
                }
            }
        }
        if undeclared > 20 {
            out.push(err(
                format!("security_groups.{gkey}.members"),
                "I12",
                format!("group `{gkey}` has {undeclared} members not declared under `users`; only the first 20 are shown"),
            ));
        }
    }
}
