//! Issue 12 items 1-3: the HTTP transport and the sign-in against a scripted HTTPS server on
//! 127.0.0.1 (a certificate from a generated root, given to crmctl as `CRMCTL_CA_FILE`).
//! The server speaks just enough HTTP/1.1 by hand: the tests need to drop a connection
//! after a request arrived, which a framework hides. No outside service, no slow test:
//! delays are a few milliseconds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crmctl::provider::http::cloud::Cloud;
use crmctl::provider::http::transport::TransportOptions;
use crmctl::provider::http::{connect, Http, Request, Service};
use crmctl::provider::ProviderError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

const SECRET: &str = "s3cr3t-Cl13nt-VALUE";
const TOKEN_MARK: &str = "TOKEN-9f8e7d";

/// What the server does with the next API request.
#[derive(Clone)]
enum Step {
    /// Answer with this status, headers and body.
    Answer(u16, Vec<(&'static str, String)>, &'static str),
    /// Read the request, then close the connection without an answer.
    Drop,
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: String,
    body: String,
}

struct Server {
    port: u16,
    ca_file: tempfile::NamedTempFile,
    seen: Arc<Mutex<Vec<Seen>>>,
    tokens_issued: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

struct Script {
    steps: Mutex<VecDeque<Step>>,
    /// When the script is used up: answer this.
    then: Step,
    seen: Arc<Mutex<Vec<Seen>>>,
    tokens_issued: Arc<AtomicUsize>,
    token_lifetime: u64,
    delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: Arc<AtomicUsize>,
}

fn tls_config() -> (rustls::ServerConfig, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "crmctl test root");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.use_authority_key_identifier_extension = true;
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    (config, ca.pem())
}

/// Start a server that follows `steps`, then `then`; token answers live `token_lifetime` s.
async fn serve(steps: Vec<Step>, then: Step, token_lifetime: u64, delay: Duration) -> Server {
    let (config, ca_pem) = tls_config();
    let mut ca_file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut ca_file, ca_pem.as_bytes()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tokens_issued = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(Script {
        steps: Mutex::new(steps.into()),
        then,
        seen: seen.clone(),
        tokens_issued: tokens_issued.clone(),
        token_lifetime,
        delay,
        in_flight: AtomicUsize::new(0),
        max_in_flight: max_in_flight.clone(),
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let script = script.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    connection(tls, script).await;
                }
            });
        }
    });
    Server {
        port,
        ca_file,
        seen,
        tokens_issued,
        max_in_flight,
    }
}

/// Serve the requests of one connection until it closes or a step drops it.
async fn connection<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    script: Arc<Script>,
) {
    let mut buf = Vec::new();
    loop {
        // Read one request: head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let path = first.next().unwrap_or("").to_string();
        let mut length = 0usize;
        let mut authorization = String::new();
        for line in lines {
            if let Some((n, v)) = line.split_once(':') {
                match n.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "authorization" => authorization = v.trim().to_string(),
                    _ => {}
                }
            }
        }
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
        buf.drain(..head_end + length);

        let (status, headers, answer) = if path.ends_with("/oauth2/v2.0/token") {
            let n = script.tokens_issued.fetch_add(1, Ordering::SeqCst);
            let ok = body.contains(&format!("client_secret={SECRET}&"))
                || body.contains("client_assertion=federated-jwt-XYZ");
            let text = if ok {
                format!(
                    r#"{{"token_type":"Bearer","expires_in":{},"access_token":"{TOKEN_MARK}-{n}"}}"#,
                    script.token_lifetime
                )
            } else {
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#.to_string()
            };
            (if ok { 200 } else { 401 }, vec![], text)
        } else {
            let now = script.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            script.max_in_flight.fetch_max(now, Ordering::SeqCst);
            script.seen.lock().unwrap().push(Seen {
                method,
                path,
                authorization,
                body,
            });
            tokio::time::sleep(script.delay).await;
            script.in_flight.fetch_sub(1, Ordering::SeqCst);
            let step = script
                .steps
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| script.then.clone());
            match step {
                Step::Drop => return,
                Step::Answer(status, headers, body) => (status, headers, body.to_string()),
            }
        };
        let mut out = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nrequest-id: req-{status}\r\n",
            answer.len()
        );
        for (n, v) in headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&answer);
        if s.write_all(out.as_bytes()).await.is_err() || s.flush().await.is_err() {
            return;
        }
    }
}

fn options(server: &Server) -> TransportOptions {
    TransportOptions {
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        max_attempts: 4,
        max_total: Duration::from_secs(20),
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        per_host: 8,
        ca_file: Some(server.ca_file.path().to_path_buf()),
    }
}

fn transport(
    server: &Server,
    opts: TransportOptions,
) -> crmctl::provider::http::transport::Transport {
    let base = format!("https://127.0.0.1:{}", server.port);
    let env = move |k: &str| -> Option<String> {
        match k {
            "AZURE_AUTHORITY_HOST" | "CRMCTL_GRAPH_URL" | "CRMCTL_POWERPLATFORM_URL" => {
                Some(base.clone())
            }
            "AZURE_CLIENT_ID" => Some("00000000-app".into()),
            "AZURE_CLIENT_SECRET" => Some(SECRET.into()),
            _ => None,
        }
    };
    connect(Cloud::Public, "contoso.onmicrosoft.com", env, Some(opts)).unwrap()
}

fn ok() -> Step {
    Step::Answer(200, vec![], r#"{"value":[]}"#)
}

fn post() -> Request {
    Request::with_body(
        "POST",
        Service::Graph,
        "/v1.0/users",
        serde_json::json!({"displayName": "Ada"}),
        false,
    )
}

// issue 12 item 3: a 429 is retried after its (fractional) Retry-After, then succeeds.
#[tokio::test]
async fn throttled_request_waits_retry_after_then_succeeds() {
    let server = serve(
        vec![Step::Answer(
            429,
            vec![("retry-after", "0.05".into())],
            "{}",
        )],
        ok(),
        3600,
        Duration::ZERO,
    )
    .await;
    let t = transport(&server, options(&server));
    let started = std::time::Instant::now();
    let r = t
        .send(Request::get(Service::Graph, "/v1.0/users?$top=999"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "waited less than Retry-After"
    );
    assert_eq!(server.seen.lock().unwrap().len(), 2);
}

// issue 12 item 3: a 503 whose Retry-After is an HTTP date (here already passed) is
// retried; a non-idempotent POST too, since a 503 means the service did not act.
#[tokio::test]
async fn unavailable_with_http_date_is_retried() {
    let past = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(5));
    let server = serve(
        vec![Step::Answer(503, vec![("retry-after", past)], "{}")],
        Step::Answer(201, vec![], r#"{"id":"u1"}"#),
        3600,
        Duration::ZERO,
    )
    .await;
    let t = transport(&server, options(&server));
    let r = t.send(post()).await.unwrap();
    assert_eq!(r.status, 201);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|s| s.method == "POST" && s.body.contains("Ada")));
}

// issue 12 item 3: bounded attempts give the last response.
#[tokio::test]
async fn bounded_attempts_return_the_last_response() {
    let server = serve(
        vec![],
        Step::Answer(500, vec![], r#"{"error":{"code":"x","message":"boom"}}"#),
        3600,
        Duration::ZERO,
    )
    .await;
    let t = transport(&server, options(&server));
    let r = t
        .send(Request::get(Service::Graph, "/v1.0/users"))
        .await
        .unwrap();
    assert_eq!(r.status, 500);
    assert!(String::from_utf8_lossy(&r.body).contains("boom"));
    assert_eq!(server.seen.lock().unwrap().len(), 4, "max_attempts is 4");
}

// issue 12 item 3: a server delay beyond the time budget is not waited for: the 429 comes
// back at once (apply honours its Retry-After), after one request.
#[tokio::test]
async fn retry_after_beyond_the_budget_returns_at_once() {
    let server = serve(
        vec![],
        Step::Answer(429, vec![("retry-after", "3600".into())], "{}"),
        3600,
        Duration::ZERO,
    )
    .await;
    let t = transport(&server, options(&server));
    let r = t
        .send(Request::get(Service::Graph, "/v1.0/users"))
        .await
        .unwrap();
    assert_eq!((r.status, r.header("retry-after")), (429, Some("3600")));
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

// issue 12 item 3: a POST whose connection dropped after it was sent may have been carried
// out: outcome unknown, never sent again.
#[tokio::test]
async fn dropped_post_is_outcome_unknown_and_not_replayed() {
    let server = serve(vec![Step::Drop], ok(), 3600, Duration::ZERO).await;
    let t = transport(&server, options(&server));
    let err = t.send(post()).await.unwrap_err();
    assert!(matches!(err, ProviderError::OutcomeUnknown(_)), "{err:?}");
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

// issue 12 item 3: a non-idempotent request's 500 is the provider's to judge: not retried.
#[tokio::test]
async fn post_500_is_not_retried() {
    let server = serve(
        vec![],
        Step::Answer(500, vec![], "{}"),
        3600,
        Duration::ZERO,
    )
    .await;
    let t = transport(&server, options(&server));
    assert_eq!(t.send(post()).await.unwrap().status, 500);
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

// issue 12 item 3: a GET whose connection dropped is retried.
#[tokio::test]
async fn dropped_get_is_retried() {
    let server = serve(vec![Step::Drop, Step::Drop], ok(), 3600, Duration::ZERO).await;
    let t = transport(&server, options(&server));
    let r = t
        .send(Request::get(Service::Graph, "/v1.0/groups"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(server.seen.lock().unwrap().len(), 3);
}

// issue 12 item 1: one token per scope, sent as the bearer, reused while valid.
#[tokio::test]
async fn token_fetched_once_per_scope() {
    let server = serve(vec![], ok(), 3600, Duration::ZERO).await;
    let t = transport(&server, options(&server));
    for _ in 0..3 {
        t.send(Request::get(Service::Graph, "/v1.0/users"))
            .await
            .unwrap();
    }
    t.send(Request::get(Service::PowerPlatform, "/x"))
        .await
        .unwrap();
    assert_eq!(
        server.tokens_issued.load(Ordering::SeqCst),
        2,
        "Graph + Power Platform"
    );
    let seen = server.seen.lock().unwrap();
    assert!(seen[..3]
        .iter()
        .all(|s| s.authorization == format!("Bearer {TOKEN_MARK}-0")));
    assert_eq!(seen[3].authorization, format!("Bearer {TOKEN_MARK}-1"));
}

// issue 12 item 1: a token within 5 minutes of its expiry is refreshed before use.
#[tokio::test]
async fn token_refreshed_when_expiring() {
    let server = serve(vec![], ok(), 300, Duration::ZERO).await;
    let t = transport(&server, options(&server));
    for _ in 0..2 {
        t.send(Request::get(Service::Graph, "/v1.0/users"))
            .await
            .unwrap();
    }
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 2);
    let seen = server.seen.lock().unwrap();
    assert_ne!(seen[0].authorization, seen[1].authorization);
}

// issue 12 item 1: a 401 to a cached token (revoked) signs in again once and resends the
// request, also a POST (a 401 was not served); a second 401 is the answer.
#[tokio::test]
async fn unauthorized_signs_in_again_once() {
    let unauthorized = || {
        Step::Answer(
            401,
            vec![],
            r#"{"error":{"code":"InvalidAuthenticationToken","message":"Access token has expired or is not yet valid."}}"#,
        )
    };
    let server = serve(vec![unauthorized()], ok(), 3600, Duration::ZERO).await;
    let t = transport(&server, options(&server));
    assert_eq!(t.send(post()).await.unwrap().status, 200);
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 2);
    {
        let seen = server.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_ne!(seen[0].authorization, seen[1].authorization);
    }
    let server = serve(vec![], unauthorized(), 3600, Duration::ZERO).await;
    let t = transport(&server, options(&server));
    assert_eq!(t.send(post()).await.unwrap().status, 401);
    assert_eq!(
        server.seen.lock().unwrap().len(),
        2,
        "one new sign-in, not a loop"
    );
}

// issue 12 item 3: at most `per_host` requests in flight to one host.
#[tokio::test]
async fn concurrency_is_limited_per_host() {
    let server = serve(vec![], ok(), 3600, Duration::from_millis(20)).await;
    let t = transport(
        &server,
        TransportOptions {
            per_host: 2,
            ..options(&server)
        },
    );
    let all = (0..6).map(|i| t.send(Request::get(Service::Graph, format!("/v1.0/users/{i}"))));
    for r in futures_join(all).await {
        assert_eq!(r.unwrap().status, 200);
    }
    assert_eq!(server.seen.lock().unwrap().len(), 6);
    assert_eq!(server.max_in_flight.load(Ordering::SeqCst), 2);
}

async fn futures_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    // join without a futures dependency: poll them all on this task.
    let mut set = Vec::new();
    for f in fs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// issue 12 items 1 and 3: the debug log names each request (method, path, status,
// request-id) and shows no secret, no token and no query value; nor do the errors.
#[tokio::test]
async fn logs_and_errors_show_no_secret_and_no_token() {
    // The process-wide subscriber, not a thread's (`set_default`): tracing caches each
    // callsite's interest across threads, so a thread-scoped subscriber misses events whose
    // callsite another test's thread registered first. It captures every test's logs, so
    // the absence checks below cover them all.
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    let capture = CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let sink = capture.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other test sets a global subscriber");
            capture
        })
        .clone();

    let server = serve(
        vec![
            Step::Answer(429, vec![("retry-after", "0".into())], "{}"),
            ok(),
            Step::Drop,
        ],
        ok(),
        3600,
        Duration::ZERO,
    )
    .await;
    let t = transport(&server, options(&server));
    t.send(Request::get(
        Service::Graph,
        "/v1.0/users?$filter=mail eq 'ada@contoso.com'&$skiptoken=SKIPVALUE",
    ))
    .await
    .unwrap();
    let err = t.send(post()).await.unwrap_err();
    // A wrong secret: the sign-in error names the variables, not the secret.
    let bad = connect(
        Cloud::Public,
        "contoso.onmicrosoft.com",
        |k: &str| match k {
            "AZURE_AUTHORITY_HOST" | "CRMCTL_GRAPH_URL" => {
                Some(format!("https://127.0.0.1:{}", server.port))
            }
            "AZURE_CLIENT_ID" => Some("app".into()),
            "AZURE_CLIENT_SECRET" => Some(format!("{SECRET}-wrong")),
            _ => None,
        },
        Some(options(&server)),
    )
    .unwrap();
    let refused = bad
        .send(Request::get(Service::Graph, "/v1.0/users"))
        .await
        .unwrap_err();
    let refused_text = refused.to_string();
    assert!(refused_text.contains("AZURE_CLIENT_SECRET") && refused_text.contains("AADSTS7000215"));

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("GET") && log.contains("/v1.0/users?$filter&$skiptoken"),
        "{log}"
    );
    assert!(
        log.contains("status=429") && log.contains("req-429"),
        "{log}"
    );
    assert!(log.contains("POST"), "{log}");
    for text in [
        log.as_str(),
        &format!("{err} {err:?}"),
        &format!("{refused_text} {refused:?}"),
    ] {
        for needle in [SECRET, TOKEN_MARK, "SKIPVALUE", "ada@contoso.com", "Bearer"] {
            assert!(!text.contains(needle), "`{needle}` leaked: {text}");
        }
    }
}

// issue 12 item 3: `-v` is accepted by every command; a bad `CRMCTL_LOG` filter is a clear
// error naming the variable (exit 1), not a silent default.
#[test]
fn cli_log_switches() {
    let dir = tempfile::tempdir().unwrap();
    let example = crate::support::root().join("examples/minimal.yaml");
    crate::support::crmctl(dir.path())
        .args(["-v", "validate", "-f"])
        .arg(&example)
        .env_remove("CRMCTL_LOG")
        .assert()
        .success();
    crate::support::crmctl(dir.path())
        .args(["validate", "-f"])
        .arg(&example)
        .env("CRMCTL_LOG", "crmctl=[")
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "CRMCTL_LOG=`crmctl=[` is not a log filter",
        ));
}

// issue 12 item 1: workload identity federation goes through azure_identity, yet to the
// overridden authority and over crmctl's client (the CA file's root is trusted), and its
// token is used as the bearer.
#[tokio::test]
async fn workload_identity_signs_in_through_azure_identity() {
    let server = serve(vec![], ok(), 3600, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("federated");
    std::fs::write(&token_file, "federated-jwt-XYZ").unwrap();
    let base = format!("https://127.0.0.1:{}", server.port);
    let file = token_file.display().to_string();
    let t = connect(
        Cloud::Public,
        "contoso.onmicrosoft.com",
        |k: &str| match k {
            "AZURE_AUTHORITY_HOST" | "CRMCTL_GRAPH_URL" => Some(base.clone()),
            "AZURE_CLIENT_ID" => Some("00000000-app".into()),
            "AZURE_FEDERATED_TOKEN_FILE" => Some(file.clone()),
            _ => None,
        },
        Some(options(&server)),
    )
    .unwrap();
    for _ in 0..2 {
        let r = t
            .send(Request::get(Service::Graph, "/v1.0/users"))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 1);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen[0].authorization, format!("Bearer {TOKEN_MARK}-0"));
}

// issue 12 item 1: with no credentials in the environment and no Azure CLI, the error says
// what failed and every way crmctl signs in, and links only inside the repository.
#[test]
fn no_credentials_says_how_to_sign_in() {
    use predicates::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.yaml"),
        "tenant: contoso.onmicrosoft.com\nusers:\n  a@contoso.com: {name: A}\n",
    )
    .unwrap();
    let mut c = crate::support::crmctl(dir.path());
    for k in [
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_TENANT_ID",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
        "CRMCTL_CREDENTIAL",
        "CRMCTL_CLOUD",
    ] {
        c.env_remove(k);
    }
    c.env("PATH", empty_path.path())
        .args(["plan", "--backend", "microsoft", "-f", "d.yaml"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("sign-in failed")
                .and(predicate::str::contains("AZURE_CLIENT_SECRET"))
                .and(predicate::str::contains("az login"))
                .and(predicate::str::contains("docs/microsoft.md"))
                .and(predicate::str::contains("https://").not()),
        );
}
