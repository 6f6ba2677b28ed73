//! Helpers shared by the commands.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;

use crate::provider::local::LocalProvider;
use crate::provider::Provider;
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

/// Open a backend from its spec (`local:PATH`); `None` means [`DEFAULT_BACKEND`].
/// Opening never creates anything: a missing local file is a fresh tenant.
pub fn open_backend(spec: Option<&str>) -> anyhow::Result<Box<dyn Provider>> {
    Ok(Box::new(open_local(spec)?))
}

/// Open a `local:PATH` backend as the concrete [`LocalProvider`] (for `show`, `local ...`,
/// and for apply, which gives a fresh tenant its domain).
pub fn open_local(spec: Option<&str>) -> anyhow::Result<LocalProvider> {
    let spec = spec.unwrap_or(DEFAULT_BACKEND);
    let path = parse_local_spec(spec)?;
    LocalProvider::open(Path::new(path))
        .with_context(|| format!("cannot open the local tenant {path}"))
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

/// Read the state file; a missing file is an empty state (new lineage, serial 0).
pub fn read_state(path: &Path) -> anyhow::Result<State> {
    Ok(crate::state::store::load_or_empty(path)?)
}

/// Take the lock of the state file for the whole run (`operation`: `plan`, `apply`).
/// The lock is released when the returned value is dropped. Fails with a message that
/// names the holder and the `crmctl force-unlock ID` command.
pub fn lock_state(path: &Path, operation: &str) -> anyhow::Result<StateLock> {
    Ok(StateLock::acquire(path, operation)?)
}

/// Load and validate a desired-state file, printing its problems (and warnings) to stderr.
/// `None` means the file had errors, already printed.
pub fn load_desired(file: &Path, color: bool) -> Option<crate::spec::load::Loaded> {
    use crate::spec::load;
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
