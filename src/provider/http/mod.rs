//! The HTTP boundary of the Microsoft backends (issue 12): a request and a response as
//! plain values, and the [`Http`] trait that sends one. The real transport (reqwest with
//! rustls, sign-in, retries honouring `Retry-After`, per-host limits, logs) implements it;
//! the Graph provider only builds requests and reads responses, so that it is tested with
//! any implementation (the emulator over loopback HTTPS, or a fake in unit tests).

use serde::de::DeserializeOwned;

pub mod azure;
pub mod certificate;
pub mod cloud;
pub mod signin;
pub mod transport;

use crate::provider::{BoxFuture, ProviderError};

/// Which service a request goes to: it decides the token's scope (one token per resource)
/// and the base URL of the cloud's endpoint table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Service {
    /// Microsoft Graph (`https://graph.microsoft.com/.default`).
    Graph,
    /// The Power Platform admin API (BAP, `https://service.powerapps.com/.default`).
    Bap,
    /// The Power Platform API (`https://api.powerplatform.com/.default`).
    PowerPlatform,
    /// The Dataverse Web API of one instance (`https://{org host}/.default`): the host.
    Dataverse(String),
}

/// One HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, `PATCH`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The service (token scope).
    pub service: Service,
    /// Absolute URL, or a path (with query) relative to the service's base URL
    /// (e.g. `/v1.0/users?$top=999`). An `@odata.nextLink` is absolute and used verbatim.
    pub url: String,
    /// Extra headers (e.g. `ConsistencyLevel`); never secrets (the transport adds the
    /// bearer token itself).
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Option<serde_json::Value>,
    /// Whether sending it twice is harmless (GET, PUT, DELETE, most PATCH): decides what
    /// a dropped connection after the request left means (retry, or outcome unknown).
    pub idempotent: bool,
}

impl Request {
    /// A `GET` of `url` on `service`.
    pub fn get(service: Service, url: impl Into<String>) -> Request {
        Request {
            method: "GET",
            service,
            url: url.into(),
            headers: vec![],
            body: None,
            idempotent: true,
        }
    }

    /// A request with a JSON body.
    pub fn with_body(
        method: &'static str,
        service: Service,
        url: impl Into<String>,
        body: serde_json::Value,
        idempotent: bool,
    ) -> Request {
        Request {
            method,
            service,
            url: url.into(),
            headers: vec![],
            body: Some(body),
            idempotent,
        }
    }
}

/// One HTTP response (after the transport's own bounded retries of 429/503/5xx/408).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body bytes (JSON for every API crmctl calls, or empty).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (give it in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ProviderError::Backend(format!(
                "the service answered {} with a body crmctl cannot read: {e}",
                self.status
            ))
        })
    }
}

/// Sends requests. `Err` only when no response came: [`ProviderError::Transient`] when the
/// request surely did not reach the service, [`ProviderError::OutcomeUnknown`] when it may
/// have (a non-idempotent request whose connection dropped). Every HTTP status, errors
/// included, is an `Ok(Response)`: the provider maps the service's error bodies.
pub trait Http: Send + Sync {
    /// Send `req` and wait for its response.
    fn send<'a>(&'a self, req: Request) -> BoxFuture<'a, Result<Response, ProviderError>>;
}

/// Setting up the transport of a cloud from the environment failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// An endpoint override is not usable.
    #[error(transparent)]
    Endpoint(#[from] cloud::BadEndpoint),
    /// No usable credentials.
    #[error(transparent)]
    Credential(#[from] signin::CredentialError),
    /// The CA file or the HTTP client.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
}

/// The transport of `cloud` for `tenant` (a domain or id) as the environment `env`
/// describes it (`|k| std::env::var(k).ok()` in the CLI): endpoint overrides
/// ([`cloud::Endpoints::resolve`]), `CRMCTL_CA_FILE`, and the credentials
/// ([`signin::Credential::from_env`]); tokens are cached one per scope.
pub fn connect(
    cloud: cloud::Cloud,
    tenant: &str,
    env: impl Fn(&str) -> Option<String>,
    opts: Option<transport::TransportOptions>,
) -> Result<transport::Transport, ConnectError> {
    let endpoints = cloud::Endpoints::resolve(cloud, &env)?;
    let credential = signin::Credential::from_env(&env)?;
    let opts = opts.unwrap_or_else(|| transport::TransportOptions::from_env(&env));
    let client = transport::build_client(&opts)?;
    let source: std::sync::Arc<dyn signin::TokenSource> = match credential {
        signin::Credential::ClientSecret { client_id, secret } => {
            std::sync::Arc::new(signin::ClientSecret::new(
                client.clone(),
                endpoints.token_url(tenant),
                client_id,
                secret,
            ))
        }
        signin::Credential::ClientCertificate {
            client_id,
            path,
            password,
        } => {
            let key = certificate::CertificateKey::from_file(
                std::path::Path::new(&path),
                password.as_ref(),
            )
            .map_err(signin::CredentialError::Certificate)?;
            std::sync::Arc::new(certificate::ClientCertificate::new(
                client.clone(),
                endpoints.token_url(tenant),
                client_id,
                key,
            ))
        }
        other => std::sync::Arc::new(azure::AzureCredential(
            azure::credential(&other, tenant, &client, &endpoints.authority)
                .map_err(|e| signin::CredentialError::Azure(e.to_string()))?,
        )),
    };
    let tokens = std::sync::Arc::new(signin::TokenCache::new(source));
    Ok(transport::Transport::new(client, endpoints, tokens, opts))
}
