//! `crmctl import` and `crmctl show` (issue 14 item 1): the observed tenant written as a
//! desired file in the documented format (`desired::model`), and the state that maps each
//! of its addresses to the remote object, so that `plan` right after shows no changes.
//!
//! The conversion ([`to_desired`]) is pure and deterministic: keys derived from natural
//! names (users by UPN, instances by URL name, groups by a slug of the display name made
//! unique without case, `domain::ident`), every map a `BTreeMap`. The workflow ([`run`])
//! reads the tenant through `Provider::observe` under the state lock, like `plan`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::desired::model::{self, Desired};
use crate::domain::ident;
use crate::domain::kinds::InstanceType;
use crate::domain::op::ObjKind;
use crate::observed::{InstanceStatus, Tenant, UpdatePhase};
use crate::ops::backend::{open_existing, BackendSpec};
use crate::ops::session::{Operation, Session, Warn};
use crate::ops::OpsError;
use crate::state::store::StateWriter;
use crate::state::Resource;

/// The parts of a tenant `--only` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// Purchased licence counts (`licenses`).
    Licenses,
    /// Storage add-on (`storage`).
    Storage,
    /// Users (`users`).
    Users,
    /// Security groups (`security_groups`).
    Groups,
    /// Instances (`instances`).
    Instances,
}

impl Part {
    /// Every part, in file order.
    pub const ALL: [Part; 5] = [
        Part::Licenses,
        Part::Storage,
        Part::Users,
        Part::Groups,
        Part::Instances,
    ];

    /// Parse a name of `--only` (`users`, `groups` or `security_groups`, ...).
    pub fn parse(s: &str) -> Result<Part, String> {
        Ok(match s.trim() {
            "licenses" | "licences" => Part::Licenses,
            "storage" => Part::Storage,
            "users" => Part::Users,
            "groups" | "security_groups" => Part::Groups,
            "instances" => Part::Instances,
            other => {
                return Err(format!(
                    "unknown kind `{other}`: use licenses, storage, users, groups or instances"
                ))
            }
        })
    }
}

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The parts (`--only`); empty: all.
    pub only: BTreeSet<Part>,
    /// Instance keys (`--instance`, i.e. URL names, without case); empty: all.
    pub instances: Vec<String>,
}

impl Selection {
    fn has(&self, p: Part) -> bool {
        self.only.is_empty() || self.only.contains(&p)
    }
}

/// Where a comment goes in the YAML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// Above the whole file.
    Top,
    /// Above `storage:`.
    Storage,
    /// Above a user entry.
    User(String),
    /// Above a security group entry.
    Group(String),
    /// Above an instance entry.
    Instance(String),
}

/// The tenant as a desired file, with the state entries and the comments on what the file
/// cannot manage.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The desired file.
    pub desired: Desired,
    /// Address -> remote object, for every object of the file.
    pub resources: BTreeMap<String, Resource>,
    /// Comments (YAML only), in a fixed order.
    pub notes: Vec<(Anchor, String)>,
}

/// A key for a group from its display name: lower case ASCII letters, digits and `-`.
fn slug(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
    }
    while s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() {
        s.push_str("group");
    }
    s
}

/// The tenant as a desired file (pure, deterministic).
pub fn to_desired(t: &Tenant, sel: &Selection) -> Result<Imported, OpsError> {
    let mut notes = Vec::new();
    let mut resources = BTreeMap::new();
    // Instances chosen: all, or those named by `--instance` (URL names compare without
    // case, I5).
    let mut chosen: BTreeMap<&str, &crate::observed::Instance> = BTreeMap::new();
    if sel.has(Part::Instances) {
        for i in t.instances.values() {
            if sel.instances.is_empty() || sel.instances.iter().any(|k| ident::same(k, &i.url)) {
                chosen.insert(i.id.as_str(), i);
            }
        }
        for k in &sel.instances {
            if !t.instances.values().any(|i| ident::same(k, &i.url)) {
                let mut urls: Vec<&str> = t.instances.values().map(|i| i.url.as_str()).collect();
                urls.sort_unstable();
                return Err(OpsError::Import(format!(
                    "--instance {k}: the tenant has no instance with this URL name (it has: {})",
                    if urls.is_empty() {
                        "none".to_string()
                    } else {
                        urls.join(", ")
                    }
                )));
            }
        }
    }
    // Instance keys: the URL name in lower case, unique by I5.
    let inst_key: BTreeMap<&str, String> = chosen
        .iter()
        .map(|(id, i)| (*id, i.url.to_ascii_lowercase()))
        .collect();

    // Groups: all when selected, else only those bound to a chosen instance (I12: an
    // instance's `security_group` omitted means none).
    let bound: BTreeSet<&str> = chosen
        .values()
        .filter_map(|i| i.security_group.as_deref())
        .collect();
    let mut groups: Vec<&crate::observed::Group> = t
        .groups
        .values()
        .filter(|g| sel.has(Part::Groups) || bound.contains(g.id.as_str()))
        .collect();
    groups.sort_by(|a, b| {
        (ident::fold(&a.name), &a.name, &a.id).cmp(&(ident::fold(&b.name), &b.name, &b.id))
    });
    let mut group_key: BTreeMap<&str, String> = BTreeMap::new();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for g in &groups {
        let base = slug(&g.name);
        let mut key = base.clone();
        let mut n = 2;
        while taken.contains(&key) {
            key = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(key.clone());
        group_key.insert(g.id.as_str(), key);
    }

    let users_on = sel.has(Part::Users);
    let mut desired = Desired {
        tenant: t.domain.clone(),
        ..Desired::default()
    };
    if sel.has(Part::Licenses) {
        desired.licenses = Some(t.licenses.clone());
    }
    if sel.has(Part::Storage) {
        desired.storage = Some(model::Storage {
            additional_gb: Some(t.storage.additional_gb),
        });
        notes.push((
            Anchor::Storage,
            format!(
                "in use: {} GB of {} GB included + {} GB bought (usage is not managed by the file, T8)",
                t.storage.used_gb,
                t.included_storage_gb(),
                t.storage.additional_gb
            ),
        ));
    }
    if t.slots.production > 0 || t.slots.sandbox > 0 {
        notes.push((
            Anchor::Top,
            format!(
                "add-on instance slots bought: {} production, {} sandbox (bought by apply when an instance needs one, I2; not in the file)",
                t.slots.production, t.slots.sandbox
            ),
        ));
    }
    if t.trial {
        notes.push((
            Anchor::Top,
            "trial subscription: instances and storage cannot be bought (T5)".to_string(),
        ));
    }

    if users_on {
        let mut users = BTreeMap::new();
        for u in t.users.values() {
            let mut d = model::User {
                license: u.license,
                access_mode: Some(u.access_mode),
                usage_location: u.usage_location.clone(),
                application_id: u.application_id.clone(),
                ..model::User::default()
            };
            if u.synced {
                notes.push((
                    Anchor::User(u.upn.clone()),
                    format!(
                        "synchronised from on-premises: the name ({}) and the user itself are managed there (P1)",
                        crate::domain::escape::escape(&u.name)
                    ),
                ));
            } else if !u.name.is_empty() {
                d.name = Some(u.name.clone());
            }
            if !u.admin_roles.is_empty() {
                d.admin_roles = Some(u.admin_roles.iter().copied().collect());
            }
            let with_roles: Vec<(&String, &BTreeSet<String>)> =
                u.roles.iter().filter(|(_, r)| !r.is_empty()).collect();
            if with_roles
                .iter()
                .all(|(i, _)| inst_key.contains_key(i.as_str()))
            {
                if !with_roles.is_empty() {
                    d.roles = Some(
                        with_roles
                            .iter()
                            .map(|(i, r)| {
                                (inst_key[i.as_str()].clone(), r.iter().cloned().collect())
                            })
                            .collect(),
                    );
                }
            } else {
                notes.push((
                    Anchor::User(u.upn.clone()),
                    "roles not imported: the user has roles in instances this import leaves out (`roles` lists every instance when given, P2)".to_string(),
                ));
            }
            resources.insert(format!("users.{}", u.upn), resource(ObjKind::User, &u.id));
            users.insert(u.upn.clone(), d);
        }
        desired.users = Some(users);
    }

    if !groups.is_empty() || sel.has(Part::Groups) {
        let by_id: BTreeMap<&str, &str> = t
            .users
            .values()
            .map(|u| (u.id.as_str(), u.upn.as_str()))
            .collect();
        let mut out = BTreeMap::new();
        for g in &groups {
            let key = group_key[g.id.as_str()].clone();
            let mut d = model::SecurityGroup {
                name: (g.name != key).then(|| g.name.clone()),
                description: (!g.description.is_empty()).then(|| g.description.clone()),
                members: None,
            };
            if users_on {
                let mut m: Vec<String> = g
                    .members
                    .iter()
                    .filter_map(|id| by_id.get(id.as_str()).map(|s| s.to_string()))
                    .collect();
                m.sort_unstable();
                d.members = Some(m);
            } else if !g.members.is_empty() {
                notes.push((
                    Anchor::Group(key.clone()),
                    format!(
                        "{} member(s) not imported: members are user keys, and users are left out",
                        g.members.len()
                    ),
                ));
            }
            if !sel.has(Part::Groups) {
                notes.push((
                    Anchor::Group(key.clone()),
                    "imported because an imported instance is bound to it (I12)".to_string(),
                ));
            }
            resources.insert(
                format!("security_groups.{key}"),
                resource(ObjKind::Group, &g.id),
            );
            out.insert(key, d);
        }
        desired.security_groups = Some(out);
    }

    if sel.has(Part::Instances) {
        let mut out = BTreeMap::new();
        for (id, i) in &chosen {
            let key = inst_key[id].clone();
            let sandbox = i.kind == InstanceType::Sandbox;
            let d = model::Instance {
                name: i.name.clone(),
                url: i.url.clone(),
                kind: i.kind,
                purpose: (!i.purpose.is_empty()).then(|| i.purpose.clone()),
                region: Some(i.region),
                currency: Some(i.currency.clone()),
                language: Some(i.language),
                security_group: i
                    .security_group
                    .as_deref()
                    .and_then(|g| group_key.get(g).cloned()),
                notification_recipients: (!i.notification_recipients.is_empty())
                    .then(|| i.notification_recipients.clone()),
                update: i.update.as_ref().and_then(|u| match u.state {
                    UpdatePhase::Approved | UpdatePhase::Scheduled => Some(model::UpdateApproval {
                        target_version: u.target_version.clone(),
                        preferred: u.preferred.clone(),
                        alternate: u.alternate.clone(),
                    }),
                    _ => None,
                }),
                protect: false,
                admin_mode: sandbox.then(|| model::AdminMode {
                    enabled: i.admin_mode.enabled,
                    background_operations: i.admin_mode.background_operations,
                    message: i.admin_mode.message.clone(),
                }),
                copy_from: None,
            };
            let status = match i.status {
                InstanceStatus::Ready => None,
                InstanceStatus::Provisioning => Some("provisioning"),
                InstanceStatus::Disabled => Some("disabled"),
            };
            let mut note = format!("version {}", i.version);
            if let Some(s) = status {
                note.push_str(&format!(", {s} (the file cannot change the status, I4)"));
            }
            if i.slot != i.kind {
                note.push_str(&format!(", in a {} slot (I7)", i.slot.as_str()));
            }
            notes.push((Anchor::Instance(key.clone()), note));
            resources.insert(
                format!("instances.{key}"),
                resource(ObjKind::Instance, &i.id),
            );
            out.insert(key, d);
        }
        desired.instances = Some(out);
    }
    Ok(Imported {
        desired,
        resources,
        notes,
    })
}

fn resource(kind: ObjKind, id: &str) -> Resource {
    Resource {
        kind,
        id: id.to_string(),
        protect: false,
        protected_at: None,
        copied_from: None,
        ids: BTreeMap::new(),
    }
}

/// The desired file as YAML, through `desired::load::to_yaml`, with the comments of
/// [`Imported::notes`] above the entries they are about.
pub fn to_yaml(imported: &Imported) -> Result<String, String> {
    let body = crate::desired::load::to_yaml(&imported.desired)?;
    let mut out = String::with_capacity(body.len() + 1024);
    out.push_str("# Imported by `crmctl import`: the tenant as a desired file.\n");
    let comment = |out: &mut String, indent: &str, text: &str| {
        for line in text.lines() {
            out.push_str(indent);
            out.push_str("# ");
            out.push_str(&crate::domain::escape::escape(line));
            out.push('\n');
        }
    };
    for (a, text) in &imported.notes {
        if *a == Anchor::Top {
            comment(&mut out, "", text);
        }
    }
    // Entries of each section in the order the serializer wrote them (the maps' order).
    let d = &imported.desired;
    let users: Vec<&String> = d.users.iter().flat_map(|m| m.keys()).collect();
    let groups: Vec<&String> = d.security_groups.iter().flat_map(|m| m.keys()).collect();
    let instances: Vec<&String> = d.instances.iter().flat_map(|m| m.keys()).collect();
    let mut by_anchor: BTreeMap<(u8, &str), Vec<&str>> = BTreeMap::new();
    for (a, text) in &imported.notes {
        let k = match a {
            Anchor::Top => continue,
            Anchor::Storage => (0, ""),
            Anchor::User(u) => (1, u.as_str()),
            Anchor::Group(g) => (2, g.as_str()),
            Anchor::Instance(i) => (3, i.as_str()),
        };
        by_anchor.entry(k).or_default().push(text);
    }
    let mut section = "";
    let mut index = 0usize;
    for line in body.split_inclusive('\n') {
        if !line.starts_with(' ') && !line.starts_with('-') {
            section = line.split(':').next().unwrap_or("");
            index = 0;
            if section == "storage" {
                for t in by_anchor.get(&(0, "")).into_iter().flatten() {
                    comment(&mut out, "", t);
                }
            }
        } else if line.starts_with("  ") && !line[2..].starts_with([' ', '-']) {
            let list = match section {
                "users" => Some((1, &users)),
                "security_groups" => Some((2, &groups)),
                "instances" => Some((3, &instances)),
                _ => None,
            };
            if let Some((n, list)) = list {
                if let Some(key) = list.get(index) {
                    for t in by_anchor.get(&(n, key.as_str())).into_iter().flatten() {
                        comment(&mut out, "  ", t);
                    }
                }
                index += 1;
            }
        }
        out.push_str(line);
    }
    Ok(out)
}

/// The desired file as JSON (no comments: JSON has none).
pub fn to_json(imported: &Imported) -> String {
    let mut s = serde_json::to_string_pretty(&imported.desired).expect("the model serializes");
    s.push('\n');
    s
}

/// Options of [`run`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// What to import.
    pub selection: Selection,
    /// Replace a state that already manages objects, and an existing output file.
    pub force: bool,
    /// The output file (`-o`); `None`: the text is returned for stdout.
    pub output: Option<PathBuf>,
}

/// What [`run`] did.
#[derive(Debug)]
pub struct ImportReport {
    /// The converted tenant.
    pub imported: Imported,
    /// The text written to the output file, or to print when there is none.
    pub text: String,
    /// The new state's serial.
    pub serial: u64,
}

/// `crmctl import`: under the state lock, observe the tenant (which must exist), convert
/// it, write the file (never over an existing one unless `force`), and write the state
/// (never over one that manages objects unless `force`).
pub fn run(
    spec: &BackendSpec,
    state_path: &Path,
    opts: &ImportOptions,
    render: &dyn Fn(&Imported) -> Result<String, String>,
    warn: Warn<'_>,
) -> Result<ImportReport, OpsError> {
    if let Some(out) = &opts.output {
        if out.exists() && !opts.force {
            return Err(OpsError::Import(format!(
                "-o {}: the file exists and import does not replace it; choose another file, remove it, or pass --force",
                out.display()
            )));
        }
        if crate::state::store::resolve_symlinks(out)
            == crate::state::store::resolve_symlinks(state_path)
        {
            return Err(OpsError::Import(format!(
                "-o {} is the state file; write the desired file elsewhere, e.g. -o tenant.yaml",
                out.display()
            )));
        }
    }
    let backend = open_existing(spec)?;
    let (session, observed) = Session::open(backend, state_path, Operation::Import, warn)?;
    let n = session.state.resources.len();
    if n > 0 && !opts.force {
        return Err(OpsError::Import(format!(
            "the state {} already manages {n} object(s); import writes a new state: use another --state, or pass --force to replace it",
            state_path.display()
        )));
    }
    let imported = to_desired(&observed, &opts.selection)?;
    let text = render(&imported).map_err(OpsError::Import)?;
    if let Some(out) = &opts.output {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| write_error(out, e))?;
        }
        let mut o = std::fs::OpenOptions::new();
        o.write(true);
        if opts.force {
            o.create(true).truncate(true);
        } else {
            o.create_new(true);
        }
        use std::io::Write as _;
        o.open(out)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| write_error(out, e))?;
    }
    let mut state = session.state.clone();
    state.resources = imported.resources.clone();
    state.pending.clear();
    state.tenant = observed.domain.clone();
    state.serial += 1;
    StateWriter::new(state_path).compact(&state)?;
    drop(session);
    Ok(ImportReport {
        imported,
        text,
        serial: state.serial,
    })
}

fn write_error(out: &Path, e: std::io::Error) -> OpsError {
    OpsError::Import(format!("cannot write {}: {e}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_are_slugs_unique_without_case() {
        assert_eq!(slug("Sales Team"), "sales-team");
        assert_eq!(slug("  R&D / EU "), "r-d-eu");
        assert_eq!(slug("Ärzte"), "rzte");
        assert_eq!(slug("電話"), "group");
        let mut t = Tenant::fresh("x.onmicrosoft.com");
        for (id, name) in [("g1", "Sales"), ("g2", "sales!"), ("g3", "Ops")] {
            t.groups.insert(
                id.into(),
                crate::observed::Group {
                    id: id.into(),
                    name: name.into(),
                    ..Default::default()
                },
            );
        }
        let i = to_desired(&t, &Selection::default()).unwrap();
        let g = i.desired.security_groups.unwrap();
        assert_eq!(
            g.keys().map(String::as_str).collect::<Vec<_>>(),
            ["ops", "sales", "sales-2"]
        );
        assert_eq!(g["sales"].name.as_deref(), Some("Sales"));
        assert_eq!(g["sales-2"].name.as_deref(), Some("sales!"));
        assert_eq!(i.resources["security_groups.sales-2"].id, "g2");
    }
}
