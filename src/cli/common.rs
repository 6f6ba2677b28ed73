//! Helpers shared by the commands.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub use crate::ops::{BackendSpec, DEFAULT_BACKEND, DEFAULT_STATE};

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

/// The cloud of `--cloud` / `CRMCTL_CLOUD`, set once by `cli::main`.
pub static CLOUD: std::sync::OnceLock<crate::provider::http::cloud::Cloud> =
    std::sync::OnceLock::new();

/// Parse `--backend` (`None`: [`DEFAULT_BACKEND`]); a `microsoft` backend is in `--cloud`.
pub fn backend_spec(spec: Option<&str>) -> anyhow::Result<BackendSpec> {
    let cloud = CLOUD.get().copied().unwrap_or_default();
    Ok(BackendSpec::parse_in(spec, cloud)?)
}

/// [`backend_spec`] for a command given a desired file: a `microsoft` backend without a
/// tenant takes the file's `tenant:`.
pub fn backend_for(
    spec: Option<&str>,
    loaded: &crate::desired::load::Loaded,
) -> anyhow::Result<BackendSpec> {
    Ok(backend_spec(spec)?
        .or_tenant(&loaded.desired.tenant)
        .with_skus(loaded.desired.skus.as_ref()))
}

/// `--state`, or [`DEFAULT_STATE`].
pub fn state_path(state: Option<&Path>) -> PathBuf {
    state.map_or_else(|| PathBuf::from(DEFAULT_STATE), Path::to_path_buf)
}

/// Print a problem found in the state's journal (issue 9 item 5: a damaged line is
/// reported, never skipped silently).
pub fn warn(w: &crate::state::store::JournalWarning) {
    eprintln!("warning: {w}");
}

/// Load and validate a desired-state file, printing its problems (and warnings) to stderr.
/// `Err` means the file had errors, already printed (returned for a machine-readable
/// document of them).
pub fn load_desired_or_failure(
    file: &Path,
    color: bool,
) -> Result<crate::desired::load::Loaded, crate::desired::load::LoadFailure> {
    use crate::desired::load;
    match load::load_file(file) {
        Ok(loaded) => {
            if !loaded.diagnostics.is_empty() {
                eprint!(
                    "{}",
                    load::render_diagnostics(&loaded.diagnostics, &loaded.src, color)
                );
            }
            Ok(loaded)
        }
        Err(f) => {
            eprint!(
                "{}",
                load::render_diagnostics(&f.diagnostics, &f.src, color)
            );
            if f.omitted > 0 {
                eprintln!("{}", crate::cli::validate::omitted_line(&f));
            }
            Err(f)
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
