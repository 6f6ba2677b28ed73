//! Licenses and storage (T2-T6): purchases, reductions, the T5 prerequisites of add-ons,
//! and the license flow of user steps (assign, remove, the temporary license of P4),
//! paired so that assignments never exceed the purchased count (T3, T4).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{ch, Planner};
use crate::domain::kinds::{AccessMode, LicensePlan};
use crate::domain::op::{ActionKind, ObjRef, Op};
use crate::plan::capacity::LicenseFlow;

/// What the license phases record for later ones (T2-T6).
#[derive(Default)]
pub(super) struct Licences {
    /// Desired license counts (observed where not managed).
    pub(super) target: BTreeMap<LicensePlan, u32>,
    /// purchase_licenses per plan (T5: before anything that consumes it).
    purchase: BTreeMap<LicensePlan, usize>,
    /// Assignments and releases per plan, paired by `license_order` (T3, T4).
    flow: BTreeMap<LicensePlan, LicenseFlow>,
    /// Licenses assigned now per plan, counted on first use.
    assigned: Option<BTreeMap<LicensePlan, u32>>,
    /// purchase_instance / purchase_storage actions (T5 prerequisites).
    pub(super) capacity_purchases: Vec<usize>,
}

impl<'a> Planner<'a> {
    #[inline(never)] // a phase: shows in profiles
    pub(super) fn licenses(&mut self) {
        for plan in LicensePlan::ALL {
            let now = self.t.purchased(plan);
            let want = self
                .d
                .licenses
                .as_ref()
                .and_then(|l| l.get(&plan).copied())
                .unwrap_or(now);
            self.lic.target.insert(plan, want);
            if want > now {
                // T5: buying is its own step, before anything that consumes it.
                let a = self.push(
                    ActionKind::PurchaseLicenses,
                    format!("licenses.{}", plan.as_str()),
                    Op::PurchaseLicenses { plan, to: want },
                    vec![ch("purchased", json!(now), json!(want))],
                    format!("buy {} more {} licenses (T5)", want - now, plan.as_str()),
                    [],
                );
                self.lic.purchase.insert(plan, a);
            }
        }
    }

    /// Professional + Enterprise licenses while the plan runs (purchases early, reductions
    /// late).
    pub(super) fn mid_pro_enterprise(&self) -> u32 {
        [LicensePlan::Professional, LicensePlan::Enterprise]
            .iter()
            .map(|p| self.t.purchased(*p).max(self.lic.target[p]))
            .sum()
    }

    /// Professional + Enterprise licenses once the plan ran.
    pub(super) fn final_pro_enterprise(&self) -> u32 {
        [LicensePlan::Professional, LicensePlan::Enterprise]
            .iter()
            .map(|p| self.lic.target[p])
            .sum()
    }

    pub(super) fn pro_enterprise_purchases(&self) -> Vec<usize> {
        [LicensePlan::Professional, LicensePlan::Enterprise]
            .iter()
            .filter_map(|p| self.lic.purchase.get(p).copied())
            .collect()
    }

    #[inline(never)] // a phase: shows in profiles
    pub(super) fn storage(&mut self) {
        let Some(want) = self.d.storage.as_ref().and_then(|s| s.additional_gb) else {
            return;
        };
        let now = self.t.storage.additional_gb;
        let changes = vec![ch("additional_gb", json!(now), json!(want))];
        if want > now {
            let a = self.push(
                ActionKind::PurchaseStorage,
                "storage".into(),
                Op::PurchaseStorage { to_gb: want },
                changes,
                format!("buy {} GB more storage (T5)", want - now),
                [],
            );
            self.lic.capacity_purchases.push(a);
        } else if want < now {
            self.push(
                ActionKind::ReduceStorage,
                "storage".into(),
                Op::ReduceStorage { to_gb: want },
                changes,
                format!("reduce the storage add-on by {} GB", now - want),
                [],
            );
        }
    }

    /// T5: add-ons need a paid (non-trial) subscription with Professional/Enterprise
    /// licenses at the moment of the purchase.
    #[inline(never)] // a phase: shows in profiles
    pub(super) fn t5_prerequisites(&mut self) {
        if self.lic.capacity_purchases.is_empty() {
            return;
        }
        if self.t.trial {
            let first = self.lic.capacity_purchases[0];
            let address = self.drafts[first].address.clone();
            self.error(
                &address,
                "instances and storage cannot be bought on a trial subscription".into(),
                "T5",
                Some("convert the trial into a paid subscription first".into()),
            );
            return;
        }
        let deps = if self.t.pro_enterprise() > 0 {
            vec![]
        } else {
            let p = self.pro_enterprise_purchases();
            if p.is_empty() {
                let first = self.lic.capacity_purchases[0];
                let address = self.drafts[first].address.clone();
                self.error(
                    &address,
                    "buying instances or storage needs Professional or Enterprise licenses, and the subscription has none".into(),
                    "T5",
                    Some("add `licenses: {professional: N}` to the file".into()),
                );
                return;
            }
            p
        };
        for &a in &self.lic.capacity_purchases.clone() {
            for &dep in &deps {
                self.dep(a, Some(dep));
            }
        }
    }

    /// Licenses of each plan held once the plan is done (before reductions).
    #[inline(never)] // a phase: shows in profiles
    pub(super) fn final_assigned(&mut self) -> BTreeMap<LicensePlan, i64> {
        let mut n: BTreeMap<LicensePlan, i64> = LicensePlan::ALL
            .iter()
            .map(|p| (*p, i64::from(self.assigned(*p))))
            .collect();
        if let Some(users) = &self.d.users {
            for (i, u) in users.values().enumerate() {
                if let Some(obs) = self.users.bound[i].user {
                    if let Some(l) = obs.license {
                        *n.get_mut(&l).expect("all plans") -= 1;
                    }
                }
                if let Some(l) = u.license {
                    *n.get_mut(&l).expect("all plans") += 1;
                }
            }
        }
        for (_, id) in self.gone_users() {
            if let Some(l) = self.t.users.get(id).and_then(|u| u.license) {
                *n.get_mut(&l).expect("all plans") -= 1;
            }
        }
        n
    }

    /// Licenses of a plan assigned to users now ([`crate::observed::Tenant::assigned`],
    /// counted for every plan in one pass over the users on first use).
    fn assigned(&mut self, plan: LicensePlan) -> u32 {
        let t = self.t;
        let counts = self.lic.assigned.get_or_insert_with(|| {
            let mut n = BTreeMap::new();
            for u in t.users.values() {
                if let Some(l) = u.license {
                    *n.entry(l).or_insert(0) += 1;
                }
            }
            n
        });
        counts.get(&plan).copied().unwrap_or(0)
    }

    fn consume(&mut self, plan: LicensePlan, action: usize, temp: Option<usize>) {
        // T5: a license is bought before it is assigned.
        let p = self.lic.purchase.get(&plan).copied();
        self.dep(action, p);
        self.lic
            .flow
            .entry(plan)
            .or_default()
            .consumers
            .push((action, temp));
    }

    pub(super) fn release(&mut self, plan: LicensePlan, action: usize, temp: Option<usize>) {
        self.lic
            .flow
            .entry(plan)
            .or_default()
            .releases
            .push((action, temp));
    }

    fn next_temp(&mut self, plan: LicensePlan) -> usize {
        let f = self.lic.flow.entry(plan).or_default();
        f.temps += 1;
        f.temps - 1
    }

    pub(super) fn temp_license(
        &mut self,
        address: &str,
        user: &ObjRef,
        after: Option<usize>,
        mode: AccessMode,
        temp_plan: Option<LicensePlan>,
    ) -> usize {
        // P4: license -> access mode -> remove license.
        let Some(plan) = temp_plan else {
            self.error(
                address,
                format!("setting the access mode to {} needs a license for a moment, and every license is in use", mode.as_str()),
                "P4",
                Some("buy one more license of any plan".into()),
            );
            return self.set_mode(address, user, after, None, mode);
        };
        let n = self.next_temp(plan);
        let a = self.push(
            ActionKind::AssignLicense,
            address.to_string(),
            Op::AssignLicense {
                user: user.clone(),
                plan,
            },
            vec![ch("license", Value::Null, json!(plan.as_str()))],
            format!(
                "temporary license to set the access mode to {} (P4)",
                mode.as_str()
            ),
            [after],
        );
        self.consume(plan, a, Some(n));
        let m = self.set_mode(address, user, Some(a), None, mode);
        let r = self.push(
            ActionKind::RemoveLicense,
            address.to_string(),
            Op::RemoveLicense { user: user.clone() },
            vec![ch("license", json!(plan.as_str()), Value::Null)],
            format!("{} users need no license after setup (P4)", mode.as_str()),
            [Some(m)],
        );
        self.release(plan, r, Some(n));
        m
    }

    pub(super) fn set_mode(
        &mut self,
        address: &str,
        user: &ObjRef,
        after: Option<usize>,
        before: Option<AccessMode>,
        mode: AccessMode,
    ) -> usize {
        self.push(
            ActionKind::SetAccessMode,
            address.to_string(),
            Op::SetAccessMode {
                user: user.clone(),
                mode,
            },
            vec![ch(
                "access_mode",
                before.map_or(Value::Null, |b| json!(b.as_str())),
                json!(mode.as_str()),
            )],
            match mode {
                AccessMode::Administrative | AccessMode::NonInteractive => {
                    "set while the user holds a license (P4)"
                }
                _ => "the access mode differs from the file (P3)",
            },
            [after],
        )
    }

    pub(super) fn assign_license(
        &mut self,
        address: &str,
        user: &ObjRef,
        after: Option<usize>,
        from: Option<LicensePlan>,
        plan: LicensePlan,
    ) -> usize {
        let a = self.push(
            ActionKind::AssignLicense,
            address.to_string(),
            Op::AssignLicense {
                user: user.clone(),
                plan,
            },
            vec![ch(
                "license",
                from.map_or(Value::Null, |f| json!(f.as_str())),
                json!(plan.as_str()),
            )],
            "the user's license differs from the file (T3)",
            [after],
        );
        self.consume(plan, a, None);
        if let Some(f) = from {
            self.release(f, a, None);
        }
        a
    }

    pub(super) fn remove_license(
        &mut self,
        address: &str,
        user: &ObjRef,
        after: Option<usize>,
        from: LicensePlan,
        reason: &'static str,
    ) -> usize {
        let a = self.push(
            ActionKind::RemoveLicense,
            address.to_string(),
            Op::RemoveLicense { user: user.clone() },
            vec![ch("license", json!(from.as_str()), Value::Null)],
            reason,
            [after],
        );
        self.release(from, a, None);
        a
    }

    /// T3/T4: pair assignments with releases where licenses are short; reductions last.
    #[inline(never)] // a phase: shows in profiles
    /// P3/P4: a backend that keeps the access mode per instance (Dataverse) sets it where
    /// the user is: a user's access mode change waits for the instances the file gives it
    /// roles in to be configured (or copied onto, or reset), so that the mode is set there
    /// while the user still holds its temporary licence. Edges only: no action added.
    pub(super) fn access_modes_after_instances(&mut self) {
        let users = match self.d.users.as_ref() {
            Some(u) => u,
            None => return,
        };
        for i in 0..self.drafts.len() {
            if self.drafts[i].kind != ActionKind::SetAccessMode {
                continue;
            }
            let Some(upn) = self.drafts[i].address.strip_prefix("users.") else {
                continue;
            };
            let Some(roles) = users.get(upn).and_then(|u| u.roles.as_ref()) else {
                continue;
            };
            let steps: Vec<Option<usize>> = roles
                .keys()
                .filter_map(|k| self.insts.get(k.as_str()))
                .flat_map(|s| [s.ready, s.content])
                .collect();
            for on in steps {
                self.dep(i, on);
            }
        }
    }

    pub(super) fn license_order(&mut self) {
        let flows = std::mem::take(&mut self.lic.flow);
        let pe_capacity = self.lic.capacity_purchases.clone();
        for plan in LicensePlan::ALL {
            let empty_flow = LicenseFlow::default();
            let flow = flows.get(&plan).unwrap_or(&empty_flow);
            let now = self.t.purchased(plan);
            let want = self.lic.target[&plan];
            let assigned = self.assigned(plan);
            let address = format!("licenses.{}", plan.as_str());
            let finally = i64::from(assigned)
                + flow.consumers.iter().filter(|c| c.1.is_none()).count() as i64
                - flow.releases.iter().filter(|r| r.1.is_none()).count() as i64;
            let conflict_kept =
                finally > i64::from(want) && finally <= i64::from(assigned) && want >= now;
            if conflict_kept {
                // T3: a conflict the tenant already has (licenses assigned out of band
                // beyond the count) that this plan does not make worse: the service keeps
                // running; say so without stopping the plan (assignments still wait for
                // the releases that make room, below).
                self.warn(
                    &address,
                    format!(
                        "license conflict: {assigned} users hold a {} license but only {now} are purchased; after this plan {finally} still do",
                        plan.as_str()
                    ),
                    "T3",
                );
            }
            if finally > i64::from(want) && !conflict_kept {
                self.error(
                    &address,
                    format!(
                        "{finally} users would hold a {} license, but only {want} are purchased",
                        plan.as_str()
                    ),
                    if want < now { "T4" } else { "T3" },
                    Some(format!(
                        "set `licenses.{}` to at least {finally}",
                        plan.as_str()
                    )),
                );
            } else {
                match flow.pair(assigned, now.max(want)) {
                    Some(edges) => {
                        for (c, r) in edges {
                            self.dep(c, Some(r));
                        }
                    }
                    None => self.error(
                        &address,
                        format!(
                            "not enough {} licenses during the change: assignments would exceed the {} purchased before others are removed",
                            plan.as_str(),
                            now.max(want)
                        ),
                        "T3",
                        Some(format!("raise `licenses.{}` by one or two for the change", plan.as_str())),
                    ),
                }
            }
            if want < now {
                // T4: remove assignments (and finish every assignment) before reducing.
                let mut deps: Vec<Option<usize>> = flow
                    .releases
                    .iter()
                    .chain(flow.consumers.iter())
                    .map(|x| Some(x.0))
                    .collect();
                if plan.is_pro_or_enterprise() {
                    // T5: add-ons are bought while Professional/Enterprise licenses exist.
                    deps.extend(pe_capacity.iter().map(|a| Some(*a)));
                    // T6: and the sandboxes fit in the slots left without the included one.
                    deps.extend(self.sandbox.debt_paid.iter().map(|a| Some(*a)));
                }
                self.push(
                    ActionKind::ReduceLicenses,
                    address,
                    Op::ReduceLicenses { plan, to: want },
                    vec![ch("purchased", json!(now), json!(want))],
                    format!(
                        "reduce {} licenses by {} (T4: after licenses are removed from users)",
                        plan.as_str(),
                        now - want
                    ),
                    deps,
                );
            }
        }
    }
}
