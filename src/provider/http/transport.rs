//! The HTTP transport of the Microsoft backends (issue 12 item 3): [`Transport`] implements
//! [`Http`] with reqwest over rustls (ring; extra trusted roots from `CRMCTL_CA_FILE`).
//!
//! - every attempt has a timeout ([`TransportOptions::timeout`]);
//! - 429 and 503 are retried after the server's `Retry-After` (seconds, fractional
//!   seconds, or an HTTP date: [`parse_retry_after`]), 5xx/408 and lost connections with
//!   backon's jittered exponential backoff; attempts and total time are bounded, and when
//!   the bounds are reached the last response is returned (the provider maps it, and apply
//!   honours its `Retry-After`);
//! - a request that is not idempotent is retried only when the service surely did not act
//!   (429, 503, 408, or a connection that failed before the request was sent); a lost
//!   connection after it was sent gives [`ProviderError::OutcomeUnknown`];
//! - at most [`TransportOptions::per_host`] requests per host are in flight;
//! - each attempt is logged at debug level (target `crmctl::http`): method, path with the
//!   query's names but not its values, status, duration, and the service's `request-id`;
//!   never another header value, never a body.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::cloud::Endpoints;
use super::signin::TokenCache;
use super::{Http, Request, Response};
use crate::provider::{BoxFuture, ProviderError};

/// The variable naming a PEM file of extra trusted roots.
pub const ENV_CA_FILE: &str = "CRMCTL_CA_FILE";

/// The transport's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// Timeout of one attempt (connect, send, and the whole response body).
    pub timeout: Duration,
    /// Timeout of connecting (TCP and TLS).
    pub connect_timeout: Duration,
    /// Attempts of one request, the first included.
    pub max_attempts: usize,
    /// Time one request may take, retries and waits included; a wait that would pass it
    /// is not started and the last response is returned.
    pub max_total: Duration,
    /// First backoff delay.
    pub min_backoff: Duration,
    /// Largest backoff delay.
    pub max_backoff: Duration,
    /// Requests in flight per host.
    pub per_host: usize,
    /// A PEM file of extra trusted roots (`CRMCTL_CA_FILE`).
    pub ca_file: Option<PathBuf>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            timeout: Duration::from_secs(100),
            connect_timeout: Duration::from_secs(15),
            max_attempts: 5,
            max_total: Duration::from_secs(180),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            per_host: 8,
            ca_file: None,
        }
    }
}

impl TransportOptions {
    /// The defaults with `CRMCTL_CA_FILE` from `env`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> TransportOptions {
        TransportOptions {
            ca_file: env(ENV_CA_FILE)
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from),
            ..TransportOptions::default()
        }
    }
}

/// Building the transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The CA file cannot be read or holds no certificate.
    #[error("{ENV_CA_FILE}={path}: {why} (give a PEM file of trusted root certificates)")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up HTTPS: {0}")]
    Client(String),
}

/// The HTTP client with the options' roots and timeouts (rustls with ring, no redirects:
/// a 3xx is returned as is, so a bearer token never follows one).
pub fn build_client(opts: &TransportOptions) -> Result<reqwest::Client, TransportError> {
    // reqwest is built without a crypto provider of its own (no aws-lc, no cmake): install
    // ring's as the process default once; an error means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("crmctl/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &opts.ca_file {
        let bad = |why: String| TransportError::CaFile {
            path: path.clone(),
            why,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(|e| TransportError::Client(e.to_string()))
}

/// The `Retry-After` header's delay from `now`: delta-seconds (integer or, as Graph sends,
/// fractional), or an HTTP date (RFC 9110 §10.2.3; a past date is no wait). `None` when
/// unreadable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = v.parse().ok()?;
        // At most a day: a larger value is a server's mistake, not a plan to wait.
        return Duration::try_from_secs_f64(secs.min(86_400.0)).ok();
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The URL's path for a log line: the query's parameter names without their values (a
/// skip token or a filter may carry data; a signature may be a secret).
pub fn loggable_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path_and_query = rest.find('/').map_or("/", |i| &rest[i..]);
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let path = path.split('#').next().unwrap_or(path);
    match query {
        None => path.to_string(),
        Some(q) => {
            let names: Vec<&str> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').map_or(p, |(n, _)| n))
                .collect();
            format!("{path}?{}", names.join("&"))
        }
    }
}

/// The transport: see the module doc. Build one with [`Transport::new`].
pub struct Transport {
    client: reqwest::Client,
    endpoints: Endpoints,
    tokens: Arc<TokenCache>,
    opts: TransportOptions,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// What one attempt gave.
enum Attempt {
    Answered(Response),
    /// No response: `sent` tells whether the request may have reached the service.
    Lost {
        sent: bool,
        why: String,
    },
}

impl Transport {
    /// A transport to the `endpoints` with `client` ([`build_client`]) and bearer tokens
    /// from `tokens`.
    pub fn new(
        client: reqwest::Client,
        endpoints: Endpoints,
        tokens: Arc<TokenCache>,
        opts: TransportOptions,
    ) -> Transport {
        Transport {
            client,
            endpoints,
            tokens,
            opts,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoints requests are sent to.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn absolute(&self, req: &Request) -> String {
        if req.url.starts_with("https://") || req.url.starts_with("http://") {
            req.url.clone()
        } else {
            let base = self.endpoints.base_url(&req.service);
            let sep = if req.url.starts_with('/') { "" } else { "/" };
            format!("{base}{sep}{}", req.url)
        }
    }

    fn limiter(&self, url: &reqwest::Url) -> Arc<Semaphore> {
        let key = format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.opts.per_host.max(1))))
            .clone()
    }

    async fn attempt(
        &self,
        req: &Request,
        url: &reqwest::Url,
        bearer: &HeaderValue,
        path: &str,
        n: usize,
    ) -> Result<Attempt, ProviderError> {
        let mut b = self
            .client
            .request(
                reqwest::Method::from_bytes(req.method.as_bytes())
                    .map_err(|_| ProviderError::Invalid(format!("bad method {}", req.method)))?,
                url.clone(),
            )
            .timeout(self.opts.timeout)
            .header(AUTHORIZATION, bearer.clone());
        for (name, value) in &req.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ProviderError::Invalid(format!("bad header name `{name}`")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| ProviderError::Invalid(format!("bad value of header `{name}`")))?;
            b = b.header(name, value);
        }
        if let Some(body) = &req.body {
            b = b
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(body).unwrap_or_default());
        }
        let limiter = self.limiter(url);
        let _permit = limiter
            .acquire()
            .await
            .map_err(|_| ProviderError::Backend("the transport was closed".into()))?;
        let started = Instant::now();
        let outcome = match b.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers: Vec<(String, String)> = resp
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                match resp.bytes().await {
                    Ok(body) => Attempt::Answered(Response {
                        status,
                        headers,
                        body: body.to_vec(),
                    }),
                    Err(e) => Attempt::Lost {
                        sent: true,
                        why: format!("the answer ({status}) was cut off: {}", describe(&e)),
                    },
                }
            }
            Err(e) => Attempt::Lost {
                // A connect error (refused, TLS, DNS, connect timeout) means nothing was sent.
                sent: !e.is_connect(),
                why: describe(&e),
            },
        };
        let ms = started.elapsed().as_millis() as u64;
        match &outcome {
            Attempt::Answered(r) => tracing::debug!(
                target: "crmctl::http",
                method = req.method,
                path,
                status = r.status,
                ms,
                request_id = r.header("request-id").unwrap_or("-"),
                attempt = n,
            ),
            Attempt::Lost { why, .. } => tracing::debug!(
                target: "crmctl::http",
                method = req.method,
                path,
                status = "none",
                ms,
                error = %why,
                attempt = n,
            ),
        }
        Ok(outcome)
    }

    async fn send_with_retries(&self, req: Request) -> Result<Response, ProviderError> {
        let started = Instant::now();
        let url_text = self.absolute(&req);
        let url = reqwest::Url::parse(&url_text)
            .map_err(|e| ProviderError::Invalid(format!("bad URL {url_text}: {e}")))?;
        let path = loggable_path(&url_text);
        let scope = self.endpoints.scope(&req.service);
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.opts.min_backoff)
            .with_max_delay(self.opts.max_backoff)
            .with_max_times(self.opts.max_attempts.saturating_sub(1))
            .with_jitter()
            .build();
        let mut n = 0;
        let mut signed_in_again = false;
        loop {
            n += 1;
            let token = self.tokens.bearer(&scope).await?;
            let mut bearer =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    ProviderError::Backend("the sign-in gave a token that is not a header".into())
                })?;
            bearer.set_sensitive(true);
            let outcome = self.attempt(&req, &url, &bearer, &path, n).await?;
            // A 401 to a cached token (revoked, or expired early): the request was not
            // served, so it is sent once more with a new token, whatever its method.
            if matches!(&outcome, Attempt::Answered(r) if r.status == 401) && !signed_in_again {
                signed_in_again = true;
                self.tokens.invalidate(&scope, &token).await;
                continue;
            }
            // What to do: return now, or wait this long (the server's delay, else backoff).
            let wait = match &outcome {
                Attempt::Answered(r) => {
                    let server = r
                        .header("retry-after")
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    let retry = match r.status {
                        429 | 503 | 408 => true,
                        500..=599 => req.idempotent,
                        _ => false,
                    };
                    if !retry {
                        return Ok(outcome_response(outcome));
                    }
                    let throttled = r.status == 429 || r.status == 503;
                    // Never sooner than the server said; its delay replaces the backoff
                    // of a throttled request.
                    backoff.next().map(|b| match server {
                        Some(s) if throttled => s,
                        Some(s) => s.max(b),
                        None => b,
                    })
                }
                Attempt::Lost { sent, why } => {
                    if *sent && !req.idempotent {
                        return Err(ProviderError::OutcomeUnknown(format!(
                            "{} {path}: the connection was lost after the request was sent ({why})",
                            req.method
                        )));
                    }
                    match backoff.next() {
                        Some(b) => Some(b),
                        None => {
                            return Err(ProviderError::Transient(format!(
                                "{} {path}: no answer after {n} attempts ({why})",
                                req.method
                            )))
                        }
                    }
                }
            };
            let within = wait.filter(|w| started.elapsed() + *w <= self.opts.max_total);
            match (within, outcome) {
                (Some(w), _) => tokio::time::sleep(w).await,
                (None, Attempt::Answered(r)) => return Ok(r),
                (None, Attempt::Lost { why, .. }) => {
                    return Err(ProviderError::Transient(format!(
                        "{} {path}: no answer within {:?} ({why})",
                        req.method, self.opts.max_total
                    )))
                }
            }
        }
    }
}

fn outcome_response(a: Attempt) -> Response {
    match a {
        Attempt::Answered(r) => r,
        Attempt::Lost { .. } => Response::default(),
    }
}

/// A reqwest error without its URL (whose query may carry data) and with its causes.
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "connection error"
    };
    let mut out = kind.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

impl Http for Transport {
    fn send<'a>(&'a self, req: Request) -> BoxFuture<'a, Result<Response, ProviderError>> {
        Box::pin(self.send_with_retries(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 12 item 3: every form of Retry-After the services send.
    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 03:00:00 GMT").unwrap();
        let table: [(&str, Option<Duration>); 10] = [
            ("7", Some(Duration::from_secs(7))),
            (" 0 ", Some(Duration::ZERO)),
            ("0.5", Some(Duration::from_millis(500))),
            ("2.25", Some(Duration::from_millis(2250))),
            (
                "Tue, 01 Dec 2026 03:00:10 GMT",
                Some(Duration::from_secs(10)),
            ),
            // A date in the past: retry now.
            ("Tue, 01 Dec 2026 02:59:00 GMT", Some(Duration::ZERO)),
            // The obsolete forms RFC 9110 says to accept.
            (
                "Tuesday, 01-Dec-26 03:00:30 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Tue Dec  1 03:01:00 2026", Some(Duration::from_secs(60))),
            ("-3", None),
            ("soon", None),
        ];
        for (value, expected) in table {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
        assert_eq!(
            parse_retry_after("99999999", now),
            Some(Duration::from_secs(86_400))
        );
    }

    // issue 12 item 3: logs show the query's names, never its values.
    #[test]
    fn logged_paths_drop_query_values() {
        let table = [
            ("https://graph.microsoft.com/v1.0/users", "/v1.0/users"),
            (
                "https://graph.microsoft.com/v1.0/users?$top=999&$skiptoken=SECRET",
                "/v1.0/users?$top&$skiptoken",
            ),
            ("https://h:8443", "/"),
            ("/v1.0/groups?$filter=x eq 'y'", "/v1.0/groups?$filter"),
        ];
        for (url, expected) in table {
            assert_eq!(loggable_path(url), expected, "{url}");
        }
    }
}
