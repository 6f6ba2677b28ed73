//! Instance settings: administration mode (I10), notification recipients (I13), update
//! approval and forced updates (U2-U4), and the status check of every instance action (I4).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{ch, Planner};
use crate::desired::model as m;
use crate::domain::ident;
use crate::domain::kinds::InstanceType;
use crate::domain::op::{ActionKind, ObjRef, Op};
use crate::domain::syntax::cmp_version;
use crate::observed::{self as t, InstanceStatus, UpdatePhase};
use crate::plan::action::Change;

impl<'a> Planner<'a> {
    pub(super) fn instance_settings(&mut self, key: &str, di: &m::Instance) {
        let address = format!("instances.{key}");
        let steps = self.insts[key].clone();
        let is_new = steps.obs.is_none();
        let copied =
            (is_new || steps.recopy) && di.copy_from.is_some() && steps.content != steps.ready;
        // I10: administration mode, one op whose end state is valid.
        if let Some(am) = &di.admin_mode {
            let want = t::AdminModeState {
                enabled: am.enabled,
                background_operations: am.background_operations,
                message: am.message.clone(),
            };
            let mut cur = if copied {
                after_copy_admin()
            } else if is_new || steps.roles_wiped {
                default_admin()
            } else {
                steps.obs.map(|o| o.admin_mode.clone()).unwrap_or_default()
            };
            // I10, issue 13 item 4: a backend that cannot read or set the sign-in message
            // (no public API) leaves it to a person, and the plan says so.
            if let (true, Some(m)) = (self.t.unreadable.admin_mode_message, &want.message) {
                self.warn(
                    &address,
                    format!(
                        "the backend cannot read or set the administration-mode sign-in message (no public API): crmctl does not manage it here; set it by hand to: {m}"
                    ),
                    "I10",
                );
            }
            if self.t.unreadable.admin_mode_message {
                cur.message = want.message.clone();
            }
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
        // I13: extra notification recipients, exact when given. A backend that cannot read
        // them (issue 13 item 4: no public API) leaves them to a person, and the plan says so.
        if let (Some(list), true) = (
            &di.notification_recipients,
            self.t.unreadable.notification_recipients,
        ) {
            self.warn(
                &address,
                format!(
                    "the backend cannot read the extra update notification recipients (no public API): crmctl does not manage them here; set them by hand to: {}",
                    if list.is_empty() { "none".to_string() } else { list.join(", ") }
                ),
                "I13",
            );
        } else if let Some(list) = &di.notification_recipients {
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
        // U2-U4: update approval. A backend that cannot read approvals nor the versions
        // offered (issue 13 item 4: no public API) leaves them to a person, and says so.
        if let (Some(u), true) = (&di.update, self.t.unreadable.updates) {
            self.warn(
                &address,
                format!(
                    "the backend cannot read update approvals (no public API): crmctl does not manage them here; approve the update to {} by hand (preferred {}, alternate {})",
                    u.target_version, u.preferred, u.alternate
                ),
                "U3",
            );
            return;
        }
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

    /// I4: nothing changes an instance that is provisioning, nor one that is disabled
    /// (except its deletion or reset, which the service allows on a disabled one). Every
    /// action of the plan that would is reported, once per instance, as an error: a plan
    /// with errors applies nothing, so no purchase runs for a plan the service would stop
    /// halfway.
    #[inline(never)] // a phase: shows in profiles
    pub(super) fn instance_status(&mut self) {
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
