//! Capacity bookkeeping while planning: instance slots (I2, I7, T6, T7) and license
//! counts (T3, T4, P4).
//!
//! Both work with "tokens": a free slot or a free license is a token whose *sources* are
//! the actions that must have run before it can be used (none for capacity that is free
//! now; the purchase for bought capacity; the delete or switch that frees it). An action
//! that consumes a token depends on its sources, which is how "delete frees a slot that a
//! later configure reuses" and "buy before use" become edges of the graph.

use std::collections::VecDeque;

use crate::domain::kinds::InstanceType;
use crate::domain::limits::{MAX_PRODUCTION_INSTANCES, MAX_SANDBOX_INSTANCES};
use crate::observed::{included_slots, Tenant};

fn idx(kind: InstanceType) -> usize {
    match kind {
        InstanceType::Production => 0,
        InstanceType::Sandbox => 1,
    }
}

/// Free instance slots per kind, as tokens.
///
/// The included sandbox slot (T6) counts only when it exists both before and after the
/// plan's license changes: a reduction below 25 Professional + Enterprise licenses removes
/// it at a moment the graph does not fix, so nothing may rely on it. When instances occupy
/// more slots than that (the included slot is lost under a configured sandbox), the pool
/// starts in *debt*: the first releases (or purchases) pay it back before any slot is
/// free, and every later take depends on them.
#[derive(Debug)]
pub(crate) struct SlotPool {
    free: [VecDeque<Vec<usize>>; 2],
    total: [u32; 2],
    /// Occupied slots beyond the ones that surely exist, per kind.
    debt: [u32; 2],
    /// The releases and purchases that paid the debt back: every take waits for them.
    paid: [Vec<usize>; 2],
    /// An included slot exists now but not after the plan's license reductions (T6).
    lingering: [bool; 2],
}

impl SlotPool {
    /// The slots of `tenant` while the plan runs, with `mid_pe` Professional + Enterprise
    /// licenses after the purchases and `final_pe` after the reductions: license purchases
    /// may add the included sandbox (T6), whose token then depends on `license_purchases`;
    /// a reduction may remove it, and then it does not count at all.
    pub fn new(
        tenant: &Tenant,
        mid_pe: u32,
        final_pe: u32,
        license_purchases: &[usize],
    ) -> SlotPool {
        let mut pool = SlotPool {
            free: [VecDeque::new(), VecDeque::new()],
            total: [0, 0],
            debt: [0, 0],
            paid: [Vec::new(), Vec::new()],
            lingering: [false, false],
        };
        let now_pe = tenant.pro_enterprise();
        for kind in [InstanceType::Production, InstanceType::Sandbox] {
            let bought = tenant.total_slots(kind) - included_slots(kind, now_pe);
            // T6: included for sure = included both now and at the end.
            let sure = bought + included_slots(kind, now_pe.min(final_pe));
            let used = tenant.used_slots(kind);
            pool.total[idx(kind)] = sure;
            if used > sure {
                pool.debt[idx(kind)] = used - sure;
            }
            for _ in used..sure {
                pool.free[idx(kind)].push_back(Vec::new());
            }
            // Added by the purchases and kept to the end (mid_pe >= final_pe).
            let before = included_slots(kind, now_pe.min(final_pe));
            let during = included_slots(kind, mid_pe.max(now_pe).min(final_pe));
            for _ in before..during {
                pool.total[idx(kind)] += 1;
                if pool.debt[idx(kind)] > 0 {
                    pool.debt[idx(kind)] -= 1;
                    pool.paid[idx(kind)].extend_from_slice(license_purchases);
                } else {
                    pool.free[idx(kind)].push_back(license_purchases.to_vec());
                }
            }
            // T6: the included slot may linger until the reduction runs; the provider may
            // then place a switched instance in it (see `lingering`).
            pool.lingering[idx(kind)] =
                included_slots(kind, now_pe) > included_slots(kind, final_pe);
        }
        pool
    }

    /// Take a free slot of `kind`; returns the actions it depends on.
    pub fn take(&mut self, kind: InstanceType) -> Option<Vec<usize>> {
        let mut deps = self.free[idx(kind)].pop_front()?;
        deps.extend(self.paid[idx(kind)].iter().copied());
        Some(deps)
    }

    /// Whether instances of `kind` occupy more slots than surely exist (T6): releases and
    /// purchases pay that back before any slot is free.
    pub fn in_debt(&self, kind: InstanceType) -> bool {
        self.debt[idx(kind)] > 0
    }

    /// Occupied slots of `kind` beyond the ones that surely exist, not yet paid back.
    pub fn debt(&self, kind: InstanceType) -> u32 {
        self.debt[idx(kind)]
    }

    /// The releases and purchases that paid the debt of `kind` back.
    pub fn paid(&self, kind: InstanceType) -> &[usize] {
        &self.paid[idx(kind)]
    }

    /// Whether an included slot of `kind` exists until the plan's license reductions run
    /// and not after (T6): the pool does not count it, but the provider may use it.
    pub fn lingering(&self, kind: InstanceType) -> bool {
        self.lingering[idx(kind)]
    }

    /// Whether a free slot of `kind` exists.
    pub fn has(&self, kind: InstanceType) -> bool {
        !self.free[idx(kind)].is_empty()
    }

    /// A slot of `kind` becomes free once `source` ran (or pays one unit of debt back).
    pub fn release(&mut self, kind: InstanceType, source: usize) {
        if self.debt[idx(kind)] > 0 {
            self.debt[idx(kind)] -= 1;
            self.paid[idx(kind)].push(source);
        } else {
            self.free[idx(kind)].push_back(vec![source]);
        }
    }

    /// Record one more bought slot of `kind`; `false` when T7's limit forbids it.
    pub fn buy(&mut self, kind: InstanceType) -> bool {
        let limit = match kind {
            InstanceType::Production => MAX_PRODUCTION_INSTANCES,
            InstanceType::Sandbox => MAX_SANDBOX_INSTANCES,
        };
        if self.total[idx(kind)] >= limit {
            return false;
        }
        self.total[idx(kind)] += 1;
        true
    }
}

/// License flow of one plan: who takes a license of it, who gives one back.
#[derive(Debug, Default)]
pub(crate) struct LicenseFlow {
    /// Actions that take a license: (action, Some(n) for the n-th temporary P4 license).
    pub consumers: Vec<(usize, Option<usize>)>,
    /// Actions that give one back: (action, Some(n) for the end of the n-th temporary one).
    pub releases: Vec<(usize, Option<usize>)>,
    /// Number of temporary (P4) licenses.
    pub temps: usize,
}

impl LicenseFlow {
    /// Pair consumers with releases so that at no moment more licenses are assigned than
    /// `available` (T3), starting from `assigned` now.
    ///
    /// With `d = assigned + consumers - available` > 0, the last `d - over` consumers
    /// (permanent ones last, temporary P4 ones first) each wait for a distinct release
    /// (permanent releases first), where `over = assigned - available` (when positive) is
    /// a conflict the tenant already has (licenses assigned out of band beyond the count):
    /// the first `over` releases only end it, so every paired consumer waits for them too.
    /// Whatever order the graph then allows, every assignment beyond the free ones is
    /// preceded by its own release, so the count never exceeds `available` when it runs.
    /// Returns `(consumer, release)` edges, or `None` when no such pairing exists (not
    /// enough licenses at some moment).
    pub fn pair(&self, assigned: u32, available: u32) -> Option<Vec<(usize, usize)>> {
        let mut consumers: Vec<(usize, Option<usize>)> = self
            .consumers
            .iter()
            .filter(|c| c.1.is_some())
            .copied()
            .collect();
        consumers.extend(self.consumers.iter().filter(|c| c.1.is_none()));
        let mut releases: Vec<(usize, Option<usize>)> = self
            .releases
            .iter()
            .filter(|r| r.1.is_none())
            .copied()
            .collect();
        releases.extend(self.releases.iter().filter(|r| r.1.is_some()));
        let need = i64::from(assigned) + consumers.len() as i64 - i64::from(available);
        if need <= 0 || consumers.is_empty() {
            return Some(Vec::new());
        }
        // T3: a conflict the tenant already has (more assigned than bought).
        let over = assigned.saturating_sub(available) as usize;
        let need = need as usize - over;
        if need > consumers.len() || releases.len() < over + need {
            return None;
        }
        let paired = &consumers[consumers.len() - need..];
        let mut edges = Vec::with_capacity(need * (over + 1));
        for (k, c) in paired.iter().enumerate() {
            for r in releases[..over].iter().chain([&releases[over + k]]) {
                if let (Some(t), Some(s)) = (c.1, r.1) {
                    if s >= t {
                        return None; // would wait on itself or on a later temporary license
                    }
                }
                edges.push((c.0, r.0));
            }
        }
        Some(edges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t3_no_pairing_needed_with_spare_licenses() {
        let f = LicenseFlow {
            consumers: vec![(1, None), (2, None)],
            releases: vec![(3, None)],
            temps: 0,
        };
        assert_eq!(f.pair(0, 2), Some(vec![]));
    }

    #[test]
    fn t3_full_subscription_waits_for_releases() {
        let f = LicenseFlow {
            consumers: vec![(1, None), (2, None)],
            releases: vec![(3, None), (4, None)],
            temps: 0,
        };
        assert_eq!(f.pair(2, 2), Some(vec![(1, 3), (2, 4)]));
        assert_eq!(f.pair(3, 2), None);
    }

    #[test]
    fn t3_an_existing_conflict_is_ended_before_any_assignment() {
        // issue 10 item 7: 2 assigned, 1 bought (out of band); one release ends the
        // conflict, the next frees a license for the one consumer.
        let f = LicenseFlow {
            consumers: vec![(1, None)],
            releases: vec![(3, None), (4, None)],
            temps: 0,
        };
        assert_eq!(f.pair(2, 1), Some(vec![(1, 3), (1, 4)]));
        // Releases only (a user moved off the plan): nothing to pair.
        let f = LicenseFlow {
            consumers: vec![],
            releases: vec![(3, None)],
            temps: 0,
        };
        assert_eq!(f.pair(1, 0), Some(vec![]));
    }

    #[test]
    fn p4_temporary_license_reused_in_a_chain() {
        // 2 temporary licenses, only 1 available: the second waits for the first's removal.
        let f = LicenseFlow {
            consumers: vec![(1, Some(0)), (2, Some(1))],
            releases: vec![(11, Some(0)), (12, Some(1))],
            temps: 2,
        };
        assert_eq!(f.pair(0, 1), Some(vec![(2, 11)]));
        assert_eq!(f.pair(1, 1), None);
    }

    #[test]
    fn i2_slot_pool_counts_included_and_bought() {
        let mut t = Tenant::fresh("x.onmicrosoft.com");
        let mut p = SlotPool::new(&t, 0, 0, &[]);
        assert_eq!(p.take(InstanceType::Production), Some(vec![]));
        assert_eq!(p.take(InstanceType::Production), None);
        assert!(!p.has(InstanceType::Sandbox));
        t.licenses
            .insert(crate::domain::kinds::LicensePlan::Professional, 10);
        let mut p = SlotPool::new(&t, 30, 30, &[7]);
        assert_eq!(p.take(InstanceType::Sandbox), Some(vec![7]));
        p.release(InstanceType::Sandbox, 9);
        assert_eq!(p.take(InstanceType::Sandbox), Some(vec![9]));
    }

    #[test]
    fn t6_included_sandbox_counts_only_when_kept_after_a_reduction() {
        let mut t = Tenant::fresh("x.onmicrosoft.com");
        t.licenses
            .insert(crate::domain::kinds::LicensePlan::Professional, 30);
        // Free now, gone after the reduction to 6: not usable (T6/I2).
        let p = SlotPool::new(&t, 30, 6, &[]);
        assert!(!p.has(InstanceType::Sandbox));
        assert!(p.lingering(InstanceType::Sandbox));
        // Kept: usable at once.
        let mut p = SlotPool::new(&t, 30, 25, &[]);
        assert_eq!(p.take(InstanceType::Sandbox), Some(vec![]));
        assert!(!p.lingering(InstanceType::Sandbox));
    }

    #[test]
    fn t6_lost_included_slot_under_a_sandbox_is_a_debt_paid_by_the_first_release() {
        let mut t = Tenant::fresh("x.onmicrosoft.com");
        t.instances.insert(
            "org-1".into(),
            crate::observed::Instance {
                id: "org-1".into(),
                name: "Test".into(),
                url: "test".into(),
                kind: InstanceType::Sandbox,
                slot: InstanceType::Sandbox,
                purpose: String::new(),
                region: crate::domain::kinds::Region::NA,
                currency: "USD".into(),
                language: 1033,
                security_group: None,
                status: crate::observed::InstanceStatus::Ready,
                version: "8.1.0".into(),
                admin_mode: crate::observed::AdminModeState::default(),
                notification_recipients: vec![],
                update: None,
            },
        );
        // 6 licenses: no included sandbox, yet one sandbox occupies a slot.
        t.licenses
            .insert(crate::domain::kinds::LicensePlan::Professional, 6);
        let mut p = SlotPool::new(&t, 6, 6, &[]);
        p.release(InstanceType::Sandbox, 4); // the delete pays the debt back
        assert!(!p.has(InstanceType::Sandbox));
        p.release(InstanceType::Sandbox, 5); // a bought slot
        assert_eq!(p.take(InstanceType::Sandbox), Some(vec![5, 4]));
    }
}
