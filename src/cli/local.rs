//! `crmctl show` and `crmctl local ...`: read the tenant, and change the embedded local
//! tenant behind crmctl's back (what an administrator would do in the admin center).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};

use crate::cli::common;
use crate::domain::kinds::{AccessMode, AdminRole, InstanceType, LicensePlan, Region};
use crate::observed::{Group, InstanceStatus, Tenant, UpdatePhase, UpdateState, User};

/// Output format of `show` and `local export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TenantFormat {
    /// YAML (default).
    Yaml,
    /// JSON.
    Json,
}

/// Arguments of `show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Backend to read (`local:PATH`).
    #[arg(long, env = "CRMCTL_BACKEND", default_value = common::DEFAULT_BACKEND)]
    pub backend: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: TenantFormat,
}

/// The local backend to change.
#[derive(Debug, clap::Args)]
pub struct LocalBackend {
    /// The local tenant (`local:PATH`).
    #[arg(long, env = "CRMCTL_BACKEND", default_value = common::DEFAULT_BACKEND)]
    pub backend: String,
}

/// `crmctl local` subcommands. None of them checks the service's rules: they play the
/// administrator in the admin center, to simulate drift.
#[derive(Debug, clap::Subcommand)]
pub enum LocalCommand {
    /// Print the whole local tenant (same as `show`).
    Export {
        #[command(flatten)]
        backend: LocalBackend,
        /// Output format.
        #[arg(long, value_enum, default_value = "yaml")]
        format: TenantFormat,
    },
    /// Replace the whole local tenant with a YAML/JSON file (as printed by `show`).
    Import {
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        backend: LocalBackend,
    },
    /// Edit the local tenant as YAML in $VISUAL / $EDITOR.
    Edit {
        #[command(flatten)]
        backend: LocalBackend,
    },
    /// Set one attribute. Grammar:
    ///
    ///   instance URL FIELD VALUE   (status provisioning|ready|disabled, name, purpose, url,
    ///                               type production|sandbox, region, currency, language,
    ///                               version, update available|scheduled|approved|in_progress|updated|none,
    ///                               admin-mode on|off, background-operations on|off)
    ///   user UPN FIELD VALUE       (license PLAN|none, access-mode MODE, name, admin-roles R1,R2|none)
    ///   group NAME FIELD VALUE     (name, description, members UPN1,UPN2|none)
    ///   licenses PLAN COUNT        (purchased count)
    ///   storage additional-gb|used-gb N
    ///   slots production|sandbox N (add-on slots bought)
    ///   trial true|false
    ///   domain NAME.onmicrosoft.com
    #[command(verbatim_doc_comment)]
    Set {
        #[command(flatten)]
        backend: LocalBackend,
        /// The words of the assignment, e.g. `instance sales status provisioning`.
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
    },
    /// Add an object: `user UPN [NAME]` (read-write, no license) or `group NAME`.
    Add {
        #[command(flatten)]
        backend: LocalBackend,
        /// `user UPN [NAME]` or `group NAME`.
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
    },
    /// Delete an object: `user UPN`, `group NAME` or `instance URL` (no rule checked).
    Delete {
        #[command(flatten)]
        backend: LocalBackend,
        /// `user UPN`, `group NAME` or `instance URL`.
        #[arg(required = true, num_args = 2)]
        words: Vec<String>,
    },
}

/// `crmctl show`.
pub fn run_show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let backend = common::open_existing(Some(&args.backend))?;
    let tenant = backend.observe().context("cannot read the tenant")?;
    print_tenant(&tenant, args.format)?;
    Ok(ExitCode::SUCCESS)
}

fn render_tenant(tenant: &Tenant, format: TenantFormat) -> anyhow::Result<String> {
    Ok(match format {
        TenantFormat::Yaml => {
            // The YAML writer escapes C0 controls itself; bidi and C1 characters from the
            // observed tenant are shown escaped too (issue 9 item 6), as YAML escapes in a
            // double-quoted scalar, so that what `show` prints imports back unchanged.
            let yaml = crate::desired::load::to_yaml(tenant).map_err(|e| anyhow!(e))?;
            let mut out = String::with_capacity(yaml.len());
            for line in yaml.split_inclusive('\n') {
                let (body, end) = match line.strip_suffix('\n') {
                    Some(b) => (b, "\n"),
                    None => (line, ""),
                };
                out.push_str(&yaml_safe_line(body));
                out.push_str(end);
            }
            out
        }
        TenantFormat::Json => {
            // serde_json escapes C0 controls; bidi, DEL and C1 characters are written as
            // `\uXXXX` escapes too (issue 9 item 6: the same string for a program, nothing
            // raw for a terminal). They can only be inside strings.
            let s = serde_json::to_string_pretty(tenant)?;
            let mut out = String::with_capacity(s.len() + 1);
            push_unicode_escaped(&mut out, &s);
            out.push('\n');
            out
        }
    })
}

/// `s` with every character that must not reach a terminal (other than tabs and line
/// breaks, which are layout) written as
/// `\uXXXX` (all of them are in the Basic Multilingual Plane): an escape that JSON strings
/// and YAML double-quoted scalars read back as the character.
fn push_unicode_escaped(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    for c in s.chars() {
        if crate::render::escape::is_unsafe(c) && !matches!(c, '\t' | '\n') {
            let _ = write!(out, "\\u{:04X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// One line of `show`'s YAML with its unsafe characters escaped (issue 9 item 6) so that it
/// still reads as the same value: inside a double-quoted scalar as `\uXXXX`; a plain or
/// single-quoted value holding one is written double-quoted. A line of another shape is
/// escaped for display only.
fn yaml_safe_line(line: &str) -> std::borrow::Cow<'_, str> {
    use crate::render::escape::{escape_keep_tabs, first_unsafe, is_unsafe};
    if first_unsafe(line).is_none_or(|_| !line.chars().any(|c| is_unsafe(c) && c != '\t')) {
        return std::borrow::Cow::Borrowed(line);
    }
    // The value: after the indentation, list dashes and a plain `key: `.
    let indent = line.len() - line.trim_start_matches(' ').len();
    let mut head = indent;
    while line[head..].starts_with("- ") {
        head += 2;
    }
    let rest = &line[head..];
    if !rest.starts_with(['"', '\'']) {
        if let Some(i) = rest.find(": ") {
            if !rest[..i].chars().any(is_unsafe) {
                head += i + 2;
            }
        }
    }
    let (prefix, value) = line.split_at(head);
    let quoted = if value.starts_with('"') && value.ends_with('"') && value.len() >= 2 {
        let mut q = String::with_capacity(value.len() + 8);
        push_unicode_escaped(&mut q, value);
        q
    } else {
        let text = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            Some(inner) => inner.replace("''", "'"),
            None if !value.is_empty() && !value.ends_with(':') => value.to_string(),
            None => return escape_keep_tabs(line).into_owned().into(),
        };
        let Ok(json) = serde_json::to_string(&text) else {
            return escape_keep_tabs(line).into_owned().into();
        };
        let mut q = String::with_capacity(json.len() + 8);
        push_unicode_escaped(&mut q, &json);
        q
    };
    format!("{prefix}{quoted}").into()
}

fn print_tenant(tenant: &Tenant, format: TenantFormat) -> anyhow::Result<()> {
    let text = render_tenant(tenant, format)?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

fn parse_tenant(path: &str, text: &str) -> anyhow::Result<Tenant> {
    let parsed = if path.ends_with(".json") {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        crate::desired::load::from_yaml(text)
    };
    parsed.map_err(|e| anyhow!("{path}: not a tenant as printed by `crmctl show`: {e}"))
}

/// `crmctl local ...`.
pub fn run_local(cmd: &LocalCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LocalCommand::Export { backend, format } => {
            let p = common::open_existing(Some(&backend.backend))?;
            print_tenant(&p.observe()?, *format)?;
        }
        LocalCommand::Import { file, backend } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let tenant = parse_tenant(&file.display().to_string(), &text)?;
            let p = common::open_local(Some(&backend.backend))?;
            p.admin_replace(tenant)
                .with_context(|| format!("cannot import {}", file.display()))?;
            eprintln!("Imported {} into {}.", file.display(), p.path().display());
        }
        LocalCommand::Edit { backend } => run_edit(&backend.backend)?,
        LocalCommand::Set { backend, words } => {
            // issue 9 item 4: a mistyped path is refused, not made a new tenant.
            let p = common::open_existing(Some(&backend.backend))?;
            p.admin_update(|t| set(t, words))?;
            eprintln!("Set {}.", words.join(" "));
        }
        LocalCommand::Add { backend, words } => {
            // issue 9 item 4: a mistyped path is refused, not made a new tenant.
            let p = common::open_existing(Some(&backend.backend))?;
            p.admin_update(|t| add(t, words))?;
            eprintln!("Added {}.", words.join(" "));
        }
        LocalCommand::Delete { backend, words } => {
            // issue 9 item 4: a mistyped path is refused, not made a new tenant.
            let p = common::open_existing(Some(&backend.backend))?;
            p.admin_update(|t| delete(t, words))?;
            eprintln!("Deleted {}.", words.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_edit(backend: &str) -> anyhow::Result<()> {
    // issue 9 item 4: only `local import` (or apply) creates a tenant.
    let p = common::open_existing(Some(backend))?;
    let before = p.observe()?;
    let mut file = tempfile::Builder::new()
        .prefix("crmctl-tenant-")
        .suffix(".yaml")
        .tempfile()?;
    file.write_all(render_tenant(&before, TenantFormat::Yaml)?.as_bytes())?;
    file.flush()?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_string());
    let mut parts = editor.split_whitespace();
    let program = parts.next().ok_or_else(|| anyhow!("$EDITOR is empty"))?;
    let status = std::process::Command::new(program)
        .args(parts)
        .arg(file.path())
        .status()
        .with_context(|| format!("cannot run the editor `{editor}` (set $EDITOR)"))?;
    if !status.success() {
        bail!("the editor `{editor}` failed ({status}); nothing changed");
    }
    let text = std::fs::read_to_string(file.path())?;
    let after = match parse_tenant(&file.path().display().to_string(), &text) {
        Ok(t) => t,
        Err(e) => {
            let kept = file.into_temp_path().keep()?;
            bail!(
                "{e:#}\nnothing changed; your edit is kept in {}",
                kept.display()
            );
        }
    };
    if after == before {
        eprintln!("No changes.");
        return Ok(());
    }
    // Refused when another run or command changed the tenant during the edit: saving
    // would revert what it did (issue 9 item 1).
    if let Err(e) = p.admin_replace_unchanged(&before, after) {
        let kept = file.into_temp_path().keep()?;
        bail!("{e}\nyour edit is kept in {}", kept.display());
    }
    eprintln!("Saved the edited tenant to {}.", p.path().display());
    Ok(())
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
pub(crate) fn set(t: &mut Tenant, words: &[String]) -> Result<(), String> {
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
pub(crate) fn add(t: &mut Tenant, words: &[String]) -> Result<(), String> {
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
pub(crate) fn delete(t: &mut Tenant, words: &[String]) -> Result<(), String> {
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
