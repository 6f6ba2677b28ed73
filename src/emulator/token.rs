//! The token endpoint of the Microsoft identity platform, client-credentials grant only:
//! `POST /{tenant}/oauth2/v2.0/token` with a form `grant_type=client_credentials`,
//! `client_id`, `client_secret` (or `client_assertion_type` + `client_assertion`) and
//! `scope={resource}/.default`; answers `{token_type, expires_in, ext_expires_in,
//! access_token}` and errors `{error, error_description: "AADSTSnnn: ...", error_codes,
//! timestamp, trace_id, correlation_id}`.
//! Shapes: learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
//! (first and second case, and the error response); AADSTS7000215 "Invalid client secret
//! provided" is the code for a wrong secret (learn.microsoft.com/entra/identity-platform/
//! reference-error-codes). A client assertion (RFC 7523) is verified as Entra ID does it
//! (learn.microsoft.com/entra/identity-platform/certificate-credentials): a PS256 (or
//! RS256) JWT whose `x5t#S256` names the certificate registered for the app
//! ([`super::EmulatorConfig::client_certificate`]), signed by that certificate's key, with
//! `aud` the token endpoint's URL, `iss` = `sub` = the client id, `nbf` passed and `exp` not
//! (5 minutes of clock skew). Refusals are 401 `invalid_client` with the AADSTS codes of
//! the error-code reference: 700027 (signature), 700024 (time range), 700021 (client id),
//! 700023 (audience), 50027 (malformed).

use std::collections::HashMap;

use serde_json::json;

use super::server::{Answer, Shared};

use crate::provider::http::certificate::{thumbprint_s256, verify, JWT_BEARER};

/// Clock skew allowed on `nbf` and `exp`.
const SKEW_SECS: u64 = 300;

/// Check a client assertion against the registered certificate `cert` (DER); the error is
/// an AADSTS code and its text (which never repeats the assertion).
fn check_assertion(
    jwt: &str,
    cert: Option<&[u8]>,
    client_id: &str,
    audience: &str,
) -> Result<(), (u32, String)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let malformed = |what: &str| (50027, format!("JWT token is invalid or malformed: {what}."));
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, sig] = parts[..] else {
        return Err(malformed("not three parts"));
    };
    let decode = |part: &str| -> Result<serde_json::Value, (u32, String)> {
        let bytes = b64.decode(part).map_err(|_| malformed("not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| malformed("not JSON"))
    };
    let (header, claims) = (decode(h)?, decode(c)?);
    let sig = b64
        .decode(sig)
        .map_err(|_| malformed("signature not base64url"))?;
    let Some(cert) = cert else {
        return Err((700027, format!("Client assertion failed signature validation. No certificate is registered for app '{client_id}'.")));
    };
    let alg = header["alg"].as_str().unwrap_or_default();
    if header["x5t#S256"].as_str() != Some(thumbprint_s256(cert).as_str()) {
        return Err((700027, "Client assertion failed signature validation. The key (x5t#S256) was not found among the app's certificates.".into()));
    }
    verify(cert, format!("{h}.{c}").as_bytes(), &sig, alg).map_err(|e| {
        (
            700027,
            format!("Client assertion failed signature validation: {e}."),
        )
    })?;
    let str_claim = |k: &str| claims[k].as_str().unwrap_or_default();
    if str_claim("iss") != client_id || str_claim("sub") != client_id {
        return Err((
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.".into(),
        ));
    }
    if str_claim("aud") != audience {
        return Err((700023, format!("Client assertion audience claim does not match Realm issuer: it must be '{audience}'.")));
    }
    if str_claim("jti").is_empty() {
        return Err(malformed("no jti"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (Some(nbf), Some(exp)) = (claims["nbf"].as_u64(), claims["exp"].as_u64()) else {
        return Err(malformed("nbf or exp missing"));
    };
    if nbf > now + SKEW_SECS || exp + SKEW_SECS < now {
        return Err((
            700024,
            "Client assertion is not within its valid time range.".into(),
        ));
    }
    Ok(())
}

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
        let audience = format!("{}/{tenant}/oauth2/v2.0/token", shared.base);
        if let Err((code, text)) = check_assertion(
            get("client_assertion"),
            cfg.client_certificate.as_deref(),
            &cfg.client_id,
            &audience,
        ) {
            return error(shared, 401, "invalid_client", code, &text);
        }
        true
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::http::certificate::CertificateKey;
    use std::time::{Duration, SystemTime};

    const APP: &[u8] = include_bytes!("../../tests/fixtures/certificate/app.pem");
    const OTHER: &[u8] = include_bytes!("../../tests/fixtures/certificate/other.pem");
    const AUD: &str = "https://127.0.0.1:1/t/oauth2/v2.0/token";

    // issue 12 item 1: the emulator checks signature, x5t#S256, iss/sub, aud and time.
    #[test]
    fn assertions_are_verified() {
        let key = CertificateKey::from_pem(APP).unwrap();
        let other = CertificateKey::from_pem(OTHER).unwrap();
        let cert = key.certificate_der().to_vec();
        let now = SystemTime::now();
        let ok = key.assertion("app", AUD, now).unwrap();
        assert_eq!(
            check_assertion(ok.expose(), Some(&cert), "app", AUD),
            Ok(())
        );
        let code = |jwt: &str, client: &str, aud: &str| {
            check_assertion(jwt, Some(&cert), client, aud)
                .unwrap_err()
                .0
        };
        let foreign = other.assertion("app", AUD, now).unwrap();
        assert_eq!(code(foreign.expose(), "app", AUD), 700027);
        assert_eq!(code(ok.expose(), "someone-else", AUD), 700021);
        assert_eq!(
            code(ok.expose(), "app", "https://elsewhere/t/oauth2/v2.0/token"),
            700023
        );
        let old = key
            .assertion("app", AUD, now - Duration::from_secs(3600))
            .unwrap();
        assert_eq!(code(old.expose(), "app", AUD), 700024);
        assert_eq!(code("a.b", "app", AUD), 50027);
        // A tampered payload no longer verifies.
        let parts: Vec<&str> = ok.expose().split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], parts[0], parts[2]);
        assert_ne!(check_assertion(&forged, Some(&cert), "app", AUD), Ok(()));
        // No certificate registered: refused.
        assert_eq!(
            check_assertion(ok.expose(), None, "app", AUD)
                .unwrap_err()
                .0,
            700027
        );
    }
}
