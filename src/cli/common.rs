//! Helpers shared by the commands.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;

use crate::observed::Tenant;
use crate::provider::local::{LocalProvider, TenantFile};
use crate::state::lock::StateLock;
use crate::state::State;

/// The backend used when `--backend` is not given: the embedded local tenant.
pub const DEFAULT_BACKEND: &str = "local:.crmctl/tenant.db";

/// The state file used when `--state` is not given.
pub const DEFAULT_STATE: &str = ".crmctl/state.json";

/// Colors only on a TTY, never with `NO_COLOR` (any non-empty value) or `--no-color`.
/// Decided for stdout (plans); see [`use_color_stderr`] for diagnostics.
pub fn use_color(no_color_flag: bool) -> bool {
    color_allowed(no_color_flag) && std::io::stdout().is_terminal()
}

/// The same decision for stderr, where diagnostics go.
pub fn use_color_stderr(no_color_flag: bool) -> bool {
    color_allowed(no_color_flag) && std::io::stderr().is_terminal()
}

fn color_allowed(no_color_flag: bool) -> bool {
    !no_color_flag && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Open a `local:PATH` backend; `None` means [`DEFAULT_BACKEND`]. Opening never creates
/// anything: a missing local file starts a fresh tenant, which [`check_state_fits_tenant`]
/// allows only for an empty state, and [`open_existing`] never.
pub fn open_local(spec: Option<&str>) -> anyhow::Result<LocalProvider> {
    let spec = spec.unwrap_or(DEFAULT_BACKEND);
    let path = parse_local_spec(spec)?;
    LocalProvider::open(Path::new(path))
        .with_context(|| format!("cannot open the local tenant {path}"))
}

/// The tenant file a `local:PATH` backend names (`None`: [`DEFAULT_BACKEND`]).
pub fn local_path(spec: Option<&str>) -> anyhow::Result<std::path::PathBuf> {
    Ok(std::path::PathBuf::from(parse_local_spec(
        spec.unwrap_or(DEFAULT_BACKEND),
    )?))
}

fn parse_local_spec(spec: &str) -> anyhow::Result<&str> {
    match spec.split_once(':') {
        Some(("local", path)) if !path.is_empty() => Ok(path),
        Some(("local", _)) => anyhow::bail!(
            "backend `{spec}`: missing path; use `local:PATH`, e.g. `{DEFAULT_BACKEND}`"
        ),
        Some((scheme, _)) => anyhow::bail!(
            "backend `{spec}`: unknown scheme `{scheme}`; only `local:PATH` is supported \
             (e.g. `{DEFAULT_BACKEND}`)"
        ),
        None => anyhow::bail!(
            "backend `{spec}`: expected `SCHEME:LOCATION`; only `local:PATH` is supported \
             (e.g. `{DEFAULT_BACKEND}`)"
        ),
    }
}

/// Open a `local:PATH` backend that must hold a tenant (`show`, every `local` command but
/// `import`): a missing, empty or 0-byte file is an error, never printed as an empty
/// tenant nor made a new tenant by a mistyped path (issue 9 item 4).
pub fn open_existing(spec: Option<&str>) -> anyhow::Result<LocalProvider> {
    let p = open_local(spec)?;
    match p.file() {
        TenantFile::Present => Ok(p),
        missing => anyhow::bail!(
            "the local tenant {} {}; check --backend (or CRMCTL_BACKEND); a tenant is created by the first `crmctl apply` or `crmctl local import`",
            p.path().display(),
            what_is_there(missing)
        ),
    }
}

fn what_is_there(file: TenantFile) -> &'static str {
    match file {
        TenantFile::Missing => "does not exist",
        TenantFile::Empty => "is empty (no tenant was ever written to it)",
        TenantFile::Present => "holds a tenant",
    }
}

/// The backend a state records (`local:` and the tenant file's absolute path, symlinks
/// resolved), so that one file reached by two relative paths is one backend.
pub fn backend_identity(p: &LocalProvider) -> String {
    format!("local:{}", file_identity(p.path()).display())
}

/// The absolute path of a file, symlinks resolved (those of its directory when the file
/// does not exist yet): two spellings of one file give the same path.
pub fn file_identity(path: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        match (abs.parent(), abs.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or(abs.clone()),
            _ => abs,
        }
    })
}

/// Whether two `local:PATH` backend specs name the same tenant file.
pub fn same_backend(a: &str, b: &str) -> anyhow::Result<bool> {
    Ok(file_identity(Path::new(parse_local_spec(a)?))
        == file_identity(Path::new(parse_local_spec(b)?)))
}

/// Refuse to plan or apply with a state against a tenant it does not belong to, then
/// bind the state to this backend (recorded with the state's next write).
///
/// - A state that manages objects needs a tenant: a missing or empty file is not an empty
///   tenant, or a mistyped `--backend` would plan to create everything again (issue 9
///   item 4). Only an empty (new) state may start from a fresh tenant.
/// - A state that manages objects belongs to the backend and tenant domain it recorded;
///   using it against another would bind its addresses to unrelated objects with the same
///   ids (issue 9 item 1). An empty state binds to any.
pub fn check_state_fits_tenant(
    backend: &LocalProvider,
    observed: &Tenant,
    state: &mut State,
    state_path: &Path,
) -> anyhow::Result<()> {
    let id = backend_identity(backend);
    // The state (or its journal) in the tenant's own file would be renamed over the
    // tenant database by the first save.
    let tenant_file = file_identity(backend.path());
    for (what, p) in [
        ("the state", state_path.to_path_buf()),
        (
            "the state's journal",
            crate::state::store::journal_path(state_path),
        ),
    ] {
        if file_identity(&p) == tenant_file {
            anyhow::bail!(
                "--state {}: {what} would be written over the local tenant {}; give the state a file of its own (default {DEFAULT_STATE})",
                state_path.display(),
                backend.path().display()
            );
        }
    }
    let n = state.resources.len();
    if n > 0 {
        let of = match (state.tenant.is_empty(), state.backend.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!(" of tenant `{}`", state.tenant),
            (true, false) => format!(" at {}", state.backend),
            (false, false) => format!(" of tenant `{}` at {}", state.tenant, state.backend),
        };
        if backend.file() != TenantFile::Present {
            anyhow::bail!(
                "the local tenant {} {}, but the state {} manages {n} object(s){of}: a missing tenant is not an empty one (planning against it would create everything again).\nCheck --backend (or CRMCTL_BACKEND): a mistyped path names a new, empty tenant. To really start over in a fresh tenant, move the state file away first.",
                backend.path().display(),
                what_is_there(backend.file()),
                state_path.display()
            );
        }
        if !state.backend.is_empty() && state.backend != id {
            anyhow::bail!(
                "the state {} manages {n} object(s){of}, but this run uses the backend {id}: a state used against another tenant binds its addresses to unrelated objects.\nUse --backend {}, or another --state file for this tenant (a new state adopts existing objects by natural key). If the tenant file itself was moved there, set `backend` in the state file to `{id}`.",
                state_path.display(),
                state.backend
            );
        }
        if !state.tenant.is_empty()
            && !observed.domain.is_empty()
            && !state.tenant.eq_ignore_ascii_case(&observed.domain)
        {
            anyhow::bail!(
                "the state {} manages {n} object(s) of tenant `{}`, but the backend {id} holds tenant `{}`.\nUse the backend of `{}`, or another --state file for `{}` (a new state adopts existing objects by natural key).",
                state_path.display(),
                state.tenant,
                observed.domain,
                state.tenant,
                observed.domain
            );
        }
    }
    state.backend = id;
    Ok(())
}

/// Read the state file; a missing file is an empty state (new lineage, serial 0).
/// Problems of its journal are printed as warnings.
pub fn read_state(path: &Path) -> anyhow::Result<State> {
    Ok(load_state(path)?.unwrap_or_else(|| State::empty(crate::state::store::new_lineage())))
}

/// Read the state file (`None`: missing), printing the problems found in its journal as
/// warnings on stderr (issue 9 item 5: a damaged line is reported, never skipped silently).
pub fn load_state(path: &Path) -> anyhow::Result<Option<State>> {
    let (state, warnings) = crate::state::store::load_reporting(path)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    Ok(state)
}

/// Take the lock of the state file for the whole run (`operation`: `plan`, `apply`).
/// The lock is released when the returned value is dropped. Fails with a message that
/// names the holder and the `crmctl force-unlock ID` command.
pub fn lock_state(path: &Path, operation: &str) -> anyhow::Result<StateLock> {
    Ok(StateLock::acquire(path, operation)?)
}

/// Load and validate a desired-state file, printing its problems (and warnings) to stderr.
/// `None` means the file had errors, already printed.
pub fn load_desired(file: &Path, color: bool) -> Option<crate::desired::load::Loaded> {
    use crate::desired::load;
    match load::load_file(file) {
        Ok(loaded) => {
            if !loaded.diagnostics.is_empty() {
                eprint!(
                    "{}",
                    load::render_diagnostics(&loaded.diagnostics, &loaded.src, color)
                );
            }
            Some(loaded)
        }
        Err(f) => {
            eprint!(
                "{}",
                load::render_diagnostics(&f.diagnostics, &f.src, color)
            );
            if f.omitted > 0 {
                eprintln!("{}", crate::cli::validate::omitted_line(&f));
            }
            None
        }
    }
}

/// Leave `value`'s memory to the operating system: the command is about to exit, and
/// freeing a large plan's millions of allocations one by one takes time the system
/// does not need (0.06 s for the fresh plan of the reference tenant and its file's model;
/// measured in `cargo bench --bench scale`). Only for plain data: nothing
/// whose drop releases a lock, closes or removes a file.
pub fn free_at_exit<T>(value: T) {
    std::mem::forget(value);
}
