//! A wire-format emulator of the Microsoft identity platform's token endpoint and a subset
//! of Microsoft Graph v1.0 (issue 12 item 5), served over HTTPS on loopback with a
//! certificate it generates, backed by a [`Provider`] (the in-memory tenant or a local
//! tenant file) so that every rule of domain.md holds: each write is an [`Op`] executed by
//! the provider, its refusals translated into Graph's status codes and error bodies.
//!
//! The Dataverse Web API of each instance (issue 13 item 5: system users, roles, `$ref`
//! associations, access mode, the organisation's currency) is served at
//! `/dataverse/{url name}/api/data/v9.2/...` from the same tenant, with the same fault
//! knobs ([`EmulatorHandle::dataverse_template`]).
//!
//! The Power Platform admin API (BAP) of environments (list, get, validate, create,
//! update, switch type, delete, copy, reset, lifecycle operations) is served at
//! `/bap/providers/Microsoft.BusinessAppPlatform/...` ([`EmulatorHandle::bap_url`]) and the
//! Power Platform API's on-demand backups at `/powerplatform/...`
//! ([`EmulatorHandle::powerplatform_url`]), from the same tenant with the same knobs plus
//! slow lifecycle operations (issue 13 items 3 and 5).
//!
//! Tests start it in-process ([`Emulator::start`]) on a free port; `crmctl emulate` runs
//! it until Ctrl-C. Fault knobs ([`Faults`], deterministic from a seed): throttling with
//! `Retry-After`, 5xx, latency, responses dropped after the change was made (the
//! connection closed without an answer), replication lag, page size.
//!
//! [`Op`]: crate::domain::op::Op

/// The value of a `Result<T, Answer>`, or return the answer (an error reply).
macro_rules! or_answer {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(answer) => return answer,
        }
    };
}

mod bap;
mod batch;
mod dataverse;
mod delta;
mod graph;
mod groups;
mod licences;
mod powerplatform;
mod server;
mod tls;
mod token;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::observed::Tenant;
use crate::provider::memory::MemoryProvider;
use crate::provider::Provider;

/// What the emulator serves and how it misbehaves.
pub struct EmulatorConfig {
    /// The tenant the token endpoint knows (`/{tenant}/oauth2/v2.0/token`): a GUID or a
    /// domain name.
    pub tenant_id: String,
    /// The application (client) id that may sign in.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
    /// The DER of the certificate registered for the app, if any: client assertions signed
    /// by its key are accepted (issue 12 item 1).
    pub client_certificate: Option<Vec<u8>>,
    /// The tenant behind Graph: every write is an op executed by it.
    pub provider: Arc<dyn Provider>,
    /// `countryLetterCode` of `GET /organization`.
    pub country: String,
    /// The SKU of each licence plan in `subscribedSkus`, `assignedLicenses` and
    /// `assignLicense` (a tenant that bought other offers than the built-in table's).
    pub skus: crate::provider::graph::skus::SkuTable,
    /// Fault knobs.
    pub faults: Faults,
    /// Folder for the root certificate's PEM; a fresh temporary folder (removed with the
    /// handle) when `None`.
    pub dir: Option<PathBuf>,
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed.
        f.debug_struct("EmulatorConfig")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("country", &self.country)
            .field("faults", &self.faults)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl EmulatorConfig {
    /// An emulator of `tenant` (held in memory) with the given credentials and no faults.
    pub fn new(
        tenant: Tenant,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> EmulatorConfig {
        EmulatorConfig::with_provider(
            Arc::new(MemoryProvider::new(tenant)),
            tenant_id,
            client_id,
            client_secret,
        )
    }

    /// An emulator of the tenant behind `provider` (e.g. a local tenant file).
    pub fn with_provider(
        provider: Arc<dyn Provider>,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> EmulatorConfig {
        EmulatorConfig {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            client_certificate: None,
            provider,
            country: "US".into(),
            skus: crate::provider::graph::skus::SkuTable::builtin(),
            faults: Faults::default(),
            dir: None,
        }
    }
}

/// Fault knobs, all off by default. Which request draws a fault is decided by a random
/// generator seeded with `seed`, in the order requests arrive: the same sequence of
/// requests meets the same faults.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Seed of the generator.
    pub seed: u64,
    /// Share of Graph requests (and of `$batch` items) answered 429 with `Retry-After`,
    /// before anything is done (0.0 to 1.0).
    pub throttle_rate: f64,
    /// The `Retry-After` of those answers, in seconds.
    pub retry_after_secs: u32,
    /// Share of Graph requests answered 500 or 503 before anything is done.
    pub server_error_rate: f64,
    /// Added to every answer.
    pub latency: Duration,
    /// Share of Graph requests whose connection is closed without an answer *after* the
    /// request was carried out.
    pub drop_rate: f64,
    /// How long an object created through the emulator answers 404
    /// `Request_ResourceNotFound` when addressed by id (the directory's replication lag).
    pub replication_lag: Duration,
    /// Page size of lists when the request gives no `$top` (Graph's default: 100).
    pub page_size: usize,
    /// How long an admin API lifecycle operation (create, update, switch, delete, reset,
    /// copy) reports `Running`, holding its environment (409 `OperationNotStartable` to
    /// other mutations, `states.management` not `Ready`).
    pub lifecycle_duration: Duration,
    /// How long a copy runs ("slow operations"); zero: [`Faults::lifecycle_duration`].
    pub copy_duration: Duration,
    /// Page size of the admin API's environment list (`nextLink` beyond it).
    pub environment_page_size: usize,
    /// Kinds of admin API lifecycle operations (`Copy`, `Reset`, `Create`, `Update`,
    /// `Delete`, `ModifySku`, matched without case) that end `Failed` after their duration,
    /// leaving the tenant as it was: the service's copy or reset that fails half-way.
    pub failing_operations: Vec<String>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            seed: 0,
            throttle_rate: 0.0,
            retry_after_secs: 1,
            server_error_rate: 0.0,
            latency: Duration::ZERO,
            drop_rate: 0.0,
            replication_lag: Duration::ZERO,
            page_size: graph::DEFAULT_PAGE,
            lifecycle_duration: Duration::ZERO,
            copy_duration: Duration::ZERO,
            environment_page_size: 100,
            failing_operations: vec![],
        }
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The certificate or TLS configuration.
    #[error("emulator TLS setup failed: {0}")]
    Tls(String),
    /// A socket, a file or the runtime.
    #[error("emulator: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The emulator.
pub struct Emulator;

impl Emulator {
    /// Start serving on `127.0.0.1` on a free port, on a runtime of its own (two worker
    /// threads). Returns once the socket listens; the handle stops the server when dropped.
    pub fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        server::start(config)
    }
}

/// A running emulator: its addresses; stops it when dropped.
pub struct EmulatorHandle {
    base: String,
    ca_file: PathBuf,
    tenant_id: String,
    _temp: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<server::Stats>,
}

impl EmulatorHandle {
    /// `https://127.0.0.1:PORT`: the authority host (`AZURE_AUTHORITY_HOST`).
    pub fn authority_host(&self) -> &str {
        &self.base
    }

    /// `https://127.0.0.1:PORT`: Graph's base URL (`CRMCTL_GRAPH_URL`; requests go to
    /// `{graph_url}/v1.0/...`).
    pub fn graph_url(&self) -> &str {
        &self.base
    }

    /// The token endpoint of the emulated tenant.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base, self.tenant_id)
    }

    /// The PEM file of the generated root certificate (`CRMCTL_CA_FILE`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The environment lines that point crmctl at this emulator.
    pub fn env_lines(&self) -> Vec<String> {
        vec![
            format!("AZURE_AUTHORITY_HOST={}", self.authority_host()),
            format!("CRMCTL_GRAPH_URL={}", self.graph_url()),
            format!("CRMCTL_CA_FILE={}", self.ca_file.display()),
            format!("CRMCTL_DATAVERSE_URL={}", self.dataverse_template()),
            format!("CRMCTL_BAP_URL={}", self.bap_url()),
            format!("CRMCTL_POWERPLATFORM_URL={}", self.powerplatform_url()),
        ]
    }

    /// `https://127.0.0.1:PORT/bap`: the admin API's base URL (`CRMCTL_BAP_URL`; requests go
    /// to `{bap_url}/providers/Microsoft.BusinessAppPlatform/...`; token scope
    /// `https://service.powerapps.com/.default`).
    pub fn bap_url(&self) -> String {
        format!("{}{}", self.base, bap::PREFIX)
    }

    /// `https://127.0.0.1:PORT/powerplatform`: the Power Platform API's base URL
    /// (`CRMCTL_POWERPLATFORM_URL`; backups at
    /// `{url}/environmentmanagement/environments/{id}/backups`).
    pub fn powerplatform_url(&self) -> String {
        format!("{}{}", self.base, powerplatform::PREFIX)
    }

    /// Admin API and Power Platform API requests received so far.
    pub fn bap_requests(&self) -> u64 {
        self.stats.bap_requests()
    }

    /// `https://127.0.0.1:PORT/dataverse/{url}`: the Dataverse URL template
    /// (`CRMCTL_DATAVERSE_URL`) of the emulated instances (issue 13 item 5).
    pub fn dataverse_template(&self) -> String {
        format!("{}{}{{url}}", self.base, dataverse::PREFIX)
    }

    /// Dataverse Web API requests received so far.
    pub fn dataverse_requests(&self) -> u64 {
        self.stats.dataverse_requests()
    }

    /// Graph requests received so far (token requests not counted).
    pub fn graph_requests(&self) -> u64 {
        self.stats.graph_requests()
    }

    /// Answers dropped so far after their request was carried out (`Faults::drop_rate`).
    pub fn dropped_answers(&self) -> u64 {
        self.stats.dropped_answers()
    }

    /// The admin API lifecycle operations started so far (each answered 202), by kind:
    /// `Create`, `Update`, `ModifySku`, `Delete`, `Copy`, `Reset`. A request refused (400,
    /// 409) starts none; one whose answer was dropped did.
    pub fn lifecycle_operations(&self) -> std::collections::BTreeMap<String, u64> {
        self.stats.operations()
    }

    /// The on-demand backups taken through the Power Platform API so far, in order.
    pub fn backups(&self) -> Vec<EmulatedBackup> {
        self.stats.backups()
    }
}

/// An on-demand backup the emulator took (issue 13 item 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedBackup {
    /// The environment (instance) id.
    pub environment: String,
    /// The label the request gave (crmctl names the plan and the action in it).
    pub label: String,
    /// The backup's id as answered.
    pub id: String,
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
