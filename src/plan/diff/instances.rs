//! Instances: the phase that orders every instance change (removed, switched, new, kept,
//! copied; I2, I7, I8, I11), and the per-instance steps later phases depend on.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{ch, HashMap, Planner};
use crate::desired::model as m;
use crate::domain::kinds::{InstanceType, Region};
use crate::domain::limits::LICENSES_FOR_INCLUDED_SANDBOX;
use crate::domain::op::{ActionKind, ObjKind, ObjRef, Op};
use crate::observed as t;
use crate::plan::capacity::SlotPool;

/// Per desired instance.
#[derive(Debug, Clone, Default)]
pub(super) struct InstSteps<'a> {
    pub(super) obs: Option<&'a t::Instance>,
    /// Configure or adopt.
    pub(super) ready: Option<usize>,
    /// The last action that replaces the content (configure, copy, reset).
    pub(super) content: Option<usize>,
    /// Switch between production and sandbox (I7).
    pub(super) switch: Option<usize>,
    /// The update_instance that changes the URL (I5).
    pub(super) url_update: Option<usize>,
    /// Roles are wiped (reset) or the instance is new: observed roles do not count.
    pub(super) roles_wiped: bool,
    /// `--replace` of an existing sandbox with `copy_from`: copied again (I11).
    pub(super) recopy: bool,
    /// Adopted by URL name while the state holds the pending create an earlier (killed)
    /// run started for this address: the instance is the one crmctl is creating, so what
    /// happens on creation (the copy, I11) still happens (issue 13 item 2).
    pub(super) resumed_create: bool,
}

impl<'a> Planner<'a> {
    /// The instances of the file against the tenant's, in an order that keeps every slot
    /// rule at every moment: removed ones go first (they free slots), then switches, then
    /// new ones; then edits of kept ones, copies onto new sandboxes, settings, URL names.
    #[inline(never)] // a phase: shows in profiles
    pub(super) fn instances(&mut self) {
        static NONE: BTreeMap<String, m::Instance> = BTreeMap::new();
        let desired: &'a BTreeMap<String, m::Instance> = self.d.instances.as_ref().unwrap_or(&NONE);
        let mut pool = SlotPool::new(
            self.t,
            self.mid_pro_enterprise(),
            self.final_pro_enterprise(),
            &self.pro_enterprise_purchases(),
        );
        let mut url_release: HashMap<&'a str, usize> = HashMap::default();
        // 1. Removed, 2. switched, 3. new instances, in an order that keeps a slot free
        // for each (I2, I7, T6; the slot steps are in `slots.rs`).
        let lingering_uses = self.delete_gone_instances(desired, &mut pool, &mut url_release);
        self.switch_kept_instances(desired, &mut pool);
        self.configure_new_instances(desired, &mut pool);
        self.keep_sandboxes_in_slots(desired, &mut pool, lingering_uses);

        // `--replace` of an instance that is not there to replace.
        self.check_replaced(desired);

        // 4. Kept instances: reset, edits (`instance_edits.rs`).
        for (key, di) in desired {
            if let Some(o) = self.insts[key.as_str()].obs {
                self.existing_instance(key, di, o);
            }
        }

        // 5. Copies onto new sandboxes (I11).
        self.copies(desired);

        // 6. Administration mode, notification recipients, update approval (`settings.rs`).
        for (key, di) in desired {
            self.instance_settings(key, di);
        }

        // 7. URL names stay unique at every moment (I5).
        self.url_order(desired, url_release);
    }

    /// Instances removed from the file: sandboxes first (they free slots), then production
    /// ones, which are switched to sandbox first (I8).
    fn delete_gone_instances(
        &mut self,
        desired: &'a BTreeMap<String, m::Instance>,
        pool: &mut SlotPool,
        url_release: &mut HashMap<&'a str, usize>,
    ) -> Vec<usize> {
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
                    self.slot_for_sandbox(pool, address)
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
                    self.release_slot(pool, o.slot, sw);
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
                self.release_slot(pool, slot_now, del);
            }
            url_release.insert(&o.id, del);
            self.unbinds.insert(&o.id, del);
        }
        lingering_uses
    }

    /// Switches of kept instances (I7): to sandbox first (they free production slots).
    fn switch_kept_instances(
        &mut self,
        desired: &'a BTreeMap<String, m::Instance>,
        pool: &mut SlotPool,
    ) {
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
                let (deps, s) = self.slot_for_sandbox(pool, &address);
                slot = s;
                deps
            } else {
                self.take_slot(
                    pool,
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
                self.release_slot(pool, o.slot, sw);
            }
            self.insts.get_mut(key).expect("desired").switch = Some(sw);
        }
    }

    /// New instances: configure a free slot, bought when none is free (I2).
    fn configure_new_instances(
        &mut self,
        desired: &'a BTreeMap<String, m::Instance>,
        pool: &mut SlotPool,
    ) {
        for (key, di) in desired {
            if self.insts[key.as_str()].obs.is_some() {
                continue;
            }
            let address = format!("instances.{key}");
            let deps = self.take_slot(pool, di.kind, &address, "no free slot to configure");
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
                self.sandbox.takers.push(c);
            }
            let s = self.insts.get_mut(key.as_str()).expect("desired");
            s.ready = Some(c);
            s.content = Some(c);
            s.roles_wiped = true;
        }
    }

    /// T6: a license reduction below 25 Professional + Enterprise loses the included sandbox
    /// slot; sandboxes that keep occupying it need a bought slot, bought while the licenses are
    /// still there (the reduction waits for every slot purchase, T5). An overcommit the tenant
    /// already had (licenses lowered earlier) is left as is unless this plan lowers the
    /// licenses again (then every sandbox must fit).
    fn keep_sandboxes_in_slots(
        &mut self,
        desired: &'a BTreeMap<String, m::Instance>,
        pool: &mut SlotPool,
        lingering_uses: Vec<usize>,
    ) {
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
            let why = format!("the included sandbox slot is lost when Professional + Enterprise licenses drop below {LICENSES_FOR_INCLUDED_SANDBOX} (T6), and this sandbox keeps its slot");
            while pool.debt(InstanceType::Sandbox) > before {
                let Some(a) = self.buy_slot(pool, InstanceType::Sandbox, &address, &why) else {
                    break;
                };
                pool.release(InstanceType::Sandbox, a);
            }
        }
        // The reduction runs once the sandboxes fit in the slots left (T6).
        self.sandbox.debt_paid = pool.paid(InstanceType::Sandbox).to_vec();
        self.sandbox.debt_paid.extend(lingering_uses);
    }

    /// Copies onto new sandboxes (I11).
    fn copies(&mut self, desired: &'a BTreeMap<String, m::Instance>) {
        for (key, di) in desired {
            let Some(cf) = &di.copy_from else { continue };
            let address = format!("instances.{key}");
            let recopy = self.insts[key.as_str()].recopy;
            let resumed_create = self.insts[key.as_str()].resumed_create;
            // The copy an earlier run started and left pending (killed while it ran): the
            // action is planned again so that apply polls that operation to its end and
            // records it; it is never started twice (issue 13 item 2).
            let resumed_copy = self
                .s
                .pending
                .get(&address)
                .is_some_and(|p| p.kind == ActionKind::CopyInstance);
            if self.insts[key.as_str()].obs.is_some() && !recopy && !resumed_create && !resumed_copy
            {
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
                    format!("`copy_from` acts only when the instance is created: `instances.{key}` exists, so nothing is copied from `{}`. To refresh it from `{}`, run `crmctl apply --replace instances.{key} --allow-destroy` (it is copied again, its data destroyed)", cf.instance, cf.instance),
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
            let mut target = self.inst_ref(key);
            if resumed_create {
                // Like a new instance's: the id comes from the state once the adoption
                // that waits for the pending create recorded it.
                target.id = None;
            }
            let ready = self.insts[key.as_str()].ready;
            let switch = self.insts[key.as_str()].switch;
            let a = self.push(
                ActionKind::CopyInstance,
                address,
                Op::CopyInstance { source, target, kind: cf.kind },
                vec![
                    ch("copy_from", Value::Null, json!(cf.instance)),
                    ch("copy_kind", Value::Null, json!(cf.kind)),
                ],
                if recopy {
                    "--replace: copy the source onto the sandbox again; its previous application and data are destroyed, and it ends in administration mode with background operations off (I11)"
                } else {
                    "copy onto the new sandbox; it ends in administration mode with background operations off (I11)"
                },
                [ready, src_content, switch],
            );
            let s = self.insts.get_mut(key.as_str()).expect("desired");
            s.content = Some(a);
            if recopy {
                // I11: the copy brings the source's users and roles; what the file wants
                // is assigned again after it. Destructive: it overwrites an instance.
                s.roles_wiped = true;
                self.drafts[a].destructive = true;
            }
        }
    }

    /// `--replace` (issue 14 item 4) of an instance the file does not declare, or that the
    /// tenant does not hold yet: nothing to re-create.
    fn check_replaced(&mut self, desired: &'a BTreeMap<String, m::Instance>) {
        for address in self.replace {
            let Some(key) = address.strip_prefix("instances.") else {
                continue;
            };
            let problem = match desired.get(key) {
                None => Some(format!("--replace {address}: the file does not declare it, so it cannot be created again")),
                Some(_) if self.insts[key].obs.is_none() => Some(format!("--replace {address}: the tenant has no such instance yet; this plan creates it, there is nothing to replace")),
                Some(_) => None,
            };
            if let Some(message) = problem {
                self.error(address, message, "I9", Some("drop this --replace".into()));
            }
        }
    }
}
