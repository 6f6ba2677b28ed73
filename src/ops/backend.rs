//! The backend, chosen in one place: `--backend` parsed into a [`BackendSpec`] and opened
//! into a boxed provider ([`open_backend`]). The workflows see only `dyn Backend`: a
//! [`Provider`] plus what they need to know of where the tenant lives.

use std::path::{Path, PathBuf};

use crate::domain::kinds::LicensePlan;
use crate::observed::Tenant;
use crate::ops::microsoft;
use crate::ops::OpsError;
use crate::provider::http::cloud::Cloud;
use crate::provider::local::{LocalProvider, TenantFile};
use crate::provider::{Provider, ProviderError};
use crate::state::State;

/// The backend used when `--backend` is not given: the embedded local tenant.
pub const DEFAULT_BACKEND: &str = "local:.crmctl/tenant.db";

/// The state file used when `--state` is not given.
pub const DEFAULT_STATE: &str = ".crmctl/state.json";

/// A parsed `--backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    /// `local:PATH`: the embedded local tenant in the file `path`.
    Local {
        /// The spec as given (recorded in saved plans).
        text: String,
        /// The tenant file.
        path: PathBuf,
    },
    /// `microsoft[:TENANT]`: a real tenant through Microsoft's APIs (issue 12), in `cloud`.
    /// The tenant (a domain or the directory id) comes from the spec, `AZURE_TENANT_ID`, or
    /// the desired file's `tenant:` ([`BackendSpec::or_tenant`]).
    Microsoft {
        /// The tenant; `None` until the file names it.
        tenant: Option<String>,
        /// The cloud (`--cloud`, `CRMCTL_CLOUD`; public by default).
        cloud: Cloud,
        /// The desired file's SKU overrides (`skus:`, issue 12 item 4): plan -> part number
        /// or GUID, for the Graph provider ([`BackendSpec::with_skus`]).
        skus: Vec<(LicensePlan, String)>,
    },
}

impl BackendSpec {
    /// Parse `--backend`; `None` means [`DEFAULT_BACKEND`]. A `microsoft` backend is in the
    /// public cloud; see [`BackendSpec::parse_in`].
    pub fn parse(spec: Option<&str>) -> Result<BackendSpec, OpsError> {
        BackendSpec::parse_in(spec, Cloud::Public)
    }

    /// Parse `--backend`, a `microsoft` backend being in `cloud` (`--cloud`).
    pub fn parse_in(spec: Option<&str>, cloud: Cloud) -> Result<BackendSpec, OpsError> {
        let spec = spec.unwrap_or(DEFAULT_BACKEND);
        let bad = |problem: String| OpsError::BadBackend {
            spec: spec.to_string(),
            problem,
        };
        const KNOWN: &str = "`local:PATH` (e.g. `local:.crmctl/tenant.db`) or `microsoft[:TENANT]`";
        match spec.split_once(':').unwrap_or((spec, "")) {
            ("local", path) if !path.is_empty() => Ok(BackendSpec::Local {
                text: spec.to_string(),
                path: PathBuf::from(path),
            }),
            ("local", _) => Err(bad(format!(
                "missing path; use `local:PATH`, e.g. `{DEFAULT_BACKEND}`"
            ))),
            ("microsoft", tenant) => {
                let tenant = match tenant.trim() {
                    "" => std::env::var("AZURE_TENANT_ID")
                        .ok()
                        .filter(|t| !t.trim().is_empty()),
                    t => Some(t.to_string()),
                };
                Ok(BackendSpec::Microsoft {
                    tenant,
                    cloud,
                    skus: vec![],
                })
            }
            (scheme, _) if spec.contains(':') => {
                Err(bad(format!("unknown scheme `{scheme}`; use {KNOWN}")))
            }
            _ => Err(bad(format!("expected {KNOWN}"))),
        }
    }

    /// A `microsoft` backend without a tenant takes the desired file's `tenant:`.
    pub fn or_tenant(self, tenant: &str) -> BackendSpec {
        match self {
            BackendSpec::Microsoft {
                tenant: None,
                cloud,
                skus,
            } if !tenant.is_empty() => BackendSpec::Microsoft {
                tenant: Some(tenant.to_string()),
                cloud,
                skus,
            },
            other => other,
        }
    }

    /// The Microsoft cloud of a `microsoft` backend (none for the local tenant).
    pub fn cloud(&self) -> Option<Cloud> {
        match self {
            BackendSpec::Microsoft { cloud, .. } => Some(*cloud),
            _ => None,
        }
    }

    /// A `microsoft` backend takes the desired file's SKU overrides (`skus:`); the local
    /// tenant has no SKUs and ignores them.
    pub fn with_skus(
        self,
        overrides: Option<&std::collections::BTreeMap<LicensePlan, String>>,
    ) -> BackendSpec {
        match self {
            BackendSpec::Microsoft { tenant, cloud, .. } => BackendSpec::Microsoft {
                tenant,
                cloud,
                skus: overrides
                    .into_iter()
                    .flatten()
                    .map(|(p, v)| (*p, v.clone()))
                    .collect(),
            },
            other => other,
        }
    }

    /// The spec as given (a `microsoft` one with its tenant once known), as saved plans
    /// record it.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        match self {
            BackendSpec::Local { text, .. } => text.into(),
            BackendSpec::Microsoft { tenant, .. } => match tenant {
                Some(t) => format!("microsoft:{t}").into(),
                None => "microsoft".into(),
            },
        }
    }

    /// Whether two specs name the same tenant (for a local one: the same file, however
    /// its path is spelled).
    pub fn same_tenant(&self, other: &BackendSpec) -> bool {
        match (self, other) {
            (BackendSpec::Local { path: a, .. }, BackendSpec::Local { path: b, .. }) => {
                file_identity(a) == file_identity(b)
            }
            (
                BackendSpec::Microsoft { tenant: a, .. },
                BackendSpec::Microsoft { tenant: b, .. },
            ) => match (a, b) {
                (Some(a), Some(b)) => crate::domain::ident::same(a, b),
                _ => false,
            },
            _ => false,
        }
    }

    /// The local files this backend reads and writes, with what each is (a `plan --out`
    /// must not replace one of them).
    pub fn files(&self) -> Vec<(&'static str, PathBuf)> {
        match self {
            BackendSpec::Local { path, .. } => {
                let with_suffix = |suffix: &str| {
                    let mut s = path.as_os_str().to_os_string();
                    s.push(suffix);
                    PathBuf::from(s)
                };
                vec![
                    ("the local tenant", path.clone()),
                    ("the local tenant's WAL", with_suffix("-wal")),
                    ("the local tenant's WAL index", with_suffix("-shm")),
                ]
            }
            BackendSpec::Microsoft { .. } => vec![],
        }
    }
}

/// Whether the backend holds a tenant. A missing tenant is not an empty one (issue 9
/// item 4): the workflows decide whether a fresh tenant may start there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Nothing there (a local file that does not exist).
    Missing,
    /// A place without a tenant (a 0-byte file, a database whose first change never
    /// committed).
    Empty,
    /// A tenant.
    Present,
}

impl Presence {
    /// `does not exist`, `is empty (...)`, `holds a tenant`.
    fn describe(self) -> &'static str {
        match self {
            Presence::Missing => "does not exist",
            Presence::Empty => "is empty (no tenant was ever written to it)",
            Presence::Present => "holds a tenant",
        }
    }
}

/// A provider as the workflows use it: the [`Provider`] boundary plus what a run must know
/// of the backend behind it. Implemented by each kind of backend; opened only by
/// [`open_backend`].
pub trait Backend: Provider {
    /// The backend as a state records it, the same however `--backend` spells it (for the
    /// local tenant: `local:` and the file's absolute path, symlinks resolved).
    fn identity(&self) -> String;
    /// Whether the backend holds a tenant.
    fn presence(&self) -> Presence;
    /// Where the tenant is, for messages (the local tenant's file).
    fn location(&self) -> String;
    /// The file holding the tenant, when it is a local file (a state must not be written
    /// over it). `None` for remote backends.
    fn tenant_file(&self) -> Option<&Path> {
        None
    }
    /// Called once before changes are applied, with the domain the plan is for: a fresh
    /// tenant without a domain takes it (stored with the first change). Nothing is
    /// written by this call. Default: nothing to do (a remote tenant has its domain).
    fn expect_domain(&self, _domain: &str) -> Result<(), ProviderError> {
        Ok(())
    }
    /// What this backend cannot carry out of `plan` (made from `desired`) although the file
    /// is valid: errors located by YAML path, added to the plan's diagnostics so that the
    /// plan refuses instead of apply failing halfway. Default: nothing (the local tenant
    /// does everything the file may say).
    fn check_plan(
        &self,
        _desired: &crate::desired::model::Desired,
        _plan: &crate::plan::Plan,
    ) -> Vec<crate::diag::Diagnostic> {
        Vec::new()
    }
}

impl Backend for LocalProvider {
    fn identity(&self) -> String {
        format!("local:{}", file_identity(self.path()).display())
    }
    fn presence(&self) -> Presence {
        match self.file() {
            TenantFile::Missing => Presence::Missing,
            TenantFile::Empty => Presence::Empty,
            TenantFile::Present => Presence::Present,
        }
    }
    fn location(&self) -> String {
        format!("the local tenant {}", self.path().display())
    }
    fn tenant_file(&self) -> Option<&Path> {
        Some(self.path())
    }
    fn expect_domain(&self, domain: &str) -> Result<(), ProviderError> {
        self.set_domain_hint(domain)
    }
}

/// What a workflow opens its backend from, once it holds the state lock: a
/// [`BackendSpec`] (the CLI), or a backend opened already (a library user's or a test's
/// provider, e.g. an in-memory one).
pub trait OpenBackend {
    /// Open the backend.
    fn open(self) -> Result<Box<dyn Backend>, OpsError>;
}

impl OpenBackend for &BackendSpec {
    fn open(self) -> Result<Box<dyn Backend>, OpsError> {
        open_backend(self)
    }
}

impl OpenBackend for Box<dyn Backend> {
    fn open(self) -> Result<Box<dyn Backend>, OpsError> {
        Ok(self)
    }
}

/// Open the backend `spec` names: the one place that knows the kinds of backend. Opening
/// never creates anything: a missing local file starts a fresh tenant, which
/// [`check_state_fits_tenant`] allows only for an empty state, and [`open_existing`] never.
pub fn open_backend(spec: &BackendSpec) -> Result<Box<dyn Backend>, OpsError> {
    match spec {
        BackendSpec::Local { .. } => Ok(Box::new(open_local(spec)?)),
        BackendSpec::Microsoft {
            tenant,
            cloud,
            skus,
        } => {
            let Some(tenant) = tenant else {
                return Err(OpsError::BadBackend {
                    spec: "microsoft".into(),
                    problem: "no tenant: write `microsoft:TENANT` (e.g. `microsoft:coho.onmicrosoft.com`), set AZURE_TENANT_ID, or give a desired file with `tenant:`".into(),
                });
            };
            Ok(Box::new(microsoft::open(tenant, *cloud, skus.clone())?))
        }
    }
}

/// [`open_backend`] for commands that read a tenant (`show`): a missing, empty or 0-byte
/// local file is an error, never printed as an empty tenant nor made a new tenant by a
/// mistyped path (issue 9 item 4).
pub fn open_existing(spec: &BackendSpec) -> Result<Box<dyn Backend>, OpsError> {
    let backend = open_backend(spec)?;
    match backend.presence() {
        Presence::Present => Ok(backend),
        missing => Err(no_tenant(spec, missing)),
    }
}

/// The local tenant itself, for the `local` commands that change it behind crmctl's back
/// (they need its admin operations, which no service has).
pub fn open_local(spec: &BackendSpec) -> Result<LocalProvider, OpsError> {
    let BackendSpec::Local { path, .. } = spec else {
        return Err(OpsError::BadBackend {
            spec: spec.as_str().into_owned(),
            problem: "the `local` commands work on the embedded local tenant only: use `--backend local:PATH`".into(),
        });
    };
    LocalProvider::open(path).map_err(|source| OpsError::OpenLocal {
        path: path.clone(),
        source,
    })
}

/// [`open_local`] for the `local` commands but `import`: the tenant must exist (issue 9
/// item 4: a mistyped path is refused, not made a new tenant).
pub fn open_local_existing(spec: &BackendSpec) -> Result<LocalProvider, OpsError> {
    let p = open_local(spec)?;
    match p.presence() {
        Presence::Present => Ok(p),
        missing => Err(no_tenant(spec, missing)),
    }
}

fn no_tenant(spec: &BackendSpec, presence: Presence) -> OpsError {
    let path = match spec {
        BackendSpec::Local { path, .. } => path.clone(),
        BackendSpec::Microsoft { .. } => PathBuf::from(spec.as_str().into_owned()),
    };
    OpsError::NoTenant {
        path: path.clone(),
        what: presence.describe(),
    }
}

/// The absolute path of a file, symlinks resolved (those of its directory when the file
/// does not exist yet): two spellings of one file give the same path.
pub fn file_identity(path: &Path) -> PathBuf {
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
    backend: &dyn Backend,
    observed: &Tenant,
    state: &mut State,
    state_path: &Path,
) -> Result<(), OpsError> {
    let id = backend.identity();
    let refuse = |message: String| Err(OpsError::StateDoesNotFit(message));
    // The state (or its journal) in the tenant's own file would be renamed over the
    // tenant database by the first save.
    if let Some(tenant_file) = backend.tenant_file().map(file_identity) {
        for (what, p) in [
            ("the state", state_path.to_path_buf()),
            (
                "the state's journal",
                crate::state::store::journal_path(state_path),
            ),
        ] {
            if file_identity(&p) == tenant_file {
                return refuse(format!(
                    "--state {}: {what} would be written over {}; give the state a file of its own (default {DEFAULT_STATE})",
                    state_path.display(),
                    backend.location()
                ));
            }
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
        let presence = backend.presence();
        if presence != Presence::Present {
            return refuse(format!(
                "{} {}, but the state {} manages {n} object(s){of}: a missing tenant is not an empty one (planning against it would create everything again).\nCheck --backend (or CRMCTL_BACKEND): a mistyped path names a new, empty tenant. To really start over in a fresh tenant, move the state file away first.",
                backend.location(),
                presence.describe(),
                state_path.display()
            ));
        }
        if !state.backend.is_empty() && state.backend != id {
            return refuse(format!(
                "the state {} manages {n} object(s){of}, but this run uses the backend {id}: a state used against another tenant binds its addresses to unrelated objects.\nUse --backend {}, or another --state file for this tenant (a new state adopts existing objects by natural key). If the tenant file itself was moved there, set `backend` in the state file to `{id}`.",
                state_path.display(),
                state.backend
            ));
        }
        if !state.tenant.is_empty()
            && !observed.domain.is_empty()
            && !state.tenant.eq_ignore_ascii_case(&observed.domain)
        {
            return refuse(format!(
                "the state {} manages {n} object(s) of tenant `{}`, but the backend {id} holds tenant `{}`.\nUse the backend of `{}`, or another --state file for `{}` (a new state adopts existing objects by natural key).",
                state_path.display(),
                state.tenant,
                observed.domain,
                state.tenant,
                observed.domain
            ));
        }
    }
    state.backend = id;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 11 item 3: `--backend` is parsed in one place; its errors say what to write.
    #[test]
    fn backend_specs_parse_or_say_what_to_write() {
        for (given, want) in [
            (None, Ok(DEFAULT_BACKEND)),
            (Some("local:t.db"), Ok("local:t.db")),
            (
                Some("local:"),
                Err("backend `local:`: missing path; use `local:PATH`"),
            ),
            (
                Some("graph:x"),
                Err("backend `graph:x`: unknown scheme `graph`; use `local:PATH`"),
            ),
            (Some("t.db"), Err("backend `t.db`: expected `local:PATH`")),
            // issue 12 item 1: a real tenant, named or from the file.
            (
                Some("microsoft:coho.onmicrosoft.com"),
                Ok("microsoft:coho.onmicrosoft.com"),
            ),
        ] {
            match (BackendSpec::parse(given), want) {
                (Ok(spec), Ok(text)) => assert_eq!(spec.as_str(), text),
                (Err(e), Err(start)) => assert!(e.to_string().starts_with(start), "{e}"),
                (got, want) => panic!("{given:?}: {got:?}, want {want:?}"),
            }
        }
        let m = BackendSpec::parse(Some("microsoft:Coho.onmicrosoft.com")).unwrap();
        assert!(m.files().is_empty());
        assert!(m.same_tenant(&BackendSpec::parse(Some("microsoft:coho.onmicrosoft.com")).unwrap()));
        // A tenant the spec names wins over the file's; one it lacks comes from the file.
        let named = m.clone().or_tenant("other.onmicrosoft.com");
        assert_eq!(named.as_str(), "microsoft:Coho.onmicrosoft.com");
        let unnamed = BackendSpec::Microsoft {
            tenant: None,
            cloud: Cloud::Public,
            skus: vec![],
        };
        assert_eq!(unnamed.as_str(), "microsoft");
        assert_eq!(
            unnamed.or_tenant("coho.onmicrosoft.com").as_str(),
            "microsoft:coho.onmicrosoft.com"
        );
        let a = BackendSpec::parse(Some("local:./t.db")).unwrap();
        let b = BackendSpec::parse(Some("local:t.db")).unwrap();
        assert!(a.same_tenant(&b), "two spellings of one file");
        assert!(!a.same_tenant(&BackendSpec::parse(Some("local:u.db")).unwrap()));
        let files: Vec<&str> = b.files().iter().map(|(what, _)| *what).collect();
        assert_eq!(
            files,
            [
                "the local tenant",
                "the local tenant's WAL",
                "the local tenant's WAL index"
            ]
        );
    }
}
