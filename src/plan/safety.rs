//! Large-plan safety (issue 14 item 5): a plan that deletes or strips (a replace, a
//! licence, roles or members removed) more than a share of what crmctl manages of one kind (default 30 %, for kinds with at least 10 managed
//! objects, as octoDNS does) is held back unless apply is given `--force` besides
//! `--allow-destroy`. A typo that empties a group list or a file cut in half must not reach
//! the tenant unnoticed. Additions and renames do not count: finishing an interrupted apply
//! of a whole file must not need `--force`. Pure: the plan, the state and the file's thresholds.

use std::collections::{BTreeMap, BTreeSet};

use crate::desired::model::Safety;
use crate::domain::op::{ActionKind, Category, ObjKind};
use crate::plan::action::Plan;
use crate::state::State;

/// Default share, in percent.
pub const DEFAULT_PERCENT: u32 = 30;
/// Kinds with fewer managed objects are never held back.
pub const MIN_MANAGED: usize = 10;

/// One kind over its threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Over {
    /// The collection (`users`, `security_groups`, `instances`).
    pub collection: &'static str,
    /// Managed objects of the kind deleted or stripped.
    pub touched: usize,
    /// Managed objects of the kind.
    pub managed: usize,
    /// The threshold in percent.
    pub percent: u32,
}

impl std::fmt::Display for Over {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this plan deletes or strips (licences, roles, members) {} of the {} {} crmctl manages ({}%, over the {}% threshold)",
            self.touched,
            self.managed,
            self.collection,
            self.touched * 100 / self.managed.max(1),
            self.percent
        )
    }
}

fn collection(kind: ObjKind) -> &'static str {
    match kind {
        ObjKind::User => "users",
        ObjKind::Group => "security_groups",
        ObjKind::Instance => "instances",
    }
}

/// The kinds whose share of deleted or changed managed objects is over its threshold.
pub fn over_threshold(plan: &Plan, state: &State, safety: Option<&Safety>) -> Vec<Over> {
    let mut managed: BTreeMap<ObjKind, usize> = BTreeMap::new();
    for r in state.resources.values() {
        *managed.entry(r.kind).or_insert(0) += 1;
    }
    let mut touched: BTreeMap<ObjKind, BTreeSet<&str>> = BTreeMap::new();
    for a in &plan.actions {
        let counts = matches!(a.kind.category(), Category::Delete | Category::Replace)
            || matches!(
                a.kind,
                ActionKind::RemoveLicense
                    | ActionKind::RemoveRoles
                    | ActionKind::RemoveGroupMembers
            );
        if !counts {
            continue;
        }
        if let Some(r) = state.resources.get(&a.address) {
            touched
                .entry(r.kind)
                .or_default()
                .insert(a.address.as_str());
        }
    }
    let mut out = Vec::new();
    for (kind, addresses) in touched {
        let n = managed.get(&kind).copied().unwrap_or(0);
        let name = collection(kind);
        let percent = safety
            .and_then(|s| s.percent(name))
            .unwrap_or(DEFAULT_PERCENT);
        if n >= MIN_MANAGED && addresses.len() * 100 > percent as usize * n {
            out.push(Over {
                collection: name,
                touched: addresses.len(),
                managed: n,
                percent,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::op::{ObjRef, Op};
    use crate::plan::Action;
    use crate::state::Resource;

    fn state(users: usize) -> State {
        let mut s = State::empty("l");
        for i in 0..users {
            s.resources.insert(
                format!("users.u{i}@x.com"),
                Resource {
                    kind: ObjKind::User,
                    id: format!("id{i}"),
                    protect: false,
                    protected_at: None,
                    copied_from: None,
                    ids: BTreeMap::new(),
                },
            );
        }
        s
    }

    fn deletes(n: usize) -> Plan {
        Plan {
            actions: (0..n)
                .map(|i| {
                    let address = format!("users.u{i}@x.com");
                    Action {
                        id: i,
                        kind: ActionKind::DeleteUser,
                        address: address.clone(),
                        depends_on: vec![],
                        destructive: true,
                        changes: vec![],
                        reason: "".into(),
                        op: Box::new(Op::DeleteUser {
                            user: ObjRef {
                                address: address.into(),
                                id: None,
                            },
                        }),
                    }
                })
                .collect(),
            ..Plan::default()
        }
    }

    // issue 14 item 5: the edges of the threshold (table-driven): the share, the minimum
    // number of managed objects, and a per-kind threshold from the file.
    #[test]
    fn the_threshold_holds_back_large_shares_only() {
        let fifty = Safety {
            users: Some(50),
            ..Safety::default()
        };
        let cases: &[(usize, usize, Option<&Safety>, bool)] = &[
            (10, 3, None, false),  // 30 %: not over
            (10, 4, None, true),   // 40 %
            (9, 9, None, false),   // fewer than 10 managed
            (100, 31, None, true), // 31 %
            (100, 31, Some(&fifty), false),
            (100, 51, Some(&fifty), true),
        ];
        for (managed, deleted, safety, over) in cases {
            let got = over_threshold(&deletes(*deleted), &state(*managed), *safety);
            assert_eq!(
                !got.is_empty(),
                *over,
                "{managed} managed, {deleted} deleted"
            );
        }
        let got = over_threshold(&deletes(4), &state(10), None);
        assert_eq!(
            got[0].to_string(),
            "this plan deletes or strips (licences, roles, members) 4 of the 10 users crmctl manages (40%, over the 30% threshold)"
        );
    }
}
