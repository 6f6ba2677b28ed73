//! Security groups (I12): create, update, delete (after every instance let go of them).
//! Their members are in `memberships.rs`.

use serde_json::{json, Value};

use super::{ch, empty, Planner};
use crate::domain::op::{ActionKind, ObjKind, ObjRef, Op};

impl<'a> Planner<'a> {
    #[inline(never)] // a phase: shows in profiles
    pub(super) fn groups(&mut self) {
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

    #[inline(never)] // a phase: shows in profiles
    pub(super) fn delete_groups(&mut self) {
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
}
