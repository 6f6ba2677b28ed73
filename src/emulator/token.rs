//! The token endpoint of the Microsoft identity platform, client-credentials grant only:
//! `POST /{tenant}/oauth2/v2.0/token` with a form `grant_type=client_credentials`,
//! `client_id`, `client_secret` (or `client_assertion_type` + `client_assertion`) and
//! `scope={resource}/.default`; answers `{token_type, expires_in, ext_expires_in,
//! access_token}` and errors `{error, error_description: "AADSTSnnn: ...", error_codes,
//! timestamp, trace_id, correlation_id}`.
//! Shapes: learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
//! (first and second case, and the error response); AADSTS7000215 "Invalid client secret
//! provided" is the code for a wrong secret (learn.microsoft.com/entra/identity-platform/
//! reference-error-codes). A client assertion is accepted when it is a well-formed JWT
//! (three parts): the emulator does not check its signature.

use std::collections::HashMap;

use serde_json::json;

use super::server::{Answer, Shared};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn error(shared: &Shared, status: u16, error: &str, code: u32, text: &str) -> Answer {
    Answer::json(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}"),
            "error_codes": [code],
            "timestamp": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "trace_id": shared.guid(),
            "correlation_id": shared.guid(),
        }),
    )
}

pub(super) fn token(shared: &Shared, method: &str, path: &str, body: &[u8]) -> Answer {
    let tenant = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    if method != "POST" {
        return error(
            shared,
            405,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        );
    }
    let cfg = &shared.config;
    if !tenant.eq_ignore_ascii_case(&cfg.tenant_id) {
        return error(
            shared,
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        );
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "client_credentials" {
        return error(
            shared,
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type 'client_credentials' is the only one the emulator serves.",
        );
    }
    if get("client_id") != cfg.client_id {
        return error(
            shared,
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{}' was not found in the directory '{tenant}'.",
                get("client_id")
            ),
        );
    }
    if !get("scope").ends_with("/.default") {
        return error(
            shared,
            400,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
        );
    }
    let authenticated = if let Some(secret) = form.get("client_secret") {
        *secret == cfg.client_secret
    } else if get("client_assertion_type") == JWT_BEARER {
        get("client_assertion")
            .split('.')
            .filter(|p| !p.is_empty())
            .count()
            == 3
    } else {
        return error(
            shared,
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    if !authenticated {
        return error(
            shared,
            401,
            "invalid_client",
            7000215,
            &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", cfg.client_id),
        );
    }
    let access = format!("emu.{}", shared.guid().replace('-', ""));
    shared
        .tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(access.clone());
    Answer::json(
        200,
        json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": access,
        }),
    )
}
