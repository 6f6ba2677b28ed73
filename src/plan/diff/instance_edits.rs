//! Kept instances: resets (I3, I9), edits of name, URL, purpose and security group (I4,
//! I12), and the order of URL name changes (I5).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{ch, HashMap, HashSet, Planner};
use crate::desired::model as m;
use crate::domain::ident;
use crate::domain::kinds::InstanceType;
use crate::domain::op::{ActionKind, ObjRef, Op};
use crate::observed as t;

impl<'a> Planner<'a> {
    /// The group an instance binds, and what the binding waits for (I12).
    pub(super) fn group_binding(
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
            vec![b.ready, self.mem.added.get(key).copied()],
        )
    }

    pub(super) fn existing_instance(&mut self, key: &'a str, di: &m::Instance, o: &'a t::Instance) {
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
        // `--replace` (issue 14 item 4): a sandbox is copied again from its `copy_from`
        // source (I11, in `copies`) or reset (I9, below); nothing else can be re-created.
        let replacing = self.replace.contains(&address);
        let mut reset_for_replace = false;
        if replacing {
            if di.kind != InstanceType::Sandbox {
                self.error(
                    &address,
                    "--replace: a production instance cannot be re-created: only a sandbox can be reset (I9) or copied onto (I11), and only a sandbox can be deleted (I8)".into(),
                    "I9",
                    Some("make it a sandbox in the file (`type: sandbox`) and apply first, or drop this --replace".into()),
                );
            } else if protect {
                self.error(
                    &if di.protect {
                        format!("{address}.protect")
                    } else {
                        address.clone()
                    },
                    "--replace: the instance is protected, and re-creating it destroys its data (I9, I11)".into(),
                    "I9",
                    Some("set `protect: false` to allow the replacement".into()),
                );
            } else if di.copy_from.is_some() {
                self.insts.get_mut(key).expect("desired").recopy = true;
            } else {
                reset_for_replace = true;
            }
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
                reset_for_replace = false; // this reset is the replacement
            }
        }
        if reset_for_replace {
            let iref = self.inst_ref(key);
            let r = self.push(
                ActionKind::ResetInstance,
                address.clone(),
                Op::ResetInstance {
                    instance: iref,
                    currency: o.currency.clone(),
                    language: o.language,
                },
                vec![ch("replace", Value::Null, json!("reset"))],
                "--replace: a reset deletes the sandbox's data and re-provisions it to factory settings, same currency and language (I9)",
                [steps.ready, steps.switch],
            );
            let s = self.insts.get_mut(key).expect("desired");
            s.content = Some(r);
            s.roles_wiped = true;
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

    /// I5: a URL name is taken only after its holder let it go; rename cycles go through a
    /// temporary URL name.
    pub(super) fn url_order(
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
