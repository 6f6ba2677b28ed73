//! Diff desired against observed into draft actions with dependency edges.
//!
//! The drafts are unordered; [`super::graph`] orders them. Every rule of domain.md that
//! constrains the order is an edge added here, with the rule id in a comment.
//!
//! One [`Planner`] walks the phases of [`diff_with`] in a fixed order; each phase is a
//! method in the file of its concern, and records in the planner what later phases
//! depend on:
//!
//! | file | concern |
//! | --- | --- |
//! | `adoption.rs` | resolution by state, then natural key; re-keying; replace guards |
//! | `licences.rs` | licenses and storage (T2-T6), license steps of users (P4, T3) |
//! | `groups.rs` | security groups (I12) |
//! | `memberships.rs` | group members (I12), on two threads when large |
//! | `users.rs` | users (P1-P6), global admins (P6) |
//! | `instances.rs` | instance lifecycle: delete, switch, configure, copy (I2, I7, I8, I11) |
//! | `slots.rs` | instance slots (I2, I7, T6) |
//! | `instance_edits.rs` | kept instances: reset, edits, group binding, URL names (I3-I5, I9, I12) |
//! | `settings.rs` | administration mode, recipients, updates (I10, I13, U2-U4); status (I4) |
//! | `roles.rs` | security roles (P2, P3), on two threads when large |

mod adoption;
mod groups;
mod instance_edits;
mod instances;
mod licences;
mod memberships;
mod roles;
mod settings;
mod slots;
mod users;

use std::borrow::Cow;
use std::collections::BTreeMap;

/// Fast, deterministic hashing for the planner's lookup tables (never iterated for output).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;

use serde_json::Value;

use crate::desired::index::MemberPositions;
use crate::desired::model::Desired;
use crate::diag::Diagnostic;
use crate::domain::op::{ActionKind, ObjKind, ObjRef, Op};
use crate::observed::{self as t, Tenant};
use crate::plan::action::{Action, Change};
use crate::state::State;
use instances::InstSteps;
use licences::Licences;
use memberships::Memberships;
use slots::Sandboxes;
use users::{user_address, GlobalAdmins, UserTable};

/// An action before ordering: `id` is its index in the draft list and `depends_on` holds
/// draft indices (possibly repeated) until [`super::plan`] orders and renumbers them in
/// place.
pub(crate) type Draft = Action;

/// The result of diffing.
pub(crate) struct Diff {
    pub drafts: Vec<Draft>,
    pub diags: Vec<Diagnostic>,
}

/// An attribute-level change, for display.
fn ch(path: impl Into<Cow<'static, str>>, before: Value, after: Value) -> Change {
    Change {
        path: path.into(),
        before,
        after,
    }
}

/// The state's entries under `prefix` (`users.`, `instances.`, ...), in address order, as
/// (address, key after the prefix, resource).
fn state_under<'s>(
    s: &'s State,
    prefix: &'static str,
) -> impl Iterator<Item = (&'s str, &'s str, &'s crate::state::Resource)> {
    s.resources
        .range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        ))
        .map_while(move |(a, r)| a.strip_prefix(prefix).map(|k| (a.as_str(), k, r)))
}

/// A desired object and where it is in the tenant.
#[derive(Debug, Clone, Copy, Default)]
struct Bound<'a> {
    /// Remote id when the object exists now.
    id: Option<&'a str>,
    /// The action after which the object exists (create, configure or adopt).
    ready: Option<usize>,
    /// The observed user (users only), to avoid looking it up again.
    user: Option<&'a t::User>,
}

/// From which sizes on the phases that can run on two threads do (tests lower them to
/// compare with one thread).
#[derive(Clone, Copy)]
struct Parallel {
    /// Desired users: their roles are worked out on two threads.
    roles: usize,
    /// Memberships, listed plus observed: the groups are compared on two threads.
    memberships: usize,
}

const PARALLEL: Parallel = Parallel {
    roles: 20_000,
    memberships: 100_000,
};

/// The diff in progress: the inputs, the drafts and diagnostics made so far, and what each
/// phase leaves for later ones. A phase is a method in the file of its concern.
struct Planner<'a> {
    d: &'a Desired,
    /// The desired groups' members as positions in `users` (resolved once at load).
    members: &'a MemberPositions,
    t: &'a Tenant,
    s: &'a State,
    /// Sizes from which phases run on two threads.
    parallel: Parallel,
    drafts: Vec<Draft>,
    diags: Vec<Diagnostic>,
    /// Desired groups by key: where each is in the tenant.
    groups: BTreeMap<&'a str, Bound<'a>>,
    /// Desired users: where each is in the tenant, and their steps.
    users: UserTable<'a>,
    /// Desired instances by key: where each is in the tenant, and their steps.
    insts: BTreeMap<&'a str, InstSteps<'a>>,
    /// Remote id -> state address, for every managed object.
    addr_of_id: HashMap<&'a str, &'a str>,
    /// Remote ids adopted in this plan (an object is adopted once).
    adopted: HashSet<&'a str>,
    /// State addresses whose object the file now declares under another key (a key whose
    /// case changed, or an instance's URL name under a new key): re-keyed by an `adopt`
    /// with `from`, never deleted (issue 9 item 2).
    moved: HashSet<&'a str>,
    /// Addresses the file's `moved` entries rename to, with the remote id the state holds
    /// at their `from` (issue 14 item 3): resolved as that object, re-keyed by an adopt.
    moves: HashMap<&'a str, &'a str>,
    /// Licenses and capacity purchases (T2-T6).
    lic: Licences,
    /// Sandbox slot order (I2, I7, T6).
    sandbox: Sandboxes,
    /// Membership actions and lookups (I12).
    mem: Memberships<'a>,
    /// Actions after which an observed instance no longer uses its group (I12).
    unbinds: HashMap<&'a str, usize>,
    /// Global admin promotions and demotions (P6).
    ga: GlobalAdmins,
    /// Instance addresses to re-create on purpose (`--replace`, issue 14 item 4).
    replace: &'a [String],
}

/// Diff `desired` against `observed` given `state`.
pub(crate) fn diff(
    desired: &Desired,
    members: &MemberPositions,
    observed: &Tenant,
    state: &State,
    replace: &[String],
) -> Diff {
    diff_with(desired, members, observed, state, PARALLEL, replace)
}

/// [`diff`], with two threads from the sizes of `parallel` on.
fn diff_with(
    desired: &Desired,
    members: &MemberPositions,
    observed: &Tenant,
    state: &State,
    parallel: Parallel,
    replace: &[String],
) -> Diff {
    let mut p = Planner {
        replace,
        d: desired,
        members,
        t: observed,
        s: state,
        parallel,
        drafts: Vec::with_capacity(expected_actions(desired)),
        diags: Vec::new(),
        groups: BTreeMap::new(),
        users: UserTable::default(),
        insts: BTreeMap::new(),
        addr_of_id: state
            .resources
            .iter()
            .map(|(a, r)| (r.id.as_str(), a.as_str()))
            .collect(),
        adopted: HashSet::default(),
        moved: HashSet::default(),
        moves: HashMap::default(),
        lic: Licences::default(),
        sandbox: Sandboxes::default(),
        mem: Memberships::default(),
        unbinds: HashMap::default(),
        ga: GlobalAdmins::default(),
    };
    // Resolution: the file's `moved`, the state, then natural key (`adoption.rs`).
    p.resolve_moves();
    p.resolve_groups();
    p.resolve_users();
    p.resolve_instances();
    // Creates and changes, each phase after those whose actions it depends on.
    p.licenses();
    p.storage();
    p.groups();
    p.users();
    p.group_members();
    p.instances();
    p.roles_with(parallel.roles);
    p.access_modes_after_instances();
    // Deletes, then the edges and checks that need every action above.
    p.delete_users();
    p.global_admins();
    p.delete_groups();
    p.replace_guards();
    p.license_order();
    p.t5_prerequisites();
    p.instance_status();
    for d in &mut p.drafts {
        d.depends_on.sort_unstable();
        d.depends_on.dedup();
    }
    Diff {
        drafts: p.drafts,
        diags: p.diags,
    }
}

/// A generous guess of the number of actions (a fresh tenant: each user is created,
/// licensed and given roles; each group created and filled), reserved up front so that
/// the draft list of a large plan is never copied while it grows. Reserved pages that
/// are not used are never touched, so over-estimating costs nothing.
fn expected_actions(d: &Desired) -> usize {
    let users = d.users.as_ref().map_or(0, |u| u.len());
    let groups = d.security_groups.as_ref().map_or(0, |g| g.len());
    let instances = d.instances.as_ref().map_or(0, |i| i.len());
    16 + 4 * users + 3 * groups + 8 * instances
}

/// No map: for `desired.x.as_ref().or(empty())`.
const fn empty<'a, K, V>() -> Option<&'a BTreeMap<K, V>> {
    None
}

/// The helpers every phase uses: making actions and edges, reporting, references.
impl<'a> Planner<'a> {
    /// Add a draft action; returns its index (`deps`: the actions it waits for, `None`s
    /// skipped).
    fn push(
        &mut self,
        kind: ActionKind,
        address: String,
        op: Op,
        changes: Vec<Change>,
        reason: impl Into<Cow<'static, str>>,
        deps: impl IntoIterator<Item = Option<usize>>,
    ) -> usize {
        // The planner copies only onto new sandboxes (I11), so the kind decides (the
        // table of action kinds); apply derives the flag again (`Plan::destructive_flags`).
        let destructive = kind.always_destructive();
        self.drafts.push(Action {
            id: self.drafts.len(),
            kind,
            address,
            depends_on: deps.into_iter().flatten().collect(),
            destructive,
            changes,
            reason: reason.into(),
            op: Box::new(op),
        });
        self.drafts.len() - 1
    }

    /// Make `action` wait for `on` (nothing for `None` or itself).
    fn dep(&mut self, action: usize, on: Option<usize>) {
        if let Some(on) = on {
            if on != action {
                self.drafts[action].depends_on.push(on);
            }
        }
    }

    /// An error diagnostic at `address`, citing `rule`.
    fn error(&mut self, address: &str, message: String, rule: &str, hint: Option<String>) {
        let mut d = Diagnostic::error(address, message).rule(rule);
        d.hint = hint;
        self.diags.push(d);
    }

    /// A warning at `address`, citing `rule`.
    fn warn(&mut self, address: &str, message: String, rule: &str) {
        self.diags
            .push(Diagnostic::warning(address, message).rule(rule));
    }

    /// The remote id the state records at `address` for an object of `kind`.
    fn state_id(&self, address: &str, kind: ObjKind) -> Option<&'a str> {
        match self.s.resources.get(address) {
            Some(r) => (r.kind == kind).then_some(r.id.as_str()),
            // Issue 14 item 3: the new address of a `moved` entry names the old one's object.
            None => self.moves.get(address).copied(),
        }
    }

    /// Whether the state manages the object with remote id `id`.
    fn managed(&self, id: &str) -> bool {
        self.addr_of_id.contains_key(id)
    }

    /// A reference to the desired group `key` (its id once it exists).
    fn group_ref(&self, key: &str) -> ObjRef {
        ObjRef {
            address: format!("security_groups.{key}").into(),
            id: self.groups.get(key).and_then(|b| b.id).map(str::to_string),
        }
    }

    /// A reference to the user `upn`, with the address shared by every reference to a
    /// desired user.
    fn user_ref(&self, upn: &str) -> ObjRef {
        match self.users.idx.get(upn) {
            Some(&i) => ObjRef {
                address: self.users.address(i as usize, upn),
                id: self.users.bound[i as usize].id.map(str::to_string),
            },
            None => ObjRef {
                address: user_address(upn).into(),
                id: None,
            },
        }
    }

    /// A reference to the desired instance `key` (its id once it exists).
    fn inst_ref(&self, key: &str) -> ObjRef {
        ObjRef {
            address: format!("instances.{key}").into(),
            id: self
                .insts
                .get(key)
                .and_then(|s| s.obs)
                .map(|o| o.id.clone()),
        }
    }

    /// A reference to an object by remote id: its state address, or the id itself when
    /// the object is unmanaged.
    fn id_ref(&self, id: &str) -> ObjRef {
        ObjRef {
            address: self.addr_of_id.get(id).copied().unwrap_or(id).into(),
            id: Some(id.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kinds::AccessMode;
    use crate::synth::{generate, SynthParams};

    /// `d` as if applied, then drifted: some users lose their roles, some gain one, some
    /// became non-interactive.
    fn applied_with_role_drift(d: &Desired) -> (Tenant, State) {
        let (mut t, state) = crate::synth::applied(d);
        for (n, u) in t.users.values_mut().enumerate() {
            match n % 7 {
                0 => u.roles.clear(),
                1 => {
                    if let Some(r) = u.roles.values_mut().next() {
                        r.insert("Extra Role".into());
                    }
                }
                _ => {}
            }
            if n % 11 == 0 {
                u.access_mode = AccessMode::NonInteractive;
            }
        }
        (t, state)
    }

    const ONE_THREAD: Parallel = Parallel {
        roles: usize::MAX,
        memberships: usize::MAX,
    };

    /// A fresh tenant, `drifted` as the state knows it, and `drifted` unmanaged (its
    /// objects are adopted by natural key, then compared).
    fn three_cases(d: &Desired, drifted: Tenant, state: State) -> [(Tenant, State); 3] {
        [
            (Tenant::fresh(&d.tenant), State::empty("test")),
            (drifted.clone(), state),
            (drifted, State::empty("test")),
        ]
    }

    /// The diff on one thread, once checked that with `two` (thresholds that put a phase
    /// on two threads) the drafts and diagnostics are the same.
    fn same_on_two_threads(
        d: &Desired,
        members: &MemberPositions,
        (observed, state): &(Tenant, State),
        two: Parallel,
        case: usize,
    ) -> Diff {
        let one = diff_with(d, members, observed, state, ONE_THREAD, &[]);
        let other = diff_with(d, members, observed, state, two, &[]);
        assert_eq!(one.drafts, other.drafts, "case {case}");
        assert_eq!(one.diags, other.diags, "case {case}");
        one
    }

    #[test]
    fn groups_compared_on_two_threads_give_the_same_drafts_as_on_one() {
        let d = generate(&SynthParams::small());
        let members = MemberPositions::resolve(&d);
        let (mut drifted, state) = crate::synth::applied(&d);
        // Members dropped, added (users of the file and strangers), a group emptied.
        let ids: Vec<String> = drifted.users.keys().cloned().collect();
        for (n, g) in drifted.groups.values_mut().enumerate() {
            match n % 3 {
                0 => {
                    let drop: Vec<String> = g.members.iter().step_by(4).cloned().collect();
                    for m in drop {
                        g.members.remove(&m);
                    }
                }
                1 => {
                    g.members.insert(ids[(n * 31) % ids.len()].clone());
                    g.members.insert(format!("u-stranger{n}"));
                }
                _ => g.members.clear(),
            }
        }
        for (n, case) in three_cases(&d, drifted, state).iter().enumerate() {
            let two = Parallel {
                memberships: 2,
                ..ONE_THREAD
            };
            let one = same_on_two_threads(&d, &members, case, two, n);
            let count = |kind| one.drafts.iter().filter(|a| a.kind == kind).count();
            assert!(
                count(ActionKind::AddGroupMembers) >= 3,
                "case {n} adds members"
            );
            if n > 0 {
                assert!(
                    count(ActionKind::RemoveGroupMembers) >= 3,
                    "case {n} removes"
                );
            }
        }
    }

    #[test]
    fn roles_on_two_threads_give_the_same_drafts_as_on_one() {
        let d = generate(&SynthParams::small());
        let members = MemberPositions::resolve(&d);
        let (drifted, state) = applied_with_role_drift(&d);
        for (n, case) in three_cases(&d, drifted, state).iter().enumerate() {
            let two = Parallel {
                roles: 2,
                ..ONE_THREAD
            };
            let one = same_on_two_threads(&d, &members, case, two, n);
            let roles = one
                .drafts
                .iter()
                .filter(|a| matches!(a.kind, ActionKind::AssignRoles | ActionKind::RemoveRoles))
                .count();
            assert!(roles > 50, "the case plans roles ({roles})");
            if !case.0.users.is_empty() {
                assert!(one.drafts.iter().any(|a| a.kind == ActionKind::RemoveRoles));
            }
        }
    }
}
