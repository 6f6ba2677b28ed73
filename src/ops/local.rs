//! The `local` commands' changes to the embedded local tenant, made behind crmctl's back
//! (what an administrator would do in the admin center, to simulate drift): no service
//! rule is checked, only that references stay valid (the provider checks that).

use crate::domain::kinds::{AccessMode, AdminRole, InstanceType, LicensePlan, Region};
use crate::observed::{Group, InstanceStatus, Tenant, UpdatePhase, UpdateState, User};
use crate::ops::backend::{open_local_existing, BackendSpec};
use crate::ops::OpsError;

/// Open the local tenant `spec` names, which must exist (issue 9 item 4: a mistyped path
/// is refused, not made a new tenant), and change it with `edit` ([`set`], [`add`],
/// [`delete`]) in one write transaction that sees the file's current content. The change is
/// recorded as made by `actor` ([`actor`]; issue 14 item 2).
pub fn change(
    spec: &BackendSpec,
    actor: &str,
    edit: impl FnOnce(&mut Tenant) -> Result<(), String>,
) -> Result<(), OpsError> {
    let p = open_local_existing(spec)?;
    p.set_actor(actor);
    Ok(p.admin_update(edit)?)
}

/// Who an admin edit of the local tenant is recorded as (issue 14 item 2): `by` (`--by`)
/// when given, else `crmctl local (USER)`. A name with control or bidi characters is
/// refused, as the file's names are.
pub fn actor(by: Option<&str>) -> Result<String, OpsError> {
    match by {
        None => Ok(crate::provider::local::default_actor("crmctl local")),
        Some(b) if b.trim().is_empty() => Err(OpsError::Invalid("--by: an empty name".into())),
        Some(b) => match crate::domain::escape::first_unsafe(b) {
            Some(c) => Err(OpsError::Invalid(format!(
                "--by: the name holds the character {}, which crmctl does not accept in names",
                crate::domain::escape::escape_char(c)
            ))),
            None => Ok(b.trim().to_string()),
        },
    }
}

/// Parse a snake_case / kebab-case enum value the way files spell it.
fn parse_enum<T: serde::de::DeserializeOwned>(what: &str, v: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(v.to_string()))
        .map_err(|_| format!("`{v}` is not a valid {what}"))
}

fn parse_num<T: std::str::FromStr>(what: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("`{v}` is not a valid {what} (a number)"))
}

fn on_off(v: &str) -> Result<bool, String> {
    match v {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("`{v}`: expected on or off")),
    }
}

fn list(v: &str) -> Vec<String> {
    if v == "none" || v.is_empty() {
        vec![]
    } else {
        v.split(',').map(|s| s.trim().to_string()).collect()
    }
}

fn find_user<'t>(t: &'t mut Tenant, key: &str) -> Result<&'t mut User, String> {
    let id = t
        .users
        .values()
        .find(|u| u.upn.eq_ignore_ascii_case(key) || u.id == key)
        .map(|u| u.id.clone())
        .ok_or_else(|| format!("no user `{key}` (give a UPN or a user id)"))?;
    Ok(t.users.get_mut(&id).expect("found above"))
}

fn user_id(t: &Tenant, key: &str) -> Result<String, String> {
    t.users
        .values()
        .find(|u| u.upn.eq_ignore_ascii_case(key) || u.id == key)
        .map(|u| u.id.clone())
        .ok_or_else(|| format!("no user `{key}` (give a UPN or a user id)"))
}

fn group_id(t: &Tenant, key: &str) -> Result<String, String> {
    if t.groups.contains_key(key) {
        return Ok(key.to_string());
    }
    // Display names compared without regard to case, as the service does (issue 9 item 2).
    let found: Vec<&Group> = t
        .groups
        .values()
        .filter(|g| crate::domain::ident::same(&g.name, key))
        .collect();
    match found.as_slice() {
        [g] => Ok(g.id.clone()),
        [] => Err(format!(
            "no security group named `{key}` (give a name or a group id)"
        )),
        many => Err(format!(
            "several groups are named `{key}` ({}); give the group id",
            many.iter()
                .map(|g| g.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn instance_id(t: &Tenant, key: &str) -> Result<String, String> {
    t.instances
        .values()
        .find(|i| i.url.eq_ignore_ascii_case(key) || i.id == key)
        .map(|i| i.id.clone())
        .ok_or_else(|| {
            format!("no instance with URL name `{key}` (give a URL name or an instance id)")
        })
}

const SET_USAGE: &str =
    "expected e.g. `instance URL status provisioning`, `user UPN license none`, \
`group NAME description TEXT`, `licenses professional 10`, `storage used-gb 4.5`, \
`slots sandbox 2`, `trial true`, `domain coho.onmicrosoft.com` (see `crmctl local set --help`)";

/// Apply `crmctl local set WORDS...` to a tenant.
pub fn set(t: &mut Tenant, words: &[String]) -> Result<(), String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["instance", key, field, value] => {
            let id = instance_id(t, key)?;
            let groups = t.groups.clone();
            let versions = t.versions.clone();
            let i = t.instances.get_mut(&id).expect("found above");
            match *field {
                "status" => {
                    i.status = parse_enum::<InstanceStatus>(
                        "status (provisioning, ready, disabled)",
                        value,
                    )?
                }
                "name" => i.name = value.to_string(),
                "purpose" => i.purpose = value.to_string(),
                "url" => i.url = value.to_string(),
                "type" => i.kind = parse_enum::<InstanceType>("type (production, sandbox)", value)?,
                "slot" => i.slot = parse_enum::<InstanceType>("slot (production, sandbox)", value)?,
                "region" => i.region = parse_enum::<Region>("region (NA, EMEA, ...)", value)?,
                "currency" => i.currency = value.to_string(),
                "language" => i.language = parse_num("language LCID", value)?,
                "version" => i.version = value.to_string(),
                "security-group" => {
                    i.security_group = if *value == "none" {
                        None
                    } else {
                        let t2 = Tenant {
                            groups,
                            ..Tenant::default()
                        };
                        Some(group_id(&t2, value)?)
                    }
                }
                "update" => {
                    if *value == "none" {
                        i.update = None;
                    } else {
                        let phase = parse_enum::<UpdatePhase>(
                            "update phase (available, scheduled, approved, in_progress, updated)",
                            value,
                        )?;
                        let target = versions.last().cloned().unwrap_or_default();
                        let u = i.update.get_or_insert(UpdateState {
                            target_version: target,
                            preferred: String::new(),
                            alternate: String::new(),
                            state: phase,
                        });
                        u.state = phase;
                        if phase == UpdatePhase::Updated {
                            i.version = u.target_version.clone();
                        }
                    }
                }
                "admin-mode" => i.admin_mode.enabled = on_off(value)?,
                "background-operations" => i.admin_mode.background_operations = on_off(value)?,
                other => return Err(format!("unknown instance field `{other}`; {SET_USAGE}")),
            }
        }
        ["user", key, field, value] => {
            let u = find_user(t, key)?;
            match *field {
                "license" => {
                    u.license = if *value == "none" {
                        None
                    } else {
                        Some(parse_enum::<LicensePlan>("license plan", value)?)
                    }
                }
                "access-mode" => u.access_mode = parse_enum::<AccessMode>("access mode", value)?,
                "name" => u.name = value.to_string(),
                "upn" => u.upn = value.to_string(),
                // Issue 12 item 4: a user synchronised from on-premises (P1), and its
                // usage location (`none` clears it).
                "synced" => u.synced = on_off(value)?,
                "usage-location" => {
                    u.usage_location = (*value != "none").then(|| value.to_string())
                }
                "admin-roles" => {
                    u.admin_roles = list(value)
                        .iter()
                        .map(|r| parse_enum::<AdminRole>("admin role", r))
                        .collect::<Result<_, _>>()?
                }
                other => return Err(format!("unknown user field `{other}`; {SET_USAGE}")),
            }
        }
        ["group", key, field, value] => {
            let id = group_id(t, key)?;
            let members = if *field == "members" {
                list(value)
                    .iter()
                    .map(|m| user_id(t, m))
                    .collect::<Result<_, _>>()?
            } else {
                Default::default()
            };
            let g = t.groups.get_mut(&id).expect("found above");
            match *field {
                "name" => g.name = value.to_string(),
                "description" => g.description = value.to_string(),
                "members" => g.members = members,
                other => return Err(format!("unknown group field `{other}`; {SET_USAGE}")),
            }
        }
        ["licenses", plan, count] => {
            let plan = parse_enum::<LicensePlan>("license plan", plan)?;
            let n: u32 = parse_num("license count", count)?;
            if n == 0 {
                t.licenses.remove(&plan);
            } else {
                t.licenses.insert(plan, n);
            }
        }
        ["storage", "additional-gb", n] => t.storage.additional_gb = parse_num("size in GB", n)?,
        ["storage", "used-gb", n] => t.storage.used_gb = parse_num("size in GB", n)?,
        ["slots", kind, n] => match parse_enum::<InstanceType>("slot kind", kind)? {
            InstanceType::Production => t.slots.production = parse_num("slot count", n)?,
            InstanceType::Sandbox => t.slots.sandbox = parse_num("slot count", n)?,
        },
        ["trial", v] => t.trial = on_off(v)?,
        ["domain", d] => t.domain = d.to_string(),
        _ => {
            return Err(format!(
                "cannot understand `{}`; {SET_USAGE}",
                words.join(" ")
            ))
        }
    }
    Ok(())
}

fn next_id(prefix: &str, existing: impl Iterator<Item = String>) -> String {
    let n = existing
        .filter_map(|id| id.strip_prefix(prefix).and_then(|n| n.parse::<u64>().ok()))
        .max()
        .unwrap_or(0);
    format!("{prefix}{:06}", n + 1)
}

/// Apply `crmctl local add WORDS...`.
pub fn add(t: &mut Tenant, words: &[String]) -> Result<(), String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["user", upn] | ["user", upn, _] => {
            if t.users.values().any(|u| u.upn.eq_ignore_ascii_case(upn)) {
                return Err(format!("a user `{upn}` already exists"));
            }
            let id = next_id("usr-", t.users.keys().cloned());
            let name = w.get(2).map(|s| s.to_string()).unwrap_or_default();
            t.users.insert(
                id.clone(),
                User {
                    id,
                    upn: upn.to_string(),
                    name,
                    license: None,
                    access_mode: AccessMode::ReadWrite,
                    roles: Default::default(),
                    admin_roles: Default::default(),
                    usage_location: None,
                    synced: false,
                    application_id: None,
                },
            );
        }
        ["group", name] => {
            let id = next_id("grp-", t.groups.keys().cloned());
            t.groups.insert(
                id.clone(),
                Group {
                    id,
                    name: name.to_string(),
                    ..Group::default()
                },
            );
        }
        _ => return Err("expected `user UPN [NAME]` or `group NAME`".to_string()),
    }
    Ok(())
}

/// Apply `crmctl local delete KIND KEY`.
pub fn delete(t: &mut Tenant, words: &[String]) -> Result<(), String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["user", key] => {
            let id = user_id(t, key)?;
            t.users.remove(&id);
            for g in t.groups.values_mut() {
                g.members.remove(&id);
            }
        }
        ["group", key] => {
            let id = group_id(t, key)?;
            t.groups.remove(&id);
            for i in t.instances.values_mut() {
                if i.security_group.as_deref() == Some(id.as_str()) {
                    i.security_group = None;
                }
            }
        }
        ["instance", key] => {
            let id = instance_id(t, key)?;
            t.instances.remove(&id);
            for u in t.users.values_mut() {
                u.roles.remove(&id);
            }
        }
        _ => return Err("expected `user UPN`, `group NAME` or `instance URL`".to_string()),
    }
    Ok(())
}
