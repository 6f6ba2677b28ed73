//! Instance slots (I2, I7, T6): taking a free slot or buying one, switches between
//! production and sandbox, and the order of sandbox slot takers.

use serde_json::{json, Value};

use super::{ch, Planner};
use crate::domain::kinds::InstanceType;
use crate::domain::limits::{MAX_PRODUCTION_INSTANCES, MAX_SANDBOX_INSTANCES};
use crate::domain::op::{ActionKind, ObjRef, Op};
use crate::plan::capacity::SlotPool;

/// The order of sandbox slot takers (I2, I7, T6).
#[derive(Default)]
pub(super) struct Sandboxes {
    /// Actions that took a sandbox slot so far (configure, switch to sandbox; I2, I7).
    pub(super) takers: Vec<usize>,
    /// Production -> sandbox switches planned into a production slot (I7: no sandbox slot
    /// is free): the provider picks a sandbox slot whenever one is free, so they run after
    /// every earlier sandbox taker and before every later sandbox slot that becomes free.
    fallbacks: Vec<usize>,
    /// Deletes, switches and purchases after which the sandboxes fit in the sandbox slots
    /// that remain once the included one is lost (T6): reductions wait for them.
    pub(super) debt_paid: Vec<usize>,
}

impl<'a> Planner<'a> {
    /// Buy one instance slot of `kind` for the instance at `address` (I2), a T5
    /// prerequisite; an error when the tenant's limit is reached (T7).
    pub(super) fn buy_slot(
        &mut self,
        pool: &mut SlotPool,
        kind: InstanceType,
        address: &str,
        why: &str,
    ) -> Option<usize> {
        if !pool.buy(kind) {
            self.error(
                address,
                format!(
                    "another {} slot would exceed the tenant's limit of {MAX_PRODUCTION_INSTANCES} production and {MAX_SANDBOX_INSTANCES} sandbox instances",
                    kind.as_str()
                ),
                "T7",
                None,
            );
            return None;
        }
        let a = self.push(
            ActionKind::PurchaseInstance,
            address.to_string(),
            Op::PurchaseInstance { kind },
            vec![ch(
                format!("slots.{}", kind.as_str()),
                Value::Null,
                json!("+1"),
            )],
            format!("buy a {} instance slot: {why} (I2)", kind.as_str()),
            [],
        );
        self.lic.capacity_purchases.push(a);
        if kind == InstanceType::Sandbox {
            for s in self.sandbox.fallbacks.clone() {
                self.dep(a, Some(s));
            }
        }
        Some(a)
    }

    /// A slot of `kind` becomes free once `source` ran (I2, I7). A sandbox slot becomes
    /// free only after the switches that rely on none being free (`sandbox_fallbacks`).
    pub(super) fn release_slot(&mut self, pool: &mut SlotPool, kind: InstanceType, source: usize) {
        if kind == InstanceType::Sandbox {
            for s in self.sandbox.fallbacks.clone() {
                self.dep(source, Some(s));
            }
        }
        pool.release(kind, source);
    }

    /// Record the production -> sandbox switch `sw` that occupies a `slot` afterwards (I7).
    /// Into a sandbox slot it is a taker; into a production slot (no sandbox slot free) it
    /// must run when no sandbox slot is free: after every earlier sandbox taker, and before
    /// every later sandbox slot that becomes free (see [`Planner::release_slot`],
    /// [`Planner::buy_slot`]), since the provider picks a free sandbox slot first.
    pub(super) fn took_for_sandbox(&mut self, sw: usize, slot: InstanceType) {
        if slot == InstanceType::Sandbox {
            self.sandbox.takers.push(sw);
        } else {
            for t in self.sandbox.takers.clone() {
                self.dep(sw, Some(t));
            }
            self.sandbox.fallbacks.push(sw);
        }
    }

    /// A free slot of `kind`, bought when none is free (I2).
    pub(super) fn take_slot(
        &mut self,
        pool: &mut SlotPool,
        kind: InstanceType,
        address: &str,
        why: &str,
    ) -> Vec<usize> {
        match pool.take(kind) {
            Some(deps) => deps,
            None => self.buy_and_take(pool, kind, address, why),
        }
    }

    /// Buy a slot of `kind` and take it. When instances occupy more slots than surely
    /// exist (the included sandbox is lost, T6), slots are bought to cover them first, so
    /// that the configure or switch finds a free slot whenever it runs (I2).
    fn buy_and_take(
        &mut self,
        pool: &mut SlotPool,
        kind: InstanceType,
        address: &str,
        why: &str,
    ) -> Vec<usize> {
        while pool.in_debt(kind) {
            let Some(a) = self.buy_slot(
                pool,
                kind,
                address,
                "the included sandbox slot is lost (T6) under an instance that keeps it",
            ) else {
                return Vec::new();
            };
            pool.release(kind, a); // pays the debt back
        }
        let Some(a) = self.buy_slot(pool, kind, address, why) else {
            return Vec::new();
        };
        pool.release(kind, a);
        pool.take(kind).unwrap_or_default()
    }

    /// Production -> sandbox (I7): a free sandbox slot, else another free production slot,
    /// else buy a sandbox slot. Returns the deps and the slot kind occupied afterwards.
    pub(super) fn slot_for_sandbox(
        &mut self,
        pool: &mut SlotPool,
        address: &str,
    ) -> (Vec<usize>, InstanceType) {
        if pool.has(InstanceType::Sandbox) {
            (
                pool.take(InstanceType::Sandbox).unwrap_or_default(),
                InstanceType::Sandbox,
            )
        } else if pool.has(InstanceType::Production) && !pool.lingering(InstanceType::Sandbox) {
            // Not while an included sandbox slot (T6) lingers until a license reduction:
            // the provider would put the instance there when the switch runs first.
            (
                pool.take(InstanceType::Production).unwrap_or_default(),
                InstanceType::Production,
            )
        } else {
            let deps = self.buy_and_take(
                pool,
                InstanceType::Sandbox,
                address,
                "switching to sandbox needs a free slot (I7)",
            );
            (deps, InstanceType::Sandbox)
        }
    }

    pub(super) fn switch(
        &mut self,
        address: &str,
        key_or_addr: ObjRef,
        from: InstanceType,
        to: InstanceType,
        reason: &'static str,
        deps: Vec<usize>,
    ) -> usize {
        self.push(
            ActionKind::SwitchInstance,
            address.to_string(),
            Op::SwitchInstance {
                instance: key_or_addr,
                to,
            },
            vec![ch("type", json!(from.as_str()), json!(to.as_str()))],
            reason,
            deps.into_iter().map(Some),
        )
    }
}
