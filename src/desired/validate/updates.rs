//! The approved updates: U1 (a version), U3 (the dates), U5 (a sandbox first).

use std::collections::BTreeMap;

use super::{err, warn};
use crate::desired::model::Instance;
use crate::diag::Diagnostic;
use crate::domain::kinds::InstanceType;
use crate::domain::syntax;

/// U1, U3: the approved update of instance `inst` (at `at`). A sandbox's target version is
/// added to `sandbox_targets`, for [`sandbox_first`].
pub(super) fn approved(
    inst: &Instance,
    at: &str,
    sandbox_targets: &mut Vec<Vec<u64>>,
    out: &mut Vec<Diagnostic>,
) {
    let Some(up) = &inst.update else { return };
    if !syntax::is_version(&up.target_version) {
        out.push(
            err(
                format!("{at}.update.target_version"),
                "U1",
                format!("`{}` is not a version", up.target_version),
            )
            .hint("write the version as numbers with dots, e.g. `8.1.0`"),
        );
    } else if inst.kind == InstanceType::Sandbox {
        if let Some(v) = syntax::version_key(&up.target_version) {
            sandbox_targets.push(v);
        }
    }
    let preferred = syntax::parse_date_time_utc(&up.preferred);
    let alternate = syntax::parse_date_time_utc(&up.alternate);
    for (field, value, parsed) in [
        ("preferred", &up.preferred, preferred),
        ("alternate", &up.alternate, alternate),
    ] {
        if parsed.is_none() {
            out.push(
                err(
                    format!("{at}.update.{field}"),
                    "U3",
                    format!("`{value}` is not an RFC 3339 date and time in UTC"),
                )
                .hint("write e.g. `2016-05-14T22:00:00Z` (UTC, with the `Z`)"),
            );
        }
    }
    if let (Some(p), Some(a)) = (preferred, alternate) {
        if a <= p {
            out.push(
                err(
                    format!("{at}.update.alternate"),
                    "U3",
                    "the alternate date must be later than the preferred date".to_string(),
                )
                .hint("the alternate date is the fallback when the preferred one cannot be used"),
            );
        }
    }
}

/// U5: update a sandbox first. Warn for a production target newer than every sandbox's
/// (`sandbox`: the sandbox keys, in order; `sandbox_targets`: their target versions).
pub(super) fn sandbox_first(
    instances: &BTreeMap<String, Instance>,
    sandbox: &[&str],
    sandbox_targets: &[Vec<u64>],
    out: &mut Vec<Diagnostic>,
) {
    if sandbox.is_empty() {
        return;
    }
    let best_sandbox = sandbox_targets.iter().max();
    for (key, inst) in instances {
        let Some(up) = &inst.update else { continue };
        if inst.kind != InstanceType::Production {
            continue;
        }
        let Some(v) = syntax::version_key(&up.target_version) else {
            continue;
        };
        if best_sandbox.is_none_or(|s| &v > s) {
            out.push(
                    warn(
                        format!("instances.{key}.update.target_version"),
                        "U5",
                        format!(
                            "production instance `{key}` is updated to {} before any sandbox",
                            up.target_version
                        ),
                    )
                    .hint(format!(
                        "approve the update on a sandbox first (e.g. `instances.{}`), test, then production",
                        sandbox[0]
                    )),
                );
        }
    }
}
