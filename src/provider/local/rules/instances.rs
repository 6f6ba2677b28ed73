//! Instances: configure, rename, switch, copy, reset, delete: I2, I4-I9, I11, I12.

use std::collections::BTreeSet;

use crate::domain::kinds::InstanceType;
use crate::domain::op::{ObjRef, Op};
use crate::domain::syntax::{cmp_version, is_currency_syntax, is_url_name};
use crate::observed::{AdminModeState, Instance, InstanceStatus, Tenant};
use crate::provider::local::delta::{Counters, Delta};
use crate::provider::{Outcome, ProviderError};

use super::{editable, id_of, instance, meta_with, not_mine, refused, Effect};

/// Check an instance op against the tenant and compute what it writes.
pub(super) fn effect(t: &Tenant, counters: Counters, op: &Op) -> Result<Effect, ProviderError> {
    match op {
        Op::ConfigureInstance {
            name,
            url,
            kind,
            purpose,
            region,
            currency,
            language,
            security_group,
        } => {
            if name.trim().is_empty() {
                return Err(ProviderError::Invalid(
                    "an instance needs a friendly name".into(),
                ));
            }
            check_url(t, url, None)?;
            check_currency(currency)?;
            check_language(*language)?;
            if t.free_slots(*kind) == 0 {
                return Err(refused(
                    "I2",
                    format!(
                        "no {} slot is ready to configure ({} of {} in use); buy one first (purchase_instance)",
                        kind.as_str(),
                        t.used_slots(*kind),
                        t.total_slots(*kind)
                    ),
                ));
            }
            let group_id = match security_group {
                Some(g) => Some(bind_target(t, g)?),
                None => None,
            };
            let mut c = counters;
            c.instance += 1;
            let id = format!("org-{:06}", c.instance);
            let inst = Instance {
                id: id.clone(),
                name: name.clone(),
                url: url.clone(),
                kind: *kind,
                slot: *kind,
                purpose: purpose.clone(),
                region: *region,
                currency: currency.clone(),
                language: *language,
                security_group: group_id,
                status: InstanceStatus::Ready,
                version: newest(t),
                admin_mode: AdminModeState::default(),
                notification_recipients: vec![],
                update: None,
            };
            Ok(Effect {
                deltas: vec![meta_with(t, c, |_| {}), Delta::PutInstance(Box::new(inst))],
                outcome: Outcome {
                    created_id: Some(id),
                    ..Outcome::default()
                },
            })
        }
        Op::UpdateInstance {
            instance: r,
            name,
            url,
            purpose,
            security_group,
        } => {
            let i = instance(t, r)?;
            editable(i, "name, URL name, purpose or security group")?;
            let mut ni = i.clone();
            if let Some(n) = name {
                if n.trim().is_empty() {
                    return Err(ProviderError::Invalid(
                        "an instance needs a friendly name".into(),
                    ));
                }
                ni.name = n.clone();
            }
            if let Some(u) = url {
                if *u != i.url {
                    check_url(t, u, Some(&i.id))?;
                }
                ni.url = u.clone();
            }
            if let Some(p) = purpose {
                ni.purpose = p.clone();
            }
            match security_group {
                None => {}
                Some(None) => ni.security_group = None,
                Some(Some(g)) => ni.security_group = Some(bind_target(t, g)?),
            }
            if &ni == i {
                return Ok(Effect::none());
            }
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        Op::SwitchInstance { instance: r, to } => {
            let i = instance(t, r)?;
            if i.kind == *to {
                return Ok(Effect::none());
            }
            editable(i, "switch")?;
            let mut ni = i.clone();
            ni.kind = *to;
            match to {
                InstanceType::Sandbox => {
                    // I7: a production instance still in a sandbox slot (switched out of
                    // band) switches back into it.
                    if t.free_slots(InstanceType::Sandbox) > 0 || i.slot == InstanceType::Sandbox {
                        ni.slot = InstanceType::Sandbox;
                    } else if t.free_slots(InstanceType::Production) > 0 {
                        ni.slot = InstanceType::Production;
                    } else {
                        return Err(refused(
                            "I7",
                            format!(
                                "switching `{}` to sandbox needs a free sandbox slot (or another free production slot); buy a sandbox slot first",
                                i.url
                            ),
                        ));
                    }
                }
                InstanceType::Production => {
                    if i.admin_mode.enabled {
                        return Err(refused(
                            "I10",
                            format!("`{}` is in administration mode, which exists only for sandboxes; turn it off before switching to production", i.url),
                        ));
                    }
                    let free = t.free_slots(InstanceType::Production)
                        + u32::from(i.slot == InstanceType::Production);
                    if free == 0 {
                        return Err(refused(
                            "I7",
                            format!("switching `{}` to production needs a free production slot; buy one first", i.url),
                        ));
                    }
                    ni.slot = InstanceType::Production;
                }
            }
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        Op::ResetInstance {
            instance: r,
            currency,
            language,
        } => {
            let i = instance(t, r)?;
            if i.kind != InstanceType::Sandbox {
                return Err(refused(
                    "I9",
                    format!("only sandboxes can be reset; `{}` is production", i.url),
                ));
            }
            if i.status == InstanceStatus::Provisioning {
                return Err(refused("I4", format!("`{}` is still provisioning", i.url)));
            }
            check_currency(currency)?;
            check_language(*language)?;
            // I9: factory settings; currency and language chosen again; region kept (I6).
            let mut ni = i.clone();
            ni.currency = currency.clone();
            ni.language = *language;
            ni.version = newest(t);
            ni.update = None;
            ni.admin_mode = AdminModeState::default();
            ni.status = InstanceStatus::Ready;
            // Factory settings: the security roles held in the instance are gone too.
            let mut deltas = vec![Delta::PutInstance(Box::new(ni))];
            for u in t.users.values().filter(|u| u.roles.contains_key(&i.id)) {
                deltas.push(Delta::SetRoles(u.id.clone(), i.id.clone(), BTreeSet::new()));
            }
            Ok(Effect::of(deltas))
        }
        Op::BackupInstance { instance: r, label } => {
            // Issue 13 item 3: a backup of a ready (or disabled) instance; none while it
            // is provisioning (I4: nothing to back up yet).
            let i = instance(t, r)?;
            if i.status == InstanceStatus::Provisioning {
                return Err(refused(
                    "I4",
                    format!(
                        "`{}` is still provisioning; it cannot be backed up yet",
                        i.url
                    ),
                ));
            }
            if label.trim().is_empty() {
                return Err(ProviderError::Invalid("a backup needs a label".into()));
            }
            let mut c = counters;
            c.backup += 1;
            let id = format!("bak-{:06}", c.backup);
            Ok(Effect {
                deltas: vec![
                    meta_with(t, c, |_| {}),
                    Delta::PutBackup(id.clone(), i.id.clone(), label.clone()),
                ],
                outcome: Outcome::default().with_id("backup", id),
            })
        }
        Op::DeleteInstance { instance: r } => {
            let i = instance(t, r)?;
            if i.kind != InstanceType::Sandbox {
                return Err(refused(
                    "I8",
                    format!(
                        "`{}` is a production instance; switch it to sandbox before deleting it",
                        i.url
                    ),
                ));
            }
            if i.status == InstanceStatus::Provisioning {
                return Err(refused("I4", format!("`{}` is still provisioning", i.url)));
            }
            // I2: the slot goes back to "ready to configure" (the instance row disappears).
            Ok(Effect::of(vec![Delta::DelInstance(i.id.clone())]))
        }
        Op::CopyInstance {
            source,
            target,
            kind: _,
        } => {
            let s = instance(t, source)?;
            let d = instance(t, target)?;
            if s.id == d.id {
                return Err(ProviderError::Invalid(format!(
                    "cannot copy instance `{}` onto itself",
                    s.url
                )));
            }
            if d.kind != InstanceType::Sandbox {
                return Err(refused(
                    "I11",
                    format!(
                        "copy target `{}` is a production instance; a copy lands only on a sandbox",
                        d.url
                    ),
                ));
            }
            if s.status == InstanceStatus::Provisioning {
                return Err(refused(
                    "I4",
                    format!("copy source `{}` is still provisioning", s.url),
                ));
            }
            editable(d, "copy onto it")?;
            if s.region != d.region {
                return Err(refused(
                    "I6",
                    format!(
                        "a copy lands in the source's region: `{}` is in {} but target `{}` is in {}",
                        s.url,
                        s.region.as_str(),
                        d.url,
                        d.region.as_str()
                    ),
                ));
            }
            let mut ni = d.clone();
            // The target's database is replaced by the source's: version, currency and
            // language come along; the target ends in administration mode with background
            // operations off (I11).
            ni.version = s.version.clone();
            ni.currency = s.currency.clone();
            ni.language = s.language;
            ni.update = None;
            ni.admin_mode = AdminModeState {
                enabled: true,
                background_operations: false,
                message: None,
            };
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        _ => Err(not_mine(op, "instance")),
    }
}

fn check_url(t: &Tenant, url: &str, except: Option<&str>) -> Result<(), ProviderError> {
    if !is_url_name(url) {
        return Err(refused(
            "I5",
            format!("URL name `{url}` is invalid: use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'"),
        ));
    }
    if let Some(other) = t
        .instances
        .values()
        // I5: URL names are host name labels, unique without regard to case (issue 9
        // item 2): an instance stored as `Sales` keeps `sales` taken.
        .find(|i| i.url.eq_ignore_ascii_case(url) && Some(i.id.as_str()) != except)
    {
        return Err(refused(
            "I5",
            format!(
                "URL name `{url}` is already used by instance `{}` ({})",
                other.name, other.id
            ),
        ));
    }
    Ok(())
}

fn check_currency(c: &str) -> Result<(), ProviderError> {
    if is_currency_syntax(c) {
        Ok(())
    } else {
        Err(ProviderError::Invalid(format!(
            "currency `{c}` is not an ISO 4217 code (three capital letters, e.g. USD)"
        )))
    }
}

fn check_language(l: u32) -> Result<(), ProviderError> {
    if l == 0 {
        Err(ProviderError::Invalid(
            "language LCID 0 is not a language (e.g. 1033 for English)".into(),
        ))
    } else {
        Ok(())
    }
}

/// I12: the group to bind must exist.
fn bind_target(t: &Tenant, g: &ObjRef) -> Result<String, ProviderError> {
    let id = id_of(g)?;
    if t.groups.contains_key(id) {
        Ok(id.to_string())
    } else {
        Err(refused(
            "I12",
            format!(
                "security group {} (id {id}) does not exist; create it before binding it",
                g.address
            ),
        ))
    }
}

fn newest(t: &Tenant) -> String {
    t.versions
        .iter()
        .max_by(|a, b| cmp_version(a, b))
        .cloned()
        .unwrap_or_else(|| {
            crate::observed::KNOWN_VERSIONS[crate::observed::KNOWN_VERSIONS.len() - 1].to_string()
        })
}
