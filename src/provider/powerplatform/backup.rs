//! On-demand backups through the Power Platform API (issue 13 item 3): before apply resets,
//! deletes or copies onto an instance, `Op::BackupInstance` takes a backup labelled with
//! the plan and the action, and its id is recorded.
//!
//! Wire format (learn.microsoft.com/rest/api/power-platform/environmentmanagement/
//! environment-backup/create-environment-backup, api-version 2024-10-01):
//! `POST {powerplatform}/environmentmanagement/environments/{environmentId}/backups
//! ?api-version=2024-10-01` with `CreateBackupRequest {"label": "..."}` (required); 201
//! Created with the `EnvironmentBackup` `{id, label, backupPointDateTime,
//! backupExpiryDateTime, createdBy}`; 400 (validation), 401, 403, 429, 409 (conflict). The
//! token scope is the Power Platform API's (`https://api.powerplatform.com/.default`,
//! [`Service::PowerPlatform`]). Error bodies are read as `{"error":{"code","message"}}`;
//! a refusal whose message ends with a rule id in parentheses (as crmctl's emulator
//! words it) is [`ProviderError::Refused`] with that rule.
//!
//! Starting a backup is not idempotent (a second request makes a second backup): the
//! request is sent as such, so a connection lost after it left is *outcome unknown*,
//! never retried blindly by the transport.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::json;

use crate::domain::op::Op;
use crate::provider::dataverse::wire::rule_of;
use crate::provider::graph::wire::error_of;
use crate::provider::http::transport::parse_retry_after;
use crate::provider::http::{Http, Request, Response, Service};
use crate::provider::{Executed, Outcome, ProviderError};

/// The api-version of the environment management endpoints.
pub const API_VERSION: &str = "2024-10-01";

/// The name of the backup's id in an op's [`Outcome::ids`].
pub const OUTCOME_ID: &str = "backup";

/// A backup the service made.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// The backup's id.
    pub id: String,
    /// Its label.
    #[serde(default)]
    pub label: String,
    /// When the backup point is (RFC 3339).
    #[serde(default)]
    pub backup_point_date_time: Option<String>,
    /// When it expires (RFC 3339).
    #[serde(default)]
    pub backup_expiry_date_time: Option<String>,
}

/// Why a backup request is malformed before it is sent.
fn check(environment_id: &str, label: &str) -> Result<(), ProviderError> {
    if environment_id.is_empty()
        || !environment_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ProviderError::Invalid(format!(
            "environment id `{}` is not an id (letters, digits, '-' and '_')",
            crate::domain::escape::escape(environment_id)
        )));
    }
    if label.trim().is_empty() {
        return Err(ProviderError::Invalid("a backup needs a label".into()));
    }
    Ok(())
}

/// The request that backs up `environment_id` with `label` (relative to the Power
/// Platform API's base URL).
pub fn backup_request(environment_id: &str, label: &str) -> Result<Request, ProviderError> {
    check(environment_id, label)?;
    Ok(Request::with_body(
        "POST",
        Service::PowerPlatform,
        format!("/environmentmanagement/environments/{environment_id}/backups?api-version={API_VERSION}"),
        json!({ "label": label }),
        false,
    ))
}

/// The backup of a 2xx answer, or the error class of any other.
pub fn read_backup(resp: &Response, environment_id: &str) -> Result<Backup, ProviderError> {
    if resp.ok() {
        let b: Backup = resp.json()?;
        if b.id.is_empty() {
            return Err(ProviderError::Backend(format!(
                "the backup of environment {environment_id} was answered without an id"
            )));
        }
        return Ok(b);
    }
    Err(error_class(
        resp,
        &format!("backup of environment {environment_id}"),
    ))
}

/// The [`ProviderError`] class of a Power Platform API error answer. `what` names the
/// request; no body is echoed beyond the service's code and message.
pub fn error_class(resp: &Response, what: &str) -> ProviderError {
    let (code, message) = error_of(resp);
    let said = if code.is_empty() && message.is_empty() {
        format!("{what}: HTTP {}", resp.status)
    } else {
        format!("{what}: HTTP {} {code}: {message}", resp.status)
    };
    let retry_after = resp
        .header("retry-after")
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    match resp.status {
        400 | 422 => match rule_of(&message) {
            Some(rule) => ProviderError::Refused {
                rule: rule.to_string(),
                message: said,
            },
            None => ProviderError::Invalid(said),
        },
        404 => ProviderError::NotFound(said),
        409 | 423 => ProviderError::Conflict {
            message: said,
            retry_after,
        },
        429 => ProviderError::Throttled {
            message: said,
            retry_after,
        },
        500..=599 => ProviderError::Transient(said),
        _ => ProviderError::Backend(said),
    }
}

/// Back up `environment_id` with `label`: one request.
pub async fn create_backup(
    http: &dyn Http,
    environment_id: &str,
    label: &str,
) -> Result<Backup, ProviderError> {
    let req = backup_request(environment_id, label)?;
    let resp = http.send(req).await?;
    read_backup(&resp, environment_id)
}

/// Execute `Op::BackupInstance` (the instance's remote id is its environment id): done,
/// with the backup's id under [`OUTCOME_ID`]. Any other op is refused as invalid.
pub async fn execute(http: &dyn Http, op: &Op) -> Result<Executed, ProviderError> {
    let Op::BackupInstance { instance, label } = op else {
        return Err(ProviderError::Invalid(format!(
            "the backup client executes backup_instance only, not {}",
            op.kind().info().name
        )));
    };
    let Some(env) = instance.id.as_deref() else {
        return Err(ProviderError::Invalid(format!(
            "reference to `{}` carries no remote id",
            instance.address
        )));
    };
    let b = create_backup(http, env, label).await?;
    Ok(Executed::Done(Outcome::default().with_id(OUTCOME_ID, b.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_request_is_the_documented_one() {
        let r = backup_request("00000000-0000-0000-0000-000000000001", "before reset").unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.service, Service::PowerPlatform);
        assert_eq!(
            r.url,
            "/environmentmanagement/environments/00000000-0000-0000-0000-000000000001/backups?api-version=2024-10-01"
        );
        assert_eq!(r.body, Some(json!({"label": "before reset"})));
        assert!(!r.idempotent, "a second request makes a second backup");
        assert!(matches!(
            backup_request("a/../b", "x"),
            Err(ProviderError::Invalid(_))
        ));
        assert!(matches!(
            backup_request("env", " "),
            Err(ProviderError::Invalid(_))
        ));
    }

    #[test]
    fn answers_map_to_classes() {
        let ok = answer(
            201,
            r#"{"id":"b1","label":"l","backupPointDateTime":"2026-12-01T10:00:00Z"}"#,
            &[],
        );
        assert_eq!(read_backup(&ok, "e").unwrap().id, "b1");
        let refused = answer(
            400,
            r#"{"error":{"code":"BadRequest","message":"`dev` is still provisioning (I4)"}}"#,
            &[],
        );
        assert!(
            matches!(read_backup(&refused, "e"), Err(ProviderError::Refused { rule, .. }) if rule == "I4")
        );
        let busy = answer(
            409,
            r#"{"error":{"code":"OperationNotStartable","message":"active lifecycle operation"}}"#,
            &[("retry-after", "5")],
        );
        assert!(matches!(
            read_backup(&busy, "e"),
            Err(ProviderError::Conflict { retry_after: Some(d), .. }) if d.as_secs() == 5
        ));
        assert!(matches!(
            read_backup(&answer(404, "{}", &[]), "e"),
            Err(ProviderError::NotFound(_))
        ));
        assert!(matches!(
            read_backup(&answer(429, "", &[("retry-after", "2")]), "e"),
            Err(ProviderError::Throttled { .. })
        ));
        assert!(matches!(
            read_backup(&answer(503, "", &[]), "e"),
            Err(ProviderError::Transient(_))
        ));
        assert!(matches!(
            read_backup(&answer(201, r#"{"id":""}"#, &[]), "e"),
            Err(ProviderError::Backend(_))
        ));
    }
}
