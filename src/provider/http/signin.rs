//! Sign-in (issue 12 item 1): a token per resource scope from a [`TokenSource`], cached and
//! refreshed before it expires ([`TokenCache`]), and the client-credentials flow with a
//! client secret ([`ClientSecret`]) sent through the transport's own HTTP client, so that it
//! trusts `CRMCTL_CA_FILE` and talks to the cloud table's (or `AZURE_AUTHORITY_HOST`'s)
//! authority like every other request.
//!
//! A secret or a token is a [`Secret`]: its `Debug` and `Display` print `<redacted>`, and it
//! is never part of an error, a log line or a file.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::provider::{BoxFuture, ProviderError};

/// A secret (client secret, access token): readable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An access token and when it stops being valid.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The bearer token.
    pub token: Secret,
    /// How long it is valid from when it was received.
    pub expires_in: Duration,
}

/// Gives a bearer token for a scope (`{resource}/.default`).
pub trait TokenSource: Send + Sync {
    /// A token for `scope`.
    fn token<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, ProviderError>>;
}

/// Refresh a cached token this long before it expires.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// A cached token and when to refresh it, behind its scope's lock.
type Slot = Arc<Mutex<Option<(Secret, Instant)>>>;

/// One token per scope from an inner source, reused until [`REFRESH_BEFORE`] its expiry.
pub struct TokenCache {
    inner: Arc<dyn TokenSource>,
    // One lock per scope: concurrent requests for one scope wait for one fetch.
    slots: std::sync::Mutex<HashMap<String, Slot>>,
}

impl TokenCache {
    /// Cache the tokens of `inner`.
    pub fn new(inner: Arc<dyn TokenSource>) -> TokenCache {
        TokenCache {
            inner,
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The bearer token for `scope`, fetched when none is cached or the cached one is
    /// about to expire.
    pub async fn bearer(&self, scope: &str) -> Result<Secret, ProviderError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(scope.to_string()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some((token, refresh_at)) = slot.as_ref() {
            if Instant::now() < *refresh_at {
                return Ok(token.clone());
            }
        }
        let fresh = self.inner.token(scope).await?;
        let refresh_at = Instant::now() + fresh.expires_in.saturating_sub(REFRESH_BEFORE);
        *slot = Some((fresh.token.clone(), refresh_at));
        Ok(fresh.token)
    }

    /// Forget `token` for `scope` (the service answered 401 to it: revoked, or signed by a
    /// key it no longer trusts); the next [`TokenCache::bearer`] fetches a new one. A newer
    /// token another request fetched meanwhile is kept.
    pub async fn invalidate(&self, scope: &str, token: &Secret) {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.get(scope).cloned()
        };
        if let Some(slot) = slot {
            let mut slot = slot.lock().await;
            if slot.as_ref().is_some_and(|(cached, _)| cached == token) {
                *slot = None;
            }
        }
    }
}

/// The client-credentials flow with a client secret (`AZURE_CLIENT_ID` +
/// `AZURE_CLIENT_SECRET`): `POST {authority}/{tenant}/oauth2/v2.0/token` with the form
/// `client_id`, `client_secret`, `grant_type=client_credentials`, `scope` (Microsoft
/// identity platform, "OAuth 2.0 client credentials flow": first case, access token request
/// with a shared secret), answered by `{token_type, expires_in, access_token}` or
/// `{error, error_description}`.
pub struct ClientSecret {
    client: reqwest::Client,
    token_url: String,
    client_id: String,
    secret: Secret,
}

impl ClientSecret {
    /// The flow for `client_id` with `secret` against `token_url`
    /// ([`super::cloud::Endpoints::token_url`]), through `client` (the transport's).
    pub fn new(
        client: reqwest::Client,
        token_url: String,
        client_id: String,
        secret: Secret,
    ) -> ClientSecret {
        ClientSecret {
            client,
            token_url,
            client_id,
            secret,
        }
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecret")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("secret", &self.secret)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource for ClientSecret {
    fn token<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, ProviderError>> {
        Box::pin(async move {
            let form = [
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.secret.expose()),
                ("grant_type", "client_credentials"),
                ("scope", scope),
            ];
            request_token(
                &self.client,
                &self.token_url,
                &form,
                "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
            )
            .await
        })
    }
}

/// POST the client-credentials `form` to `token_url` and read the token answer; `check`
/// names what the user should check when the service refuses. Neither the form nor the
/// answer's token is ever part of an error or a log line.
pub(super) async fn request_token(
    client: &reqwest::Client,
    token_url: &str,
    form: &[(&str, &str)],
    check: &str,
) -> Result<AccessToken, ProviderError> {
    let started = std::time::Instant::now();
    // The error of a failed send names no URL query and no form: reqwest's
    // Display shows the URL (ours has no secret in it) and the kind of failure.
    let resp = client
        .post(token_url)
        .form(form)
        .send()
        .await
        .map_err(|e| {
            ProviderError::Transient(format!(
                "sign-in at {} failed: {}",
                token_url,
                e.without_url()
            ))
        })?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| {
        ProviderError::Transient(format!("sign-in answer lost: {}", e.without_url()))
    })?;
    tracing::debug!(
        target: "crmctl::http",
        method = "POST",
        path = %super::transport::loggable_path(token_url),
        status,
        ms = started.elapsed().as_millis() as u64,
        "sign-in"
    );
    let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
        ProviderError::Backend(format!(
            "sign-in at {token_url} answered {status} with a body that is not a token answer"
        ))
    })?;
    match (answer.access_token, status) {
        (Some(token), 200) => {
            let secs = match answer.expires_in {
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .unwrap_or(3600);
            Ok(AccessToken {
                token: Secret::new(token),
                expires_in: Duration::from_secs(secs),
            })
        }
        _ => {
            // error_description is the service's text (AADSTS code and message);
            // it never echoes the secret or the assertion.
            let what = format!(
                "sign-in refused ({status} {}): {}; check {check}",
                answer.error.unwrap_or_default(),
                answer.error_description.unwrap_or_default()
            );
            if status == 429 || status >= 500 {
                Err(ProviderError::Transient(what))
            } else {
                Err(ProviderError::Backend(what))
            }
        }
    }
}

/// How crmctl signs in, chosen from the environment as the Azure SDK conventions say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET` (crmctl's own flow, [`ClientSecret`]).
    ClientSecret {
        /// The application (client) id.
        client_id: String,
        /// The secret.
        secret: Secret,
    },
    /// `AZURE_CLIENT_ID` + `AZURE_CLIENT_CERTIFICATE_PATH`: a PEM or PKCS#12 (`.pfx`) file
    /// with the certificate and its RSA private key, the latter opened with
    /// `AZURE_CLIENT_CERTIFICATE_PASSWORD` (crmctl's own flow,
    /// [`super::certificate::ClientCertificate`]).
    ClientCertificate {
        /// The application (client) id.
        client_id: String,
        /// The PEM or PKCS#12 file.
        path: String,
        /// `AZURE_CLIENT_CERTIFICATE_PASSWORD`, taken as it is (not trimmed).
        password: Option<Secret>,
    },
    /// `AZURE_FEDERATED_TOKEN_FILE` + `AZURE_CLIENT_ID`: workload identity federation
    /// (GitHub Actions, Azure DevOps, Kubernetes OIDC; no secret), through azure_identity.
    WorkloadIdentity {
        /// The application (client) id.
        client_id: String,
        /// The file holding the federated token.
        token_file: String,
    },
    /// The managed identity of the Azure host (`IDENTITY_ENDPOINT` or `MSI_ENDPOINT` set, or
    /// `CRMCTL_CREDENTIAL=managed-identity`); a user-assigned one by `AZURE_CLIENT_ID`.
    ManagedIdentity {
        /// The user-assigned identity's client id.
        client_id: Option<String>,
    },
    /// The Azure CLI's sign-in (`az login`), for a person at a terminal: the default when
    /// the environment names no other credential (or `CRMCTL_CREDENTIAL=azure-cli`).
    AzureCli,
}

/// No usable credential in the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Half a credential.
    #[error("incomplete credentials: {0}")]
    Incomplete(&'static str),
    /// `CRMCTL_CREDENTIAL` names no credential kind.
    #[error("CRMCTL_CREDENTIAL=`{0}` is not a credential kind: use managed-identity or azure-cli (a client secret or a federated token is taken from the AZURE_* variables)")]
    UnknownKind(String),
    /// The certificate file cannot be used.
    #[error(transparent)]
    Certificate(#[from] super::certificate::CertificateError),
    /// azure_identity refused to set the credential up.
    #[error("cannot set up the sign-in: {0}")]
    Azure(String),
}

impl Credential {
    /// The credential that `env` describes (`|k| std::env::var(k).ok()` in the CLI).
    /// Follows the Azure SDK's environment credential order: a client secret, then a
    /// certificate, then workload identity federation; then managed identity where the
    /// host offers one; else the Azure CLI.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Credential, CredentialError> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let client_id = get("AZURE_CLIENT_ID");
        if let Some(secret) = env("AZURE_CLIENT_SECRET").filter(|v| !v.trim().is_empty()) {
            let Some(client_id) = client_id else {
                return Err(CredentialError::Incomplete(
                    "AZURE_CLIENT_SECRET is set without AZURE_CLIENT_ID (the app registration's application id)",
                ));
            };
            return Ok(Credential::ClientSecret {
                client_id,
                secret: Secret::new(secret),
            });
        }
        if let Some(path) = get("AZURE_CLIENT_CERTIFICATE_PATH") {
            let Some(client_id) = client_id else {
                return Err(CredentialError::Incomplete(
                    "AZURE_CLIENT_CERTIFICATE_PATH is set without AZURE_CLIENT_ID (the app registration's application id)",
                ));
            };
            // A password is the file's own, spaces included; empty is no password.
            let password = env("AZURE_CLIENT_CERTIFICATE_PASSWORD")
                .filter(|v| !v.is_empty())
                .map(Secret::new);
            return Ok(Credential::ClientCertificate {
                client_id,
                path,
                password,
            });
        }
        if let Some(token_file) = get("AZURE_FEDERATED_TOKEN_FILE") {
            let Some(client_id) = client_id else {
                return Err(CredentialError::Incomplete(
                    "AZURE_FEDERATED_TOKEN_FILE is set without AZURE_CLIENT_ID",
                ));
            };
            return Ok(Credential::WorkloadIdentity {
                client_id,
                token_file,
            });
        }
        match get("CRMCTL_CREDENTIAL").as_deref() {
            Some("managed-identity") => return Ok(Credential::ManagedIdentity { client_id }),
            Some("azure-cli") => return Ok(Credential::AzureCli),
            Some(other) => return Err(CredentialError::UnknownKind(other.to_string())),
            None => {}
        }
        if get("IDENTITY_ENDPOINT").is_some() || get("MSI_ENDPOINT").is_some() {
            return Ok(Credential::ManagedIdentity { client_id });
        }
        Ok(Credential::AzureCli)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // issue 12 item 1: a secret never shows in Debug or Display, nor in what holds it.
    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2-very-secret");
        let cred = Credential::ClientSecret {
            client_id: "app".into(),
            secret: s.clone(),
        };
        let flow = ClientSecret::new(
            super::super::transport::build_client(&Default::default()).unwrap(),
            "https://login.example/t/oauth2/v2.0/token".into(),
            "app".into(),
            s.clone(),
        );
        let tok = AccessToken {
            token: Secret::new("eyJ0-token"),
            expires_in: Duration::from_secs(1),
        };
        for text in [
            format!("{s}"),
            format!("{s:?}"),
            format!("{cred:?}"),
            format!("{flow:?}"),
            format!("{tok:?}"),
        ] {
            assert!(
                !text.contains("hunter2") && !text.contains("eyJ0"),
                "{text}"
            );
            assert!(text.contains("redacted"), "{text}");
        }
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn credential_from_env_follows_the_sdk_names() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(matches!(
            Credential::from_env(env(&[
                ("AZURE_CLIENT_ID", "a"),
                ("AZURE_CLIENT_SECRET", "s")
            ])),
            Ok(Credential::ClientSecret { .. })
        ));
        type Vars = &'static [(&'static str, &'static str)];
        let rows: [(Vars, Result<Credential, &str>); 10] = [
            (&[], Ok(Credential::AzureCli)),
            (
                &[("AZURE_CLIENT_SECRET", "s")],
                Err("without AZURE_CLIENT_ID"),
            ),
            (
                &[
                    ("AZURE_CLIENT_ID", "a"),
                    ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
                ],
                Ok(Credential::WorkloadIdentity {
                    client_id: "a".into(),
                    token_file: "/t".into(),
                }),
            ),
            (
                &[("AZURE_FEDERATED_TOKEN_FILE", "/t")],
                Err("without AZURE_CLIENT_ID"),
            ),
            (
                &[("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem")],
                Err("without AZURE_CLIENT_ID"),
            ),
            (
                &[
                    ("AZURE_CLIENT_ID", "a"),
                    ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem"),
                ],
                Ok(Credential::ClientCertificate {
                    client_id: "a".into(),
                    path: "/c.pem".into(),
                    password: None,
                }),
            ),
            (
                &[
                    ("AZURE_CLIENT_ID", "a"),
                    ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pfx"),
                    ("AZURE_CLIENT_CERTIFICATE_PASSWORD", " pw "),
                ],
                Ok(Credential::ClientCertificate {
                    client_id: "a".into(),
                    path: "/c.pfx".into(),
                    password: Some(Secret::new(" pw ")),
                }),
            ),
            (
                &[
                    ("IDENTITY_ENDPOINT", "http://169.254.1.1"),
                    ("AZURE_CLIENT_ID", "u"),
                ],
                Ok(Credential::ManagedIdentity {
                    client_id: Some("u".into()),
                }),
            ),
            (
                &[("CRMCTL_CREDENTIAL", "managed-identity")],
                Ok(Credential::ManagedIdentity { client_id: None }),
            ),
            (
                &[("CRMCTL_CREDENTIAL", "kerberos")],
                Err("not a credential kind"),
            ),
        ];
        for (vars, expected) in rows {
            match (Credential::from_env(env(vars)), expected) {
                (Ok(c), Ok(e)) => assert_eq!(c, e, "{vars:?}"),
                (Err(c), Err(e)) => assert!(c.to_string().contains(e), "{vars:?}: {c}"),
                (got, _) => panic!("{vars:?}: {got:?}"),
            }
        }
    }

    struct Counting(AtomicUsize, Duration);
    impl TokenSource for Counting {
        fn token<'a>(
            &'a self,
            scope: &'a str,
        ) -> BoxFuture<'a, Result<AccessToken, ProviderError>> {
            Box::pin(async move {
                let n = self.0.fetch_add(1, Ordering::SeqCst);
                Ok(AccessToken {
                    token: Secret::new(format!("{scope}#{n}")),
                    expires_in: self.1,
                })
            })
        }
    }

    // issue 12 item 1: one token per scope, reused, refreshed before expiry.
    #[tokio::test(start_paused = true)]
    async fn cache_fetches_once_per_scope_and_refreshes_before_expiry() {
        let inner = Arc::new(Counting(AtomicUsize::new(0), Duration::from_secs(3600)));
        let cache = TokenCache::new(inner.clone());
        let a = cache.bearer("g/.default").await.unwrap();
        assert_eq!(cache.bearer("g/.default").await.unwrap(), a);
        let b = cache.bearer("p/.default").await.unwrap();
        assert_ne!(a, b);
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
        // Still valid 54 minutes later; refreshed 5 minutes before the hour.
        tokio::time::advance(Duration::from_secs(54 * 60)).await;
        assert_eq!(cache.bearer("g/.default").await.unwrap(), a);
        tokio::time::advance(Duration::from_secs(60 + 1)).await;
        let a2 = cache.bearer("g/.default").await.unwrap();
        assert_ne!(a2, a);
        assert_eq!(inner.0.load(Ordering::SeqCst), 3);
    }
}
