//! The Power Platform API, the subset crmctl uses (issue 13 item 3): on-demand backups of
//! an environment, at `/powerplatform/environmentmanagement/environments/{id}/backups`, so
//! that the base URL `https://127.0.0.1:PORT/powerplatform` (`CRMCTL_POWERPLATFORM_URL`)
//! reaches it.
//!
//! `POST .../backups?api-version=2024-10-01` `{"label": "..."}` executes
//! `Op::BackupInstance` on the backing provider (the local tenant records backups; its
//! rules refuse a backup of an instance still provisioning, I4) and answers 201 with the
//! `EnvironmentBackup` `{id, label, backupPointDateTime, backupExpiryDateTime, createdBy}`.
//! A backup of an environment with a lifecycle operation running answers 409
//! `OperationNotStartable`, as the admin API does. Same authentication, fault knobs and
//! error bodies as the admin API routes ([`super::bap`]).
//!
//! Shapes: learn.microsoft.com/rest/api/power-platform/environmentmanagement/
//! environment-backup/create-environment-backup (api-version 2024-10-01: request
//! `CreateBackupRequest {label}` required; 201 `EnvironmentBackup`; 400, 401, 403, 429,
//! 409 Conflict).

use serde_json::{json, Value};

use super::bap::{self, error};
use super::graph;
use super::server::{Answer, Reply, Shared};
use crate::domain::op::Op;
use crate::provider::Executed;

/// The path prefix of the Power Platform API.
pub const PREFIX: &str = "/powerplatform";

/// How long a backup is kept (the environment's retention; 7 days is the default of a
/// managed environment's backup retention).
const RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Serve one request under [`PREFIX`].
pub(super) async fn serve(
    shared: &Shared,
    auth: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Reply {
    if let Some(a) = bap::gate(shared, auth) {
        return Reply::Answer(a);
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    if !params.iter().any(|(k, _)| k == "api-version") {
        return Reply::Answer(error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter is required.",
        ));
    }
    let rest = path.strip_prefix(PREFIX).unwrap_or(path);
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let answer = match (method, segs.as_slice()) {
        ("POST", ["environmentmanagement", "environments", id, "backups"]) => {
            backup(shared, id, body).await
        }
        _ => error(
            404,
            "NotFound",
            &format!("no Power Platform API route for {method} {path}"),
        ),
    };
    if method != "GET" && shared.draw_drop() {
        return Reply::Drop;
    }
    Reply::Answer(answer)
}

async fn backup(shared: &Shared, id: &str, body: &[u8]) -> Answer {
    let label = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v.get("label").and_then(Value::as_str).map(str::to_string),
        Err(_) => None,
    };
    let Some(label) = label else {
        return error(
            400,
            "ValidationError",
            "The request body must be JSON with a `label` (the label of the backup).",
        );
    };
    let _w = shared.write_lock.lock().await;
    if shared.bap.running_on(id).is_some() {
        return bap::not_startable(shared, id);
    }
    let op = Op::BackupInstance {
        instance: graph::obj(id),
        label: label.clone(),
    };
    let r = shared.provider.execute(&op).await;
    graph::after_write(shared, &op, r.is_ok());
    let out = match r {
        Ok(Executed::Done(out)) => out,
        Ok(Executed::Accepted(_)) => {
            return error(
                500,
                "InternalServerError",
                "the tenant accepted the backup as a long-running operation, which the emulator does not serve",
            )
        }
        Err(e) => return bap::from_provider(&e, id),
    };
    let Some(backup_id) = out.ids.get("backup").cloned() else {
        return error(
            500,
            "InternalServerError",
            "the tenant returned no backup id",
        );
    };
    shared.stats.record_backup(super::EmulatedBackup {
        environment: id.to_string(),
        label: label.clone(),
        id: backup_id.clone(),
    });
    let now = std::time::SystemTime::now();
    let stamp = |t| humantime::format_rfc3339_seconds(t).to_string();
    Answer::json(
        201,
        json!({
            "id": backup_id,
            "label": label,
            "backupPointDateTime": stamp(now),
            "backupExpiryDateTime": stamp(now + RETENTION),
            "createdBy": {"id": "emulator", "displayName": "ServicePrincipal", "type": "ServicePrincipal"},
        }),
    )
}
