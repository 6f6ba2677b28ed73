//! Instances: I3 (currency), I5 (URL names), I6/I11 (copies), I10 (administration mode),
//! I12 (the bound security group), I13 (notification recipients), T7 (instances per
//! tenant); their updates (U-rules) in [`super::updates`], P3 in [`super::users`].

use std::collections::HashMap;
use std::fmt::Display;

use super::{err, reference_hint, some_of, updates, users, warn};
use crate::desired::model::Desired;
use crate::diag::Diagnostic;
use crate::domain::iso4217;
use crate::domain::kinds::InstanceType;
use crate::domain::limits::{MAX_PRODUCTION_INSTANCES, MAX_SANDBOX_INSTANCES};
use crate::domain::syntax;

pub(super) fn instances(d: &Desired, out: &mut Vec<Diagnostic>) {
    let Some(instances) = &d.instances else {
        return;
    };
    let groups = d.security_groups.as_ref();
    let mut urls: HashMap<String, &str> = HashMap::new();
    let (mut production, mut sandbox) = (Vec::new(), Vec::new());
    let mut sandbox_targets: Vec<Vec<u64>> = Vec::new();

    for (key, inst) in instances {
        let at = format!("instances.{key}");
        match inst.kind {
            InstanceType::Production => production.push(key.as_str()),
            InstanceType::Sandbox => sandbox.push(key.as_str()),
        }

        // I5: syntax and uniqueness of URL names (case-insensitive, as host names are).
        if !syntax::is_url_name(&inst.url) {
            let lower = inst.url.to_ascii_lowercase();
            let hint = if syntax::is_url_name(&lower) {
                format!("URL names are lower case: `{lower}`")
            } else {
                "use 1-63 lower-case letters, digits and inner hyphens, e.g. `cohowinerysales`"
                    .to_string()
            };
            out.push(
                err(
                    format!("{at}.url"),
                    "I5",
                    format!("URL name `{}` is not a valid host name label", inst.url),
                )
                .hint(hint),
            );
        }
        match urls.get(&inst.url.to_ascii_lowercase()) {
            Some(first) => out.push(
                err(
                    format!("{at}.url"),
                    "I5",
                    format!(
                        "URL name `{}` is also used by instance `{first}`; URL names are unique",
                        inst.url
                    ),
                )
                .hint("give each instance its own URL name"),
            ),
            None => {
                urls.insert(inst.url.to_ascii_lowercase(), key.as_str());
            }
        }

        // I3: ISO 4217 base currency.
        if let Some(cur) = &inst.currency {
            if !iso4217::is_currency(cur) {
                let upper = cur.to_ascii_uppercase();
                let hint = if iso4217::is_currency(&upper) {
                    format!("currency codes are upper case: `{upper}`")
                } else {
                    // Every code one edit away: `USX` could be USD as well as UGX.
                    let near: Vec<&str> = iso4217::CODES
                        .iter()
                        .copied()
                        .filter(|c| strsim::hamming(c, &upper) == Ok(1))
                        .collect();
                    if near.is_empty() {
                        "use an ISO 4217 code such as USD, EUR, GBP, JPY".to_string()
                    } else {
                        format!(
                            "did you mean {}? use an ISO 4217 code such as USD, EUR, GBP, JPY",
                            some_of(near.into_iter(), 6)
                        )
                    }
                };
                out.push(
                    err(
                        format!("{at}.currency"),
                        "I3",
                        format!("`{cur}` is not an ISO 4217 currency code"),
                    )
                    .hint(hint),
                );
            }
        }

        // I12: the bound security group must be declared.
        if let Some(sg) = &inst.security_group {
            if groups.is_none_or(|g| !g.contains_key(sg)) {
                let why = "the value is a key under `security_groups`";
                let hint = reference_hint(sg, groups, why, |declared| {
                    format!("declare it under `security_groups:` (declared: {declared}), or omit `security_group` for none")
                });
                out.push(
                    err(
                        format!("{at}.security_group"),
                        "I12",
                        format!("security group `{sg}` of instance `{key}` is not declared"),
                    )
                    .hint(hint),
                );
            }
        }

        // I10: administration mode.
        if let Some(am) = &inst.admin_mode {
            // A production instance may state the production default (off, background
            // operations on, no message): a sandbox becoming production says so (I7).
            let production_default =
                !am.enabled && am.background_operations && am.message.is_none();
            if inst.kind == InstanceType::Production && !production_default {
                out.push(
                    err(
                        format!("{at}.admin_mode"),
                        "I10",
                        format!("administration mode is for sandbox instances only, and `{key}` is a production instance"),
                    )
                    .hint("remove `admin_mode`, or make the instance `type: sandbox`"),
                );
            }
            if !am.background_operations && !am.enabled {
                out.push(
                    err(
                        format!("{at}.admin_mode.background_operations"),
                        "I10",
                        "background operations can be disabled only while administration mode is enabled".to_string(),
                    )
                    .hint("set `enabled: true`, or `background_operations: true`"),
                );
            }
        }

        // I11: copies land only on sandboxes, from another declared instance.
        if let Some(cf) = &inst.copy_from {
            if inst.kind == InstanceType::Production {
                out.push(
                    err(
                        format!("{at}.copy_from"),
                        "I11",
                        format!("instance `{key}` is a production instance; a copy never lands on a production instance"),
                    )
                    .hint("make the target `type: sandbox`, or remove `copy_from`"),
                );
            }
            if cf.instance == *key {
                out.push(
                    err(
                        format!("{at}.copy_from.instance"),
                        "I11",
                        format!("instance `{key}` cannot be copied onto itself"),
                    )
                    .hint("name another instance as the source"),
                );
            } else if let Some(source) = instances.get(&cf.instance) {
                // I6: a copy lands in the source's region.
                if let (Some(from), Some(to)) = (source.region, inst.region) {
                    if from != to {
                        out.push(
                            err(
                                format!("{at}.region"),
                                "I6",
                                format!(
                                    "instance `{key}` is copied from `{}` in region {}, and a copy lands in the source's region, not {}",
                                    cf.instance,
                                    from.as_str(),
                                    to.as_str()
                                ),
                            )
                            .hint(format!("set `region: {}`, or copy from an instance in {}", from.as_str(), to.as_str())),
                        );
                    }
                }
                // I3/I11: a copy brings the source's base currency and language.
                let mut brought = |field: &str,
                                   what: &str,
                                   from: &dyn Display,
                                   to: &dyn Display| {
                    out.push(
                        err(
                            format!("{at}.{field}"),
                            "I11",
                            format!(
                                "instance `{key}` is copied from `{}`, whose {what} is {from}, and a copy brings the source's {field} (I3), not {to}",
                                cf.instance
                            ),
                        )
                        .hint(format!("set `{field}: {from}`, or remove `{field}` from this instance")),
                    );
                };
                if let (Some(from), Some(to)) = (&source.currency, &inst.currency) {
                    if from != to {
                        brought("currency", "base currency", from, to);
                    }
                }
                if let (Some(from), Some(to)) = (source.language, inst.language) {
                    if from != to {
                        brought("language", "language", &from, &to);
                    }
                }
            } else {
                let why = "the source is an instance key declared under `instances`";
                let hint = reference_hint(&cf.instance, Some(instances), why, |_| why.to_string());
                out.push(
                    err(
                        format!("{at}.copy_from.instance"),
                        "I11",
                        format!("copy source `{}` is not a declared instance", cf.instance),
                    )
                    .hint(hint),
                );
            }
        }

        // I13: notification recipients are email addresses, each once.
        if let Some(rcpts) = &inst.notification_recipients {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (i, r) in rcpts.iter().enumerate() {
                if !syntax::is_email(r) {
                    out.push(
                        err(
                            format!("{at}.notification_recipients[{i}]"),
                            "I13",
                            format!("`{r}` is not an email address"),
                        )
                        .hint("write a full address, e.g. `crm-admins@cohowinery.com`"),
                    );
                }
                if let Some(first) = seen.insert(r.to_ascii_lowercase(), i) {
                    seen.insert(r.to_ascii_lowercase(), first);
                    out.push(
                        warn(
                            format!("{at}.notification_recipients[{i}]"),
                            "I13",
                            format!(
                                "`{r}` is listed twice (also item {first}); it is notified once"
                            ),
                        )
                        .hint("remove the duplicate address"),
                    );
                }
            }
        }

        // U1, U3: the approved update.
        updates::approved(inst, &at, &mut sandbox_targets, out);
    }

    // T7: limits per tenant.
    for (list, max, kind) in [
        (&production, MAX_PRODUCTION_INSTANCES as usize, "production"),
        (&sandbox, MAX_SANDBOX_INSTANCES as usize, "sandbox"),
    ] {
        if list.len() > max {
            out.push(
                err(
                    "instances".into(),
                    "T7",
                    format!(
                        "{} {kind} instances are declared; a tenant has at most {max}",
                        list.len()
                    ),
                )
                .hint(format!(
                    "remove {} of the {kind} instances",
                    list.len() - max
                )),
            );
        }
    }

    updates::sandbox_first(instances, &sandbox, &sandbox_targets, out);
    users::non_interactive(d, instances, out);
}
