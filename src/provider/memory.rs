//! An in-memory tenant with the local provider's rules and no file (issue 11 item 4).
//!
//! [`MemoryProvider`] checks every op with the same code as the embedded local tenant
//! (`provider::local::rules::effect`, rule ids in its refusals) and applies the result with
//! the same `delta::apply_to_cache`, on a [`Tenant`] held in memory: no SQLite, no file,
//! nothing left behind. Tests use it to apply plans (it replaced the test suite's own rule
//! simulator) and to inject faults around a real rule engine.
//!
//! The core is synchronous and inherent ([`MemoryProvider::observe_now`],
//! [`MemoryProvider::execute_now`]); the [`Provider`] implementation only delegates to it,
//! so that the provider boundary can change shape without touching the rules.
//!
//! Ids are deterministic, as in the local tenant: `usr-000001`, `grp-000001`,
//! `org-000001`, from counters that start above every id of that form in the initial
//! tenant.

use std::sync::{Mutex, MutexGuard};

use crate::domain::op::Op;
use crate::observed::Tenant;
use crate::provider::local::delta::{apply_to_cache, Counters, Index};
use crate::provider::local::integrity::counters_covering;
use crate::provider::local::rules;
use crate::provider::{
    BoxFuture, Executed, Outcome, Provider, ProviderError, RequestFamily, Scope,
};

/// A tenant in memory that enforces domain.md like the local provider.
#[derive(Debug)]
pub struct MemoryProvider {
    inner: Mutex<Memory>,
    batch_size: usize,
    refuse_no_ops: bool,
}

#[derive(Debug)]
struct Memory {
    tenant: Tenant,
    index: Index,
    counters: Counters,
    /// Ops that changed the tenant so far.
    writes: u64,
}

impl MemoryProvider {
    /// A provider holding `tenant` as it is (no integrity check: tests build partial
    /// tenants). Ids it creates never collide with the tenant's `xxx-NNNNNN` ids.
    pub fn new(tenant: Tenant) -> MemoryProvider {
        MemoryProvider {
            inner: Mutex::new(Memory {
                index: Index::build(&tenant),
                counters: counters_covering(&tenant, Counters::default()),
                tenant,
                writes: 0,
            }),
            batch_size: 1,
            refuse_no_ops: false,
        }
    }

    /// How many ops one batch request should carry (1, the default: no batching).
    pub fn with_batch_size(mut self, n: usize) -> MemoryProvider {
        self.batch_size = n.max(1);
        self
    }

    /// Refuse (as invalid) every op but `adopt` that would change nothing: a plan that
    /// carries an action with no effect is a planner defect that tests want to see. The
    /// service itself accepts such ops (see the idempotency table of the local provider).
    pub fn refusing_no_ops(mut self) -> MemoryProvider {
        self.refuse_no_ops = true;
        self
    }

    /// The tenant now.
    pub fn observe_now(&self) -> Result<Tenant, ProviderError> {
        Ok(self.lock()?.tenant.clone())
    }

    /// Check and apply `ops` in order, each against the tenant as left by the ops before
    /// it (as one batch of the local provider): each succeeds or fails alone; the results
    /// are in the order of `ops`.
    pub fn execute_now(&self, ops: &[Op]) -> Vec<Result<Outcome, ProviderError>> {
        let mut guard = match self.lock() {
            Ok(g) => g,
            Err(e) => return ops.iter().map(|_| Err(e.clone())).collect(),
        };
        let m = &mut *guard;
        ops.iter()
            .map(|op| {
                let effect = rules::effect(&m.tenant, &m.index, m.counters, op)?;
                if effect.deltas.is_empty() {
                    if self.refuse_no_ops && !matches!(op, Op::Adopt { .. }) {
                        return Err(ProviderError::Invalid(format!(
                            "{} changes nothing (refusing_no_ops)",
                            op.kind().as_str()
                        )));
                    }
                } else {
                    m.writes += 1;
                }
                apply_to_cache(&mut m.tenant, &mut m.index, &mut m.counters, &effect.deltas);
                Ok(effect.outcome)
            })
            .collect()
    }

    /// How many ops changed the tenant so far (refused ops and no-ops do not count).
    pub fn writes(&self) -> u64 {
        self.lock().map(|m| m.writes).unwrap_or(0)
    }

    /// [`MemoryProvider::execute_now`] of one op.
    pub fn execute_one(&self, op: &Op) -> Result<Executed, ProviderError> {
        self.execute_now(std::slice::from_ref(op))
            .pop()
            .expect("one result per op")
            .map(Executed::Done)
    }

    /// Ops one request carries (see [`MemoryProvider::with_batch_size`]).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The tenant, giving the provider up.
    pub fn into_tenant(self) -> Tenant {
        match self.inner.into_inner() {
            Ok(m) => m.tenant,
            Err(poisoned) => poisoned.into_inner().tenant,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Memory>, ProviderError> {
        self.inner
            .lock()
            .map_err(|_| ProviderError::Backend("in-memory tenant poisoned by a panic".into()))
    }
}

/// A thin delegation to the inherent core: every op is done at once (no long-running
/// operations), one request family whose batches carry `batch_size` ops.
impl Provider for MemoryProvider {
    fn observe<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Tenant, ProviderError>> {
        Box::pin(async move { self.observe_now().map(|t| scope.trim(&t)) })
    }

    fn execute<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Result<Executed, ProviderError>> {
        Box::pin(async move { self.execute_one(op) })
    }

    fn execute_batch<'a>(
        &'a self,
        ops: &'a [Op],
    ) -> BoxFuture<'a, Vec<Result<Executed, ProviderError>>> {
        Box::pin(async move {
            self.execute_now(ops)
                .into_iter()
                .map(|r| r.map(Executed::Done))
                .collect()
        })
    }

    fn family(&self, _op: &Op) -> RequestFamily {
        RequestFamily {
            name: "memory",
            max_ops: self.batch_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kinds::{AccessMode, InstanceType, LicensePlan};
    use crate::domain::op::{ObjKind, ObjRef};

    const DOMAIN: &str = "coho.onmicrosoft.com";

    fn exec(p: &MemoryProvider, op: &Op) -> Result<Outcome, ProviderError> {
        p.execute_now(std::slice::from_ref(op))
            .pop()
            .expect("one result per op")
    }

    fn at(address: &str, id: &str) -> ObjRef {
        ObjRef {
            address: address.into(),
            id: Some(id.into()),
        }
    }

    fn create_user(upn: &str) -> Op {
        Op::CreateUser {
            upn: upn.into(),
            name: upn.into(),
            access_mode: AccessMode::ReadWrite,
            usage_location: None,
            application_id: None,
        }
    }

    fn rule(r: &Result<Outcome, ProviderError>) -> Option<&str> {
        match r {
            Err(ProviderError::Refused { rule, .. }) => Some(rule.as_str()),
            _ => None,
        }
    }

    // issue 11 item 4: ids are deterministic and start above the tenant's own ids.
    #[test]
    fn creates_take_ids_above_the_tenants_own() {
        let mut t = Tenant::fresh(DOMAIN);
        let p0 = MemoryProvider::new(t.clone());
        let id = exec(&p0, &create_user("a@coho.com")).unwrap().created_id;
        assert_eq!(id.as_deref(), Some("usr-000001"));
        t = p0.into_tenant();
        // A tenant that already holds usr-000001 (e.g. imported) gets usr-000002 next.
        let p = MemoryProvider::new(t);
        let id = exec(&p, &create_user("b@coho.com")).unwrap().created_id;
        assert_eq!(id.as_deref(), Some("usr-000002"));
        let seen = p.observe_now().unwrap();
        assert_eq!(seen.users.len(), 2);
        assert_eq!(seen.users["usr-000002"].upn, "b@coho.com");
    }

    // issue 11 item 4: the ops of one call are checked in order against the tenant as
    // left by the ops before them, and each succeeds or fails alone (P1, T3, T5).
    #[test]
    fn a_batch_sees_the_effects_of_the_ops_before_it() {
        let p = MemoryProvider::new(Tenant::fresh(DOMAIN)).with_batch_size(8);
        assert_eq!(p.batch_size(), 8);
        let results = p.execute_now(&[
            create_user("a@coho.com"),
            // P1: the UPN is taken by the op before, without regard to case.
            create_user("A@coho.com"),
            // T5: no Professional or Enterprise license yet.
            Op::PurchaseStorage { to_gb: 5 },
            Op::PurchaseLicenses {
                plan: LicensePlan::Professional,
                to: 1,
            },
            // T5 holds now.
            Op::PurchaseStorage { to_gb: 5 },
            Op::AssignLicense {
                user: at("users.a", "usr-000001"),
                plan: LicensePlan::Professional,
            },
            // T3: the one license is assigned.
            create_user("b@coho.com"),
            Op::AssignLicense {
                user: at("users.b", "usr-000002"),
                plan: LicensePlan::Professional,
            },
        ]);
        let rules: Vec<Option<&str>> = results.iter().map(rule).collect();
        assert_eq!(
            rules,
            [
                None,
                Some("P1"),
                Some("T5"),
                None,
                None,
                None,
                None,
                Some("T3")
            ]
        );
        assert!(results
            .iter()
            .enumerate()
            .all(|(i, r)| r.is_ok() == [true, false, false, true, true, true, true, false][i]));
        let t = p.into_tenant();
        assert_eq!(t.storage.additional_gb, 5);
        assert_eq!(
            t.users["usr-000001"].license,
            Some(LicensePlan::Professional)
        );
        assert_eq!(t.users["usr-000002"].license, None);
    }

    // issue 11 item 4: the same rules as the local provider, table-driven (rule ids of
    // domain.md): each op is refused on the tenant given, with the rule named.
    #[test]
    fn refusals_name_the_rule() {
        // A production instance and two global admins (P6 floor), on a fresh tenant.
        let t: Tenant = crate::desired::load::from_yaml(&format!(
            "domain: {DOMAIN}\nversions: [7.0.0, 8.0.0, 8.1.0]\n\
             instances:\n  org-1: {{id: org-1, name: prod, url: prod, type: production, slot: production, region: NA, currency: USD, language: 1033, status: ready, version: 8.1.0}}\n\
             users:\n  ga1: {{id: ga1, upn: ga1@coho.com, access_mode: read-write, admin_roles: [global_admin]}}\n  ga2: {{id: ga2, upn: ga2@coho.com, access_mode: read-write, admin_roles: [global_admin]}}\n"
        ))
        .unwrap();
        let cases: Vec<(&str, Op)> = vec![
            (
                "I8",
                Op::DeleteInstance {
                    instance: at("instances.prod", "org-1"),
                },
            ),
            (
                "I9",
                Op::ResetInstance {
                    instance: at("instances.prod", "org-1"),
                    currency: "USD".into(),
                    language: 1033,
                },
            ),
            (
                "I5",
                Op::UpdateInstance {
                    instance: at("instances.prod", "org-1"),
                    name: None,
                    url: Some("-bad-".into()),
                    purpose: None,
                    security_group: None,
                },
            ),
            (
                "I10",
                Op::SetAdminMode {
                    instance: at("instances.prod", "org-1"),
                    enabled: true,
                    background_operations: true,
                    message: None,
                },
            ),
            (
                "P6",
                Op::DeleteUser {
                    user: at("users.ga1", "ga1"),
                },
            ),
            (
                "T5",
                Op::PurchaseInstance {
                    kind: InstanceType::Sandbox,
                },
            ),
            (
                "U2",
                Op::ScheduleUpdate {
                    instance: at("instances.prod", "org-1"),
                    target_version: "8.1.0".into(),
                    preferred: "2026-01-01".into(),
                    alternate: "2026-01-02".into(),
                },
            ),
        ];
        let p = MemoryProvider::new(t.clone());
        for (want, op) in &cases {
            let r = exec(&p, op);
            assert_eq!(rule(&r), Some(*want), "{op:?}: {r:?}");
        }
        // Nothing refused changed anything.
        assert_eq!(p.writes(), 0);
        assert_eq!(p.observe_now().unwrap(), t);
    }

    // issue 11 item 4: a set to the current value is accepted and changes nothing (the
    // local provider's idempotency contract); `refusing_no_ops` turns it into a refusal
    // for tests that check plans, while `adopt` stays accepted.
    #[test]
    fn no_ops_are_accepted_unless_refused_on_purpose() {
        let op = Op::PurchaseLicenses {
            plan: LicensePlan::Professional,
            to: 0,
        };
        let p = MemoryProvider::new(Tenant::fresh(DOMAIN));
        assert_eq!(exec(&p, &op), Ok(Outcome::default()));
        assert_eq!(p.writes(), 0);
        let strict = MemoryProvider::new(Tenant::fresh(DOMAIN)).refusing_no_ops();
        assert!(matches!(exec(&strict, &op), Err(ProviderError::Invalid(_))));
        let created = exec(&strict, &create_user("a@coho.com")).unwrap();
        let id = created.created_id.unwrap();
        let adopt = Op::Adopt {
            kind: ObjKind::User,
            id: id.clone(),
            from: None,
        };
        assert_eq!(exec(&strict, &adopt), Ok(Outcome::default()));
        assert_eq!(strict.writes(), 1);
        // Adopting what does not exist is refused by the rules, not by the no-op check.
        let missing = Op::Adopt {
            kind: ObjKind::User,
            id: "usr-999999".into(),
            from: None,
        };
        assert!(matches!(
            exec(&strict, &missing),
            Err(ProviderError::NotFound(_))
        ));
    }
}
