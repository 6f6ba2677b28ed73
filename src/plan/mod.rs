//! The pure planner: `plan(desired, observed, state) -> Plan`. No I/O, deterministic.
//!
//! Pipeline: [`diff`] turns desired vs observed into draft actions with dependency edges
//! (each edge is an ordering rule of domain.md), [`graph`] orders them topologically
//! (stable: ties broken by address, then kind), and the result is numbered in execution
//! order. Renderers (`crate::render`) and apply consume the same [`Plan`] value.
//!
//! Conventions (documented for users in docs/workflows.md and docs/file-format.md):
//! - a resource in the state but no longer in the file is deleted; objects in the tenant
//!   that neither the state nor the file names are never touched;
//! - a state entry whose object no longer exists and whose address is no longer in the file
//!   (a crash right after a delete) is listed in [`Plan::forget`] with a warning; apply
//!   drops it from the state;
//! - objects in the file and in the tenant but not in the state are adopted by natural key
//!   (user UPN, group display name, instance URL name) with an `adopt` action; natural keys
//!   are compared without regard to case, as the service does (`domain::ident`);
//! - a managed object whose key changed only in case (or, for a user or an instance, whose
//!   UPN or URL name a new key of the file wants) is re-keyed by an `adopt` whose `from`
//!   names its old state address: never deleted and created again;
//! - when a plan deletes an object and creates one with the same natural key, the delete
//!   depends on the create (a failed create leaves the old object).
//! - instance slot purchases (`purchase_instance`) carry the address of the instance that
//!   needs the slot;
//! - `copy_from` is acted on only when the target is created; after the copy the target
//!   stays in administration mode with background operations off (I11) unless the file
//!   gives `admin_mode`;
//! - a reset (I9) is assumed to wipe the instance's security roles and administration mode.

pub mod action;
pub mod backups;
mod capacity;
pub(crate) mod diff;
pub mod drift;
mod fingerprint;
pub(crate) mod graph;
pub mod manual;
pub mod safety;
pub mod saved;
pub mod target;

pub use action::{Action, Change, Forget, Plan, Summary};
pub use fingerprint::fingerprint;

use crate::desired::index::MemberPositions;
use crate::desired::model::Desired;
use crate::diag::Diagnostic;
use crate::domain::op::{ActionKind, ObjKind};
use crate::observed::Tenant;
use crate::state::State;

/// Compute the plan that takes `observed` to `desired`, given what `state` manages.
///
/// Never fails: problems (rule violations the plan cannot avoid, ambiguous adoption, a
/// dependency cycle) are error diagnostics, and a plan with an error must not be applied.
pub fn plan(desired: &Desired, observed: &Tenant, state: &State) -> Plan {
    plan_resolved(desired, &MemberPositions::resolve(desired), observed, state)
}

/// [`plan`], given the members of `desired` already resolved to users (as loading the
/// file did: [`crate::desired::load::Loaded::members`]). Positions that do not fit `desired`
/// (see [`MemberPositions::fits`]) are resolved again.
pub fn plan_resolved(
    desired: &Desired,
    members: &MemberPositions,
    observed: &Tenant,
    state: &State,
) -> Plan {
    plan_with(desired, members, observed, state, &[])
}

/// [`plan_resolved`], re-creating on purpose the instances at the `replace` addresses
/// (`--replace`, issue 14 item 4): a sandbox with `copy_from` is copied again from its
/// source (I11), another sandbox is reset (I9); a production instance, a protected one or
/// one the tenant does not hold yet is an error diagnostic. Addresses of other kinds are
/// refused before planning ([`target::check_replaces`]).
pub fn plan_with(
    desired: &Desired,
    members: &MemberPositions,
    observed: &Tenant,
    state: &State,
    replace: &[String],
) -> Plan {
    if !members.fits(desired) {
        let members = MemberPositions::resolve(desired);
        return plan_with(desired, &members, observed, state, replace);
    }
    // The fingerprint (hashing the whole observed tenant) is independent of the diff: on
    // a large tenant it runs on a second thread meanwhile. Same value either way.
    std::thread::scope(|scope| {
        let fingerprint = (observed.users.len() + observed.groups.len() >= PARALLEL_FROM)
            .then(|| scope.spawn(|| fingerprint(observed)));
        let mut plan = plan_actions(desired, members, observed, state, replace);
        plan.fingerprint = match fingerprint {
            Some(handle) => handle.join().expect("fingerprinting does not panic"),
            None => self::fingerprint(observed),
        };
        plan
    })
}

/// From this many users + groups on, the fingerprint is computed on a second thread.
const PARALLEL_FROM: usize = 2_000;

/// [`plan`] without the fingerprint (left empty).
fn plan_actions(
    desired: &Desired,
    members: &MemberPositions,
    observed: &Tenant,
    state: &State,
    replace: &[String],
) -> Plan {
    let diff::Diff { drafts, mut diags } = diff::diff(desired, members, observed, state, replace);
    // T1: a domain is a DNS name, compared without regard to case (as the state binding).
    if !observed.domain.is_empty() && !observed.domain.eq_ignore_ascii_case(&desired.tenant) {
        diags.push(
            Diagnostic::error(
                "tenant",
                format!(
                    "the file describes tenant `{}` but the backend holds `{}`",
                    desired.tenant, observed.domain
                ),
            )
            .rule("T1")
            .hint("check `--backend`, or the `tenant` of the file"),
        );
    }
    storage_diagnostics(desired, observed, &mut diags);
    let forget = forgotten(desired, observed, state);
    for f in &forget {
        diags.push(Diagnostic::warning(
            f.address.clone(),
            format!(
                "the state manages `{}`, which no longer exists in the tenant, and the file no longer declares it: apply forgets it from the state",
                f.id
            ),
        ));
    }
    let order = match graph::topo_order(&drafts) {
        Ok(order) => order,
        Err(graph::Cycle { order, path: cycle }) => {
            let path: Vec<String> = cycle
                .iter()
                .map(|&i| format!("{} ({})", drafts[i].address, drafts[i].kind.as_str()))
                .collect();
            diags.push(
                Diagnostic::error(
                    drafts[cycle[0]].address.clone(),
                    format!("dependency cycle: {}", path.join(" -> ")),
                )
                .hint("change the file so that these changes do not wait on each other, or split it into two applies"),
            );
            order
        }
    };
    // Renumber in execution order, then move each action to its place in the same vector
    // (a 300,000-action plan is never copied).
    let mut pos = vec![0usize; drafts.len()];
    for (new, &old) in order.iter().enumerate() {
        pos[old] = new;
    }
    drop(order);
    let mut summary = Summary::default();
    let mut actions = drafts;
    for a in &mut actions {
        count(&mut summary, a.kind);
        a.id = pos[a.id];
        for d in &mut a.depends_on {
            *d = pos[*d];
        }
        a.depends_on.sort_unstable();
    }
    for i in 0..actions.len() {
        // Each swap puts one action in its final place.
        while actions[i].id != i {
            let j = actions[i].id;
            actions.swap(i, j);
        }
    }
    // Errors first, then warnings; each group by address, then message.
    diags.sort_by(|a, b| {
        (b.severity, &a.address, &a.message).cmp(&(a.severity, &b.address, &b.message))
    });
    diags.dedup();
    summary.forget = forget.len();
    // Issue 14 item 2: what changed outside crmctl, apart from the file's changes.
    let mut drift = drift::drift(observed, state);
    drift::link(&mut drift, &actions);
    summary.drift = drift.len();
    Plan {
        format_version: action::FORMAT_VERSION.to_string(),
        tenant: desired.tenant.clone(),
        fingerprint: String::new(),
        summary,
        actions,
        diagnostics: diags,
        forget,
        manual: Vec::new(),
        drift,
        targeting: None,
        refresh_only: false,
    }
}

/// State entries whose object is gone from the tenant and whose address the file no
/// longer declares (issue 9 item 5: a crash right after `delete_user ... done`, before the
/// state recorded it, left `users.gus` in the state forever). An address the file still
/// declares is not forgotten: the plan creates or adopts its object again, and apply
/// records the new id. One lookup per state entry.
fn forgotten(desired: &Desired, observed: &Tenant, state: &State) -> Vec<Forget> {
    fn declared<V>(map: &Option<std::collections::BTreeMap<String, V>>, key: Option<&str>) -> bool {
        key.is_some_and(|k| map.as_ref().is_some_and(|m| m.contains_key(k)))
    }
    state
        .resources
        .iter()
        .filter(|(address, r)| match r.kind {
            ObjKind::User => {
                !observed.users.contains_key(&r.id)
                    && !declared(&desired.users, address.strip_prefix("users."))
            }
            ObjKind::Group => {
                !observed.groups.contains_key(&r.id)
                    && !declared(
                        &desired.security_groups,
                        address.strip_prefix("security_groups."),
                    )
            }
            ObjKind::Instance => {
                !observed.instances.contains_key(&r.id)
                    && !declared(&desired.instances, address.strip_prefix("instances."))
            }
        })
        .map(|(address, r)| Forget {
            address: address.clone(),
            kind: r.kind,
            id: r.id.clone(),
        })
        .collect()
}

/// T8: storage is shared by every instance; admins are warned at 80% used, and at 100%
/// every instance becomes read-only. Checked against the capacity the plan leaves (T6
/// included storage for the final Professional + Enterprise count, plus the add-on).
fn storage_diagnostics(desired: &Desired, observed: &Tenant, diags: &mut Vec<Diagnostic>) {
    use crate::domain::kinds::LicensePlan;
    use crate::observed::included_storage_gb;
    let used = observed.storage.used_gb;
    if used <= 0.0 {
        return;
    }
    let final_count = |plan: LicensePlan| {
        desired
            .licenses
            .as_ref()
            .and_then(|l| l.get(&plan).copied())
            .unwrap_or_else(|| observed.purchased(plan))
    };
    let pro_ent = final_count(LicensePlan::Professional) + final_count(LicensePlan::Enterprise);
    let additional = desired
        .storage
        .as_ref()
        .and_then(|s| s.additional_gb)
        .unwrap_or(observed.storage.additional_gb);
    let now = observed.included_storage_gb() + f64::from(observed.storage.additional_gb);
    let after = included_storage_gb(pro_ent) + f64::from(additional);
    let hint = |need: f64| {
        format!(
            "buy storage: set `storage.additional_gb` to at least {}",
            (f64::from(additional) + (need - after)).ceil().max(0.0)
        )
    };
    if used >= after && after < now {
        diags.push(
            Diagnostic::error(
                "storage",
                format!(
                    "the plan lowers storage to {after} GB but {used} GB are in use: every instance would become read-only"
                ),
            )
            .rule("T8")
            .hint(hint(used / 0.8)),
        );
    } else if used >= after {
        diags.push(
            Diagnostic::warning(
                "storage",
                format!("storage is full ({used} of {after} GB): every instance is read-only"),
            )
            .rule("T8")
            .hint(hint(used / 0.8)),
        );
    } else if used >= 0.8 * after {
        diags.push(
            Diagnostic::warning(
                "storage",
                format!(
                    "{used} of {after} GB of storage are in use ({:.0}%); at 100% every instance becomes read-only",
                    100.0 * used / after
                ),
            )
            .rule("T8")
            .hint(hint(used / 0.8)),
        );
    }
}

/// Count an action of `kind` in its summary category ([`ActionKind::category`]).
pub(crate) fn count(s: &mut Summary, kind: ActionKind) {
    use crate::domain::op::Category;
    match kind.category() {
        Category::Buy => s.buy += 1,
        Category::Create => s.create += 1,
        Category::Change => s.change += 1,
        Category::Delete => s.delete += 1,
        Category::Replace => s.replace += 1,
        Category::Adopt => s.adopt += 1,
    }
}

impl Plan {
    /// Whether the plan has error diagnostics (it must not be applied).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Whether the plan changes nothing: no action, and no state entry to forget (a
    /// forget changes the state, as Terraform counts it; issue 9 item 2).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.forget.is_empty()
    }
}
