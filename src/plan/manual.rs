//! Manual steps (issue 13 item 4): ops that a backend cannot do through any public API
//! (buying or reducing licences, instance slots and storage; approving and scheduling
//! updates; update notification recipients on a real tenant). The plan still shows them,
//! as instructions for a person and a check of the tenant that tells when they are done;
//! apply does what does not depend on them, then waits for the check (bounded) or stops.
//!
//! Pure: the backend says *whether* and *where* ([`crate::provider::Provider::manual`]);
//! this module adds *what to enter* and *when it is done* from the op and the observed
//! tenant. Apply never trusts a step read from a saved plan file: `ops` computes the steps
//! again from the tenant it observed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::kinds::{InstanceType, LicensePlan};
use crate::domain::op::Op;
use crate::observed::Tenant;
use crate::plan::action::Plan;
use crate::state::State;

/// One action that a person does, with what to do and how crmctl sees it done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualStep {
    /// The action's id in the plan.
    pub action: usize,
    /// The action's address.
    pub address: String,
    /// Where to go and what to enter (the backend's place, the number or value to reach).
    pub instructions: String,
    /// What the tenant shows once the step is done.
    pub done_when: DoneWhen,
}

/// The observable condition of a manual step being done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum DoneWhen {
    /// At least `count` licences of `plan` bought (T5).
    LicensesAtLeast {
        /// The plan.
        plan: LicensePlan,
        /// The count to reach.
        count: u32,
    },
    /// At most `count` licences of `plan` bought (T4).
    LicensesAtMost {
        /// The plan.
        plan: LicensePlan,
        /// The count to reach.
        count: u32,
    },
    /// At least `gb` of additional storage.
    StorageAtLeast {
        /// GB to reach.
        gb: u32,
    },
    /// At most `gb` of additional storage.
    StorageAtMost {
        /// GB to reach.
        gb: u32,
    },
    /// At least `count` add-on slots of `kind` bought (I2).
    SlotsAtLeast {
        /// Production or sandbox.
        kind: InstanceType,
        /// The count to reach.
        count: u32,
    },
    /// The instance at `instance` (a state address) has this update approved or scheduled
    /// for these dates (U2-U4).
    UpdateScheduled {
        /// The instance's address.
        instance: String,
        /// Target version.
        target_version: String,
        /// Preferred date.
        preferred: String,
        /// Alternate date.
        alternate: String,
    },
    /// The instance at `instance` notifies exactly these extra recipients (I13).
    Recipients {
        /// The instance's address.
        instance: String,
        /// The recipients, in any order.
        recipients: Vec<String>,
    },
}

impl DoneWhen {
    /// Whether `tenant` shows the step done. Instances are found through `state` (the
    /// address's remote id); an instance the state does not know yet is not done.
    pub fn met(&self, tenant: &Tenant, state: &State) -> bool {
        let instance = |address: &str| {
            state
                .resources
                .get(address)
                .and_then(|r| tenant.instances.get(&r.id))
        };
        match self {
            DoneWhen::LicensesAtLeast { plan, count } => tenant.purchased(*plan) >= *count,
            DoneWhen::LicensesAtMost { plan, count } => tenant.purchased(*plan) <= *count,
            DoneWhen::StorageAtLeast { gb } => tenant.storage.additional_gb >= *gb,
            DoneWhen::StorageAtMost { gb } => tenant.storage.additional_gb <= *gb,
            DoneWhen::SlotsAtLeast { kind, count } => slots(tenant, *kind) >= *count,
            DoneWhen::UpdateScheduled {
                instance: address,
                target_version,
                preferred,
                alternate,
            } => instance(address)
                .and_then(|i| i.update.as_ref())
                .is_some_and(|u| {
                    &u.target_version == target_version
                        && &u.preferred == preferred
                        && &u.alternate == alternate
                }),
            DoneWhen::Recipients {
                instance: address,
                recipients,
            } => instance(address).is_some_and(|i| {
                let mut have: Vec<String> = i
                    .notification_recipients
                    .iter()
                    .map(|r| crate::domain::ident::fold(r).into_owned())
                    .collect();
                let mut want: Vec<String> = recipients
                    .iter()
                    .map(|r| crate::domain::ident::fold(r).into_owned())
                    .collect();
                have.sort_unstable();
                want.sort_unstable();
                have == want
            }),
        }
    }

    /// The condition in words: "licenses.professional shows 30 bought (or more)".
    pub fn describe(&self) -> String {
        match self {
            DoneWhen::LicensesAtLeast { plan, count } => {
                format!(
                    "the tenant shows {count} {} licenses or more",
                    plan.as_str()
                )
            }
            DoneWhen::LicensesAtMost { plan, count } => {
                format!(
                    "the tenant shows {count} {} licenses or fewer",
                    plan.as_str()
                )
            }
            DoneWhen::StorageAtLeast { gb } => {
                format!("the tenant shows {gb} GB of additional storage or more")
            }
            DoneWhen::StorageAtMost { gb } => {
                format!("the tenant shows {gb} GB of additional storage or less")
            }
            DoneWhen::SlotsAtLeast { kind, count } => format!(
                "the tenant shows {count} additional {} instance slots or more",
                kind.as_str()
            ),
            DoneWhen::UpdateScheduled {
                instance,
                target_version,
                ..
            } => format!("{instance} shows the update to {target_version} with these dates"),
            DoneWhen::Recipients { instance, .. } => {
                format!("{instance} notifies exactly these recipients")
            }
        }
    }
}

fn slots(tenant: &Tenant, kind: InstanceType) -> u32 {
    match kind {
        InstanceType::Production => tenant.slots.production,
        InstanceType::Sandbox => tenant.slots.sandbox,
    }
}

/// The manual steps of `plan`: each action whose op `how` (the backend) says it cannot do,
/// with `how`'s place joined to what to enter, and the check of the tenant. Deterministic.
pub fn manual_steps(
    plan: &Plan,
    observed: &Tenant,
    how: &dyn Fn(&Op) -> Option<String>,
) -> Vec<ManualStep> {
    // The n-th slot purchase of a kind is done when the tenant holds n more than now.
    let mut slot_purchases: BTreeMap<InstanceType, u32> = BTreeMap::new();
    let mut out = Vec::new();
    for a in &plan.actions {
        let Some(place) = how(&a.op) else {
            continue;
        };
        let (what, done_when) = match &*a.op {
            Op::PurchaseLicenses { plan: p, to } => (
                format!(
                    "raise the quantity of {} licenses from {} to {to}",
                    p.as_str(),
                    observed.purchased(*p)
                ),
                DoneWhen::LicensesAtLeast {
                    plan: *p,
                    count: *to,
                },
            ),
            Op::ReduceLicenses { plan: p, to } => (
                format!(
                    "lower the quantity of {} licenses from {} to {to}",
                    p.as_str(),
                    observed.purchased(*p)
                ),
                DoneWhen::LicensesAtMost {
                    plan: *p,
                    count: *to,
                },
            ),
            Op::PurchaseStorage { to_gb } => (
                format!(
                    "raise the additional storage from {} GB to {to_gb} GB",
                    observed.storage.additional_gb
                ),
                DoneWhen::StorageAtLeast { gb: *to_gb },
            ),
            Op::ReduceStorage { to_gb } => (
                format!(
                    "lower the additional storage from {} GB to {to_gb} GB",
                    observed.storage.additional_gb
                ),
                DoneWhen::StorageAtMost { gb: *to_gb },
            ),
            Op::PurchaseInstance { kind } => {
                let n = slot_purchases.entry(*kind).or_insert(0);
                *n += 1;
                let count = slots(observed, *kind) + *n;
                (
                    format!(
                        "buy one more {} instance slot, to {count} additional {} slots",
                        kind.as_str(),
                        kind.as_str()
                    ),
                    DoneWhen::SlotsAtLeast { kind: *kind, count },
                )
            }
            Op::ScheduleUpdate {
                instance,
                target_version,
                preferred,
                alternate,
            } => (
                format!(
                    "approve the update of {} to {target_version}, preferred date {preferred}, alternate date {alternate}",
                    instance.address
                ),
                DoneWhen::UpdateScheduled {
                    instance: instance.address.to_string(),
                    target_version: target_version.clone(),
                    preferred: preferred.clone(),
                    alternate: alternate.clone(),
                },
            ),
            Op::SetNotificationRecipients {
                instance,
                recipients,
            } => (
                if recipients.is_empty() {
                    format!(
                        "remove every extra update notification recipient of {}",
                        instance.address
                    )
                } else {
                    format!(
                        "set the extra update notification recipients of {} to: {}",
                        instance.address,
                        recipients.join(", ")
                    )
                },
                DoneWhen::Recipients {
                    instance: instance.address.to_string(),
                    recipients: recipients.clone(),
                },
            ),
            // Anything else a backend calls manual has no check crmctl can make: the
            // backend must not (the provider boundary's contract); skipped here.
            _ => continue,
        };
        out.push(ManualStep {
            action: a.id,
            address: a.address.clone(),
            instructions: format!("{place}: {what}"),
            done_when,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::op::ObjRef;
    use crate::observed::{Instance, UpdatePhase, UpdateState};
    use crate::state::Resource;

    fn state_with(address: &str, id: &str) -> State {
        let mut s = State::empty("l");
        s.resources.insert(
            address.to_string(),
            Resource {
                kind: crate::domain::op::ObjKind::Instance,
                id: id.to_string(),
                protect: false,
                protected_at: None,
                copied_from: None,
                ids: BTreeMap::new(),
            },
        );
        s
    }

    // Each condition, met and not met (issue 13 item 4; T4, T5, I2, U2-U4, I13).
    #[test]
    fn each_check_tells_done_from_not_done() {
        let mut t = Tenant::fresh("x.onmicrosoft.com");
        t.licenses.insert(LicensePlan::Professional, 30);
        t.storage.additional_gb = 10;
        t.slots.sandbox = 2;
        let mut inst = Instance {
            id: "i1".into(),
            name: "Sales".into(),
            url: "sales".into(),
            kind: InstanceType::Sandbox,
            slot: InstanceType::Sandbox,
            purpose: String::new(),
            region: crate::domain::kinds::Region::NA,
            currency: "USD".into(),
            language: 1033,
            security_group: None,
            status: crate::observed::InstanceStatus::Ready,
            version: "8.0.0".into(),
            admin_mode: Default::default(),
            notification_recipients: vec![],
            update: None,
        };
        inst.notification_recipients = vec!["B@x.com".into(), "a@x.com".into()];
        inst.update = Some(UpdateState {
            target_version: "9.0".into(),
            preferred: "2027-01-02".into(),
            alternate: "2027-01-09".into(),
            state: UpdatePhase::Approved,
        });
        t.instances.insert("i1".into(), inst);
        let s = state_with("instances.sales", "i1");
        let pro = LicensePlan::Professional;
        let upd = |v: &str| DoneWhen::UpdateScheduled {
            instance: "instances.sales".into(),
            target_version: v.into(),
            preferred: "2027-01-02".into(),
            alternate: "2027-01-09".into(),
        };
        let rec = |r: &[&str]| DoneWhen::Recipients {
            instance: "instances.sales".into(),
            recipients: r.iter().map(|s| s.to_string()).collect(),
        };
        let table: Vec<(DoneWhen, bool)> = vec![
            (
                DoneWhen::LicensesAtLeast {
                    plan: pro,
                    count: 30,
                },
                true,
            ),
            (
                DoneWhen::LicensesAtLeast {
                    plan: pro,
                    count: 31,
                },
                false,
            ),
            (
                DoneWhen::LicensesAtMost {
                    plan: pro,
                    count: 30,
                },
                true,
            ),
            (
                DoneWhen::LicensesAtMost {
                    plan: pro,
                    count: 29,
                },
                false,
            ),
            (DoneWhen::StorageAtLeast { gb: 10 }, true),
            (DoneWhen::StorageAtLeast { gb: 11 }, false),
            (DoneWhen::StorageAtMost { gb: 9 }, false),
            (
                DoneWhen::SlotsAtLeast {
                    kind: InstanceType::Sandbox,
                    count: 2,
                },
                true,
            ),
            (
                DoneWhen::SlotsAtLeast {
                    kind: InstanceType::Production,
                    count: 1,
                },
                false,
            ),
            (upd("9.0"), true),
            (upd("9.1"), false),
            (rec(&["a@x.com", "b@x.com"]), true),
            (rec(&["a@x.com"]), false),
        ];
        for (check, want) in table {
            assert_eq!(check.met(&t, &s), want, "{check:?}");
        }
        // An instance the state does not know is not done.
        assert!(!upd("9.0").met(&t, &State::empty("l")));
    }

    // The n-th slot purchase of a kind waits for n more slots than the tenant had; the
    // backend's place and the number to reach are both in the instructions.
    #[test]
    fn steps_carry_the_place_and_the_number_to_reach() {
        let mut t = Tenant::fresh("x.onmicrosoft.com");
        t.slots.production = 1;
        t.licenses.insert(LicensePlan::Basic, 5);
        let ops = [
            Op::PurchaseInstance {
                kind: InstanceType::Production,
            },
            Op::PurchaseInstance {
                kind: InstanceType::Production,
            },
            Op::PurchaseLicenses {
                plan: LicensePlan::Basic,
                to: 8,
            },
            Op::CreateGroup {
                name: "g".into(),
                description: String::new(),
            },
            Op::SetNotificationRecipients {
                instance: ObjRef {
                    address: "instances.sales".into(),
                    id: None,
                },
                recipients: vec![],
            },
        ];
        let plan = Plan {
            actions: ops
                .into_iter()
                .enumerate()
                .map(|(id, op)| crate::plan::Action {
                    id,
                    kind: op.kind(),
                    address: format!("a{id}"),
                    depends_on: vec![],
                    destructive: false,
                    changes: vec![],
                    reason: "".into(),
                    op: Box::new(op),
                })
                .collect(),
            ..Plan::default()
        };
        let how =
            |op: &Op| (!matches!(op, Op::CreateGroup { .. })).then(|| "THE PLACE".to_string());
        let steps = manual_steps(&plan, &t, &how);
        assert_eq!(
            steps.iter().map(|s| s.action).collect::<Vec<_>>(),
            [0, 1, 2, 4]
        );
        assert_eq!(
            steps[1].done_when,
            DoneWhen::SlotsAtLeast {
                kind: InstanceType::Production,
                count: 3
            }
        );
        assert_eq!(
            steps[2].instructions,
            "THE PLACE: raise the quantity of basic licenses from 5 to 8"
        );
        assert!(steps[3].instructions.contains("remove every extra"));
        // Nothing is manual for a backend that does everything itself.
        assert!(manual_steps(&plan, &t, &|_| None).is_empty());
    }
}
