//! The HTTPS server: its own accept loop (tokio-rustls + hyper's HTTP/1 server) so that
//! a "dropped response" closes exactly one connection without an answer; the fault draws;
//! and the shared state of the emulator.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

use super::{
    bap, dataverse, graph, powerplatform, tls, token, EmulatorConfig, EmulatorError,
    EmulatorHandle, Faults,
};
use crate::provider::Provider;

/// An answer, or none (the connection is closed after the request was carried out).
pub(super) enum Reply {
    Answer(Answer),
    Drop,
}

/// Status, extra headers, JSON body (none for 204).
pub(super) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
}

impl Answer {
    pub fn json(status: u16, body: serde_json::Value) -> Answer {
        Answer {
            status,
            headers: vec![],
            body: Some(body),
        }
    }

    pub fn empty(status: u16) -> Answer {
        Answer {
            status,
            headers: vec![],
            body: None,
        }
    }
}

/// Counters read by the handle.
#[derive(Default)]
pub(super) struct Stats {
    graph: AtomicU64,
    dataverse: AtomicU64,
    /// Admin API (BAP) and Power Platform API requests (issue 13 item 5).
    bap: AtomicU64,
    /// Lifecycle operations started (answered 202), by kind (`Create`, `Copy`, ...): how a
    /// test tells one create or copy from two.
    operations: Mutex<std::collections::BTreeMap<String, u64>>,
    /// On-demand backups taken, in order.
    backups: Mutex<Vec<super::EmulatedBackup>>,
    /// Answers dropped after the request was carried out (`Faults::drop_rate`).
    dropped: AtomicU64,
}

impl Stats {
    pub fn graph_requests(&self) -> u64 {
        self.graph.load(Ordering::Relaxed)
    }

    pub fn dataverse_requests(&self) -> u64 {
        self.dataverse.load(Ordering::Relaxed)
    }

    pub fn bap_requests(&self) -> u64 {
        self.bap.load(Ordering::Relaxed)
    }

    pub fn dropped_answers(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn count_operation(&self, kind: &str) {
        *self
            .operations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind.to_string())
            .or_default() += 1;
    }

    pub fn operations(&self) -> std::collections::BTreeMap<String, u64> {
        self.operations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn record_backup(&self, b: super::EmulatedBackup) {
        self.backups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(b);
    }

    pub fn backups(&self) -> Vec<super::EmulatedBackup> {
        self.backups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Per user, what Graph has and the observed tenant does not.
#[derive(Debug, Clone, Default)]
pub(super) struct UserExtra {
    pub mail_nickname: String,
    pub account_enabled: bool,
}

/// The state the handlers share.
pub(super) struct Shared {
    pub config: EmulatorConfig,
    pub base: String,
    pub provider: Arc<dyn Provider>,
    pub tokens: Mutex<HashSet<String>>,
    faults_rng: Mutex<fastrand::Rng>,
    ids_rng: Mutex<fastrand::Rng>,
    /// When objects created through the emulator were created (replication lag).
    pub born: Mutex<HashMap<String, Instant>>,
    pub extra: Mutex<HashMap<String, UserExtra>>,
    /// Serializes writes: a check and the op that follows it see the same tenant.
    pub write_lock: tokio::sync::Mutex<()>,
    pub stats: Arc<Stats>,
    /// The ids the Dataverse Web API handed out (issue 13 item 5).
    pub dataverse: dataverse::Ids,
    /// The observed tenant, shared by requests until a write changes it (issue 12 item 5:
    /// listing 100k users in pages observes the tenant once, not once a page).
    pub cache: Mutex<Option<Arc<crate::observed::Tenant>>>,
    /// Delta rounds and the snapshots behind issued delta tokens.
    pub delta: Mutex<super::delta::DeltaState>,
    /// The admin API's lifecycle operations (issue 13 item 5).
    pub bap: bap::Lifecycle,
}

/// What a fault draw decided for one request.
pub(super) enum Draw {
    Throttle,
    ServerError(u16),
    Pass,
}

impl Shared {
    pub fn faults(&self) -> &Faults {
        &self.config.faults
    }

    /// One draw before a request is served: 429, 5xx or neither.
    pub fn draw_before(&self) -> Draw {
        let f = &self.config.faults;
        if f.throttle_rate <= 0.0 && f.server_error_rate <= 0.0 {
            return Draw::Pass;
        }
        let mut rng = self.faults_rng.lock().unwrap_or_else(|p| p.into_inner());
        let x = rng.f64();
        if x < f.throttle_rate {
            Draw::Throttle
        } else if x < f.throttle_rate + f.server_error_rate {
            Draw::ServerError(if rng.bool() { 500 } else { 503 })
        } else {
            Draw::Pass
        }
    }

    /// Whether a throttle hits one `$batch` item.
    pub fn draw_item_throttle(&self) -> bool {
        let rate = self.config.faults.throttle_rate;
        rate > 0.0
            && self
                .faults_rng
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .f64()
                < rate
    }

    /// Whether the answer to a request already carried out is dropped.
    pub fn draw_drop(&self) -> bool {
        let rate = self.config.faults.drop_rate;
        let drop = rate > 0.0
            && self
                .faults_rng
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .f64()
                < rate;
        if drop {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop
    }

    /// A fresh GUID-shaped id (request ids, tokens); not from the fault generator, so that
    /// faults depend only on the order of requests.
    pub fn guid(&self) -> String {
        let mut rng = self.ids_rng.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = (rng.u64(..), rng.u64(..));
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// Whether `auth` (an `Authorization` header) carries a token the token endpoint issued.
    pub fn knows(&self, auth: &str) -> bool {
        let token = auth.strip_prefix("Bearer ").unwrap_or("");
        !token.is_empty()
            && self
                .tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(token)
    }

    /// Whether `id` was created less than the replication lag ago.
    pub fn lagging(&self, id: &str) -> bool {
        let lag = self.config.faults.replication_lag;
        if lag.is_zero() {
            return false;
        }
        let born = self.born.lock().unwrap_or_else(|p| p.into_inner());
        born.get(id).is_some_and(|t| t.elapsed() < lag)
    }

    /// Record that `id` was just created.
    pub fn record_birth(&self, id: &str) {
        if !self.config.faults.replication_lag.is_zero() {
            let mut born = self.born.lock().unwrap_or_else(|p| p.into_inner());
            born.insert(id.to_string(), Instant::now());
        }
    }
}

fn io(what: &str, source: std::io::Error) -> EmulatorError {
    EmulatorError::Io {
        what: what.into(),
        source,
    }
}

pub(super) fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
    let certs = tls::generate()?;
    let (dir, temp) = match &config.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("crmctl-emulator")
                .tempdir()
                .map_err(|e| io("creating a folder for the root certificate", e))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let ca_file = dir.join("crmctl-emulator-root.pem");
    std::fs::write(&ca_file, &certs.root_pem)
        .map_err(|e| io(&format!("writing {}", ca_file.display()), e))?;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| io("binding", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io("binding", e))?;
    let port = listener.local_addr().map_err(|e| io("binding", e))?.port();
    let base = format!("https://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("crmctl-emulator")
        .enable_all()
        .build()
        .map_err(|e| io("starting the runtime", e))?;
    let stats = Arc::new(Stats::default());
    let seed = config.faults.seed;
    let tenant_id = config.tenant_id.clone();
    let shared = Arc::new(Shared {
        provider: config.provider.clone(),
        config,
        base: base.clone(),
        tokens: Mutex::new(HashSet::new()),
        faults_rng: Mutex::new(fastrand::Rng::with_seed(seed)),
        ids_rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15)),
        born: Mutex::new(HashMap::new()),
        extra: Mutex::new(HashMap::new()),
        write_lock: tokio::sync::Mutex::new(()),
        stats: stats.clone(),
        dataverse: dataverse::Ids::default(),
        cache: Mutex::new(None),
        delta: Mutex::new(super::delta::DeltaState::default()),
        bap: bap::Lifecycle::default(),
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(certs.server);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(|e| io("listening", e))?
    };
    let thread = std::thread::Builder::new()
        .name("crmctl-emulator".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = accept_loop(listener, acceptor, shared) => {}
                    _ = stop_rx => {}
                }
            });
            runtime.shutdown_background();
        })
        .map_err(|e| io("starting the server thread", e))?;
    Ok(EmulatorHandle {
        base,
        ca_file,
        tenant_id,
        _temp: temp,
        stop: Some(stop_tx),
        thread: Some(thread),
        stats,
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let kill = Arc::new(Notify::new());
            let kill_svc = kill.clone();
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let kill = kill_svc.clone();
                async move { Ok::<_, Infallible>(serve(shared, req, kill).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            // A dropped response: the connection (and its TLS stream) goes away with
            // nothing written for the request.
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {}
            }
        });
    }
}

async fn serve(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
    kill: Arc<Notify>,
) -> hyper::Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let latency = shared.faults().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let request_id = shared.guid();
    let client_request_id = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let ctx = graph::Ctx {
        request_id: request_id.clone(),
        client_request_id: client_request_id.clone(),
    };
    let reply = if path.ends_with("/oauth2/v2.0/token") {
        Reply::Answer(token::token(&shared, &method, &path, &body))
    } else if path.starts_with(dataverse::PREFIX) {
        shared.stats.dataverse.fetch_add(1, Ordering::Relaxed);
        let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
        let auth = header("authorization").unwrap_or("");
        dataverse::serve(
            &shared,
            &ctx,
            auth,
            &method,
            &path,
            &query,
            header("prefer"),
            &body,
        )
        .await
    } else if path.starts_with(&format!("{}/", bap::PREFIX))
        || path.starts_with(&format!("{}/", powerplatform::PREFIX))
    {
        shared.stats.bap.fetch_add(1, Ordering::Relaxed);
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if path.starts_with(bap::PREFIX) {
            bap::serve(&shared, &ctx, auth, &method, &path, &query, &body).await
        } else {
            powerplatform::serve(&shared, auth, &method, &path, &query, &body).await
        }
    } else {
        shared.stats.graph.fetch_add(1, Ordering::Relaxed);
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        graph::serve(&shared, &ctx, auth, &method, &path, &query, &body).await
    };
    match reply {
        Reply::Answer(a) => to_response(a, &request_id, &client_request_id),
        Reply::Drop => {
            kill.notify_one();
            std::future::pending().await
        }
    }
}

fn to_response(
    a: Answer,
    request_id: &str,
    client_request_id: &str,
) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder()
        .status(a.status)
        .header("request-id", request_id)
        .header("client-request-id", client_request_id);
    for (k, v) in &a.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let body = match a.body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        }
        None => Bytes::new(),
    };
    b.body(Full::new(body))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}
