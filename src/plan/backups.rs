//! Backups before destruction (issue 13 item 3): before an action that deletes, resets or
//! copies onto an existing instance, the plan takes an on-demand backup of that instance
//! (`backup_instance`, labelled with the plan and the action) and the destructive action
//! waits for it. A pass over a finished plan, pure and deterministic; `ops` runs it unless
//! `--no-backup`, so the plan shows the backups that apply will take.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::domain::op::{ActionKind, Op};
use crate::plan::action::{Action, Plan};
use crate::state::PendingOperation;

/// Longest label crmctl writes (the admin API takes short free-text labels).
const MAX_LABEL: usize = 100;

/// `plan` with a `backup_instance` before each action that destroys an existing
/// instance's data ([`Plan::destructive_flags`] and [`Op::destroyed_instance`]); the
/// destructive action depends on its backup, the backup on what the action depended on.
/// Ids are renumbered in execution order. A plan with errors is returned unchanged.
///
/// `pending`: the state's pending operations; an action apply resumes (polls) rather than
/// sends destroys nothing more and gets no backup
/// ([`Plan::destructive_flags_resuming`]).
pub fn with_backups(plan: Plan, pending: &BTreeMap<String, PendingOperation>) -> Plan {
    if plan.has_errors() {
        return plan;
    }
    let destructive = plan.destructive_flags_resuming(pending);
    let needs = |a: &Action| {
        destructive[a.id]
            && a.op
                .destroyed_instance()
                .is_some_and(|r| r.id.is_some() && a.kind != ActionKind::BackupInstance)
    };
    let extra = plan.actions.iter().filter(|a| needs(a)).count();
    if extra == 0 {
        return plan;
    }
    let fp = plan.fingerprint[..plan.fingerprint.len().min(8)].to_string();
    let mut plan = plan;
    let old = std::mem::take(&mut plan.actions);
    // New id of each old action.
    let mut new_id = Vec::with_capacity(old.len());
    let mut next = 0;
    for a in &old {
        if needs(a) {
            next += 1;
        }
        new_id.push(next);
        next += 1;
    }
    let mut actions = Vec::with_capacity(old.len() + extra);
    for mut a in old {
        let id = new_id[a.id];
        a.depends_on = a.depends_on.iter().map(|d| new_id[*d]).collect();
        if needs(&a) {
            let target = a.op.destroyed_instance().expect("checked").clone();
            let mut label = format!(
                "crmctl plan {fp}: before {} of {}",
                a.kind.as_str(),
                target.address
            );
            if label.len() > MAX_LABEL {
                let mut cut = MAX_LABEL;
                while !label.is_char_boundary(cut) {
                    cut -= 1;
                }
                label.truncate(cut);
            }
            actions.push(Action {
                id: id - 1,
                kind: ActionKind::BackupInstance,
                address: target.address.to_string(),
                depends_on: a.depends_on.clone(),
                destructive: false,
                changes: vec![],
                reason: Cow::Owned(format!(
                    "back up {} before {} (skip with --no-backup)",
                    target.address,
                    a.kind.as_str()
                )),
                op: Box::new(Op::BackupInstance {
                    instance: target,
                    label,
                }),
            });
            a.depends_on.push(id - 1);
            plan.summary.change += 1;
        }
        a.id = id;
        actions.push(a);
    }
    plan.actions = actions;
    plan
}

/// `plan` planned with `--no-backup`: unchanged, but for a warning on each action that
/// destroys an existing instance's data without a backup before it (issue 13 item 3: "the
/// plan says so"; I8 delete, I9 reset, I11 copy onto the target). A plan with errors is
/// returned unchanged.
pub fn without_backups(plan: Plan, pending: &BTreeMap<String, PendingOperation>) -> Plan {
    if plan.has_errors() {
        return plan;
    }
    let destructive = plan.destructive_flags_resuming(pending);
    let mut plan = plan;
    let mut warnings = vec![];
    for a in &plan.actions {
        let Some(target) = a.op.destroyed_instance() else {
            continue;
        };
        if !destructive[a.id] || target.id.is_none() || a.kind == ActionKind::BackupInstance {
            continue;
        }
        let rule = match a.kind {
            ActionKind::DeleteInstance => "I8",
            ActionKind::ResetInstance => "I9",
            _ => "I11",
        };
        warnings.push(
            crate::diag::Diagnostic::warning(
                a.address.clone(),
                format!(
                    "no backup of {} is taken before {} (--no-backup): its data is lost for good",
                    target.address,
                    a.kind.as_str()
                ),
            )
            .rule(rule)
            .hint("plan without --no-backup to take an on-demand backup first"),
        );
    }
    plan.diagnostics.extend(warnings);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kinds::InstanceType;
    use crate::domain::op::ObjRef;

    fn r(address: &str, id: Option<&str>) -> ObjRef {
        ObjRef {
            address: address.into(),
            id: id.map(str::to_string),
        }
    }

    fn action(id: usize, address: &str, deps: &[usize], op: Op) -> Action {
        Action {
            id,
            kind: op.kind(),
            address: address.into(),
            depends_on: deps.to_vec(),
            destructive: false,
            changes: vec![],
            reason: "".into(),
            op: Box::new(op),
        }
    }

    // Issue 13 item 3: a reset and a delete each get a backup of their instance before
    // them; the action waits for its backup, and the backup for what the action waited
    // for; ids stay the execution order; other actions are untouched.
    #[test]
    fn destructive_instance_actions_get_a_backup_first() {
        let plan = Plan {
            fingerprint: "0123456789abcdef".into(),
            actions: vec![
                action(
                    0,
                    "instances.a",
                    &[],
                    Op::SwitchInstance {
                        instance: r("instances.a", Some("i1")),
                        to: InstanceType::Sandbox,
                    },
                ),
                action(
                    1,
                    "instances.a",
                    &[0],
                    Op::DeleteInstance {
                        instance: r("instances.a", Some("i1")),
                    },
                ),
                action(
                    2,
                    "instances.b",
                    &[],
                    Op::ResetInstance {
                        instance: r("instances.b", Some("i2")),
                        currency: "USD".into(),
                        language: 1033,
                    },
                ),
                action(
                    3,
                    "instances.c",
                    &[2],
                    Op::CreateGroup {
                        name: "g".into(),
                        description: String::new(),
                    },
                ),
            ],
            ..Plan::default()
        };
        let out = with_backups(plan, &BTreeMap::new());
        let kinds: Vec<(usize, &str, &str, Vec<usize>)> = out
            .actions
            .iter()
            .map(|a| {
                (
                    a.id,
                    a.kind.as_str(),
                    a.address.as_str(),
                    a.depends_on.clone(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (0, "switch_instance", "instances.a", vec![]),
                (1, "backup_instance", "instances.a", vec![0]),
                (2, "delete_instance", "instances.a", vec![0, 1]),
                (3, "backup_instance", "instances.b", vec![]),
                (4, "reset_instance", "instances.b", vec![3]),
                (5, "create_group", "instances.c", vec![4]),
            ]
        );
        let Op::BackupInstance { label, instance } = &*out.actions[1].op else {
            panic!("a backup")
        };
        assert_eq!(
            label,
            "crmctl plan 01234567: before delete_instance of instances.a"
        );
        assert_eq!(instance.id.as_deref(), Some("i1"));
        assert_eq!(out.summary.change, 2);
        // A copy onto an instance this plan creates destroys nothing: no backup.
        let fresh = Plan {
            actions: vec![action(
                0,
                "instances.t",
                &[],
                Op::CopyInstance {
                    source: r("instances.s", Some("i1")),
                    target: r("instances.t", None),
                    kind: crate::domain::kinds::CopyKind::Full,
                },
            )],
            ..Plan::default()
        };
        assert_eq!(with_backups(fresh.clone(), &BTreeMap::new()), fresh);
    }

    // Issue 13 item 3: with --no-backup the plan says, on each destroying action, that no
    // backup comes first (I8, I9), and adds no action; a copy onto a new instance and the
    // other actions get no warning.
    #[test]
    fn without_backups_warns_on_each_destroying_action() {
        let plan = Plan {
            actions: vec![
                action(
                    0,
                    "instances.a",
                    &[],
                    Op::DeleteInstance {
                        instance: r("instances.a", Some("i1")),
                    },
                ),
                action(
                    1,
                    "instances.b",
                    &[],
                    Op::ResetInstance {
                        instance: r("instances.b", Some("i2")),
                        currency: "USD".into(),
                        language: 1033,
                    },
                ),
                action(
                    2,
                    "instances.t",
                    &[],
                    Op::CopyInstance {
                        source: r("instances.s", Some("i3")),
                        target: r("instances.t", None),
                        kind: crate::domain::kinds::CopyKind::Full,
                    },
                ),
            ],
            ..Plan::default()
        };
        let out = without_backups(plan.clone(), &BTreeMap::new());
        assert_eq!(out.actions, plan.actions, "no action added");
        let said: Vec<(Option<&str>, Option<&str>)> = out
            .diagnostics
            .iter()
            .map(|d| (d.address.as_deref(), d.rule.as_deref()))
            .collect();
        assert_eq!(
            said,
            vec![
                (Some("instances.a"), Some("I8")),
                (Some("instances.b"), Some("I9"))
            ]
        );
        assert!(out.diagnostics[1]
            .message
            .contains("no backup of instances.b is taken before reset_instance (--no-backup)"));
    }
}
