//! The credentials of the maintained `azure_identity` crate (1.0) behind [`TokenSource`]
//! (issue 12 item 1): workload identity federation, managed identity and the Azure CLI.
//!
//! azure_identity 1.0 takes both what crmctl needs from it (docs.rs, azure_core 1.1
//! `http::ClientOptions`): `cloud` (a `CloudConfiguration::Custom` with the authority host
//! of crmctl's endpoint table, so `AZURE_AUTHORITY_HOST` and `--cloud` apply) and
//! `transport` (an `HttpClient`): [`AzureHttp`] sends its requests through crmctl's own
//! reqwest client, so the roots of `CRMCTL_CA_FILE` are trusted there too, and azure_core
//! is built without its own reqwest (no second TLS stack). The client-certificate credential
//! needs azure_identity's `client_certificate` feature, which links OpenSSL: crmctl stays
//! rustls-only and signs its certificate assertions itself (`certificate.rs`).

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{
    headers::{HeaderName, HeaderValue, Headers},
    AsyncRawResponse, ClientOptions, HttpClient, Request as AzRequest, Transport as AzTransport,
};

use super::signin::{AccessToken, Secret, TokenSource};
use crate::provider::{BoxFuture, ProviderError};

/// azure_core's HTTP client trait over crmctl's reqwest client.
#[derive(Debug, Clone)]
pub struct AzureHttp(pub reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for AzureHttp {
    async fn execute_request(&self, request: &AzRequest) -> azure_core::Result<AsyncRawResponse> {
        use azure_core::error::{Error, ErrorKind};
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|e| Error::with_error(ErrorKind::Other, e, "bad method"))?;
        let mut req = self.0.request(method, request.url().as_str());
        for (name, value) in request.headers().iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        match request.body() {
            azure_core::http::Body::Bytes(bytes) => req = req.body(bytes.to_vec()),
            #[allow(unreachable_patterns)]
            _ => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    "crmctl's transport sends no streamed bodies",
                ))
            }
        }
        let rsp = req.send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            Error::with_error(kind, e.without_url(), "request failed")
        })?;
        let status = rsp.status().as_u16();
        let mut headers = Headers::new();
        for (n, v) in rsp.headers() {
            if let Ok(v) = v.to_str() {
                headers.insert(
                    HeaderName::from(n.as_str().to_owned()),
                    HeaderValue::from(v.to_owned()),
                );
            }
        }
        let body = rsp
            .bytes()
            .await
            .map_err(|e| Error::with_error(ErrorKind::Io, e.without_url(), "answer lost"))?;
        Ok(AsyncRawResponse::from_bytes(status.into(), headers, body))
    }
}

/// Client options for an azure_identity credential: crmctl's client and authority host.
pub fn client_options(client: &reqwest::Client, authority: &str) -> ClientOptions {
    // CustomConfiguration is non-exhaustive: set its field on the default.
    let mut custom = azure_core::cloud::CustomConfiguration::default();
    custom.authority_host = authority.to_string();
    ClientOptions {
        transport: Some(AzTransport::new(Arc::new(AzureHttp(client.clone())))),
        cloud: Some(Arc::new(custom.into())),
        ..Default::default()
    }
}

/// An azure_identity credential as a [`TokenSource`].
pub struct AzureCredential(pub Arc<dyn TokenCredential>);

impl TokenSource for AzureCredential {
    fn token<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, ProviderError>> {
        Box::pin(async move {
            let t = self.0.get_token(&[scope], None).await.map_err(|e| {
                // azure_identity's errors name the credential and the service's answer
                // (AADSTS code), never the secret or token. Its first line says what
                // failed; the rest points outside the repository, so it is left out.
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default().trim();
                ProviderError::Backend(format!(
                    "sign-in failed: {first}. crmctl signs in with, first match: AZURE_CLIENT_ID + AZURE_CLIENT_SECRET; AZURE_CLIENT_ID + AZURE_CLIENT_CERTIFICATE_PATH; AZURE_FEDERATED_TOKEN_FILE + AZURE_CLIENT_ID (workload identity); a managed identity; the Azure CLI (`az login`). See docs/microsoft.md, \"Sign-in\""
                ))
            })?;
            let left = t.expires_on - azure_core::time::OffsetDateTime::now_utc();
            Ok(AccessToken {
                token: Secret::new(t.token.secret()),
                expires_in: Duration::from_secs(left.whole_seconds().max(0) as u64),
            })
        })
    }
}

/// The azure_identity credential of `credential` (not the client secret, which
/// [`super::signin::ClientSecret`] serves) for `tenant`.
pub fn credential(
    credential: &super::signin::Credential,
    tenant: &str,
    client: &reqwest::Client,
    authority: &str,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    use super::signin::Credential as C;
    use azure_identity as id;
    let options = client_options(client, authority);
    Ok(match credential {
        C::WorkloadIdentity {
            client_id,
            token_file,
        } => id::WorkloadIdentityCredential::new(Some(id::WorkloadIdentityCredentialOptions {
            credential_options: id::ClientAssertionCredentialOptions {
                client_options: options,
            },
            client_id: Some(client_id.clone()),
            tenant_id: Some(tenant.to_string()),
            token_file_path: Some(token_file.into()),
        }))?,
        C::ManagedIdentity { client_id } => {
            id::ManagedIdentityCredential::new(Some(id::ManagedIdentityCredentialOptions {
                client_options: options,
                user_assigned_id: client_id.clone().map(id::UserAssignedId::ClientId),
            }))?
        }
        C::AzureCli => id::AzureCliCredential::new(Some(id::AzureCliCredentialOptions {
            tenant_id: Some(tenant.to_string()),
            ..Default::default()
        }))?,
        C::ClientSecret { .. } | C::ClientCertificate { .. } => {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "the client secret and the certificate are served by crmctl's own flows",
            ))
        }
    })
}
