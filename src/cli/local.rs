//! `crmctl show` and `crmctl local ...`: read the tenant, and change the embedded local
//! tenant behind crmctl's back (what an administrator would do in the admin center).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};

use crate::cli::common;
use crate::observed::Tenant;
use crate::ops::{
    self,
    backend::{open_local, open_local_existing},
};

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
    /// Print the observed tenant keyed by remote ids (the format of `local import`)
    /// instead of the desired-file format.
    #[arg(long)]
    pub raw: bool,
}

/// The local backend to change.
#[derive(Debug, clap::Args)]
pub struct LocalBackend {
    /// The local tenant (`local:PATH`).
    #[arg(long, env = "CRMCTL_BACKEND", default_value = common::DEFAULT_BACKEND)]
    pub backend: String,
}

/// Who an admin edit is recorded as (issue 14 item 2).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Actor {
    /// Record the change as made by NAME (shown as who changed it in the drift of a plan).
    /// Default: `crmctl local (USER)`, USER being $USER.
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
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
        #[command(flatten)]
        actor: Actor,
    },
    /// Edit the local tenant as YAML in $VISUAL / $EDITOR.
    Edit {
        #[command(flatten)]
        backend: LocalBackend,
        #[command(flatten)]
        actor: Actor,
    },
    /// Set one attribute. Grammar:
    ///
    ///   instance URL FIELD VALUE   (status provisioning|ready|disabled, name, purpose, url,
    ///                               type production|sandbox, region, currency, language,
    ///                               version, update available|scheduled|approved|in_progress|updated|none,
    ///                               admin-mode on|off, background-operations on|off)
    ///   user UPN FIELD VALUE       (license PLAN|none, access-mode MODE, name, admin-roles R1,R2|none, usage-location CC|none, synced on|off)
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
        #[command(flatten)]
        actor: Actor,
        /// The words of the assignment, e.g. `instance sales status provisioning`.
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
    },
    /// Add an object: `user UPN [NAME]` (read-write, no license) or `group NAME`.
    Add {
        #[command(flatten)]
        backend: LocalBackend,
        #[command(flatten)]
        actor: Actor,
        /// `user UPN [NAME]` or `group NAME`.
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
    },
    /// Delete an object: `user UPN`, `group NAME` or `instance URL` (no rule checked).
    Delete {
        #[command(flatten)]
        backend: LocalBackend,
        #[command(flatten)]
        actor: Actor,
        /// `user UPN`, `group NAME` or `instance URL`.
        #[arg(required = true, num_args = 2)]
        words: Vec<String>,
    },
}

/// `crmctl show`. With `--format json`, standard output always gets one document (issue 15
/// item 2): the tenant as a desired file (`schemas/crmctl.schema.json`), or, when it cannot be
/// read, the failure document ([`crate::ops::json::failure_doc`], `schemas/plan.schema.json`).
pub fn run_show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let result = show_inner(args);
    if let (Err(e), TenantFormat::Json) = (&result, args.format) {
        let error = crate::cli::describe(e);
        let doc = crate::ops::json::failure_doc("show", &error, &[]);
        std::io::stdout()
            .lock()
            .write_all(crate::ops::json::to_pretty(&doc).as_bytes())?;
    }
    result
}

fn show_inner(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let tenant = ops::show(&common::backend_spec(Some(&args.backend))?)?;
    if args.raw {
        print_tenant(&tenant, args.format)?;
    } else {
        // issue 14 item 1: the tenant in the desired file's format, as `import` writes it.
        let imported = ops::import::to_desired(&tenant, &ops::import::Selection::default())?;
        let text = render_desired(&imported, args.format).map_err(|e| anyhow!(e))?;
        std::io::stdout().lock().write_all(text.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// An imported tenant as the desired file's text, escaped like `show --raw` (issue 9
/// item 6).
pub(crate) fn render_desired(
    imported: &ops::import::Imported,
    format: TenantFormat,
) -> Result<String, String> {
    Ok(match format {
        TenantFormat::Yaml => {
            let yaml = ops::import::to_yaml(imported)?;
            escape_yaml(&yaml)
        }
        TenantFormat::Json => {
            let s = ops::import::to_json(imported);
            let mut out = String::with_capacity(s.len());
            push_unicode_escaped(&mut out, &s);
            out
        }
    })
}

fn escape_yaml(yaml: &str) -> String {
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

fn render_tenant(tenant: &Tenant, format: TenantFormat) -> anyhow::Result<String> {
    Ok(match format {
        TenantFormat::Yaml => {
            // The YAML writer escapes C0 controls itself; bidi and C1 characters from the
            // observed tenant are shown escaped too (issue 9 item 6), as YAML escapes in a
            // double-quoted scalar, so that what `show` prints imports back unchanged.
            let yaml = crate::desired::load::to_yaml(tenant).map_err(|e| anyhow!(e))?;
            escape_yaml(&yaml)
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
        if crate::domain::escape::is_unsafe(c) && !matches!(c, '\t' | '\n') {
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
    use crate::domain::escape::{escape_keep_tabs, first_unsafe, is_unsafe};
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
            let tenant = ops::show(&common::backend_spec(Some(&backend.backend))?)?;
            print_tenant(&tenant, *format)?;
        }
        LocalCommand::Import {
            file,
            backend,
            actor,
        } => {
            let by = ops::local::actor(actor.by.as_deref())?;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let tenant = parse_tenant(&file.display().to_string(), &text)?;
            let p = open_local(&common::backend_spec(Some(&backend.backend))?)?;
            p.set_actor(by);
            p.admin_replace(tenant)
                .with_context(|| format!("cannot import {}", file.display()))?;
            eprintln!("Imported {} into {}.", file.display(), p.path().display());
        }
        LocalCommand::Edit { backend, actor } => {
            run_edit(&backend.backend, &ops::local::actor(actor.by.as_deref())?)?
        }
        LocalCommand::Set {
            backend,
            words,
            actor,
        } => {
            let by = ops::local::actor(actor.by.as_deref())?;
            let spec = common::backend_spec(Some(&backend.backend))?;
            ops::local::change(&spec, &by, |t| ops::local::set(t, words))?;
            eprintln!("Set {}.", words.join(" "));
        }
        LocalCommand::Add {
            backend,
            words,
            actor,
        } => {
            let by = ops::local::actor(actor.by.as_deref())?;
            let spec = common::backend_spec(Some(&backend.backend))?;
            ops::local::change(&spec, &by, |t| ops::local::add(t, words))?;
            eprintln!("Added {}.", words.join(" "));
        }
        LocalCommand::Delete {
            backend,
            words,
            actor,
        } => {
            let by = ops::local::actor(actor.by.as_deref())?;
            let spec = common::backend_spec(Some(&backend.backend))?;
            ops::local::change(&spec, &by, |t| ops::local::delete(t, words))?;
            eprintln!("Deleted {}.", words.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_edit(backend: &str, by: &str) -> anyhow::Result<()> {
    // issue 9 item 4: only `local import` (or apply) creates a tenant.
    let p = open_local_existing(&common::backend_spec(Some(backend))?)?;
    p.set_actor(by);
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
