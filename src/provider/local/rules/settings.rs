//! Instance settings: administration mode, notification recipients, update approvals:
//! I10, I13, U2-U4.

use crate::domain::kinds::InstanceType;
use crate::domain::op::Op;
use crate::domain::syntax::cmp_version;
use crate::observed::{AdminModeState, Tenant, UpdatePhase, UpdateState};
use crate::provider::local::delta::Delta;
use crate::provider::ProviderError;

use super::{check_upn, editable, instance, not_mine, refused, Effect};

/// Check an instance setting op against the tenant and compute what it writes.
pub(super) fn effect(t: &Tenant, op: &Op) -> Result<Effect, ProviderError> {
    match op {
        Op::SetAdminMode {
            instance: r,
            enabled,
            background_operations,
            message,
        } => {
            let i = instance(t, r)?;
            let wanted = AdminModeState {
                enabled: *enabled,
                background_operations: *background_operations,
                message: message.clone(),
            };
            if i.admin_mode == wanted {
                return Ok(Effect::none());
            }
            editable(i, "administration mode")?;
            if *enabled && i.kind == InstanceType::Production {
                return Err(refused(
                    "I10",
                    format!(
                        "administration mode exists only for sandboxes; `{}` is production",
                        i.url
                    ),
                ));
            }
            if !*enabled && !*background_operations {
                return Err(refused(
                    "I10",
                    format!(
                        "background operations of `{}` can be off only while administration mode is on",
                        i.url
                    ),
                ));
            }
            let mut ni = i.clone();
            ni.admin_mode = wanted;
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        Op::SetNotificationRecipients {
            instance: r,
            recipients,
        } => {
            let i = instance(t, r)?;
            if let Some(bad) = recipients.iter().find(|a| check_upn(a).is_err()) {
                return Err(ProviderError::Invalid(format!(
                    "notification recipient `{bad}` is not an email address (I13)"
                )));
            }
            if &i.notification_recipients == recipients {
                return Ok(Effect::none());
            }
            editable(i, "notification recipients")?;
            let mut ni = i.clone();
            ni.notification_recipients = recipients.clone();
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        Op::ScheduleUpdate {
            instance: r,
            target_version,
            preferred,
            alternate,
        } => {
            let i = instance(t, r)?;
            let wanted = UpdateState {
                target_version: target_version.clone(),
                preferred: preferred.clone(),
                alternate: alternate.clone(),
                state: UpdatePhase::Approved,
            };
            if i.update.as_ref() == Some(&wanted) {
                return Ok(Effect::none());
            }
            if let Some(u) = &i.update {
                if u.state == UpdatePhase::InProgress {
                    return Err(refused(
                        "U4",
                        format!("the update of `{}` to {} is in progress; it can no longer be rescheduled", i.url, u.target_version),
                    ));
                }
            }
            editable(i, "update approval")?;
            if !t.versions.iter().any(|v| v == target_version) {
                return Err(refused(
                    "U3",
                    format!(
                        "version {target_version} is not offered; known versions: {}",
                        t.versions.join(", ")
                    ),
                ));
            }
            if cmp_version(target_version, &i.version).is_le() {
                return Err(refused(
                    "U2",
                    format!(
                        "`{}` already runs {}; an update must target a newer version than that",
                        i.url, i.version
                    ),
                ));
            }
            if preferred.trim().is_empty() || alternate.trim().is_empty() {
                return Err(ProviderError::Invalid(
                    "an update approval names a preferred and an alternate date (U3)".into(),
                ));
            }
            let mut ni = i.clone();
            ni.update = Some(wanted);
            Ok(Effect::of(vec![Delta::PutInstance(Box::new(ni))]))
        }
        _ => Err(not_mine(op, "instance setting")),
    }
}
