//! Diff desired against observed into draft actions with dependency edges.
//!
//! The drafts are unordered; [`super::graph`] orders them. Every rule of domain.md that
//! constrains the order is an edge added here, with the rule id in a comment.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

/// Fast, deterministic hashing for the planner's lookup tables (never iterated for output).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;

use serde_json::{json, Value};

use crate::desired::index::{MemberPositions, UNDECLARED};
use crate::desired::model::{self as m, Desired};
use crate::diag::Diagnostic;
use crate::domain::ident;
use crate::domain::kinds::{AccessMode, AdminRole, InstanceType, LicensePlan, Region};
use crate::domain::limits::MAX_NON_INTERACTIVE_PER_INSTANCE;
use crate::domain::op::{ActionKind, ObjKind, ObjRef, Op};
use crate::domain::syntax::cmp_version;
use crate::observed::{self as t, InstanceStatus, Tenant, UpdatePhase};
use crate::plan::action::{Action, Change};
use crate::plan::capacity::{LicenseFlow, SlotPool};
use crate::state::State;

/// An action before ordering: `id` is its index in the draft list and `depends_on` holds
/// draft indices (possibly repeated) until [`super::plan`] orders and renumbers them in
/// place.
pub(crate) type Draft = Action;

impl super::graph::Node for Draft {
    fn address(&self) -> &str {
        &self.address
    }
    fn kind(&self) -> ActionKind {
        self.kind
    }
    fn deps(&self) -> &[usize] {
        &self.depends_on
    }
}

/// The result of diffing.
pub(crate) struct Diff {
    pub drafts: Vec<Draft>,
    pub diags: Vec<Diagnostic>,
}

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

/// Per desired user: what later steps depend on.
#[derive(Debug, Default, Clone, Copy)]
struct UserSteps {
    /// The action that gives the user their final license, if any (P2).
    license: Option<usize>,
    /// The set_access_mode action, if any (P3, P4).
    mode: Option<usize>,
    /// Final access mode.
    final_mode: Option<AccessMode>,
    /// Final license.
    final_license: Option<LicensePlan>,
    /// The update_user that sets the tenant admin roles, if any (P6).
    admin: Option<usize>,
    /// Global or service admin once the plan ran: needs no license for roles (P6).
    license_free_admin: bool,
}

/// Per desired instance.
#[derive(Debug, Clone, Default)]
struct InstSteps<'a> {
    obs: Option<&'a t::Instance>,
    /// Configure or adopt.
    ready: Option<usize>,
    /// The last action that replaces the content (configure, copy, reset).
    content: Option<usize>,
    /// Switch between production and sandbox (I7).
    switch: Option<usize>,
    /// The update_instance that changes the URL (I5).
    url_update: Option<usize>,
    /// Roles are wiped (reset) or the instance is new: observed roles do not count.
    roles_wiped: bool,
}

/// The desired users, in file (sorted) order: their resolution and steps, looked up by UPN
/// or by position.
#[derive(Default)]
struct UserTable<'a> {
    /// UPN -> position.
    idx: HashMap<&'a str, u32>,
    /// Per position: where the user is in the tenant.
    bound: Vec<Bound<'a>>,
    /// Per position: what later steps depend on (filled by `users`).
    steps: Vec<UserSteps>,
    /// Per position: the address `users.<upn>`, made when first referred to and shared
    /// by every reference (a user is a member of ten groups on average).
    addr: Vec<OnceLock<Arc<str>>>,
}

impl<'a> UserTable<'a> {
    /// The shared address of the user at `pos`, whose UPN is `upn`.
    fn address(&self, pos: usize, upn: &str) -> Arc<str> {
        self.addr[pos]
            .get_or_init(|| user_address(upn).into())
            .clone()
    }

    fn get(&self, upn: &str) -> Option<&Bound<'a>> {
        self.idx.get(upn).map(|&i| &self.bound[i as usize])
    }

    fn get_mut(&mut self, upn: &str) -> Option<&mut Bound<'a>> {
        self.idx.get(upn).map(|&i| &mut self.bound[i as usize])
    }

    fn contains_key(&self, upn: &str) -> bool {
        self.idx.contains_key(upn)
    }
}

impl<'a> std::ops::Index<&str> for UserTable<'a> {
    type Output = Bound<'a>;
    fn index(&self, upn: &str) -> &Bound<'a> {
        self.get(upn).expect("a desired user")
    }
}

/// What [`Planner::member_diff_fast`] compares ids through, built once per plan.
struct MemberIndex<'a> {
    /// The tenant's user ids, sorted.
    keys: Vec<&'a str>,
    /// Per desired position: the rank of the user's id in `keys` (`NO_RANK`: no id yet).
    rank: Vec<u32>,
}

/// The rank of a desired user that does not exist yet.
const NO_RANK: u32 = u32::MAX;

/// Reusable buffers of [`Planner::member_diff_fast`] (one per thread); per-user marks hold
/// the number of the last group that set them, so they never need clearing.
struct MemberMarks {
    /// Per desired position: listed by this group (users without an id).
    want: Vec<u32>,
    /// Per rank: listed by this group.
    want_rank: Vec<u32>,
    /// Per rank: already a member of this group.
    in_obs: Vec<u32>,
    /// The current group's listed ranks, sorted.
    sorted: Vec<u32>,
}

impl MemberMarks {
    fn new(index: &MemberIndex) -> MemberMarks {
        MemberMarks {
            want: vec![u32::MAX; index.rank.len()],
            want_rank: vec![u32::MAX; index.keys.len()],
            in_obs: vec![u32::MAX; index.keys.len()],
            sorted: Vec::new(),
        }
    }
}

/// The membership changes of one group, ready to become its actions.
#[derive(Default)]
struct MemberDiff<'a> {
    /// References of the users to add, in file order.
    users: Vec<ObjRef>,
    /// Their UPNs, as the change shows them.
    names: Vec<Value>,
    /// The actions that create users to add (their prerequisites).
    ready: Vec<usize>,
    /// Member ids to remove, in observed order.
    remove: Vec<&'a str>,
}

impl MemberDiff<'_> {
    fn add(&mut self, r: ObjRef, ready: Option<usize>, upn: &str) {
        self.users.push(r);
        self.names.push(Value::String(upn.to_string()));
        self.ready.extend(ready);
    }
}

/// An action worked out on a helper thread, pushed later in order.
struct Pending {
    kind: ActionKind,
    address: String,
    op: Op,
    changes: Vec<Change>,
    reason: &'static str,
    deps: [Option<usize>; 4],
}

/// What [`Planner::user_roles`] found for a run of users.
#[derive(Default)]
struct RolesOut<'a> {
    pushes: Vec<Pending>,
    diags: Vec<Diagnostic>,
    /// Instance keys where a user will be non-interactive with roles (P3), once per user
    /// and instance.
    ni: Vec<&'a str>,
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
    groups: BTreeMap<&'a str, Bound<'a>>,
    group_members_add: HashMap<&'a str, usize>,
    users: UserTable<'a>,
    insts: BTreeMap<&'a str, InstSteps<'a>>,
    /// Remote id -> state address, for every managed object.
    addr_of_id: HashMap<&'a str, &'a str>,
    /// Remote ids adopted in this plan (an object is adopted once).
    adopted: HashSet<&'a str>,
    /// State addresses whose object the file now declares under another key (a key whose
    /// case changed, or an instance's URL name under a new key): re-keyed by an `adopt`
    /// with `from`, never deleted (issue 9 item 2).
    moved: HashSet<&'a str>,
    /// Desired license counts (observed where not managed).
    lic_target: BTreeMap<LicensePlan, u32>,
    lic_purchase: BTreeMap<LicensePlan, usize>,
    lic_flow: BTreeMap<LicensePlan, LicenseFlow>,
    /// purchase_instance / purchase_storage actions (T5 prerequisites).
    capacity_purchases: Vec<usize>,
    /// Actions that took a sandbox slot so far (configure, switch to sandbox; I2, I7).
    sandbox_takers: Vec<usize>,
    /// Production -> sandbox switches planned into a production slot (I7: no sandbox slot
    /// is free): the provider picks a sandbox slot whenever one is free, so they run after
    /// every earlier sandbox taker and before every later sandbox slot that becomes free.
    sandbox_fallbacks: Vec<usize>,
    /// remove_group_members actions per removed user id.
    member_removals: HashMap<&'a str, Vec<usize>>,
    /// Actions after which an observed instance no longer uses its group (I12).
    unbinds: HashMap<&'a str, usize>,
    /// Tenant users by UPN, built when first needed.
    upn_index: Option<HashMap<&'a str, &'a str>>,
    /// Licenses assigned now per plan, counted on first use.
    assigned: Option<BTreeMap<LicensePlan, u32>>,
    /// Actions that make a user global admin (P6): they run before every demotion.
    ga_promotions: Vec<usize>,
    /// Actions that end a global admin (role removed, user deleted), with the address to
    /// report them at (P6).
    ga_demotions: Vec<(usize, String)>,
    /// Deletes, switches and purchases after which the sandboxes fit in the sandbox slots
    /// that remain once the included one is lost (T6): reductions wait for them.
    sandbox_debt_paid: Vec<usize>,
    /// delete_instance per observed instance id.
    inst_deletes: HashMap<&'a str, (usize, &'a str)>,
}

/// Diff `desired` against `observed` given `state`.
pub(crate) fn diff(
    desired: &Desired,
    members: &MemberPositions,
    observed: &Tenant,
    state: &State,
) -> Diff {
    diff_with(desired, members, observed, state, PARALLEL)
}

/// [`diff`], with two threads from the sizes of `parallel` on.
fn diff_with(
    desired: &Desired,
    members: &MemberPositions,
    observed: &Tenant,
    state: &State,
    parallel: Parallel,
) -> Diff {
    let mut p = Planner {
        d: desired,
        members,
        t: observed,
        s: state,
        parallel,
        drafts: Vec::with_capacity(expected_actions(desired)),
        diags: Vec::new(),
        groups: BTreeMap::new(),
        group_members_add: HashMap::default(),
        users: UserTable::default(),
        insts: BTreeMap::new(),
        addr_of_id: state
            .resources
            .iter()
            .map(|(a, r)| (r.id.as_str(), a.as_str()))
            .collect(),
        adopted: HashSet::default(),
        moved: HashSet::default(),
        lic_target: BTreeMap::new(),
        lic_purchase: BTreeMap::new(),
        lic_flow: BTreeMap::new(),
        capacity_purchases: Vec::new(),
        sandbox_takers: Vec::new(),
        sandbox_fallbacks: Vec::new(),
        member_removals: HashMap::default(),
        unbinds: HashMap::default(),
        inst_deletes: HashMap::default(),
        ga_promotions: Vec::new(),
        ga_demotions: Vec::new(),
        sandbox_debt_paid: Vec::new(),
        upn_index: None,
        assigned: None,
    };
    p.resolve_groups();
    p.resolve_users();
    p.resolve_instances();
    p.licenses();
    p.storage();
    p.groups();
    p.users();
    p.group_members();
    p.instances();
    p.roles_with(parallel.roles);
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

const fn empty<'a, K, V>() -> Option<&'a BTreeMap<K, V>> {
    None
}

impl<'a> Planner<'a> {
    fn push(
        &mut self,
        kind: ActionKind,
        address: String,
        op: Op,
        changes: Vec<Change>,
        reason: impl Into<Cow<'static, str>>,
        deps: impl IntoIterator<Item = Option<usize>>,
    ) -> usize {
        // The planner copies only onto new sandboxes (I11), so the kind decides; apply
        // derives the flag again (`Plan::destructive_flags`).
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

    fn dep(&mut self, action: usize, on: Option<usize>) {
        if let Some(on) = on {
            if on != action {
                self.drafts[action].depends_on.push(on);
            }
        }
    }

    fn error(&mut self, address: &str, message: String, rule: &str, hint: Option<String>) {
        let mut d = Diagnostic::error(address, message).rule(rule);
        d.hint = hint;
        self.diags.push(d);
    }

    fn warn(&mut self, address: &str, message: String, rule: &str) {
        self.diags
            .push(Diagnostic::warning(address, message).rule(rule));
    }

    fn state_id(&self, address: &str, kind: ObjKind) -> Option<&'a str> {
        self.s
            .resources
            .get(address)
            .filter(|r| r.kind == kind)
            .map(|r| r.id.as_str())
    }

    fn managed(&self, id: &str) -> bool {
        self.addr_of_id.contains_key(id)
    }

    fn adopt(&mut self, kind: ObjKind, address: String, id: &'a str, what: &str) -> usize {
        self.adopted.insert(id);
        self.push(
            ActionKind::Adopt,
            address,
            Op::Adopt {
                kind,
                id: id.to_string(),
                from: None,
            },
            vec![ch("id", Value::Null, json!(id))],
            format!("{what} already exists in the tenant; take it under management"),
            [],
        )
    }

    /// Re-key a managed object: the state's `from` holds it, and the file declares it as
    /// `address` (issue 9 item 2: a key whose case changed is the same object, and so is an
    /// object found by its natural key under an address that left the file). Apply records
    /// the new address and drops `from`; nothing is deleted or created.
    fn rekey(
        &mut self,
        kind: ObjKind,
        from: &'a str,
        address: String,
        id: &'a str,
        why: String,
    ) -> usize {
        self.adopted.insert(id);
        self.moved.insert(from);
        self.push(
            ActionKind::Adopt,
            address.clone(),
            Op::Adopt {
                kind,
                id: id.to_string(),
                from: Some(from.to_string()),
            },
            vec![ch("address", json!(from), json!(address))],
            why,
            [],
        )
    }

    // ----- resolution: state first, then natural key (adoption) -----

    #[inline(never)] // a phase: shows in profiles
    fn resolve_groups(&mut self) {
        let Some(groups) = &self.d.security_groups else {
            return;
        };
        // Display names are compared without regard to case (issue 9 item 2, I12).
        let mut by_name: BTreeMap<Cow<'a, str>, Vec<&'a str>> = BTreeMap::new();
        for g in self.t.groups.values() {
            if !self.managed(&g.id) {
                by_name.entry(ident::fold(&g.name)).or_default().push(&g.id);
            }
        }
        // State addresses that left the file, by folded key: a key whose case changed is
        // the same group (issue 9 item 2), re-keyed rather than deleted and created again.
        let mut by_key: HashMap<Cow<'a, str>, Vec<(&'a str, &'a str)>> = HashMap::default();
        let in_state = state_under(self.s, "security_groups.");
        for (a, k, r) in in_state {
            if r.kind == ObjKind::Group
                && !groups.contains_key(k)
                && self.t.groups.contains_key(&r.id)
            {
                by_key
                    .entry(ident::fold(k))
                    .or_default()
                    .push((a, r.id.as_str()));
            }
        }
        for (key, g) in groups {
            let address = format!("security_groups.{key}");
            let name = g.name.as_deref().unwrap_or(key);
            let bound = match self.state_id(&address, ObjKind::Group) {
                Some(id) if self.t.groups.contains_key(id) => Bound {
                    id: Some(id),
                    ready: None,
                    user: None,
                },
                _ => match by_key.get(ident::fold(key).as_ref()).map(Vec::as_slice) {
                    Some(&[(from, id)]) if !self.adopted.contains(id) => {
                        let a = self.rekey(
                            ObjKind::Group,
                            from,
                            address,
                            id,
                            format!("the state manages this group as `{from}`; a key whose case changed names the same group: re-keyed, not deleted and created again"),
                        );
                        Bound {
                            id: Some(id),
                            ready: Some(a),
                            user: None,
                        }
                    }
                    _ => match by_name.get(ident::fold(name).as_ref()).map(Vec::as_slice) {
                        Some([id]) if !self.adopted.contains(id) => {
                            let a = self.adopt(
                                ObjKind::Group,
                                address.clone(),
                                id,
                                &format!("group `{name}`"),
                            );
                            Bound {
                                id: Some(id),
                                ready: Some(a),
                                user: None,
                            }
                        }
                        Some(ids) if ids.len() > 1 => {
                            self.error(
                                &address,
                                format!(
                                    "{} unmanaged groups are named `{name}` (compared without regard to case): {}; cannot tell which one to adopt",
                                    ids.len(),
                                    ids.join(", ")
                                ),
                                "I12",
                                Some("rename the duplicates in the admin center, or give this group another `name`".into()),
                            );
                            Bound::default()
                        }
                        _ => Bound::default(),
                    },
                },
            };
            self.groups.insert(key, bound);
        }
    }

    #[inline(never)] // a phase: shows in profiles
    fn resolve_users(&mut self) {
        let Some(users) = &self.d.users else {
            return;
        };
        let n = users.len();
        self.users.idx.reserve(n);
        self.users.bound = vec![Bound::default(); n];
        self.users.steps = vec![UserSteps::default(); n];
        self.users.addr = (0..n).map(|_| OnceLock::new()).collect();
        let mut pending: Vec<(usize, &'a str)> = Vec::new();
        // The state's user addresses (`users.<upn>`) are sorted like the file's UPNs: walk
        // both in step instead of looking every address up.
        let mut state = state_under(self.s, "users.")
            .map(|(_, upn, r)| (upn, r))
            .peekable();
        for (i, upn) in users.keys().enumerate() {
            let upn: &'a str = upn;
            self.users.idx.insert(upn, i as u32);
            while state.next_if(|(s, _)| *s < upn).is_some() {}
            let found = state
                .next_if(|(s, _)| *s == upn)
                .filter(|(_, r)| r.kind == ObjKind::User)
                .and_then(|(_, r)| self.t.users.get_key_value(r.id.as_str()));
            match found {
                // Issue 9 item 1 (P1): the address names its user by UPN; an entry bound
                // to a user with another UPN (a state damaged by concurrent writers before
                // the fix, or edited) would change that other user to match the entry.
                Some((id, u)) if !ident::same(&u.upn, upn) => {
                    let address = user_address(upn);
                    self.error(
                        &address,
                        format!(
                            "the state binds `{address}` to `{id}`, whose UPN is `{}`: another user; the plan would change that user to match this entry",
                            u.upn
                        ),
                        "P1",
                        Some(format!(
                            "remove the entry `{address}` from the state file (the user is then found by its UPN, or created), or give `{id}` its UPN back in the admin center"
                        )),
                    );
                }
                Some((id, u)) => {
                    self.users.bound[i] = Bound {
                        id: Some(id),
                        ready: None,
                        user: Some(u),
                    };
                }
                None => pending.push((i, upn)),
            }
        }
        if pending.is_empty() {
            return;
        }
        // Issue 9 item 2: UPNs are compared without regard to case (P1). A state address
        // that left the file but spells a pending key in another case (`users.ana@x.com`
        // for `Ana@x.com`) is the same user, and so is a user whose address left the file
        // but whose UPN is the pending key: both are re-keyed. Deleting the one and
        // creating the other would be refused by the service (P1) after the delete ran.
        let mut by_key: HashMap<Cow<'a, str>, Vec<(&'a str, &'a t::User)>> = HashMap::default();
        // Natural key (P1): the UPN, among users nobody manages (adopted) and users whose
        // address left the file (re-keyed), folded once per user.
        let mut by_upn: HashMap<Cow<'a, str>, Vec<(&'a t::User, Option<&'a str>)>> =
            HashMap::default();
        for (from, id) in self.gone_users() {
            let Some(u) = self.t.users.get(id) else {
                continue;
            };
            if let Some(key) = from.strip_prefix("users.") {
                by_key.entry(ident::fold(key)).or_default().push((from, u));
            }
            by_upn
                .entry(ident::fold(&u.upn))
                .or_default()
                .push((u, Some(from)));
        }
        for u in self.t.users.values() {
            if !self.managed(&u.id) {
                by_upn
                    .entry(ident::fold(&u.upn))
                    .or_default()
                    .push((u, None));
            }
        }
        for (i, upn) in pending {
            let address = user_address(upn);
            let key = ident::fold(upn);
            if let Some(&[(from, u)]) = by_key.get(key.as_ref()).map(Vec::as_slice) {
                if !self.adopted.contains(u.id.as_str()) {
                    let a = self.rekey(
                        ObjKind::User,
                        from,
                        address,
                        &u.id,
                        format!("the state manages this user as `{from}`; user principal names are compared without regard to case (P1), so it is the same user: re-keyed, not deleted and created again"),
                    );
                    self.users.bound[i] = Bound {
                        id: Some(&u.id),
                        ready: Some(a),
                        user: Some(u),
                    };
                    continue;
                }
            }
            let bound = match by_upn.get(key.as_ref()).map(Vec::as_slice) {
                Some(&[(u, from)]) if !self.adopted.contains(u.id.as_str()) => {
                    let a = match from {
                        None => self.adopt(ObjKind::User, address, &u.id, &format!("user `{upn}`")),
                        Some(from) => self.rekey(
                            ObjKind::User,
                            from,
                            address,
                            &u.id,
                            format!("user `{}` is managed as `{from}`, which is no longer in the file; a UPN names one user (P1), so it is re-keyed, not deleted and created again", u.upn),
                        ),
                    };
                    Bound {
                        id: Some(&u.id),
                        ready: Some(a),
                        user: Some(u),
                    }
                }
                Some(us) if us.len() > 1 => {
                    let ids: Vec<&str> = us.iter().map(|(u, _)| u.id.as_str()).collect();
                    self.error(
                        &address,
                        format!(
                            "{} users have the UPN `{upn}` (compared without regard to case): {}; cannot tell which one to adopt",
                            ids.len(),
                            ids.join(", ")
                        ),
                        "P1",
                        Some("delete the duplicate in the admin center".into()),
                    );
                    Bound::default()
                }
                _ => Bound::default(),
            };
            self.users.bound[i] = bound;
        }
    }

    #[inline(never)] // a phase: shows in profiles
    fn resolve_instances(&mut self) {
        let Some(insts) = &self.d.instances else {
            return;
        };
        // URL names are host name labels, compared without regard to case (I5; ASCII).
        let mut by_url: BTreeMap<Cow<'a, str>, Vec<&'a str>> = BTreeMap::new();
        for i in self.t.instances.values() {
            if !self.managed(&i.id) {
                by_url.entry(ident::fold(&i.url)).or_default().push(&i.id);
            }
        }
        // Issue 9 item 2: instances the state manages under an address that left the file,
        // by folded key and by URL name. A new entry whose key differs from one only in
        // case, or that wants its URL name, names the same instance: it is re-keyed. A
        // delete + configure would have to delete first (the URL name is unique, I5), and
        // a configure that then failed (no slot, T7, ...) would leave nothing.
        let mut by_key: HashMap<Cow<'a, str>, Vec<(&'a str, &'a t::Instance)>> = HashMap::default();
        let mut orphan_url: HashMap<Cow<'a, str>, Vec<(&'a str, &'a t::Instance)>> =
            HashMap::default();
        let in_state = state_under(self.s, "instances.");
        for (a, k, r) in in_state {
            if r.kind != ObjKind::Instance || insts.contains_key(k) {
                continue;
            }
            if let Some(o) = self.t.instances.get(&r.id) {
                by_key.entry(ident::fold(k)).or_default().push((a, o));
                orphan_url
                    .entry(ident::fold(&o.url))
                    .or_default()
                    .push((a, o));
            }
        }
        let mut pending: Vec<(&'a str, &'a m::Instance)> = Vec::new();
        for (key, di) in insts {
            let address = format!("instances.{key}");
            let mut steps = InstSteps::default();
            match self.state_id(&address, ObjKind::Instance) {
                Some(id) if self.t.instances.contains_key(id) => {
                    steps.obs = self.t.instances.get(id);
                }
                _ => match by_key.get(ident::fold(key).as_ref()).map(Vec::as_slice) {
                    Some(&[(from, o)]) if !self.adopted.contains(o.id.as_str()) => {
                        let a = self.rekey(
                            ObjKind::Instance,
                            from,
                            address,
                            &o.id,
                            format!("the state manages this instance as `{from}`; a key whose case changed names the same instance: re-keyed, not deleted and configured again"),
                        );
                        steps.obs = Some(o);
                        steps.ready = Some(a);
                        steps.content = Some(a);
                    }
                    _ => pending.push((key, di)),
                },
            }
            self.insts.insert(key, steps);
        }
        for (key, di) in pending {
            let address = format!("instances.{key}");
            let url = ident::fold(&di.url);
            let mut steps = InstSteps::default();
            match orphan_url.get(url.as_ref()).map(Vec::as_slice) {
                Some(&[(from, o)]) if !self.adopted.contains(o.id.as_str()) => {
                    let a = self.rekey(
                        ObjKind::Instance,
                        from,
                        address,
                        &o.id,
                        format!("the instance with URL name `{}` is managed as `{from}`, which is no longer in the file; a URL name names one instance (I5), so it is re-keyed, not deleted and configured again", o.url),
                    );
                    steps.obs = Some(o);
                    steps.ready = Some(a);
                    steps.content = Some(a);
                }
                _ => match by_url.get(url.as_ref()).map(Vec::as_slice) {
                    Some([id]) if !self.adopted.contains(id) => {
                        let a = self.adopt(
                            ObjKind::Instance,
                            address,
                            id,
                            &format!("instance with URL name `{}`", di.url),
                        );
                        steps.obs = self.t.instances.get(*id);
                        steps.ready = Some(a);
                        steps.content = Some(a);
                    }
                    Some(ids) if ids.len() > 1 => {
                        self.error(
                            &address,
                            format!(
                                "{} unmanaged instances use the URL name `{}`: {}",
                                ids.len(),
                                di.url,
                                ids.join(", ")
                            ),
                            "I5",
                            None,
                        );
                    }
                    _ => {}
                },
            }
            self.insts.insert(key, steps);
        }
    }

    fn group_ref(&self, key: &str) -> ObjRef {
        ObjRef {
            address: format!("security_groups.{key}").into(),
            id: self.groups.get(key).and_then(|b| b.id).map(str::to_string),
        }
    }

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

    // ----- licenses and storage (T2-T6) -----

    #[inline(never)] // a phase: shows in profiles
    fn licenses(&mut self) {
        for plan in LicensePlan::ALL {
            let now = self.t.purchased(plan);
            let want = self
                .d
                .licenses
                .as_ref()
                .and_then(|l| l.get(&plan).copied())
                .unwrap_or(now);
            self.lic_target.insert(plan, want);
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
                self.lic_purchase.insert(plan, a);
            }
        }
    }

    /// Professional + Enterprise licenses while the plan runs (purchases early, reductions
    /// late).
    fn mid_pro_enterprise(&self) -> u32 {
        [LicensePlan::Professional, LicensePlan::Enterprise]
            .iter()
            .map(|p| self.t.purchased(*p).max(self.lic_target[p]))
            .sum()
    }

    /// Professional + Enterprise licenses once the plan ran.
    fn final_pro_enterprise(&self) -> u32 {
        [LicensePlan::Professional, LicensePlan::Enterprise]
            .iter()
            .map(|p| self.lic_target[p])
            .sum()
    }

    fn pro_enterprise_purchases(&self) -> Vec<usize> {
        [LicensePlan::Professional, LicensePlan::Enterprise]
            .iter()
            .filter_map(|p| self.lic_purchase.get(p).copied())
            .collect()
    }

    #[inline(never)] // a phase: shows in profiles
    fn storage(&mut self) {
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
            self.capacity_purchases.push(a);
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

    /// I4: nothing changes an instance that is provisioning, nor one that is disabled
    /// (except its deletion or reset, which the service allows on a disabled one). Every
    /// action of the plan that would is reported, once per instance, as an error: a plan
    /// with errors applies nothing, so no purchase runs for a plan the service would stop
    /// halfway.
    #[inline(never)] // a phase: shows in profiles
    fn instance_status(&mut self) {
        if self
            .t
            .instances
            .values()
            .all(|i| i.status == InstanceStatus::Ready)
        {
            return;
        }
        let mut blocked: BTreeMap<&str, (&'a t::Instance, String, BTreeSet<ActionKind>)> =
            BTreeMap::new();
        for d in &self.drafts {
            // (instance, whether the op is allowed on a disabled instance)
            let touched: [Option<(&ObjRef, bool)>; 2] = match d.op.as_ref() {
                Op::UpdateInstance { instance, .. }
                | Op::SwitchInstance { instance, .. }
                | Op::SetAdminMode { instance, .. }
                | Op::SetNotificationRecipients { instance, .. }
                | Op::ScheduleUpdate { instance, .. }
                | Op::AssignRoles { instance, .. }
                | Op::RemoveRoles { instance, .. } => [Some((instance, false)), None],
                Op::ResetInstance { instance, .. } | Op::DeleteInstance { instance } => {
                    [Some((instance, true)), None]
                }
                // The source of a copy is only read: not while provisioning.
                Op::CopyInstance { source, target, .. } => {
                    [Some((target, false)), Some((source, true))]
                }
                _ => [None, None],
            };
            for (r, disabled_ok) in touched.into_iter().flatten() {
                let Some(o) = r.id.as_deref().and_then(|id| self.t.instances.get(id)) else {
                    continue;
                };
                let refused = match o.status {
                    InstanceStatus::Ready => false,
                    InstanceStatus::Provisioning => true,
                    InstanceStatus::Disabled => !disabled_ok,
                };
                if refused {
                    let entry = blocked
                        .entry(o.id.as_str())
                        .or_insert_with(|| (o, r.address.to_string(), BTreeSet::new()));
                    // Point at the first field of the instance the file changes (issue 9
                    // item 8), when an action edits the instance itself.
                    if *entry.1 == *r.address && *d.address == *r.address {
                        if let Some(c) = d.changes.first() {
                            entry.1 = format!("{}.{}", r.address, c.path);
                        }
                    }
                    entry.2.insert(d.kind);
                }
            }
        }
        for (_, (o, address, kinds)) in blocked {
            let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            let (state, hint) = if o.status == InstanceStatus::Provisioning {
                (
                    "still provisioning",
                    "wait until it is ready, then plan again (or leave these settings out of the file for now)",
                )
            } else {
                (
                    "disabled",
                    "enable it in the admin center first, then plan again (or leave these settings out of the file for now)",
                )
            };
            self.error(
                &address,
                format!(
                    "instance `{}` is {state} and cannot be changed, but the plan would run {} on it",
                    o.url,
                    kinds.join(", ")
                ),
                "I4",
                Some(hint.into()),
            );
        }
    }

    /// T5: add-ons need a paid (non-trial) subscription with Professional/Enterprise
    /// licenses at the moment of the purchase.
    #[inline(never)] // a phase: shows in profiles
    fn t5_prerequisites(&mut self) {
        if self.capacity_purchases.is_empty() {
            return;
        }
        if self.t.trial {
            let first = self.capacity_purchases[0];
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
                let first = self.capacity_purchases[0];
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
        for &a in &self.capacity_purchases.clone() {
            for &dep in &deps {
                self.dep(a, Some(dep));
            }
        }
    }

    // ----- groups (I12) -----

    #[inline(never)] // a phase: shows in profiles
    fn groups(&mut self) {
        let Some(groups) = &self.d.security_groups else {
            return;
        };
        for (key, g) in groups {
            let address = format!("security_groups.{key}");
            let name = g.name.as_deref().unwrap_or(key);
            let bound = self.groups[key.as_str()];
            match bound.id.and_then(|id| self.t.groups.get(id)) {
                None => {
                    let description = g.description.clone().unwrap_or_default();
                    let mut changes = vec![ch("name", Value::Null, json!(name))];
                    if !description.is_empty() {
                        changes.push(ch("description", Value::Null, json!(description)));
                    }
                    let a = self.push(
                        ActionKind::CreateGroup,
                        address,
                        Op::CreateGroup {
                            name: name.to_string(),
                            description,
                        },
                        changes,
                        "the group is in the file but not in the tenant",
                        [],
                    );
                    self.groups.get_mut(key.as_str()).expect("resolved").ready = Some(a);
                }
                Some(obs) => {
                    let mut changes = Vec::new();
                    let new_name = (obs.name != name).then(|| name.to_string());
                    if let Some(n) = &new_name {
                        changes.push(ch("name", json!(obs.name), json!(n)));
                    }
                    let new_desc = g
                        .description
                        .as_ref()
                        .filter(|d| **d != obs.description)
                        .cloned();
                    if let Some(dsc) = &new_desc {
                        changes.push(ch("description", json!(obs.description), json!(dsc)));
                    }
                    if !changes.is_empty() {
                        let group = self.group_ref(key);
                        self.push(
                            ActionKind::UpdateGroup,
                            address,
                            Op::UpdateGroup {
                                group,
                                name: new_name,
                                description: new_desc,
                            },
                            changes,
                            "the group's attributes differ from the file",
                            [bound.ready],
                        );
                    }
                }
            }
        }
    }

    /// The id of a user nobody declares in the file, by UPN (index built on first use).
    fn unmanaged_upn(&mut self, upn: &str) -> Option<&'a str> {
        let t = self.t;
        let index = self.upn_index.get_or_insert_with(|| {
            t.users
                .values()
                .map(|u| (u.upn.as_str(), u.id.as_str()))
                .collect()
        });
        index.get(upn).copied()
    }

    #[inline(never)] // a phase: shows in profiles
    fn group_members(&mut self) {
        let Some(groups) = &self.d.security_groups else {
            return;
        };
        let index = self.member_index();
        let mut marks = index.as_ref().map(MemberMarks::new);
        // Compared up front, on two threads when large (read-only work; the actions are
        // then made in file order as always).
        let mut done = self.member_diffs(groups, index.as_ref());
        for (gno, (key, g)) in groups.iter().enumerate() {
            let Some(members) = &g.members else { continue };
            let bound = self.groups[key.as_str()];
            let obs = bound.id.and_then(|id| self.t.groups.get(id));
            let fast = match done.get_mut(gno).and_then(Option::take) {
                Some(diff) => Some(diff),
                None => match (&index, &mut marks) {
                    (Some(index), Some(marks)) => {
                        self.member_diff_fast(members, obs, gno as u32, index, marks)
                    }
                    _ => None,
                },
            };
            let MemberDiff {
                users,
                names,
                ready,
                remove,
            } = match fast {
                Some(diff) => diff,
                None => self.member_diff(key, members, obs),
            };
            if users.is_empty() && remove.is_empty() {
                continue;
            }
            let address = format!("security_groups.{key}");
            let group = self.group_ref(key);
            if !users.is_empty() {
                let n = users.len();
                let deps = std::iter::once(bound.ready).chain(ready.into_iter().map(Some));
                let a = self.push(
                    ActionKind::AddGroupMembers,
                    address.clone(),
                    Op::AddGroupMembers {
                        group: group.clone(),
                        users,
                    },
                    vec![ch("members", Value::Null, Value::Array(names))],
                    format!("add {n} member(s) (I12)"),
                    deps,
                );
                self.group_members_add.insert(key, a);
            }
            if !remove.is_empty() {
                let names: Vec<&str> = remove
                    .iter()
                    .map(|id| self.t.users.get(*id).map_or(*id, |u| u.upn.as_str()))
                    .collect();
                // I12: removed members are disabled in every instance the group stays
                // bound to.
                if let Some(gid) = bound.id {
                    let mut bound_to: Vec<String> = self
                        .d
                        .instances
                        .iter()
                        .flatten()
                        .filter(|(k, di)| {
                            di.security_group.as_deref() == Some(key.as_str())
                                && self.insts.get(k.as_str()).is_some_and(|s| s.obs.is_some())
                        })
                        .map(|(k, _)| format!("instances.{k}"))
                        .collect();
                    bound_to.extend(
                        self.t
                            .instances
                            .values()
                            .filter(|i| {
                                i.security_group.as_deref() == Some(gid)
                                    && !self.managed(&i.id)
                                    && !self.adopted.contains(i.id.as_str())
                            })
                            .map(|i| format!("unmanaged instance `{}`", i.url)),
                    );
                    if !bound_to.is_empty() {
                        let more = if names.len() > 10 {
                            format!(" and {} more", names.len() - 10)
                        } else {
                            String::new()
                        };
                        self.warn(
                            &address,
                            format!(
                                "removing {} member(s) from group `{key}` disables them in {} (I12): {}{more}",
                                names.len(),
                                bound_to.join(", "),
                                names.iter().take(10).copied().collect::<Vec<_>>().join(", ")
                            ),
                            "I12",
                        );
                    }
                }
                let changes = vec![ch("members", json!(names), Value::Null)];
                let users = remove.iter().map(|id| self.id_ref(id)).collect();
                let a = self.push(
                    ActionKind::RemoveGroupMembers,
                    address.clone(),
                    Op::RemoveGroupMembers {
                        group: group.clone(),
                        users,
                    },
                    changes,
                    format!("remove {} member(s) not in the file (I12: they lose access to the instances bound to the group)", remove.len()),
                    [bound.ready],
                );
                for id in remove {
                    self.member_removals.entry(id).or_default().push(a);
                }
            }
        }
    }

    /// The membership changes of a group when every listed member is a desired user;
    /// `None` otherwise (then [`Self::member_diff`] works it out).
    ///
    /// Ids are compared as the original does (dedup by id, exact string match), but
    /// through ranks: a user's rank is the position of its id among the tenant's sorted
    /// user ids, so sorting the listed members' ranks sorts their ids, and one merge with
    /// the observed (sorted) member set finds what to add and remove. Per membership: one
    /// hash lookup (UPN) and one string comparison; no allocation when nothing changes.
    fn member_diff_fast(
        &self,
        members: &'a [String],
        obs: Option<&'a t::Group>,
        gno: u32,
        index: &MemberIndex<'a>,
        sc: &mut MemberMarks,
    ) -> Option<MemberDiff<'a>> {
        // The positions resolved at load (same order as `users.idx`).
        let pos = self.members.group(gno as usize)?;
        if pos.len() != members.len() || pos.contains(&UNDECLARED) {
            return None;
        }
        let mut diff = MemberDiff::default();
        if let Some(o) = obs {
            // The listed members' ids, sorted and without repeats, merged with the
            // observed members: observed ids that are not listed are removed.
            sc.sorted.clear();
            sc.sorted.extend(
                pos.iter()
                    .map(|&p| index.rank[p as usize])
                    .filter(|&r| r != NO_RANK),
            );
            sc.sorted.sort_unstable();
            sc.sorted.dedup();
            let mut want = sc.sorted.iter();
            let mut next = want.next();
            for id in &o.members {
                let id = id.as_str();
                // Skip listed ids below `id`; one comparison per step.
                let found = loop {
                    match next {
                        None => break false,
                        Some(&r) => match index.keys[r as usize].cmp(id) {
                            std::cmp::Ordering::Less => next = want.next(),
                            std::cmp::Ordering::Equal => {
                                sc.in_obs[r as usize] = gno;
                                next = want.next();
                                break true;
                            }
                            std::cmp::Ordering::Greater => break false,
                        },
                    }
                };
                if !found {
                    diff.remove.push(id);
                }
            }
        }
        for (upn, &i) in members.iter().zip(pos) {
            let i = i as usize;
            let b = &self.users.bound[i];
            match index.rank[i] {
                NO_RANK => {
                    if sc.want[i] == gno {
                        continue; // a new user listed twice
                    }
                    sc.want[i] = gno;
                }
                r => {
                    let r = r as usize;
                    if sc.want_rank[r] == gno {
                        continue; // listed twice
                    }
                    sc.want_rank[r] = gno;
                    if sc.in_obs[r] == gno {
                        continue;
                    }
                }
            }
            let r = ObjRef {
                address: self.users.address(i, upn),
                id: b.id.map(str::to_string),
            };
            diff.add(r, b.ready, upn);
        }
        Some(diff)
    }

    /// The ranks of the desired users' ids among the tenant's, or `None` when a desired
    /// user's id is not a key of the tenant's users (then groups take the general path).
    fn member_index(&self) -> Option<MemberIndex<'a>> {
        let keys: Vec<&'a str> = self.t.users.keys().map(String::as_str).collect();
        let rank_of: HashMap<&str, u32> = keys
            .iter()
            .enumerate()
            .map(|(r, k)| (*k, r as u32))
            .collect();
        let rank = self
            .users
            .bound
            .iter()
            .map(|b| match b.id {
                Some(id) => rank_of.get(id).copied(),
                None => Some(NO_RANK),
            })
            .collect::<Option<Vec<u32>>>()?;
        Some(MemberIndex { keys, rank })
    }

    /// [`Self::member_diff_fast`] of every group with members, by group number, computed
    /// on two threads when the groups hold many memberships (listed plus observed); empty
    /// when small (then each group is compared when its turn comes).
    fn member_diffs(
        &self,
        groups: &'a BTreeMap<String, m::SecurityGroup>,
        index: Option<&MemberIndex<'a>>,
    ) -> Vec<Option<MemberDiff<'a>>> {
        let Some(index) = index else {
            return Vec::new();
        };
        type Work<'a> = (u32, &'a [String], Option<&'a t::Group>, usize);
        let work: Vec<Work<'a>> = groups
            .iter()
            .enumerate()
            .filter_map(|(gno, (key, g))| {
                let members = g.members.as_deref()?;
                let obs = self.groups[key.as_str()]
                    .id
                    .and_then(|id| self.t.groups.get(id));
                let weight = members.len() + obs.map_or(0, |o| o.members.len());
                Some((gno as u32, members, obs, weight))
            })
            .collect();
        let total: usize = work.iter().map(|w| w.3).sum();
        if total < self.parallel.memberships.max(1) {
            return Vec::new();
        }
        // Split where half of the memberships are on each side.
        let mut acc = 0;
        let mid = work
            .iter()
            .position(|w| {
                acc += w.3;
                acc * 2 >= total
            })
            .map_or(work.len(), |p| p + 1);
        let (left, right) = work.split_at(mid);
        let run = |part: &[Work<'a>]| {
            let mut marks = MemberMarks::new(index);
            part.iter()
                .map(|&(gno, members, obs, _)| {
                    (
                        gno,
                        self.member_diff_fast(members, obs, gno, index, &mut marks),
                    )
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = std::thread::scope(|scope| {
            let other = scope.spawn(|| run(right));
            let mine = run(left);
            (mine, other.join().expect("comparing groups does not panic"))
        });
        let mut out: Vec<Option<MemberDiff<'a>>> = Vec::new();
        out.resize_with(groups.len(), || None);
        for (gno, diff) in a.into_iter().chain(b) {
            out[gno as usize] = diff;
        }
        out
    }

    /// The general form of [`Self::member_diff_fast`]: members may be users of the tenant
    /// that the file does not declare, or nobody at all (an error).
    fn member_diff(
        &mut self,
        key: &str,
        members: &'a [String],
        obs: Option<&'a t::Group>,
    ) -> MemberDiff<'a> {
        let address = format!("security_groups.{key}");
        let mut want_ids: HashSet<&str> =
            HashSet::with_capacity_and_hasher(members.len(), Default::default());
        let mut diff = MemberDiff::default();
        let mut new_seen: HashSet<&str> = HashSet::default();
        for upn in members {
            let (id, ready): (Option<&'a str>, Option<usize>) = match self.users.get(upn.as_str()) {
                Some(b) => (b.id, b.ready),
                None => match self.unmanaged_upn(upn) {
                    Some(id) => (Some(id), None),
                    None => {
                        self.error(
                            &address,
                            format!("member `{upn}` is neither declared under `users` nor a user of the tenant"),
                            "I12",
                            Some(format!("declare `users.{upn}` or remove it from the members")),
                        );
                        continue;
                    }
                },
            };
            if let Some(id) = id {
                if !want_ids.insert(id) {
                    continue; // listed twice
                }
                if obs.is_some_and(|o| o.members.contains(id)) {
                    continue;
                }
            }
            let r = match (self.users.contains_key(upn.as_str()), id) {
                (true, _) => self.user_ref(upn),
                (false, Some(id)) => self.id_ref(id),
                (false, None) => continue,
            };
            if id.is_none() && !new_seen.insert(upn.as_str()) {
                continue; // a new user listed twice
            }
            diff.add(r, ready, upn);
        }
        if let Some(o) = obs {
            diff.remove = o
                .members
                .iter()
                .map(String::as_str)
                .filter(|id| !want_ids.contains(id))
                .collect();
        }
        diff
    }

    #[inline(never)] // a phase: shows in profiles
    fn delete_groups(&mut self) {
        let desired = self.d.security_groups.as_ref().or(empty());
        let gone: Vec<(&'a str, &'a str)> = self
            .s
            .resources
            .iter()
            .filter(|(a, r)| {
                r.kind == ObjKind::Group
                    && a.strip_prefix("security_groups.")
                        .is_none_or(|k| !desired.is_some_and(|d| d.contains_key(k)))
                    && !self.moved.contains(a.as_str())
            })
            .map(|(a, r)| (a.as_str(), r.id.as_str()))
            .collect();
        for (address, id) in gone {
            let Some(obs) = self.t.groups.get(id) else {
                continue;
            };
            let a = self.push(
                ActionKind::DeleteGroup,
                address.to_string(),
                Op::DeleteGroup {
                    group: ObjRef {
                        address: address.into(),
                        id: Some(id.to_string()),
                    },
                },
                vec![ch("name", json!(obs.name), Value::Null)],
                "the group was removed from the file",
                [],
            );
            // I12: unbind from every instance before deleting the group.
            for inst in self.t.instances.values() {
                if inst.security_group.as_deref() != Some(id) {
                    continue;
                }
                if let Some(&u) = self.unbinds.get(inst.id.as_str()) {
                    self.dep(a, Some(u));
                } else {
                    self.error(
                        address,
                        format!(
                            "the group is still bound to instance `{}` ({}), which this file does not manage",
                            inst.url, inst.id
                        ),
                        "I12",
                        Some("unbind the group from that instance first, or keep the group in the file".into()),
                    );
                }
            }
        }
    }

    /// Issue 9 item 2: a plan that deletes an object and creates one with the same natural
    /// key (a user's UPN, a group's display name; compared without regard to case) replaces
    /// it, and the delete waits for the create: when the create fails, apply skips the
    /// delete and the old object stays.
    ///
    /// - Groups: display names need not be unique in the service (the provider creates a
    ///   second group with the same name), so nothing forces the delete first, and the
    ///   edge costs nothing but order.
    /// - Users: a UPN names one user (P1), so the create could never succeed before the
    ///   delete; such a pair is not planned at all (`resolve_users` re-keys the state's
    ///   user instead). The edge is the guarantee should one ever appear.
    /// - Instances: the URL name (I5) would force the delete first (`url_order`), which
    ///   could not be made safe; `resolve_instances` re-keys a managed instance whose key
    ///   (without regard to case) or URL name a new entry of the file wants, so no
    ///   delete + configure of the same instance is planned.
    #[inline(never)] // a phase: shows in profiles
    fn replace_guards(&mut self) {
        let mut users: HashMap<String, Vec<usize>> = HashMap::default();
        let mut groups: HashMap<String, Vec<usize>> = HashMap::default();
        for d in &self.drafts {
            match &*d.op {
                Op::DeleteUser { user } => {
                    if let Some(u) = user.id.as_deref().and_then(|id| self.t.users.get(id)) {
                        users
                            .entry(ident::fold(&u.upn).into_owned())
                            .or_default()
                            .push(d.id);
                    }
                }
                Op::DeleteGroup { group } => {
                    if let Some(g) = group.id.as_deref().and_then(|id| self.t.groups.get(id)) {
                        groups
                            .entry(ident::fold(&g.name).into_owned())
                            .or_default()
                            .push(d.id);
                    }
                }
                _ => {}
            }
        }
        if users.is_empty() && groups.is_empty() {
            return;
        }
        let mut edges: Vec<(usize, usize)> = Vec::new();
        for d in &self.drafts {
            let deletes = match &*d.op {
                Op::CreateUser { upn, .. } if !users.is_empty() => {
                    users.get(ident::fold(upn).as_ref())
                }
                Op::CreateGroup { name, .. } if !groups.is_empty() => {
                    groups.get(ident::fold(name).as_ref())
                }
                _ => None,
            };
            edges.extend(deletes.into_iter().flatten().map(|&del| (del, d.id)));
        }
        for (del, create) in edges {
            self.dep(del, Some(create));
        }
    }

    // ----- users (P1-P6, T3, T4) -----

    /// Licenses of each plan held once the plan is done (before reductions).
    #[inline(never)] // a phase: shows in profiles
    fn final_assigned(&mut self) -> BTreeMap<LicensePlan, i64> {
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

    /// Licenses of a plan assigned to users now ([`Tenant::assigned`], counted for every
    /// plan in one pass over the users on first use).
    fn assigned(&mut self, plan: LicensePlan) -> u32 {
        let t = self.t;
        let counts = self.assigned.get_or_insert_with(|| {
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

    /// The state's users that the file no longer declares (address, id), in state order:
    /// resources of kind user whose address is not `users.<a desired UPN>` and that are
    /// not re-keyed to one. The state's
    /// addresses and the file's UPNs are both sorted, so one walk over both finds them.
    fn gone_users(&self) -> Vec<(&'a str, &'a str)> {
        let s = self.s;
        let mut desired = self.d.users.iter().flat_map(|u| u.keys()).peekable();
        s.resources
            .iter()
            .filter(|(_, r)| r.kind == ObjKind::User)
            .filter(|(a, _)| {
                let Some(upn) = a.strip_prefix("users.") else {
                    return true;
                };
                while desired.next_if(|d| d.as_str() < upn).is_some() {}
                desired.peek().is_none_or(|d| d.as_str() != upn)
            })
            // Re-keyed to a desired key (issue 9 item 2): kept, not gone.
            .filter(|(a, _)| !self.moved.contains(a.as_str()))
            .map(|(a, r)| (a.as_str(), r.id.as_str()))
            .collect()
    }

    fn desired_user_address(&self, address: &str) -> bool {
        address
            .strip_prefix("users.")
            .is_some_and(|upn| self.users.contains_key(upn))
    }

    fn consume(&mut self, plan: LicensePlan, action: usize, temp: Option<usize>) {
        // T5: a license is bought before it is assigned.
        let p = self.lic_purchase.get(&plan).copied();
        self.dep(action, p);
        self.lic_flow
            .entry(plan)
            .or_default()
            .consumers
            .push((action, temp));
    }

    fn release(&mut self, plan: LicensePlan, action: usize, temp: Option<usize>) {
        self.lic_flow
            .entry(plan)
            .or_default()
            .releases
            .push((action, temp));
    }

    fn next_temp(&mut self, plan: LicensePlan) -> usize {
        let f = self.lic_flow.entry(plan).or_default();
        f.temps += 1;
        f.temps - 1
    }

    #[inline(never)] // a phase: shows in profiles
    fn users(&mut self) {
        let Some(users) = &self.d.users else {
            return;
        };
        let finals = self.final_assigned();
        // P4: the plan with the most spare licenses lends one temporarily.
        let temp_plan = LicensePlan::ALL
            .iter()
            .map(|p| {
                let avail = i64::from(self.t.purchased(*p).max(self.lic_target[p]));
                (avail - finals[p], *p)
            })
            .filter(|(spare, _)| *spare > 0)
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, p)| p);
        for (i, (upn, u)) in users.iter().enumerate() {
            let bound = self.users.bound[i];
            // Fast path: nothing to change (the common case on large tenants).
            if let Some(steps) = bound
                .user
                .filter(|o| o.upn == *upn)
                .and_then(|o| unchanged_user(u, o))
            {
                self.users.steps[i] = steps;
                continue;
            }
            let address = user_address(upn);
            let steps = match bound.user {
                None => self.new_user(upn, u, &address, temp_plan),
                Some(o) => self.existing_user(upn, u, o, &address, bound.ready, temp_plan),
            };
            self.users.steps[i] = steps;
        }
    }

    fn temp_license(
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

    fn set_mode(
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

    fn assign_license(
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

    fn remove_license(
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

    fn new_user(
        &mut self,
        upn: &str,
        u: &m::User,
        address: &str,
        temp_plan: Option<LicensePlan>,
    ) -> UserSteps {
        let final_mode = u.access_mode.unwrap_or(AccessMode::ReadWrite);
        let create_mode = if final_mode == AccessMode::Application {
            AccessMode::Application
        } else {
            AccessMode::ReadWrite
        };
        let name = u.name.clone().unwrap_or_default();
        let mut changes = Vec::with_capacity(3);
        changes.push(ch("upn", Value::Null, json!(upn)));
        if !name.is_empty() {
            changes.push(ch("name", Value::Null, json!(name)));
        }
        changes.push(ch("access_mode", Value::Null, json!(create_mode.as_str())));
        let c = self.push(
            ActionKind::CreateUser,
            address.to_string(),
            Op::CreateUser {
                upn: upn.to_string(),
                name,
                access_mode: create_mode,
            },
            changes,
            "the user is in the file but not in the tenant",
            [],
        );
        self.users.get_mut(upn).expect("resolved").ready = Some(c);
        let user = self.user_ref(upn);
        let mut steps = UserSteps {
            final_mode: Some(final_mode),
            final_license: u.license,
            license_free_admin: license_free_admin(u.admin_roles.as_deref(), &BTreeSet::new()),
            ..UserSteps::default()
        };
        if final_mode == AccessMode::Application {
            if u.license.is_some() {
                self.error(
                    address,
                    "application users are never licensed".into(),
                    "P3",
                    Some("remove `license` from this user".into()),
                );
            }
        } else if let Some(plan) = u.license {
            steps.license = Some(self.assign_license(address, &user, Some(c), None, plan));
        }
        if matches!(
            final_mode,
            AccessMode::Administrative | AccessMode::NonInteractive
        ) {
            steps.mode = Some(match steps.license {
                Some(l) => self.set_mode(
                    address,
                    &user,
                    Some(l),
                    Some(AccessMode::ReadWrite),
                    final_mode,
                ),
                None => self.temp_license(address, &user, Some(c), final_mode, temp_plan),
            });
        }
        if let Some(roles) = u.admin_roles.as_ref().filter(|r| !r.is_empty()) {
            let mut roles = roles.clone();
            roles.sort();
            roles.dedup();
            let promotes = roles.contains(&AdminRole::GlobalAdmin);
            let a = self.push(
                ActionKind::UpdateUser,
                address.to_string(),
                Op::UpdateUser {
                    user: user.clone(),
                    name: None,
                    admin_roles: Some(roles.clone()),
                    upn: None,
                },
                vec![ch("admin_roles", Value::Null, json!(roles))],
                "tenant admin roles from the file (P6)",
                [Some(c)],
            );
            steps.admin = Some(a);
            if promotes {
                self.ga_promotions.push(a);
            }
        }
        steps
    }

    fn existing_user(
        &mut self,
        upn: &str,
        u: &m::User,
        o: &t::User,
        address: &str,
        ready: Option<usize>,
        temp_plan: Option<LicensePlan>,
    ) -> UserSteps {
        if o.upn == upn {
            if let Some(steps) = unchanged_user(u, o) {
                return steps;
            }
        }
        let user = self.user_ref(upn);
        // Profile and tenant admin roles.
        let mut changes = Vec::new();
        // Issue 9 item 2: the same user (P1 compares UPNs without regard to case) spelled
        // another way in the file: the file's spelling is shown in the directory.
        let new_upn = (o.upn != upn && ident::same(&o.upn, upn)).then(|| upn.to_string());
        if let Some(n) = &new_upn {
            changes.push(ch("upn", json!(o.upn), json!(n)));
        }
        let new_name = u.name.as_ref().filter(|n| **n != o.name).cloned();
        if let Some(n) = &new_name {
            changes.push(ch("name", json!(o.name), json!(n)));
        }
        let new_roles = u.admin_roles.as_ref().and_then(|r| {
            let want: BTreeSet<_> = r.iter().copied().collect();
            (want != o.admin_roles).then(|| want.into_iter().collect::<Vec<_>>())
        });
        if let Some(r) = &new_roles {
            changes.push(ch("admin_roles", json!(o.admin_roles), json!(r)));
        }
        let mut admin_update = None;
        if !changes.is_empty() {
            let was_ga = o.admin_roles.contains(&AdminRole::GlobalAdmin);
            let will_be_ga = new_roles
                .as_ref()
                .map(|r| r.contains(&AdminRole::GlobalAdmin));
            let a = self.push(
                ActionKind::UpdateUser,
                address.to_string(),
                Op::UpdateUser {
                    user: user.clone(),
                    name: new_name,
                    admin_roles: new_roles,
                    upn: new_upn,
                },
                changes,
                "the user's profile differs from the file (P1, P6)",
                [ready],
            );
            // P6: promotions run before demotions, so that two global admins remain at
            // every moment.
            match (was_ga, will_be_ga) {
                (false, Some(true)) => self.ga_promotions.push(a),
                (true, Some(false)) => self
                    .ga_demotions
                    .push((a, format!("{address}.admin_roles"))),
                _ => {}
            }
            if will_be_ga.is_some() {
                admin_update = Some(a);
            }
        }
        let cur_mode = o.access_mode;
        let final_mode = u.access_mode.unwrap_or(cur_mode);
        let cur = o.license;
        let want = u.license;
        let mut steps = UserSteps {
            final_mode: Some(final_mode),
            final_license: want,
            admin: admin_update,
            license_free_admin: license_free_admin(u.admin_roles.as_deref(), &o.admin_roles),
            ..UserSteps::default()
        };
        if final_mode == AccessMode::Application && want.is_some() {
            self.error(
                address,
                "application users are never licensed".into(),
                "P3",
                Some("remove `license` from this user".into()),
            );
            return steps;
        }
        if (final_mode == AccessMode::Application) != (cur_mode == AccessMode::Application) {
            self.error(
                address,
                format!(
                    "the access mode cannot change from {} to {}: application users are created as such",
                    cur_mode.as_str(),
                    final_mode.as_str()
                ),
                "P3",
                Some("delete the user and create a new one with the wanted access mode".into()),
            );
            steps.final_mode = Some(cur_mode);
            return steps;
        }
        let to_limited = final_mode != cur_mode
            && matches!(
                final_mode,
                AccessMode::Administrative | AccessMode::NonInteractive
            );
        if to_limited {
            // P4: the access mode is set while the user holds a license.
            if let Some(c) = cur {
                let m = self.set_mode(address, &user, ready, Some(cur_mode), final_mode);
                steps.mode = Some(m);
                match want {
                    Some(p) if p != c => {
                        steps.license = Some(self.assign_license(address, &user, Some(m), cur, p));
                    }
                    Some(_) => {}
                    None => {
                        self.remove_license(
                            address,
                            &user,
                            Some(m),
                            c,
                            "the user needs no license after setup (P4)",
                        );
                    }
                }
            } else if let Some(p) = want {
                let a = self.assign_license(address, &user, ready, None, p);
                steps.license = Some(a);
                steps.mode =
                    Some(self.set_mode(address, &user, Some(a), Some(cur_mode), final_mode));
            } else {
                steps.mode = Some(self.temp_license(address, &user, ready, final_mode, temp_plan));
            }
            return steps;
        }
        // License first (a read-write user needs it), then the access mode.
        let mut la = None;
        if want != cur {
            la = Some(match want {
                Some(p) => {
                    let a = self.assign_license(address, &user, ready, cur, p);
                    steps.license = Some(a);
                    a
                }
                None => self.remove_license(
                    address,
                    &user,
                    ready,
                    cur.expect("differs from None"),
                    "the file gives the user no license (P5)",
                ),
            });
        }
        if final_mode != cur_mode {
            steps.mode =
                Some(self.set_mode(address, &user, la.or(ready), Some(cur_mode), final_mode));
        }
        steps
    }

    #[inline(never)] // a phase: shows in profiles
    fn delete_users(&mut self) {
        let gone = self.gone_users();
        for (address, id) in gone {
            let Some(obs) = self.t.users.get(id) else {
                continue;
            };
            let deps: Vec<Option<usize>> = self
                .member_removals
                .get(id)
                .map(|v| v.iter().map(|a| Some(*a)).collect())
                .unwrap_or_default();
            let a = self.push(
                ActionKind::DeleteUser,
                address.to_string(),
                Op::DeleteUser {
                    user: ObjRef {
                        address: address.into(),
                        id: Some(id.to_string()),
                    },
                },
                vec![ch("upn", json!(obs.upn), Value::Null)],
                "the user was removed from the file (P5: deleting frees the license)",
                deps,
            );
            if let Some(l) = obs.license {
                self.release(l, a, None);
            }
            if obs.admin_roles.contains(&AdminRole::GlobalAdmin) {
                self.ga_demotions.push((a, address.to_string()));
            }
        }
    }

    /// P6: keep at least two global admins. Every promotion runs before every demotion
    /// (the service refuses to end one of two); a plan that ends with fewer than two while
    /// it demotes or deletes a global admin is an error at that admin role (the service
    /// refuses the demotion); one that ends with fewer than two without demoting anyone
    /// (the tenant already had fewer) is a warning.
    #[inline(never)] // a phase: shows in profiles
    fn global_admins(&mut self) {
        let promotions = std::mem::take(&mut self.ga_promotions);
        let demotions = std::mem::take(&mut self.ga_demotions);
        let models_admins = self
            .d
            .users
            .as_ref()
            .is_some_and(|u| u.values().any(|u| u.admin_roles.is_some()));
        if demotions.is_empty() && !models_admins {
            return;
        }
        let now = self
            .t
            .users
            .values()
            .filter(|u| u.admin_roles.contains(&AdminRole::GlobalAdmin))
            .count();
        let after = (now + promotions.len()).saturating_sub(demotions.len());
        if after < 2 {
            if demotions.is_empty() {
                self.warn(
                    "users",
                    format!("the tenant has {now} global admin(s) and keeps {after} after this plan; keep at least two"),
                    "P6",
                );
            } else {
                for (_, address) in &demotions {
                    let upn = address
                        .strip_prefix("users.")
                        .map(|a| a.strip_suffix(".admin_roles").unwrap_or(a))
                        .unwrap_or(address);
                    self.error(
                        address,
                        format!("`{upn}` stops being a global admin, which leaves {after} global admin(s) in the tenant (it has {now}); the service keeps at least two"),
                        "P6",
                        Some("make another user global admin in the file (`admin_roles: [global_admin]`), or keep this one".into()),
                    );
                }
            }
            return;
        }
        for &(d, _) in &demotions {
            for &p in &promotions {
                self.dep(d, Some(p));
            }
        }
    }

    /// T3/T4: pair assignments with releases where licenses are short; reductions last.
    #[inline(never)] // a phase: shows in profiles
    fn license_order(&mut self) {
        let flows = std::mem::take(&mut self.lic_flow);
        let pe_capacity = self.capacity_purchases.clone();
        for plan in LicensePlan::ALL {
            let empty_flow = LicenseFlow::default();
            let flow = flows.get(&plan).unwrap_or(&empty_flow);
            let now = self.t.purchased(plan);
            let want = self.lic_target[&plan];
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
                    deps.extend(self.sandbox_debt_paid.iter().map(|a| Some(*a)));
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

/// The steps of an existing user whose file entry asks for no change, or `None` when
/// something differs (then [`Planner::existing_user`] works it out).
fn unchanged_user(u: &m::User, o: &t::User) -> Option<UserSteps> {
    let final_mode = u.access_mode.unwrap_or(o.access_mode);
    (u.name.as_ref().is_none_or(|n| *n == o.name)
        && u.admin_roles.as_ref().is_none_or(|r| {
            r.iter().all(|x| o.admin_roles.contains(x))
                && o.admin_roles.iter().all(|x| r.contains(x))
        })
        && final_mode == o.access_mode
        && u.license == o.license
        && !(final_mode == AccessMode::Application && u.license.is_some()))
    .then_some(UserSteps {
        final_mode: Some(final_mode),
        final_license: u.license,
        license_free_admin: license_free_admin(None, &o.admin_roles),
        ..UserSteps::default()
    })
}

/// P6: global and service admins get System Administrator in every instance without a
/// license. `want` is the file's list (None: not managed, the observed `have` stays).
fn license_free_admin(want: Option<&[AdminRole]>, have: &BTreeSet<AdminRole>) -> bool {
    let free = |r: &AdminRole| matches!(r, AdminRole::GlobalAdmin | AdminRole::ServiceAdmin);
    match want {
        Some(w) => w.iter().any(free),
        None => have.iter().any(free),
    }
}

/// Whether the list `want` holds exactly the roles of `have` (absent = none), ignoring
/// order and repeats.
fn same_set(want: &[String], have: Option<&BTreeSet<String>>) -> bool {
    let Some(have) = have.filter(|h| !h.is_empty()) else {
        return want.is_empty();
    };
    if want.len() < have.len() {
        return false;
    }
    if want.len() > 16 {
        return want.iter().map(String::as_str).collect::<BTreeSet<_>>()
            == have.iter().map(String::as_str).collect::<BTreeSet<_>>();
    }
    let mut distinct = 0;
    for (j, r) in want.iter().enumerate() {
        if !have.contains(r) {
            return false;
        }
        if !want[..j].contains(r) {
            distinct += 1;
        }
    }
    distinct == have.len()
}

/// `roles.<instance key>`.
fn roles_path(key: &str) -> String {
    let mut s = String::with_capacity(6 + key.len());
    s.push_str("roles.");
    s.push_str(key);
    s
}

/// A set of strings as a JSON array (what `json!` gives, without the serializer).
fn str_array(set: &[&str]) -> Value {
    Value::Array(set.iter().map(|s| Value::String(s.to_string())).collect())
}

/// The items of sorted `a` that are not in sorted `b`, owned.
fn sorted_difference(a: &[&str], b: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut b = b.iter().peekable();
    for x in a {
        while b.next_if(|y| **y < *x).is_some() {}
        if b.peek() != Some(&x) {
            out.push(x.to_string());
        }
    }
    out
}

/// `users.<upn>`, built without the formatting machinery (it runs once per user).
fn user_address(upn: &str) -> String {
    let mut s = String::with_capacity(6 + upn.len());
    s.push_str("users.");
    s.push_str(upn);
    s
}

/// The attribute-level changes from administration mode `cur` to `want` (I10).
fn admin_mode_changes(cur: &t::AdminModeState, want: &t::AdminModeState) -> Vec<Change> {
    let mut changes = Vec::new();
    if want.enabled != cur.enabled {
        changes.push(ch(
            "admin_mode.enabled",
            json!(cur.enabled),
            json!(want.enabled),
        ));
    }
    if want.background_operations != cur.background_operations {
        changes.push(ch(
            "admin_mode.background_operations",
            json!(cur.background_operations),
            json!(want.background_operations),
        ));
    }
    if want.message != cur.message {
        changes.push(ch(
            "admin_mode.message",
            json!(cur.message),
            json!(want.message),
        ));
    }
    changes
}

/// The administration mode a fresh instance has (I10).
fn default_admin() -> t::AdminModeState {
    t::AdminModeState::default()
}

/// The administration mode a copy leaves on its target (I11).
fn after_copy_admin() -> t::AdminModeState {
    t::AdminModeState {
        enabled: true,
        background_operations: false,
        message: None,
    }
}

/// A temporary URL name for a rename chain (I5): valid, and used by no one.
fn temp_url(base: &str, taken: &HashSet<String>) -> String {
    for n in 1.. {
        let suffix = format!("-tmp-{n}");
        let mut stem: String = base.chars().take(63 - suffix.len()).collect();
        while stem.ends_with('-') {
            stem.pop();
        }
        let candidate = format!("{stem}{suffix}");
        if !taken.contains(&candidate) {
            return candidate;
        }
    }
    unreachable!("an unbounded range always yields a free name")
}

impl<'a> Planner<'a> {
    fn buy_slot(
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
                    "another {} slot would exceed the tenant's limit of 50 production and 75 sandbox instances",
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
        self.capacity_purchases.push(a);
        if kind == InstanceType::Sandbox {
            for s in self.sandbox_fallbacks.clone() {
                self.dep(a, Some(s));
            }
        }
        Some(a)
    }

    /// A slot of `kind` becomes free once `source` ran (I2, I7). A sandbox slot becomes
    /// free only after the switches that rely on none being free (`sandbox_fallbacks`).
    fn release_slot(&mut self, pool: &mut SlotPool, kind: InstanceType, source: usize) {
        if kind == InstanceType::Sandbox {
            for s in self.sandbox_fallbacks.clone() {
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
    fn took_for_sandbox(&mut self, sw: usize, slot: InstanceType) {
        if slot == InstanceType::Sandbox {
            self.sandbox_takers.push(sw);
        } else {
            for t in self.sandbox_takers.clone() {
                self.dep(sw, Some(t));
            }
            self.sandbox_fallbacks.push(sw);
        }
    }

    /// A free slot of `kind`, bought when none is free (I2).
    fn take_slot(
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
    fn slot_for_sandbox(
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

    fn switch(
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

    #[inline(never)] // a phase: shows in profiles
    fn instances(&mut self) {
        static NONE: BTreeMap<String, m::Instance> = BTreeMap::new();
        let desired: &'a BTreeMap<String, m::Instance> = self.d.instances.as_ref().unwrap_or(&NONE);
        let mut pool = SlotPool::new(
            self.t,
            self.mid_pro_enterprise(),
            self.final_pro_enterprise(),
            &self.pro_enterprise_purchases(),
        );
        let mut url_release: HashMap<&'a str, usize> = HashMap::default();

        // 1. Instances removed from the file: sandboxes first (they free slots), then
        //    production ones, which are switched to sandbox first (I8).
        let mut gone: Vec<(&'a str, &'a t::Instance, bool, Option<&'a str>)> = self
            .s
            .resources
            .iter()
            .filter(|(a, r)| {
                r.kind == ObjKind::Instance
                    && a.strip_prefix("instances.")
                        .is_none_or(|k| !desired.contains_key(k))
                    && !self.moved.contains(a.as_str())
            })
            .filter_map(|(a, r)| {
                self.t
                    .instances
                    .get(&r.id)
                    .map(|o| (a.as_str(), o, r.protect, r.protected_at.as_deref()))
            })
            .collect();
        gone.sort_by_key(|(a, o, _, _)| (o.kind != InstanceType::Sandbox, *a));
        // T6/I8: an included sandbox slot that is free now but lost by this plan's license
        // reduction takes the production instances on their way to deletion, one after the
        // other (no purchase); the reduction then waits for those deletes. `Some(after)`:
        // free once `after` (the previous delete) ran.
        let mut lingering_free = (pool.lingering(InstanceType::Sandbox)
            && self.t.used_slots(InstanceType::Sandbox)
                < self.t.total_slots(InstanceType::Sandbox))
        .then_some(None);
        let mut lingering_uses = Vec::new();
        for (address, o, protect, protected_at) in gone {
            if protect {
                // Not located: the declaration is gone from the file; the message names
                // the address and where `protect: true` was last declared, as apply
                // recorded it in the state (issue 9 item 8).
                let what = match protected_at {
                    Some(at) => format!("was declared protected at {at}"),
                    None => "is protected".to_string(),
                };
                self.error(
                    address,
                    format!("instance `{address}` {what} and would be deleted: it was removed from the file, and the state remembers its `protect: true`"),
                    "I8",
                    Some("put the instance back in the file, or set `protect: false` and apply before removing it".into()),
                );
            }
            let iref = ObjRef {
                address: address.into(),
                id: Some(o.id.clone()),
            };
            let mut after = None;
            let mut slot_now = o.slot;
            let mut borrows = false;
            if o.kind == InstanceType::Production {
                // I7: one still in a sandbox slot (switched out of band) switches back
                // into it.
                let keeps_slot = o.slot == InstanceType::Sandbox;
                borrows =
                    !keeps_slot && !pool.has(InstanceType::Sandbox) && lingering_free.is_some();
                let (deps, slot) = if keeps_slot {
                    (Vec::new(), InstanceType::Sandbox)
                } else if borrows {
                    (
                        lingering_free.flatten().into_iter().collect(),
                        InstanceType::Sandbox,
                    )
                } else {
                    self.slot_for_sandbox(&mut pool, address)
                };
                let sw = self.switch(
                    address,
                    iref.clone(),
                    InstanceType::Production,
                    InstanceType::Sandbox,
                    "only sandbox instances can be deleted: switch first (I8)",
                    deps,
                );
                if !keeps_slot {
                    if !borrows {
                        self.took_for_sandbox(sw, slot);
                    }
                    self.release_slot(&mut pool, o.slot, sw);
                }
                slot_now = slot;
                after = Some(sw);
            }
            let del = self.push(
                ActionKind::DeleteInstance,
                address.to_string(),
                Op::DeleteInstance { instance: iref },
                vec![ch("url", json!(o.url), Value::Null)],
                "the instance was removed from the file; its data is lost for good (I8), its slot becomes free (I2)",
                [after],
            );
            if borrows {
                // The borrowed slot is gone after the reduction: no configure may take it.
                lingering_free = Some(Some(del));
                lingering_uses.push(del);
            } else {
                self.release_slot(&mut pool, slot_now, del);
            }
            url_release.insert(&o.id, del);
            self.unbinds.insert(&o.id, del);
            self.inst_deletes.insert(&o.id, (del, address));
        }

        // 2. Switches of kept instances (I7): to sandbox first (they free production slots).
        let mut switching: Vec<(&str, &'a t::Instance, InstanceType)> = desired
            .iter()
            .filter_map(|(k, di)| {
                let o = self.insts.get(k.as_str())?.obs?;
                (o.kind != di.kind).then_some((
                    self.insts.get_key_value(k.as_str())?.0.to_owned(),
                    o,
                    di.kind,
                ))
            })
            .collect();
        switching.sort_by_key(|(k, _, to)| (*to == InstanceType::Production, *k));
        for (key, o, to) in switching {
            let address = format!("instances.{key}");
            let ready = self.insts[key].ready;
            let mut slot = InstanceType::Production;
            // I7: a sandbox that still holds a production slot (switched out of band)
            // switches back into it: no slot taken, none freed. Likewise a production
            // instance still in a sandbox slot (acceptance of issue 10 item 12).
            let keeps_slot = o.slot == to;
            let deps = if keeps_slot {
                Vec::new()
            } else if to == InstanceType::Sandbox {
                let (deps, s) = self.slot_for_sandbox(&mut pool, &address);
                slot = s;
                deps
            } else {
                self.take_slot(
                    &mut pool,
                    InstanceType::Production,
                    &address,
                    "switching to production needs a free production slot (I7)",
                )
            };
            let iref = self.inst_ref(key);
            let sw = self.switch(
                &address,
                iref,
                o.kind,
                to,
                "the type differs from the file (I7)",
                deps,
            );
            self.dep(sw, ready);
            if to == InstanceType::Sandbox && !keeps_slot {
                self.took_for_sandbox(sw, slot);
            }
            if !keeps_slot {
                self.release_slot(&mut pool, o.slot, sw);
            }
            self.insts.get_mut(key).expect("desired").switch = Some(sw);
        }

        // 3. New instances: configure a free slot, bought when none is free (I2).
        for (key, di) in desired {
            if self.insts[key.as_str()].obs.is_some() {
                continue;
            }
            let address = format!("instances.{key}");
            let deps = self.take_slot(&mut pool, di.kind, &address, "no free slot to configure");
            let (gref, gdeps) = self.group_binding(&address, di.security_group.as_deref());
            let region = di.region.unwrap_or(Region::NA);
            let currency = di.currency.clone().unwrap_or_else(|| "USD".into());
            let language = di.language.unwrap_or(1033);
            let purpose = di.purpose.clone().unwrap_or_default();
            let mut changes = vec![
                ch("name", Value::Null, json!(di.name)),
                ch("url", Value::Null, json!(di.url)),
                ch("type", Value::Null, json!(di.kind.as_str())),
            ];
            if !purpose.is_empty() {
                changes.push(ch("purpose", Value::Null, json!(purpose)));
            }
            changes.push(ch("region", Value::Null, json!(region.as_str())));
            changes.push(ch("currency", Value::Null, json!(currency)));
            changes.push(ch("language", Value::Null, json!(language)));
            if let Some(g) = &di.security_group {
                changes.push(ch("security_group", Value::Null, json!(g)));
            }
            let c = self.push(
                ActionKind::ConfigureInstance,
                address,
                Op::ConfigureInstance {
                    name: di.name.clone(),
                    url: di.url.clone(),
                    kind: di.kind,
                    purpose,
                    region,
                    currency,
                    language,
                    security_group: gref,
                },
                changes,
                "the instance is in the file but not in the tenant (I2: configure a free slot)",
                deps.into_iter().map(Some).chain(gdeps),
            );
            if di.kind == InstanceType::Sandbox {
                self.sandbox_takers.push(c);
            }
            let s = self.insts.get_mut(key.as_str()).expect("desired");
            s.ready = Some(c);
            s.content = Some(c);
            s.roles_wiped = true;
        }

        // T6: a license reduction below 25 Professional + Enterprise loses the included
        // sandbox slot; sandboxes that keep occupying it need a bought slot, bought while
        // the licenses are still there (the reduction waits for every slot purchase, T5).
        // An overcommit the tenant already had (licenses lowered earlier) is left as is
        // unless this plan lowers the licenses again (then every sandbox must fit).
        let before = if pool.lingering(InstanceType::Sandbox) {
            0
        } else {
            self.t
                .used_slots(InstanceType::Sandbox)
                .saturating_sub(self.t.total_slots(InstanceType::Sandbox))
        };
        if pool.debt(InstanceType::Sandbox) > before {
            let address = desired
                .keys()
                .find(|k| {
                    self.insts[k.as_str()]
                        .obs
                        .is_some_and(|o| o.slot == InstanceType::Sandbox)
                })
                .map_or_else(
                    || "licenses.professional".to_string(),
                    |k| format!("instances.{k}"),
                );
            while pool.debt(InstanceType::Sandbox) > before {
                let Some(a) = self.buy_slot(
                    &mut pool,
                    InstanceType::Sandbox,
                    &address,
                    "the included sandbox slot is lost when Professional + Enterprise licenses drop below 25 (T6), and this sandbox keeps its slot",
                ) else {
                    break;
                };
                pool.release(InstanceType::Sandbox, a);
            }
        }
        // The reduction runs once the sandboxes fit in the slots left (T6).
        self.sandbox_debt_paid = pool.paid(InstanceType::Sandbox).to_vec();
        self.sandbox_debt_paid.extend(lingering_uses);

        // 4. Kept instances: reset, edits.
        for (key, di) in desired {
            if let Some(o) = self.insts[key.as_str()].obs {
                self.existing_instance(key, di, o);
            }
        }

        // 5. Copies onto new sandboxes (I11).
        for (key, di) in desired {
            let Some(cf) = &di.copy_from else { continue };
            let address = format!("instances.{key}");
            if self.insts[key.as_str()].obs.is_some() {
                // The copy this state recorded when crmctl created the instance: the field
                // already acted, nothing to say.
                if self
                    .s
                    .resources
                    .get(&address)
                    .and_then(|r| r.copied_from.as_deref())
                    == Some(cf.instance.as_str())
                {
                    continue;
                }
                // A copy happens when the target is created (I11); say so rather than
                // ignore the field silently (a `copy_from` added to an existing instance).
                self.warn(
                    &format!("instances.{key}.copy_from"),
                    format!("`copy_from` acts only when the instance is created: `instances.{key}` exists, so nothing is copied from `{}`. To refresh it, remove the instance from the file and apply (it is deleted, `--allow-destroy`), then put it back with `copy_from` and apply again", cf.instance),
                    "I11",
                );
                continue;
            }
            if di.kind != InstanceType::Sandbox {
                self.error(
                    &address,
                    "a copy can only land on a sandbox instance".into(),
                    "I11",
                    Some("set `type: sandbox`".into()),
                );
                continue;
            }
            let Some(src) = self.insts.get(cf.instance.as_str()) else {
                self.error(
                    &address,
                    format!(
                        "`copy_from.instance` names `{}`, which is not in the file",
                        cf.instance
                    ),
                    "I11",
                    None,
                );
                continue;
            };
            // I3/I11: the copy brings the source's currency and language; a file that
            // gives the target others would want a reset on every later plan.
            let (src_obs, src_content) = (src.obs, src.content);
            let src_desired = desired.get(cf.instance.as_str());
            let src_currency = src_desired
                .and_then(|s| s.currency.clone())
                .or_else(|| src_obs.map(|o| o.currency.clone()))
                .unwrap_or_else(|| "USD".into());
            let src_language = src_desired
                .and_then(|s| s.language)
                .or_else(|| src_obs.map(|o| o.language))
                .unwrap_or(1033);
            let mut mismatch = false;
            if let Some(c) = di.currency.as_ref().filter(|c| **c != src_currency) {
                mismatch = true;
                self.error(
                    &format!("{address}.currency"),
                    format!(
                        "the copy from `{}` brings its base currency {src_currency}, not {c} (I3)",
                        cf.instance
                    ),
                    "I11",
                    Some(format!(
                        "set `currency: {src_currency}`, or remove `currency` from this instance"
                    )),
                );
            }
            if let Some(l) = di.language.filter(|l| *l != src_language) {
                mismatch = true;
                self.error(
                    &format!("{address}.language"),
                    format!(
                        "the copy from `{}` brings its language {src_language}, not {l} (I3)",
                        cf.instance
                    ),
                    "I11",
                    Some(format!(
                        "set `language: {src_language}`, or remove `language` from this instance"
                    )),
                );
            }
            if mismatch {
                continue;
            }
            let source = self.inst_ref(&cf.instance);
            let target = self.inst_ref(key);
            let ready = self.insts[key.as_str()].ready;
            let a = self.push(
                ActionKind::CopyInstance,
                address,
                Op::CopyInstance { source, target, kind: cf.kind },
                vec![
                    ch("copy_from", Value::Null, json!(cf.instance)),
                    ch("copy_kind", Value::Null, json!(cf.kind)),
                ],
                "copy onto the new sandbox; it ends in administration mode with background operations off (I11)",
                [ready, src_content],
            );
            self.insts.get_mut(key.as_str()).expect("desired").content = Some(a);
        }

        // 6. Administration mode, notification recipients, update approval.
        for (key, di) in desired {
            self.instance_settings(key, di);
        }

        // 7. URL names stay unique at every moment (I5).
        self.url_order(desired, url_release);
    }

    /// The group an instance binds, and what the binding waits for (I12).
    fn group_binding(
        &mut self,
        address: &str,
        key: Option<&str>,
    ) -> (Option<ObjRef>, Vec<Option<usize>>) {
        let Some(key) = key else {
            return (None, vec![]);
        };
        let Some(b) = self.groups.get(key).copied() else {
            self.error(
                address,
                format!("`security_group` names `{key}`, which is not under `security_groups`"),
                "I12",
                None,
            );
            return (None, vec![]);
        };
        // Create the group and add its members before binding, so that nobody loses access
        // in between (I12).
        (
            Some(self.group_ref(key)),
            vec![b.ready, self.group_members_add.get(key).copied()],
        )
    }

    fn existing_instance(&mut self, key: &'a str, di: &m::Instance, o: &'a t::Instance) {
        let address = format!("instances.{key}");
        let steps = self.insts[key].clone();
        let protect = di.protect || self.s.resources.get(&address).is_some_and(|r| r.protect);
        if let Some(r) = di.region.filter(|r| *r != o.region) {
            self.error(
                &format!("{address}.region"), // the field (issue 9 item 8)
                format!("the region cannot change from {} to {}: it is fixed once configured, and a reset stays in the region", o.region.as_str(), r.as_str()),
                "I6",
                Some("configure a new instance in the other region and copy onto it".into()),
            );
        }
        let new_currency = di.currency.as_ref().filter(|c| **c != o.currency);
        let new_language = di.language.filter(|l| *l != o.language);
        if new_currency.is_some() || new_language.is_some() {
            // The offending field, not just the instance (issue 9 item 8).
            let field = if new_currency.is_some() {
                format!("{address}.currency")
            } else {
                format!("{address}.language")
            };
            if di.kind == InstanceType::Production {
                self.error(
                    &field,
                    "the base currency and language of a configured production instance never change (I3/I6)".into(),
                    "I3",
                    Some("keep the current values, or make it a sandbox (a reset may change them, I9)".into()),
                );
            } else if protect {
                self.error(
                    &if di.protect {
                        format!("{address}.protect")
                    } else {
                        field.clone()
                    },
                    "the instance is protected and a currency/language change would reset it (I9)"
                        .into(),
                    "I9",
                    Some("set `protect: false` to allow the reset".into()),
                );
            } else {
                let mut changes = Vec::new();
                if let Some(c) = new_currency {
                    changes.push(ch("currency", json!(o.currency), json!(c)));
                }
                if let Some(l) = new_language {
                    changes.push(ch("language", json!(o.language), json!(l)));
                }
                let iref = self.inst_ref(key);
                let r = self.push(
                    ActionKind::ResetInstance,
                    address.clone(),
                    Op::ResetInstance {
                        instance: iref,
                        currency: new_currency.cloned().unwrap_or_else(|| o.currency.clone()),
                        language: new_language.unwrap_or(o.language),
                    },
                    changes,
                    "currency and language change only through a reset, which deletes all data (I3, I9)",
                    [steps.ready, steps.switch],
                );
                let s = self.insts.get_mut(key).expect("desired");
                s.content = Some(r);
                s.roles_wiped = true;
            }
        }
        // I4: name, URL, purpose, security group.
        let mut changes = Vec::new();
        let name = (di.name != o.name).then(|| di.name.clone());
        if let Some(n) = &name {
            changes.push(ch("name", json!(o.name), json!(n)));
        }
        let url = (di.url != o.url).then(|| di.url.clone());
        if let Some(u) = &url {
            changes.push(ch("url", json!(o.url), json!(u)));
        }
        let purpose = di.purpose.as_ref().filter(|p| **p != o.purpose).cloned();
        if let Some(p) = &purpose {
            changes.push(ch("purpose", json!(o.purpose), json!(p)));
        }
        let want_gid = di
            .security_group
            .as_deref()
            .map(|k| self.groups.get(k).and_then(|b| b.id));
        let group_changed = match (want_gid, o.security_group.as_deref()) {
            (None, None) => false,
            (Some(Some(w)), Some(c)) => w != c,
            _ => true,
        };
        let mut security_group = None;
        let mut gdeps = vec![];
        if group_changed {
            let (gref, deps) = self.group_binding(&address, di.security_group.as_deref());
            gdeps = deps;
            let before = o.security_group.as_deref().map_or(Value::Null, |id| {
                json!(self
                    .addr_of_id
                    .get(id)
                    .map_or(id, |a| a.strip_prefix("security_groups.").unwrap_or(a)))
            });
            changes.push(ch("security_group", before, json!(di.security_group)));
            security_group = Some(gref);
        }
        if changes.is_empty() {
            return;
        }
        // I4: a provisioning or disabled instance is reported by `instance_status`.
        let iref = self.inst_ref(key);
        let url_changed = url.is_some();
        let a = self.push(
            ActionKind::UpdateInstance,
            address.clone(),
            Op::UpdateInstance {
                instance: iref,
                name,
                url,
                purpose,
                security_group: security_group.clone(),
            },
            changes,
            "editable attributes differ from the file (I4)",
            [steps.ready, steps.content].into_iter().chain(gdeps),
        );
        if url_changed {
            self.insts.get_mut(key).expect("desired").url_update = Some(a);
            // I5: the old URL redirects for up to 24 hours, unless another instance of
            // the file takes it now (then it reaches that one at once).
            let taker = self
                .d
                .instances
                .iter()
                .flatten()
                .find(|(k, d)| k.as_str() != key && d.url == o.url)
                .map(|(k, _)| k);
            let old = match taker {
                Some(k) => format!("`{}` goes to `instances.{k}` at once: from then on it reaches that instance, with no 24-hour grace for this one", o.url),
                None => format!("`{}` keeps working for up to 24 hours", o.url),
            };
            self.warn(
                &address,
                format!("the URL name changes from `{}` to `{}`: {old}; `{}` works at once. Outlook users working offline must sync first, and every user must be told the new URL", o.url, di.url, di.url),
                "I5",
            );
        }
        if group_changed {
            if o.security_group.is_some() {
                self.unbinds.insert(&o.id, a);
            }
            if let Some(Some(g)) = &security_group {
                self.warn_disabled_users(
                    &address,
                    o,
                    g,
                    di.security_group.as_deref().unwrap_or(""),
                );
            }
        }
    }

    /// I12: binding a group disables the instance's users who are not members.
    fn warn_disabled_users(&mut self, address: &str, o: &t::Instance, g: &ObjRef, key: &str) {
        let members: HashSet<&str> = match self
            .d
            .security_groups
            .as_ref()
            .and_then(|gs| gs.get(key))
            .and_then(|gd| gd.members.as_ref())
        {
            Some(list) => list
                .iter()
                .filter_map(|upn| match self.users.get(upn.as_str()) {
                    Some(b) => b.id,
                    None => self
                        .t
                        .users
                        .values()
                        .find(|u| u.upn == *upn)
                        .map(|u| u.id.as_str()), // rare: undeclared member
                })
                .collect(),
            None => {
                g.id.as_deref()
                    .and_then(|id| self.t.groups.get(id))
                    .map(|gr| gr.members.iter().map(String::as_str).collect())
                    .unwrap_or_default()
            }
        };
        // The instance's users now (I12): with no group bound, every licensed user of the
        // tenant (roles or not); with a group, its licensed members.
        // A set: a lookup per user, not a scan of the old group (100k users).
        let old_group: Option<HashSet<&str>> = o
            .security_group
            .as_deref()
            .and_then(|g| self.t.groups.get(g))
            .map(|g| g.members.iter().map(String::as_str).collect());
        let disabled: Vec<&str> = self
            .t
            .users
            .values()
            .filter(|u| {
                u.license.is_some()
                    && old_group.as_ref().is_none_or(|g| g.contains(u.id.as_str()))
                    && !members.contains(u.id.as_str())
            })
            .map(|u| u.upn.as_str())
            .collect();
        if disabled.is_empty() {
            return;
        }
        let shown: Vec<&str> = disabled.iter().take(10).copied().collect();
        let more = if disabled.len() > 10 {
            format!(" and {} more", disabled.len() - 10)
        } else {
            String::new()
        };
        self.warn(
            address,
            format!(
                "binding group `{key}` disables {} licensed user(s) of the instance who are not members (roles or not): {}{more}",
                disabled.len(),
                shown.join(", ")
            ),
            "I12",
        );
    }

    fn instance_settings(&mut self, key: &str, di: &m::Instance) {
        let address = format!("instances.{key}");
        let steps = self.insts[key].clone();
        let is_new = steps.obs.is_none();
        let copied = is_new && di.copy_from.is_some() && steps.content != steps.ready;
        // I10: administration mode, one op whose end state is valid.
        if let Some(am) = &di.admin_mode {
            let want = t::AdminModeState {
                enabled: am.enabled,
                background_operations: am.background_operations,
                message: am.message.clone(),
            };
            let cur = if copied {
                after_copy_admin()
            } else if is_new || steps.roles_wiped {
                default_admin()
            } else {
                steps.obs.map(|o| o.admin_mode.clone()).unwrap_or_default()
            };
            if !want.enabled && !want.background_operations {
                self.error(
                    &address,
                    "background operations can be disabled only while administration mode is on"
                        .into(),
                    "I10",
                    Some("set `admin_mode.enabled: true` or `background_operations: true`".into()),
                );
            } else if di.kind == InstanceType::Production && want != default_admin() {
                self.error(
                    &address,
                    "administration mode is available on sandbox instances only".into(),
                    "I10",
                    Some("remove `admin_mode` or make the instance a sandbox".into()),
                );
            } else if want != cur {
                let changes = admin_mode_changes(&cur, &want);
                let iref = self.inst_ref(key);
                let switch_to_prod = steps.switch.is_some() && di.kind == InstanceType::Production;
                let a = self.push(
                    ActionKind::SetAdminMode,
                    address.clone(),
                    Op::SetAdminMode {
                        instance: iref,
                        enabled: want.enabled,
                        background_operations: want.background_operations,
                        message: want.message.clone(),
                    },
                    changes,
                    if copied {
                        "the wanted administration mode after the copy (I10, I11)"
                    } else {
                        "administration mode differs from the file (I10: background operations off only while it is on)"
                    },
                    [steps.ready, steps.content, if switch_to_prod { None } else { steps.switch }],
                );
                if switch_to_prod {
                    // Leave administration mode while still a sandbox (I10).
                    let sw = steps.switch.expect("checked");
                    self.dep(sw, Some(a));
                }
            }
        } else if let (Some(sw), Some(o)) = (steps.switch, steps.obs) {
            // I10/I7: administration mode exists only for sandboxes. The file leaves it
            // unmanaged, but a sandbox in administration mode (or with background operations
            // off) that becomes production must leave it first, while still a sandbox.
            let cur = if steps.roles_wiped {
                default_admin()
            } else {
                o.admin_mode.clone()
            };
            if di.kind == InstanceType::Production && (cur.enabled || !cur.background_operations) {
                let want = default_admin();
                let changes = admin_mode_changes(&cur, &want);
                let iref = self.inst_ref(key);
                let a = self.push(
                    ActionKind::SetAdminMode,
                    address.clone(),
                    Op::SetAdminMode {
                        instance: iref,
                        enabled: want.enabled,
                        background_operations: want.background_operations,
                        message: want.message,
                    },
                    changes,
                    "administration mode exists only for sandboxes: leave it before the switch to production (I10, I7)",
                    [steps.ready],
                );
                self.dep(sw, Some(a));
            }
        }
        // I13: extra notification recipients, exact when given.
        if let Some(list) = &di.notification_recipients {
            // Email addresses compare without regard to case (issue 9 item 2): an address
            // listed again in another spelling is sent once, in its first spelling.
            let mut folded = BTreeSet::new();
            let want: Vec<String> = list
                .iter()
                .filter(|r| folded.insert(ident::fold(r)))
                .cloned()
                .collect();
            let seen: BTreeSet<&str> = want.iter().map(String::as_str).collect();
            let cur: BTreeSet<&str> = steps
                .obs
                .map(|o| {
                    o.notification_recipients
                        .iter()
                        .map(String::as_str)
                        .collect()
                })
                .unwrap_or_default();
            if seen != cur {
                let iref = self.inst_ref(key);
                let before: Vec<&str> = cur.iter().copied().collect();
                self.push(
                    ActionKind::SetNotificationRecipients,
                    address.clone(),
                    Op::SetNotificationRecipients {
                        instance: iref,
                        recipients: want.clone(),
                    },
                    vec![ch("notification_recipients", json!(before), json!(want))],
                    "extra update notification recipients differ from the file (I13)",
                    [steps.ready],
                );
            }
        }
        // U2: an instance at n-2 or older must take the update to n-1 at least. The
        // version compared is the one the instance runs after the plan: a reset
        // re-provisions at the newest (I9, nothing forced), a new copy runs its source's
        // (I11, issue 10 item 8).
        if let Some(o) = steps.obs {
            if !steps.roles_wiped {
                self.mandatory_update(&address, di, &o.url, &o.version, o.update.as_ref());
            }
        } else if copied {
            if let Some(src) = di
                .copy_from
                .as_ref()
                .and_then(|cf| self.insts.get(cf.instance.as_str()))
                .and_then(|s| s.obs)
            {
                self.mandatory_update(&address, di, &di.url, &src.version, None);
            }
        }
        // U2-U4: update approval.
        if let Some(u) = &di.update {
            let newest = self.t.versions.last().map(String::as_str).unwrap_or("");
            // I11: a new instance made by a copy runs its source's version (the provider
            // configures at the newest, then the copy brings the source's).
            let copied_from = di
                .copy_from
                .as_ref()
                .filter(|_| copied)
                .and_then(|cf| self.insts.get(cf.instance.as_str()))
                .and_then(|s| s.obs);
            // I9: a reset re-provisions at the newest version.
            let reset = steps.obs.is_some() && steps.roles_wiped;
            let version = match (steps.obs, copied_from) {
                _ if reset => newest,
                (Some(o), _) | (None, Some(o)) => o.version.as_str(),
                (None, None) => newest,
            };
            if !self.t.versions.contains(&u.target_version) {
                self.error(
                    &address,
                    format!(
                        "target version {} is not offered by the service",
                        u.target_version
                    ),
                    "U3",
                    Some(format!("known versions: {}", self.t.versions.join(", "))),
                );
                return;
            }
            match cmp_version(&u.target_version, version) {
                std::cmp::Ordering::Equal => return,
                std::cmp::Ordering::Less => {
                    self.warn(&address, format!("the instance already runs {version}, newer than the approved target {}; nothing to approve", u.target_version), "U2");
                    return;
                }
                std::cmp::Ordering::Greater => {}
            }
            let cur = steps.obs.and_then(|o| o.update.as_ref());
            if let Some(c) = cur {
                let same = c.target_version == u.target_version
                    && c.preferred == u.preferred
                    && c.alternate == u.alternate;
                if same
                    && matches!(
                        c.state,
                        UpdatePhase::Approved | UpdatePhase::InProgress | UpdatePhase::Updated
                    )
                {
                    return;
                }
                if c.state == UpdatePhase::InProgress {
                    self.error(
                        &address,
                        format!(
                            "the update to {} is in progress and can no longer be rescheduled",
                            c.target_version
                        ),
                        "U4",
                        Some("wait until it finishes, then plan again".into()),
                    );
                    return;
                }
            }
            let before = cur.map_or(Value::Null, |c| json!({"target_version": c.target_version, "preferred": c.preferred, "alternate": c.alternate}));
            let iref = self.inst_ref(key);
            self.push(
                ActionKind::ScheduleUpdate,
                address,
                Op::ScheduleUpdate {
                    instance: iref,
                    target_version: u.target_version.clone(),
                    preferred: u.preferred.clone(),
                    alternate: u.alternate.clone(),
                },
                vec![ch("update", before, json!({"target_version": u.target_version, "preferred": u.preferred, "alternate": u.alternate}))],
                format!("approve the update from {version} to {} (U2, U3)", u.target_version),
                [steps.ready, steps.content],
            );
        }
    }

    /// U2: every instance runs the current version (n) or the one before (n-1); one at
    /// n-2 or older takes the update whether approved or not. The plan says so (a warning
    /// naming the version it will take), unless the file approves an update to n-1 or later.
    fn mandatory_update(
        &mut self,
        address: &str,
        di: &m::Instance,
        url: &str,
        version: &str,
        update: Option<&t::UpdateState>,
    ) {
        let mut versions: Vec<&str> = self.t.versions.iter().map(String::as_str).collect();
        versions.sort_by(|a, b| cmp_version(a, b));
        let [.., previous, current] = versions.as_slice() else {
            return;
        };
        if cmp_version(version, previous).is_ge() {
            return;
        }
        let approved = |target: &str| cmp_version(target, previous).is_ge();
        if di
            .update
            .as_ref()
            .is_some_and(|u| approved(&u.target_version))
        {
            return;
        }
        let pending =
            update.filter(|u| approved(&u.target_version) && u.state != UpdatePhase::Updated);
        let takes = match pending {
            // U4: an update in progress is past choosing dates.
            Some(u) if u.state == UpdatePhase::InProgress => {
                format!("the update to {}, already in progress", u.target_version)
            }
            Some(u) if u.preferred.is_empty() => format!(
                "the update to {} already scheduled, on a date the service picks",
                u.target_version
            ),
            Some(u) => format!(
                "the update to {} already scheduled for {} (alternate {})",
                u.target_version, u.preferred, u.alternate
            ),
            None => format!("the update to {previous} at the least, on a date the service picks"),
        };
        let manage = if pending.is_some_and(|u| u.state == UpdatePhase::InProgress) {
            String::new()
        } else if di.update.is_some() {
            format!("; `update.target_version` must be {previous} or later to choose the date")
        } else {
            format!("; add `update: {{target_version: {previous}, preferred: ..., alternate: ...}}` to choose the dates")
        };
        self.warn(
            address,
            format!(
                "`{url}` runs {version}, two or more versions behind the current {current}: the service forces {takes}{manage}",
            ),
            "U2",
        );
    }

    /// I5: a URL name is taken only after its holder let it go; rename cycles go through a
    /// temporary URL name.
    fn url_order(
        &mut self,
        desired: &BTreeMap<String, m::Instance>,
        mut release: HashMap<&'a str, usize>,
    ) {
        // By folded URL name: unique without regard to case (I5, issue 9 item 2).
        let holders: HashMap<Cow<'a, str>, &'a t::Instance> = self
            .t
            .instances
            .values()
            .map(|i| (ident::fold(&i.url), i))
            .collect();
        // id -> (key, wanted url) of kept instances that change URL.
        let mut renamers: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        for (key, di) in desired {
            let s = &self.insts[key.as_str()];
            if let (Some(o), Some(a)) = (s.obs, s.url_update) {
                release.insert(&o.id, a);
                renamers.insert(&o.id, (key, &di.url));
            }
        }
        // Find cycles in the "wants the URL held by" relation (each renamer wants one URL).
        let next = |id: &str| -> Option<&str> {
            let (_, url) = renamers.get(id)?;
            let h = holders.get(ident::fold(url).as_ref())?;
            (h.id != id && renamers.contains_key(h.id.as_str())).then_some(h.id.as_str())
        };
        let mut color: HashMap<&str, u8> = HashMap::default();
        let mut cycles: Vec<Vec<&str>> = Vec::new();
        for &start in renamers.keys() {
            if color.contains_key(start) {
                continue;
            }
            let mut path = vec![];
            let mut cur = Some(start);
            while let Some(c) = cur {
                match color.get(c) {
                    Some(1) => {
                        let pos = path.iter().position(|p| *p == c).expect("on path");
                        cycles.push(path[pos..].to_vec());
                        break;
                    }
                    Some(_) => break,
                    None => {
                        color.insert(c, 1);
                        path.push(c);
                        cur = next(c);
                    }
                }
            }
            for p in path {
                color.insert(p, 2);
            }
        }
        if !cycles.is_empty() {
            let mut taken: HashSet<String> = holders.keys().map(|u| u.to_string()).collect();
            taken.extend(desired.values().map(|d| d.url.clone()));
            for cycle in cycles {
                let id = *cycle
                    .iter()
                    .min_by_key(|id| renamers[*id].0)
                    .expect("non-empty");
                let key = renamers[id].0.to_string();
                let o = self.t.instances.get(id).expect("observed");
                let tmp = temp_url(&ident::fold(&o.url), &taken);
                taken.insert(tmp.clone());
                let iref = self.inst_ref(&key);
                let ready = self.insts[key.as_str()].ready;
                let a = self.push(
                    ActionKind::UpdateInstance,
                    format!("instances.{key}"),
                    Op::UpdateInstance { instance: iref, name: None, url: Some(tmp.clone()), purpose: None, security_group: None },
                    vec![ch("url", json!(o.url), json!(tmp))],
                    "temporary URL name: the URL names of these instances swap, and URL names are unique at every moment (I5)",
                    [ready],
                );
                self.warn(
                    &format!("instances.{key}"),
                    format!("`{}` goes through the temporary URL name `{tmp}` to `{}`: a second change within 24 hours stops `{tmp}` at once (only the original URL would keep working, and another instance takes it)", o.url, renamers[id].1),
                    "I5",
                );
                release.insert(self.t.instances.get_key_value(id).expect("observed").0, a);
            }
        }
        for (key, di) in desired {
            let s = &self.insts[key.as_str()];
            let (own, action) = match (s.obs, s.url_update, s.ready) {
                (Some(o), Some(a), _) => (Some(o.id.as_str()), a),
                (None, _, Some(c)) => (None, c),
                _ => continue,
            };
            let Some(h) = holders.get(ident::fold(&di.url).as_ref()) else {
                continue;
            };
            if Some(h.id.as_str()) == own {
                continue;
            }
            match release.get(h.id.as_str()) {
                Some(&r) => self.dep(action, Some(r)),
                None => {
                    let who = self
                        .addr_of_id
                        .get(h.id.as_str())
                        .map_or_else(|| format!("unmanaged instance {}", h.id), |a| a.to_string());
                    self.error(
                        &format!("instances.{key}"),
                        format!("the URL name `{}` is used by {who}, which keeps it", di.url),
                        "I5",
                        Some("choose another URL name, or rename the other instance first".into()),
                    );
                }
            }
        }
    }

    // ----- roles (P2, P3) -----

    /// Roles actions of every desired user (P2) and the P3 check. From `parallel_from`
    /// desired users on, the users' roles are worked out on two threads (read-only), then
    /// their actions pushed in file order, so the plan is the same either way.
    #[inline(never)] // a phase: shows in profiles
    fn roles_with(&mut self, parallel_from: usize) {
        let Some(users) = &self.d.users else { return };
        let key_of_id: HashMap<&'a str, &'a str> = self
            .insts
            .iter()
            .filter_map(|(k, s)| s.obs.map(|o| (o.id.as_str(), *k)))
            .collect();
        // P3: non-interactive users with roles, per instance key, once the plan is done.
        let mut ni: BTreeMap<&str, usize> = BTreeMap::new();
        for u in self.t.users.values() {
            if u.access_mode != AccessMode::NonInteractive || self.users_contains_id(&u.id) {
                continue;
            }
            for (iid, r) in &u.roles {
                if let (false, Some(k)) = (r.is_empty(), key_of_id.get(iid.as_str())) {
                    *ni.entry(k).or_default() += 1;
                }
            }
        }
        let list: Vec<(usize, (&'a String, &'a m::User))> = users.iter().enumerate().collect();
        let parts: Vec<RolesOut<'a>> = if list.len() >= parallel_from.max(2) {
            let (left, right) = list.split_at(list.len() / 2);
            let this = &*self;
            let key_of_id = &key_of_id;
            std::thread::scope(|scope| {
                let other = scope.spawn(move || this.user_roles(right, key_of_id));
                let mine = this.user_roles(left, key_of_id);
                vec![mine, other.join().expect("planning roles does not panic")]
            })
        } else {
            vec![self.user_roles(&list, &key_of_id)]
        };
        for part in parts {
            for k in part.ni {
                *ni.entry(k).or_default() += 1;
            }
            self.diags.extend(part.diags);
            for p in part.pushes {
                self.push(p.kind, p.address, p.op, p.changes, p.reason, p.deps);
            }
        }
        for (k, n) in ni {
            if n > MAX_NON_INTERACTIVE_PER_INSTANCE {
                self.error(
                    &format!("instances.{k}"),
                    format!("{n} non-interactive users would have roles in this instance; at most {MAX_NON_INTERACTIVE_PER_INSTANCE} are allowed"),
                    "P3",
                    Some("use application users for integrations (they do not count)".into()),
                );
            }
        }
    }

    /// The roles actions, diagnostics and non-interactive counts of `users` (position, UPN,
    /// entry), in order. Pure: [`Self::roles_with`] applies the result.
    fn user_roles(
        &self,
        users: &[(usize, (&'a String, &'a m::User))],
        key_of_id: &HashMap<&'a str, &'a str>,
    ) -> RolesOut<'a> {
        let insts = self.d.instances.as_ref();
        let mut out = RolesOut::default();
        // One reference per instance, cloned into each roles action.
        let mut inst_refs: HashMap<&str, ObjRef> = HashMap::default();
        let (mut keys, mut want, mut have): (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) =
            Default::default();
        for &(i, (upn, u)) in users {
            let steps = self.users.steps[i];
            let bound = self.users.bound[i];
            let obs = bound.user;
            let final_ni = steps.final_mode == Some(AccessMode::NonInteractive);
            let Some(map) = &u.roles else {
                if final_ni {
                    if let Some(o) = obs {
                        for (iid, r) in &o.roles {
                            if let (false, Some(k)) = (r.is_empty(), key_of_id.get(iid.as_str())) {
                                out.ni.push(k);
                            }
                        }
                    }
                }
                continue;
            };
            // Fast path: the observed roles are those of the file (the common case).
            if !final_ni && obs.is_some_and(|o| self.roles_unchanged(map, o, key_of_id)) {
                continue;
            }
            let address = user_address(upn);
            for k in map.keys() {
                if !insts.is_some_and(|i| i.contains_key(k)) {
                    out.diags.push(
                        Diagnostic::error(
                            address.as_str(),
                            format!("roles are given for instance `{k}`, which is not in the file"),
                        )
                        .rule("P2"),
                    );
                }
            }
            let mut user: Option<ObjRef> = None;
            // Desired instances the user has roles in now, plus those the file lists
            // (sorted, once each; the lists are reused from user to user).
            keys.clear();
            keys.extend(
                map.keys()
                    .map(String::as_str)
                    .filter(|k| self.insts.contains_key(k)),
            );
            if let Some(o) = obs {
                keys.extend(
                    o.roles
                        .keys()
                        .filter_map(|iid| key_of_id.get(iid.as_str()).copied()),
                );
            }
            keys.sort_unstable();
            keys.dedup();
            for &ikey in &keys {
                let Some((ikey, s)) = self.insts.get_key_value(ikey) else {
                    continue;
                };
                let ikey: &'a str = ikey;
                want.clear();
                if let Some(v) = map.get(ikey) {
                    want.extend(v.iter().map(String::as_str));
                    want.sort_unstable();
                    want.dedup();
                }
                if final_ni && !want.is_empty() {
                    out.ni.push(ikey);
                }
                have.clear();
                if let (Some(o), Some(i)) = (obs, s.obs) {
                    if !s.roles_wiped {
                        // A set: sorted, once each.
                        have.extend(o.roles.get(&i.id).into_iter().flatten().map(String::as_str));
                    }
                }
                if want == have {
                    continue;
                }
                let user: &ObjRef = user.get_or_insert_with(|| self.user_ref(upn));
                let add = sorted_difference(&want, &have);
                let remove = sorted_difference(&have, &want);
                let content = s.content;
                let iref = inst_refs
                    .entry(ikey)
                    .or_insert_with(|| self.inst_ref(ikey))
                    .clone();
                let had_add = !add.is_empty();
                if had_add {
                    // P6: global and service admins need no license for roles.
                    if steps.final_mode == Some(AccessMode::ReadWrite)
                        && steps.final_license.is_none()
                        && !steps.license_free_admin
                    {
                        let mut d = Diagnostic::error(
                            address.as_str(),
                            format!("a read-write user needs a license to get security roles in `{ikey}`"),
                        )
                        .rule("P2");
                        d.hint = Some("give the user a `license`".into());
                        out.diags.push(d);
                    }
                    out.pushes.push(Pending {
                        kind: ActionKind::AssignRoles,
                        address: address.clone(),
                        op: Op::AssignRoles { user: user.clone(), instance: iref.clone(), roles: add },
                        changes: vec![ch(roles_path(ikey), str_array(&have), str_array(&want))],
                        reason: "security roles from the file (P2: after the user, the license and the instance exist)",
                        // P6: a license-free admin gets roles once it is admin.
                        deps: [bound.ready, steps.license.or(steps.admin), steps.mode, content],
                    });
                }
                if !remove.is_empty() {
                    out.pushes.push(Pending {
                        kind: ActionKind::RemoveRoles,
                        address: address.clone(),
                        op: Op::RemoveRoles {
                            user: user.clone(),
                            instance: iref,
                            roles: remove,
                        },
                        changes: if had_add {
                            vec![]
                        } else {
                            vec![ch(roles_path(ikey), str_array(&have), str_array(&want))]
                        },
                        reason: "security roles not in the file (P2)",
                        deps: [bound.ready, None, None, None],
                    });
                }
            }
        }
        out
    }

    /// Whether planning the roles of `map` for the existing user `o` gives no action and no
    /// diagnostic. `false` also when unsure: the caller then works the roles out in full.
    fn roles_unchanged(
        &self,
        map: &BTreeMap<String, Vec<String>>,
        o: &t::User,
        key_of_id: &HashMap<&str, &str>,
    ) -> bool {
        for (k, want) in map {
            let Some(s) = self.insts.get(k.as_str()) else {
                return false; // an error to report
            };
            let have = match s.obs {
                Some(i) if !s.roles_wiped => o.roles.get(&i.id),
                _ => None,
            };
            if !same_set(want, have) {
                return false;
            }
        }
        // Roles held in a desired instance the file lists none for are removed.
        o.roles.iter().all(|(iid, r)| {
            r.is_empty()
                || key_of_id
                    .get(iid.as_str())
                    .is_none_or(|k| map.contains_key(*k))
        })
    }

    fn users_contains_id(&self, id: &str) -> bool {
        self.addr_of_id
            .get(id)
            .is_some_and(|a| self.desired_user_address(a))
            || self.adopted.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn sorted_difference_keeps_what_the_other_lacks() {
        for (a, b, want) in [
            (&[][..], &[][..], &[][..]),
            (&["a", "b"], &[], &["a", "b"]),
            (&[], &["a"], &[]),
            (&["a", "c", "e"], &["b", "c", "d"], &["a", "e"]),
            (&["b"], &["a", "b", "c"], &[]),
            (&["x", "y"], &["a"], &["x", "y"]),
        ] {
            assert_eq!(sorted_difference(a, b), want, "{a:?} - {b:?}");
        }
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
        let one = diff_with(d, members, observed, state, ONE_THREAD);
        let other = diff_with(d, members, observed, state, two);
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
