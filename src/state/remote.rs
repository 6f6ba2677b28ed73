//! Remote state (issue 15 item 1): `--state azblob://ACCOUNT/CONTAINER/KEY`,
//! `s3://BUCKET/KEY`, `gs://BUCKET/KEY`, through the maintained `object_store` crate.
//!
//! A state "path" whose text starts with one of [`SCHEMES`] names objects in a store instead
//! of files; the functions of [`crate::state::store`], [`crate::state::lock`] and
//! [`crate::state::cache`] dispatch here on [`is_remote`], so that the workflows (`src/ops/`)
//! use one interface for both. The objects beside the state `KEY`:
//!
//! - `KEY`: the state JSON. Every write is conditional (the ETag read last, `If-Match`,
//!   `PutMode::Update`; the first one `If-None-Match: *`, `PutMode::Create`): a state changed
//!   by another writer since this run read it is [`crate::state::store::StateError::Conflict`], never a silent
//!   overwrite.
//! - `KEY.lock`: the lock, created only if absent (`PutMode::Create`), the same JSON as the
//!   local lock file (owner, id, pid, operation, time).
//! - `KEY.journal/SERIAL` (20 digits): one object per batch of an apply, created only if
//!   absent. One object per batch rather than one appended object: a store has no append,
//!   and a read-modify-write of one journal object would cost a whole rewrite per batch
//!   (quadratic) plus a conflict retry; listing the prefix gives the batches in serial
//!   order, and the replay is the local journal's, line for line.
//! - `KEY.history/SERIAL` (20 digits): the state as written at each serial, the last
//!   [`HISTORY_KEEP`] kept (`crmctl state list --history`, `crmctl state restore SERIAL`).
//!
//! Credentials come from each store's usual environment (`from_env` builders): Azure
//! `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`, `AZURE_CLIENT_ID`/`AZURE_TENANT_ID`/
//! `AZURE_CLIENT_SECRET` or `AZURE_FEDERATED_TOKEN_FILE` (workload identity), and
//! `AZURE_STORAGE_USE_EMULATOR=true` with `AZURITE_BLOB_STORAGE_URL` for Azurite; AWS
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_REGION`/`AWS_ENDPOINT`; GCS
//! `GOOGLE_SERVICE_ACCOUNT`/`GOOGLE_APPLICATION_CREDENTIALS`. Errors carry the store's
//! message, which never includes a key or token (object_store redacts credentials).
//! Source of the option names: object_store 0.14 `azure/builder.rs`, `aws/builder.rs`,
//! `gcp/builder.rs` (`AzureConfigKey`, `AmazonS3ConfigKey`, `GoogleConfigKey`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

/// The URL schemes of remote states.
pub const SCHEMES: [&str; 3] = ["azblob://", "s3://", "gs://"];

/// How many past states `KEY.history/` keeps.
pub const HISTORY_KEEP: usize = 10;

/// Which store a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// Azure Blob Storage (and Azurite).
    Azure,
    /// Amazon S3 (and S3-compatible stores through `AWS_ENDPOINT`).
    S3,
    /// Google Cloud Storage.
    Gcs,
}

/// A parsed remote state URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteUrl {
    /// The store.
    pub kind: StoreKind,
    /// The storage account (Azure only; empty otherwise).
    pub account: String,
    /// The container (Azure) or bucket.
    pub bucket: String,
    /// The object key of the state, `/`-separated.
    pub key: String,
}

/// Why a remote state URL or object could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The URL is not of a supported form.
    #[error("`{url}` is not a remote state URL: {problem}; write azblob://ACCOUNT/CONTAINER/KEY, s3://BUCKET/KEY or gs://BUCKET/KEY (or a local path)")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// The store refused or failed a request.
    #[error("{url}: {message}")]
    Store {
        /// The object.
        url: String,
        /// The store's message.
        message: String,
    },
    /// A conditional write lost: the object changed (or appeared) since it was read.
    #[error("{url}: changed by another writer since it was read")]
    Conflict {
        /// The object.
        url: String,
    },
}

/// Whether a state path names a remote state.
pub fn is_remote(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|s| SCHEMES.iter().any(|p| s.starts_with(p)))
}

/// Parse `azblob://ACCOUNT/CONTAINER/KEY`, `s3://BUCKET/KEY` or `gs://BUCKET/KEY`.
pub fn parse(url: &str) -> Result<RemoteUrl, RemoteError> {
    let bad = |problem: &str| RemoteError::BadUrl {
        url: url.to_string(),
        problem: problem.to_string(),
    };
    let (kind, rest) = if let Some(r) = url.strip_prefix("azblob://") {
        (StoreKind::Azure, r)
    } else if let Some(r) = url.strip_prefix("s3://") {
        (StoreKind::S3, r)
    } else if let Some(r) = url.strip_prefix("gs://") {
        (StoreKind::Gcs, r)
    } else {
        return Err(bad("unknown scheme"));
    };
    if rest.contains(['?', '#']) {
        return Err(bad(
            "a query or fragment is not allowed (credentials go in the environment, never in the URL)",
        ));
    }
    let mut parts = rest.splitn(if kind == StoreKind::Azure { 3 } else { 2 }, '/');
    let account = if kind == StoreKind::Azure {
        let a = parts.next().unwrap_or_default();
        if a.is_empty() {
            return Err(bad("the storage account is missing"));
        }
        a.to_string()
    } else {
        String::new()
    };
    let bucket = parts.next().unwrap_or_default();
    if bucket.is_empty() {
        return Err(bad(if kind == StoreKind::Azure {
            "the container is missing"
        } else {
            "the bucket is missing"
        }));
    }
    let key = parts.next().unwrap_or_default();
    if key.is_empty() || key.ends_with('/') {
        return Err(bad("the object key of the state is missing"));
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("the key has an empty, `.` or `..` segment"));
    }
    Ok(RemoteUrl {
        kind,
        account,
        bucket: bucket.to_string(),
        key: key.to_string(),
    })
}

impl RemoteUrl {
    /// The URL of the object `key` in the same container or bucket.
    pub fn with_key(&self, key: &str) -> String {
        match self.kind {
            StoreKind::Azure => format!("azblob://{}/{}/{key}", self.account, self.bucket),
            StoreKind::S3 => format!("s3://{}/{key}", self.bucket),
            StoreKind::Gcs => format!("gs://{}/{key}", self.bucket),
        }
    }
}

type Stores = Mutex<HashMap<(StoreKind, String, String), Arc<dyn ObjectStore>>>;

fn stores() -> &'static Stores {
    static STORES: OnceLock<Stores> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The client of the container or bucket of `u`, built once per process from the
/// environment.
fn store_of(u: &RemoteUrl, url: &str) -> Result<Arc<dyn ObjectStore>, RemoteError> {
    let id = (u.kind, u.account.clone(), u.bucket.clone());
    let mut map = stores().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = map.get(&id) {
        return Ok(s.clone());
    }
    let failed = |e: object_store::Error| {
        RemoteError::Store {
        url: url.to_string(),
        message: format!(
            "cannot set up the client: {e} (credentials come from the environment: see docs/pipelines.md, Remote state)"
        ),
    }
    };
    // reqwest is built without a default TLS provider (Cargo.toml): the same ring provider
    // as the tenant transport (src/provider/http/transport.rs); already set is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store: Arc<dyn ObjectStore> = match u.kind {
        StoreKind::Azure => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_account(&u.account)
                .with_container_name(&u.bucket)
                .build()
                .map_err(failed)?,
        ),
        StoreKind::S3 => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&u.bucket)
                .build()
                .map_err(failed)?,
        ),
        StoreKind::Gcs => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&u.bucket)
                .build()
                .map_err(failed)?,
        ),
    };
    map.insert(id, store.clone());
    Ok(store)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("crmctl-remote-state")
            .enable_all()
            .build()
            .expect("the remote-state runtime starts")
    })
}

/// Run a store request to completion from synchronous code, also when called from inside
/// another runtime (the apply engine's): on a thread of its own, on a runtime kept for the
/// whole process (the clients' connection pools live on it).
fn run<T: Send, F: std::future::Future<Output = T>>(f: impl FnOnce() -> F + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| runtime().block_on(f()))
            .join()
            .expect("a remote-state request does not panic")
    })
}

fn split(url: &str) -> Result<(Arc<dyn ObjectStore>, ObjPath), RemoteError> {
    let u = parse(url)?;
    let store = store_of(&u, url)?;
    Ok((store, ObjPath::from(u.key.as_str())))
}

fn store_err(url: &str, e: object_store::Error) -> RemoteError {
    match e {
        object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. } => {
            RemoteError::Conflict {
                url: url.to_string(),
            }
        }
        e => RemoteError::Store {
            url: url.to_string(),
            message: e.to_string(),
        },
    }
}

/// An object's content and its version (ETag and, where the store has them, version id).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// What a conditional write must match.
    pub version: UpdateVersion,
}

/// Read the object at `url`; `None` when it does not exist.
pub fn get(url: &str) -> Result<Option<Fetched>, RemoteError> {
    let (store, path) = split(url)?;
    run(move || async move {
        match store.get(&path).await {
            Ok(r) => {
                let version = UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let bytes = r.bytes().await.map_err(|e| store_err(url, e))?;
                Ok(Some(Fetched {
                    bytes: bytes.to_vec(),
                    version,
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(url, e)),
        }
    })
}

/// How a write must find the object.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Absent (`If-None-Match: *`).
    Absent,
    /// At this version (`If-Match`).
    Version(UpdateVersion),
    /// Whatever is there (history copies only).
    Any,
}

/// Write `bytes` to `url` if it is as `expect` says ([`RemoteError::Conflict`] otherwise);
/// the new version.
pub fn put(url: &str, bytes: Vec<u8>, expect: Expect) -> Result<UpdateVersion, RemoteError> {
    let (store, path) = split(url)?;
    let mode = match expect {
        Expect::Absent => PutMode::Create,
        Expect::Version(v) => PutMode::Update(v),
        Expect::Any => PutMode::Overwrite,
    };
    run(move || async move {
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let r = store
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await
            .map_err(|e| store_err(url, e))?;
        Ok(UpdateVersion {
            e_tag: r.e_tag,
            version: r.version,
        })
    })
}

/// Delete the object at `url` (absent: done).
pub fn delete(url: &str) -> Result<(), RemoteError> {
    let (store, path) = split(url)?;
    run(move || async move {
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(url, e)),
        }
    })
}

/// The URLs of the objects directly under `dir_url` (`.../KEY.journal`), in key order.
pub fn list(dir_url: &str) -> Result<Vec<String>, RemoteError> {
    let u = parse(dir_url)?;
    let store = store_of(&u, dir_url)?;
    let prefix = ObjPath::from(u.key.as_str());
    let mut keys = run(move || async move {
        store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| store_err(dir_url, e))
    })?
    .objects
    .into_iter()
    .map(|m| m.location.to_string())
    .collect::<Vec<_>>();
    keys.sort();
    Ok(keys.into_iter().map(|k| u.with_key(&k)).collect())
}

type Versions = Mutex<HashMap<String, Option<UpdateVersion>>>;

fn versions() -> &'static Versions {
    static V: OnceLock<Versions> = OnceLock::new();
    V.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Remember the version of the state at `url` this process read or wrote last: the next
/// [`write_state`] must find it there (`None`: the state did not exist).
pub fn remember_version(url: &str, v: Option<UpdateVersion>) {
    versions()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(url.to_string(), v);
}

/// Write the state object conditionally: it must still be as this process last read or
/// wrote it (never read: it must not exist), so another writer's state is never
/// overwritten. Also keeps the copy in `KEY.history/SERIAL` and prunes the history.
pub fn write_state(url: &str, serial: u64, bytes: Vec<u8>) -> Result<(), RemoteError> {
    let expect = versions()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(url)
        .cloned()
        .flatten()
        .map_or(Expect::Absent, Expect::Version);
    let v = put(url, bytes.clone(), expect)?;
    remember_version(url, Some(v));
    // The history is a convenience: a failure to keep it does not undo the write.
    if let Err(e) = put(&history_url(url, serial), bytes, Expect::Any) {
        tracing::warn!("state history not kept: {e}");
    } else if let Ok(all) = list(&history_dir(url)) {
        let over = all.len().saturating_sub(HISTORY_KEEP);
        for old in &all[..over] {
            let _ = delete(old);
        }
    }
    Ok(())
}

/// `KEY.journal` (the prefix of the journal objects).
pub fn journal_dir(url: &str) -> String {
    format!("{url}.journal")
}

/// The journal object of the batch that brought the state to `serial`.
pub fn journal_url(url: &str, serial: u64) -> String {
    format!("{url}.journal/{serial:020}")
}

/// `KEY.history` (the prefix of the kept states).
pub fn history_dir(url: &str) -> String {
    format!("{url}.history")
}

/// The kept state of `serial`.
pub fn history_url(url: &str, serial: u64) -> String {
    format!("{url}.history/{serial:020}")
}

/// The serials kept in the history of the state at `url`, oldest first.
pub fn history(url: &str) -> Result<Vec<u64>, RemoteError> {
    Ok(list(&history_dir(url))?
        .iter()
        .filter_map(|u| u.rsplit('/').next()?.parse().ok())
        .collect())
}

/// The journal objects of the state at `url`, concatenated as the lines of a local journal
/// (`None`: no journal).
pub fn read_journal(url: &str) -> Result<Option<Vec<u8>>, RemoteError> {
    let objects = list(&journal_dir(url))?;
    if objects.is_empty() {
        return Ok(None);
    }
    let mut all = Vec::new();
    for o in &objects {
        if let Some(f) = get(o)? {
            all.extend_from_slice(&f.bytes);
            if !f.bytes.ends_with(b"\n") {
                all.push(b'\n');
            }
        }
    }
    Ok(Some(all))
}

/// Remove every journal object of the state at `url`.
pub fn clear_journal(url: &str) -> Result<(), RemoteError> {
    for o in list(&journal_dir(url))? {
        delete(&o)?;
    }
    Ok(())
}

/// A path's text (remote state paths are always UTF-8: [`is_remote`]).
pub fn url_of(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// A URL as the path type the state functions take.
pub fn as_path(url: &str) -> PathBuf {
    PathBuf::from(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_schemes() {
        let a = parse("azblob://acct/cont/env/prod/state.json").unwrap();
        assert_eq!(
            (
                a.kind,
                a.account.as_str(),
                a.bucket.as_str(),
                a.key.as_str()
            ),
            (StoreKind::Azure, "acct", "cont", "env/prod/state.json")
        );
        let s = parse("s3://bucket/a/state.json").unwrap();
        assert_eq!(
            (
                s.kind,
                s.account.as_str(),
                s.bucket.as_str(),
                s.key.as_str()
            ),
            (StoreKind::S3, "", "bucket", "a/state.json")
        );
        let g = parse("gs://b/state.json").unwrap();
        assert_eq!(
            (g.kind, g.bucket.as_str(), g.key.as_str()),
            (StoreKind::Gcs, "b", "state.json")
        );
        assert_eq!(a.with_key("x.lock"), "azblob://acct/cont/x.lock");
        assert_eq!(s.with_key("k"), "s3://bucket/k");
        assert_eq!(g.with_key("k"), "gs://b/k");
    }

    #[test]
    fn refuses_incomplete_or_unsafe_urls() {
        for (url, what) in [
            ("azblob://acct/cont", "key of the state is missing"),
            ("azblob://acct", "container is missing"),
            ("azblob:///cont/k", "account is missing"),
            ("s3://", "bucket is missing"),
            ("s3://b/", "key of the state is missing"),
            ("gs://b/a//k", "empty"),
            ("gs://b/../k", "`..`"),
            ("s3://b/k?sig=secret", "credentials go in the environment"),
            ("ftp://x/y", "unknown scheme"),
        ] {
            let e = parse(url).unwrap_err().to_string();
            assert!(e.contains(what), "{url}: {e}");
            assert!(e.contains("azblob://ACCOUNT/CONTAINER/KEY"), "{e}");
        }
    }

    #[test]
    fn only_the_schemes_are_remote() {
        assert!(is_remote(Path::new("azblob://a/c/k")));
        assert!(is_remote(Path::new("s3://b/k")));
        assert!(is_remote(Path::new("gs://b/k")));
        assert!(!is_remote(Path::new(".crmctl/state.json")));
        assert!(!is_remote(Path::new("/tmp/azblob/state.json")));
    }

    #[test]
    fn journal_and_history_objects_sort_by_serial() {
        let u = "azblob://a/c/s.json";
        assert!(journal_url(u, 9) < journal_url(u, 10));
        assert_eq!(
            history_url(u, 3),
            "azblob://a/c/s.json.history/00000000000000000003"
        );
        assert!(journal_url(u, 1).starts_with(&journal_dir(u)));
    }
}
