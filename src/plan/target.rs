//! Targeting (issue 14 item 4): `--target`, `--exclude` and `--replace` as a pure pass over
//! a finished plan and its dependency graph ([`select`]), run by `ops` after the backup
//! pass. The replacement itself is planned by the diff (`--replace` reaches the planner
//! through [`crate::plan::plan_with`]); this pass keeps the replaced addresses' actions.
//!
//! Addresses are those of the plan's actions: `users.UPN`, `security_groups.KEY`,
//! `instances.KEY`, `licenses.PLAN`, `slots.KIND`, `storage`. An ADDR covers the action
//! addresses equal to it; a collection (`users`, `security_groups`, `instances`,
//! `licenses`, `slots`) covers every address under it. An instance address also covers
//! the security-role changes in that instance (whose address is the user's). A UPN holds
//! dots, so "under" is by collection only: `users.ana@coho` does not cover
//! `users.ana@coho.com`.
//!
//! - `--target`: the targeted actions, plus (transitively) every action they depend on,
//!   listed as brought in ([`Targeting::dependencies`]).
//! - `--exclude`: the actions at the address and (transitively) those that depend on them
//!   are left out, listed in [`Targeting::excluded`] with the excluded action they depend
//!   on. A targeted action that depends on an excluded one is an error naming both.
//! - The state entries the plan forgets and the drift are kept only within the targets
//!   (and outside the excludes); diagnostics are kept whole (an error anywhere still
//!   stops apply).
//!
//! Linear in the plan's size: actions are in execution order, so every dependency has a
//! smaller id and each closure is one pass.

use serde::{Deserialize, Serialize};

use crate::domain::op::{ActionKind, Op};
use crate::plan::action::{Action, Plan, Summary};

/// The collections an address can name as a whole.
pub const COLLECTIONS: [&str; 6] = [
    "users",
    "security_groups",
    "instances",
    "licenses",
    "slots",
    "storage",
];

/// The targeting of a plan, as asked (`targets`, `excludes`, `replaces`) and as done
/// (`dependencies`, `excluded`, `left_out`). Recorded in the plan (`Plan::targeting`), so a
/// saved plan carries it under its checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targeting {
    /// `--target` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// `--exclude` addresses.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// `--replace` addresses.
    #[serde(default)]
    pub replaces: Vec<String>,
    /// Ids (in this plan) of the actions kept only because a targeted action depends on them.
    #[serde(default)]
    pub dependencies: Vec<usize>,
    /// Actions of the full plan left out by `--exclude`.
    #[serde(default)]
    pub excluded: Vec<Excluded>,
    /// How many actions of the full plan are outside the targets (not listed).
    #[serde(default)]
    pub left_out: usize,
}

/// An action left out by `--exclude`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    /// Its address.
    pub address: String,
    /// Its kind.
    pub kind: ActionKind,
    /// The excluded action it depends on (`kind address`); absent when it is itself at an
    /// excluded address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on_excluded: Option<String>,
}

impl Targeting {
    /// Whether any targeting was asked for.
    pub fn is_requested(&self) -> bool {
        !(self.targets.is_empty() && self.excludes.is_empty() && self.replaces.is_empty())
    }

    /// Whether the plan is partial: it leaves out actions of the full plan.
    pub fn is_partial(&self) -> bool {
        self.left_out > 0 || !self.excluded.is_empty()
    }
}

/// Why targeting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// An address that matches nothing in the file, the state or the plan.
    #[error(
        "{flag} {address}: nothing in the file, the state or the plan has this address; {hint}"
    )]
    Unknown {
        /// `--target`, `--exclude` or `--replace`.
        flag: &'static str,
        /// The address as given.
        address: String,
        /// "did you mean ..." or the forms of an address.
        hint: String,
    },
    /// A targeted action depends on an excluded one.
    #[error("--target {target} needs `{action}`, which depends on `{dependency}`, excluded by --exclude {exclude}: drop that --exclude, or target less")]
    ExcludedDependency {
        /// The `--target` address.
        target: String,
        /// The targeted action (`kind address`).
        action: String,
        /// The excluded action it depends on (`kind address`).
        dependency: String,
        /// The `--exclude` address.
        exclude: String,
    },
    /// `--replace` of an address that cannot be replaced.
    #[error("--replace {address}: {why}")]
    CannotReplace {
        /// The address as given.
        address: String,
        /// Why, and what to do instead.
        why: String,
    },
}

/// Whether `pattern` covers the action address `address` (see the module documentation).
pub fn covers(pattern: &str, address: &str) -> bool {
    address == pattern
        || (COLLECTIONS.contains(&pattern)
            && address.len() > pattern.len()
            && address.starts_with(pattern)
            && address.as_bytes()[pattern.len()] == b'.')
}

/// Whether `pattern` covers `action`: its address, or for a security-role change, the
/// instance it is in.
fn covers_action(pattern: &str, a: &Action) -> bool {
    covers(pattern, &a.address)
        || match &*a.op {
            Op::AssignRoles { instance, .. } | Op::RemoveRoles { instance, .. } => {
                covers(pattern, &instance.address)
            }
            _ => false,
        }
}

/// The `--target` (or `--replace`) address that makes `a` a root of the targeted plan;
/// every action is one without `--target`.
fn root_of<'t>(asked: &'t Targeting, a: &Action) -> Option<&'t str> {
    if asked.targets.is_empty() {
        return Some("");
    }
    asked
        .targets
        .iter()
        .chain(&asked.replaces)
        .find(|t| covers_action(t, a))
        .map(String::as_str)
}

/// Check the kinds `--replace` can re-create, before planning: an instance only (I9, I11).
pub fn check_replaces(replaces: &[String]) -> Result<(), TargetError> {
    for r in replaces {
        let why = match r.split_once('.') {
            Some(("instances", key)) if !key.is_empty() => continue,
            _ if r == "instances" => "name one instance, e.g. `instances.test`, not the whole collection".to_string(),
            Some(("users", _)) | None if r.starts_with("users") => "a user cannot be replaced: its UPN is unique (P1), so it would be deleted before it is created again, losing its licence, roles and memberships in between; remove it from the file and apply (--allow-destroy), then add it back".to_string(),
            Some(("security_groups", _)) | None if r.starts_with("security_groups") => "a security group cannot be replaced: deleting it changes who can use the instances bound to it (I12) and a new group has a new id; remove it from the file and apply (--allow-destroy), then add it back".to_string(),
            _ => "only an instance can be replaced (`instances.KEY`: a sandbox is re-copied from its `copy_from` source (I11) or reset (I9)); licences, storage and slots are counts, not objects".to_string(),
        };
        return Err(TargetError::CannotReplace {
            address: r.clone(),
            why,
        });
    }
    Ok(())
}

/// Check that every address of `t` covers something `known` (the file's, the state's and
/// the plan's addresses), else an error with a "did you mean".
pub fn check_known<'k>(
    t: &Targeting,
    known: impl Iterator<Item = &'k str> + Clone,
) -> Result<(), TargetError> {
    let lists = [
        ("--target", &t.targets),
        ("--exclude", &t.excludes),
        ("--replace", &t.replaces),
    ];
    for (flag, list) in lists {
        for p in list {
            if known.clone().any(|k| covers(p, k)) {
                continue;
            }
            let names = known.clone().chain(COLLECTIONS.iter().map(|c| &**c));
            let hint = match crate::desired::validate::closest(p, names) {
                Some(c) => format!("did you mean `{c}`?"),
                None => "an address is a collection (users, security_groups, instances, licenses, slots, storage) or an object in it, e.g. `instances.test`, `users.ana@coho.com`; `crmctl state list` shows what the state manages".to_string(),
            };
            return Err(TargetError::Unknown {
                flag,
                address: p.clone(),
                hint,
            });
        }
    }
    Ok(())
}

/// The plan reduced to what `asked` targets (its `targets`, `excludes` and `replaces`;
/// the rest of `asked` is ignored and filled in). Without any of the three, the plan is
/// returned unchanged. Ids are renumbered in execution order.
pub fn select(plan: Plan, asked: &Targeting) -> Result<Plan, TargetError> {
    if !asked.is_requested() {
        return Ok(plan);
    }
    let n = plan.actions.len();
    let acts = &plan.actions;
    // Excluded: at an excluded address (itself), or after one (the first excluded action
    // it depends on). Dependencies have smaller ids: one pass.
    let mut excluded_by: Vec<Option<usize>> = vec![None; n];
    for (i, a) in acts.iter().enumerate() {
        let by = if asked.excludes.iter().any(|x| covers_action(x, a)) {
            Some(i)
        } else {
            a.depends_on.iter().find_map(|&d| excluded_by[d])
        };
        excluded_by[i] = by;
    }
    let label = |i: usize| format!("{} {}", acts[i].kind.as_str(), acts[i].address);
    let exclude_of = |i: usize| {
        asked
            .excludes
            .iter()
            .find(|x| covers_action(x, &acts[i]))
            .cloned()
            .unwrap_or_default()
    };
    // Roots: the targeted actions (every action without --target), and the actions at a
    // replaced address (asked for explicitly).
    let mut root = vec![false; n];
    for (i, a) in acts.iter().enumerate() {
        let Some(t) = root_of(asked, a) else { continue };
        match excluded_by[i] {
            None => root[i] = true,
            Some(x) if x == i => {} // itself excluded: the exclude wins
            Some(x) if !asked.targets.is_empty() => {
                return Err(TargetError::ExcludedDependency {
                    target: t.to_string(),
                    action: label(i),
                    dependency: label(x),
                    exclude: exclude_of(x),
                })
            }
            Some(_) => {} // no --target: dependents of an excluded action are skipped
        }
    }
    // Keep the roots and, backwards, everything they depend on.
    let mut keep = root.clone();
    for (i, a) in acts.iter().enumerate().rev() {
        if keep[i] {
            for &d in &a.depends_on {
                keep[d] = true;
            }
        }
    }
    let mut out = Targeting {
        targets: asked.targets.clone(),
        excludes: asked.excludes.clone(),
        replaces: asked.replaces.clone(),
        ..Targeting::default()
    };
    for (i, a) in acts.iter().enumerate() {
        if keep[i] {
            continue;
        }
        match excluded_by[i] {
            Some(x) => out.excluded.push(Excluded {
                address: a.address.clone(),
                kind: a.kind,
                depends_on_excluded: (x != i).then(|| label(x)),
            }),
            None => out.left_out += 1,
        }
    }
    // Renumber.
    let mut new_id = vec![usize::MAX; n];
    let mut next = 0;
    for (id, &k) in new_id.iter_mut().zip(&keep) {
        if k {
            *id = next;
            next += 1;
        }
    }
    let in_scope = |address: &str| {
        (asked.targets.is_empty()
            || asked
                .targets
                .iter()
                .chain(&asked.replaces)
                .any(|t| covers(t, address)))
            && !asked.excludes.iter().any(|x| covers(x, address))
    };
    let mut plan = plan;
    let old = std::mem::take(&mut plan.actions);
    let mut summary = Summary::default();
    for (i, mut a) in old.into_iter().enumerate() {
        if !keep[i] {
            continue;
        }
        a.id = new_id[i];
        for d in &mut a.depends_on {
            *d = new_id[*d];
        }
        if !root[i] {
            out.dependencies.push(a.id);
        }
        crate::plan::count(&mut summary, a.kind);
        plan.actions.push(a);
    }
    plan.forget.retain(|f| in_scope(&f.address));
    plan.drift.retain(|d| in_scope(&d.address));
    for d in &mut plan.drift {
        d.reverted_by = d
            .reverted_by
            .iter()
            .filter(|&&i| i < n && keep[i])
            .map(|&i| new_id[i])
            .collect();
    }
    summary.forget = plan.forget.len();
    summary.drift = plan.drift.len();
    plan.summary = summary;
    plan.targeting = Some(out);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::op::{ObjRef, Op};

    fn r(address: &str) -> ObjRef {
        ObjRef {
            address: address.into(),
            id: None,
        }
    }

    /// A small plan in execution order:
    /// 0 purchase_instance slots.sandbox
    /// 1 configure_instance instances.test   <- 0
    /// 2 create_user users.ana@x.com
    /// 3 assign_license users.ana@x.com      <- 2
    /// 4 assign_roles users.ana@x.com (in instances.test) <- 1, 3
    /// 5 create_group security_groups.g
    /// 6 add_group_members security_groups.g <- 2, 5
    /// 7 delete_user users.bob@x.com
    fn sample() -> Plan {
        let act = |id: usize, address: &str, deps: &[usize], op: Op| Action {
            id,
            kind: op.kind(),
            address: address.into(),
            depends_on: deps.to_vec(),
            destructive: op.kind().always_destructive(),
            changes: vec![],
            reason: "".into(),
            op: Box::new(op),
        };
        let mut plan = Plan {
            actions: vec![
                act(
                    0,
                    "slots.sandbox",
                    &[],
                    Op::PurchaseInstance {
                        kind: crate::domain::kinds::InstanceType::Sandbox,
                    },
                ),
                act(
                    1,
                    "instances.test",
                    &[0],
                    Op::ConfigureInstance {
                        name: "t".into(),
                        url: "t".into(),
                        kind: crate::domain::kinds::InstanceType::Sandbox,
                        purpose: String::new(),
                        region: crate::domain::kinds::Region::NA,
                        currency: "USD".into(),
                        language: 1033,
                        security_group: None,
                    },
                ),
                act(
                    2,
                    "users.ana@x.com",
                    &[],
                    Op::CreateUser {
                        upn: "ana@x.com".into(),
                        name: "Ana".into(),
                        access_mode: crate::domain::kinds::AccessMode::ReadWrite,
                        usage_location: None,
                        application_id: None,
                    },
                ),
                act(
                    3,
                    "users.ana@x.com",
                    &[2],
                    Op::AssignLicense {
                        user: r("users.ana@x.com"),
                        plan: crate::domain::kinds::LicensePlan::Professional,
                    },
                ),
                act(
                    4,
                    "users.ana@x.com",
                    &[1, 3],
                    Op::AssignRoles {
                        user: r("users.ana@x.com"),
                        instance: r("instances.test"),
                        roles: vec!["Salesperson".into()],
                    },
                ),
                act(
                    5,
                    "security_groups.g",
                    &[],
                    Op::CreateGroup {
                        name: "g".into(),
                        description: String::new(),
                    },
                ),
                act(
                    6,
                    "security_groups.g",
                    &[2, 5],
                    Op::AddGroupMembers {
                        group: r("security_groups.g"),
                        users: vec![r("users.ana@x.com")],
                    },
                ),
                act(
                    7,
                    "users.bob@x.com",
                    &[],
                    Op::DeleteUser {
                        user: r("users.bob@x.com"),
                    },
                ),
            ],
            ..Plan::default()
        };
        for a in &plan.actions {
            crate::plan::count(&mut plan.summary, a.kind);
        }
        plan
    }

    fn ask(targets: &[&str], excludes: &[&str]) -> Targeting {
        Targeting {
            targets: targets.iter().map(|s| s.to_string()).collect(),
            excludes: excludes.iter().map(|s| s.to_string()).collect(),
            ..Targeting::default()
        }
    }

    fn kept(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .map(|a| format!("{} {}", a.kind.as_str(), a.address))
            .collect()
    }

    // Issue 14 item 4, table-driven: what each targeting keeps (in execution order), which
    // of those were brought in as dependencies (new ids), and what it excluded.
    #[test]
    fn targeting_keeps_targets_and_their_dependencies() {
        type Case<'a> = (&'a str, Targeting, &'a [&'a str], &'a [usize], usize);
        let cases: Vec<Case> = vec![
            (
                "target a group: its members' creation comes along",
                ask(&["security_groups.g"], &[]),
                &[
                    "create_user users.ana@x.com",
                    "create_group security_groups.g",
                    "add_group_members security_groups.g",
                ],
                &[0],
                0,
            ),
            (
                "an instance covers the roles in it, and what they need (P2: licence first)",
                ask(&["instances.test"], &[]),
                &[
                    "purchase_instance slots.sandbox",
                    "configure_instance instances.test",
                    "create_user users.ana@x.com",
                    "assign_license users.ana@x.com",
                    "assign_roles users.ana@x.com",
                ],
                &[0, 2, 3],
                0,
            ),
            (
                "a collection covers everything under it",
                ask(&["users"], &[]),
                &[
                    "purchase_instance slots.sandbox",
                    "configure_instance instances.test",
                    "create_user users.ana@x.com",
                    "assign_license users.ana@x.com",
                    "assign_roles users.ana@x.com",
                    "delete_user users.bob@x.com",
                ],
                &[0, 1],
                0,
            ),
            (
                "exclude drops the address and its dependents",
                ask(&[], &["users.ana@x.com"]),
                &[
                    "purchase_instance slots.sandbox",
                    "configure_instance instances.test",
                    "create_group security_groups.g",
                    "delete_user users.bob@x.com",
                ],
                &[],
                4,
            ),
            (
                "a target excluded itself is dropped, the rest kept",
                ask(&["users"], &["users.bob@x.com"]),
                &[
                    "purchase_instance slots.sandbox",
                    "configure_instance instances.test",
                    "create_user users.ana@x.com",
                    "assign_license users.ana@x.com",
                    "assign_roles users.ana@x.com",
                ],
                &[0, 1],
                1,
            ),
        ];
        for (what, asked, want, deps, excluded) in cases {
            let out = select(sample(), &asked).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(kept(&out), want, "{what}");
            let t = out.targeting.as_ref().unwrap();
            assert_eq!(t.dependencies, deps, "{what}");
            assert_eq!(t.excluded.len(), excluded, "{what}");
            // Ids are the execution order, dependencies point backwards.
            for (i, a) in out.actions.iter().enumerate() {
                assert_eq!(a.id, i, "{what}");
                assert!(a.depends_on.iter().all(|&d| d < i), "{what}");
            }
            let total = out.summary.create
                + out.summary.buy
                + out.summary.change
                + out.summary.delete
                + out.summary.replace
                + out.summary.adopt;
            assert_eq!(total, out.actions.len(), "{what}: summary recounted");
            assert_eq!(
                t.left_out + t.excluded.len() + out.actions.len(),
                8,
                "{what}: every action accounted for"
            );
        }
    }

    #[test]
    fn exclusion_reasons_name_the_excluded_action() {
        let out = select(sample(), &ask(&[], &["users.ana@x.com"])).unwrap();
        let t = out.targeting.unwrap();
        let members = t
            .excluded
            .iter()
            .find(|x| x.kind == ActionKind::AddGroupMembers)
            .unwrap();
        assert_eq!(
            members.depends_on_excluded.as_deref(),
            Some("create_user users.ana@x.com")
        );
        assert!(t.is_partial());
    }

    // The done-when: a target whose dependency is excluded is an error naming both.
    #[test]
    fn a_target_whose_dependency_is_excluded_is_an_error_naming_both() {
        let err = select(sample(), &ask(&["security_groups.g"], &["users.ana@x.com"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--target security_groups.g"), "{text}");
        assert!(text.contains("--exclude users.ana@x.com"), "{text}");
        assert!(text.contains("create_user users.ana@x.com"), "{text}");
    }

    #[test]
    fn addresses_cover_by_collection_only() {
        let cases = [
            ("users", "users.ana@x.com", true),
            ("users.ana@x.com", "users.ana@x.com", true),
            ("users.ana@x", "users.ana@x.com", false),
            ("instances.t", "instances.test", false),
            ("instances", "instancesx.a", false),
            ("storage", "storage", true),
        ];
        for (p, a, want) in cases {
            assert_eq!(covers(p, a), want, "{p} {a}");
        }
    }

    #[test]
    fn unknown_addresses_get_a_hint_and_replace_takes_instances_only() {
        let known = ["users.ana@x.com", "instances.test"];
        let err = check_known(&ask(&["instances.tset"], &[]), known.iter().copied()).unwrap_err();
        assert!(
            err.to_string().contains("did you mean `instances.test`?"),
            "{err}"
        );
        assert!(check_known(&ask(&["instances"], &["users"]), known.iter().copied()).is_ok());
        assert!(check_replaces(&["instances.test".into()]).is_ok());
        for bad in [
            "users.ana@x.com",
            "security_groups.g",
            "storage",
            "instances",
        ] {
            assert!(
                matches!(
                    check_replaces(&[bad.into()]),
                    Err(TargetError::CannotReplace { .. })
                ),
                "{bad}"
            );
        }
    }

    // State entries to forget and drift are kept within the targets only (a targeted
    // apply must not drop the state entries of objects outside them).
    #[test]
    fn forget_and_drift_stay_within_the_targets() {
        let mut plan = sample();
        for address in ["users.gone@x.com", "security_groups.old"] {
            plan.forget.push(crate::plan::Forget {
                address: address.into(),
                kind: crate::domain::op::ObjKind::User,
                id: "x".into(),
            });
            plan.drift.push(crate::plan::drift::Drift {
                address: address.into(),
                change: crate::plan::drift::DriftChange::Deleted,
                changes: vec![],
                by: None,
                at: None,
                reverted_by: vec![7],
            });
        }
        let out = select(plan, &ask(&["users"], &[])).unwrap();
        let forgot: Vec<&str> = out.forget.iter().map(|f| f.address.as_str()).collect();
        assert_eq!(forgot, ["users.gone@x.com"]);
        assert_eq!(out.summary.forget, 1);
        assert_eq!(out.drift.len(), 1);
        // delete_user users.bob@x.com (7) is the last kept action (5) now.
        assert_eq!(out.drift[0].reverted_by, vec![5]);
    }

    #[test]
    fn no_targeting_leaves_the_plan_alone() {
        let plan = sample();
        assert_eq!(select(plan.clone(), &Targeting::default()).unwrap(), plan);
    }
}
