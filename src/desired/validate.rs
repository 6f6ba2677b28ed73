//! Semantic validation of a parsed desired tenant: the service's rules that can be checked
//! from the file alone (domain.md ids in every diagnostic's `rule`).
//!
//! Pure: no I/O, no file format. Each diagnostic carries in `address` the YAML path of the
//! offending value (`instances.dev.admin_mode.background_operations`,
//! `users.ana@x.com.roles.sales`, `security_groups.sales.members[2]`); `desired::load` turns
//! paths into file:line:col only when there is something to report.
//!
//! Cost: O(n log n) in the size of the file (maps and sets, no quadratic scans), so that
//! validating a 100,000-user tenant stays a small fraction of parsing it.
//!
//! Decisions that domain.md leaves open:
//! - `update.preferred` and `update.alternate` are RFC 3339 instants in UTC (`...Z`), and the
//!   alternate date must be strictly later than the preferred one (U3: it is the fallback).
//! - Group members must be declared under `users` even when they exist in the tenant: an
//!   empty entry (`ana@x.com: {}`) declares a user without managing any of its fields.
//! - U5 is checked only when the file declares at least one sandbox.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use crate::desired::index::{MemberPositions, UNDECLARED};
use crate::desired::model::Desired;
use crate::diag::Diagnostic;
use crate::domain::ident;
use crate::domain::iso4217;
use crate::domain::kinds::{AccessMode, AdminRole, InstanceType, LicensePlan};
use crate::domain::limits::{
    MAX_NON_INTERACTIVE_PER_INSTANCE, MAX_PRODUCTION_INSTANCES, MAX_SANDBOX_INSTANCES, MAX_UPN,
    MAX_UPN_LOCAL,
};
use crate::domain::syntax;

/// Check every rule; diagnostics come in a deterministic order (file order is restored by
/// `desired::load` once they are located).
pub fn validate(d: &Desired) -> Vec<Diagnostic> {
    validate_with(d, &MemberPositions::resolve(d))
}

/// [`validate`] given the members of `d` already resolved to users.
pub fn validate_with(d: &Desired, members: &MemberPositions) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    tenant(d, &mut out);
    users(d, &mut out);
    groups(d, members, &mut out);
    instances(d, &mut out);
    licenses(d, &mut out);
    admins(d, &mut out);
    identities(d, &mut out);

    text_safety(d, &mut out);
    duplicate_roles(d, &mut out);
    upn_lengths(d, &mut out);
    out
}

fn err(address: String, rule: &str, message: String) -> Diagnostic {
    Diagnostic::error(address, message).rule(rule)
}

fn warn(address: String, rule: &str, message: String) -> Diagnostic {
    Diagnostic::warning(address, message).rule(rule)
}

/// Up to `n` names, comma-separated, with "..." when there are more.
fn some_of<'a>(names: impl Iterator<Item = &'a str>, n: usize) -> String {
    let all: Vec<&str> = names.collect();
    let mut s = all
        .iter()
        .take(n)
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > n {
        s.push_str(&format!(" and {} more", all.len() - n));
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

/// The closest name to `wanted` among `names`, if close enough to be a likely typo (at most
/// two edits, and few for a short name).
fn closest<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names
        .map(|n| (strsim::levenshtein(wanted, n), n))
        .filter(|&(d, _)| d <= 2 && 3 * d <= wanted.chars().count() + 2)
        .min()
        .map(|(_, n)| n)
}

fn tenant(d: &Desired, out: &mut Vec<Diagnostic>) {
    if !syntax::is_tenant_domain(&d.tenant) {
        let hint = match d.tenant.split('.').next() {
            Some(name) if !name.is_empty() && !d.tenant.ends_with(".onmicrosoft.com") => {
                format!(
                    "the tenant is its sign-up domain, e.g. `{}.onmicrosoft.com`",
                    name.to_ascii_lowercase()
                )
            }
            _ => "write the sign-up domain in lower case: `<name>.onmicrosoft.com`, where <name> \
                  has letters, digits and inner hyphens"
                .to_string(),
        };
        out.push(
            err(
                "tenant".into(),
                "T1",
                format!(
                    "tenant `{}` is not a `<name>.onmicrosoft.com` domain",
                    d.tenant
                ),
            )
            .hint(hint),
        );
    }
}

fn users(d: &Desired, out: &mut Vec<Diagnostic>) {
    let Some(users) = &d.users else { return };
    let instances = d.instances.as_ref();
    for (upn, u) in users {
        // Built only when there is something to report (100,000 users: no formatting).
        let at = || format!("users.{upn}");
        if !syntax::is_email(upn) {
            out.push(
                err(
                    at(),
                    "P1",
                    format!("user key `{upn}` is not a user principal name"),
                )
                .hint("users are keyed by their UPN, `user@domain`, e.g. `ana@cohowinery.com`"),
            );
        }
        if u.access_mode == Some(AccessMode::Application) && u.license.is_some() {
            out.push(
                err(
                    format!("{}.license", at()),
                    "P3",
                    format!("application user `{upn}` holds a license; application users are never licensed"),
                )
                .hint("remove `license`, or use `access_mode: non-interactive` or `read-write`"),
            );
        }
        if let Some(roles) = &u.roles {
            for inst in roles.keys() {
                if instances.is_none_or(|m| !m.contains_key(inst)) {
                    let known = instances.map(|m| m.keys().map(String::as_str));
                    let hint = match known.clone().and_then(|k| closest(inst, k)) {
                        Some(c) => format!("did you mean `{c}`? roles are keyed by instance keys declared under `instances`"),
                        None => format!(
                            "roles are keyed by instance keys declared under `instances` (declared: {})",
                            known.map(|k| some_of(k, 8)).unwrap_or_else(|| "none".into())
                        ),
                    };
                    out.push(
                        err(
                            format!("{}.roles.{inst}", at()),
                            "P2",
                            format!("user `{upn}` has roles in instance `{inst}`, which is not declared"),
                        )
                        .hint(hint),
                    );
                }
            }
            // P2: a read-write user needs a license to use any instance it has roles in.
            // Global and service admins get access without a license (P6).
            let read_write = matches!(u.access_mode, None | Some(AccessMode::ReadWrite));
            let has_roles = roles.values().any(|r| !r.is_empty());
            let license_free_admin = u.admin_roles.as_ref().is_some_and(|a| {
                a.iter()
                    .any(|r| matches!(r, AdminRole::GlobalAdmin | AdminRole::ServiceAdmin))
            });
            if read_write && has_roles && u.license.is_none() && !license_free_admin {
                out.push(
                    warn(
                        format!("{}.roles", at()),
                        "P2",
                        format!("read-write user `{upn}` has security roles but no license, so cannot use any instance"),
                    )
                    .hint("add `license: professional` (or another plan), or remove the roles"),
                );
            }
        }
    }
}

fn groups(d: &Desired, members: &MemberPositions, out: &mut Vec<Diagnostic>) {
    let Some(groups) = &d.security_groups else {
        return;
    };
    // The last group that listed each user: O(1) per membership.
    let users = d.users.as_ref();
    let mut seen_in: Vec<u32> = vec![u32::MAX; users.map_or(0, |u| u.len())];
    for (gi, (gkey, g)) in groups.iter().enumerate() {
        let (Some(names), Some(positions)) = (&g.members, members.group(gi)) else {
            continue;
        };
        let gi = gi as u32;
        let mut undeclared = 0usize;
        for (i, (m, &ui)) in names.iter().zip(positions).enumerate() {
            match ui {
                UNDECLARED => {
                    undeclared += 1;
                    // One diagnostic per undeclared member, but not thousands for one group.
                    if undeclared <= 20 {
                        // Issue 9 item 2: the same UPN in another case (P1) is named as such.
                        let same = users.and_then(|u| u.keys().find(|k| ident::same(k, m)));
                        let hint = if let Some(k) = same {
                            format!("members are user keys, written as declared: `{k}` (a UPN names one user whatever its case, P1)")
                        } else if users.is_none() {
                            format!("declare `{m}` under `users:` (an empty entry `{m}: {{}}` is enough)")
                        } else {
                            match users.and_then(|u| closest(m, u.keys().map(String::as_str))) {
                                Some(c) if undeclared == 1 => format!("did you mean `{c}`? members must be declared under `users:`"),
                                _ => format!("declare `{m}` under `users:` (an empty entry `{m}: {{}}` is enough)"),
                            }
                        };
                        out.push(
                            err(
                                format!("security_groups.{gkey}.members[{i}]"),
                                "I12",
                                format!(
                                    "member `{m}` of group `{gkey}` is not declared under `users`"
                                ),
                            )
                            .hint(hint),
                        );
                    }
                }
                ui => {
                    let slot = &mut seen_in[ui as usize];
                    if *slot == gi {
                        out.push(
                            warn(
                                format!("security_groups.{gkey}.members[{i}]"),
                                "I12",
                                format!("`{m}` is listed twice in group `{gkey}`"),
                            )
                            .hint("remove the duplicate entry"),
                        );
                    }
                    *slot = gi;
                }
            }
        }
        if undeclared > 20 {
            out.push(err(
                format!("security_groups.{gkey}.members"),
                "I12",
                format!("group `{gkey}` has {undeclared} members not declared under `users`; only the first 20 are shown"),
            ));
        }
    }
}

fn instances(d: &Desired, out: &mut Vec<Diagnostic>) {
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
                let known = groups.map(|g| g.keys().map(String::as_str));
                let hint = match known.clone().and_then(|k| closest(sg, k)) {
                    Some(c) => format!("did you mean `{c}`? the value is a key under `security_groups`"),
                    None => format!(
                        "declare it under `security_groups:` (declared: {}), or omit `security_group` for none",
                        known.map(|k| some_of(k, 8)).unwrap_or_else(|| "none".into())
                    ),
                };
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
                if let (Some(from), Some(to)) = (&source.currency, &inst.currency) {
                    if from != to {
                        out.push(
                            err(
                                format!("{at}.currency"),
                                "I11",
                                format!(
                                    "instance `{key}` is copied from `{}`, whose base currency is {from}, and a copy brings the source's currency (I3), not {to}",
                                    cf.instance
                                ),
                            )
                            .hint(format!("set `currency: {from}`, or remove `currency` from this instance")),
                        );
                    }
                }
                if let (Some(from), Some(to)) = (source.language, inst.language) {
                    if from != to {
                        out.push(
                            err(
                                format!("{at}.language"),
                                "I11",
                                format!(
                                    "instance `{key}` is copied from `{}`, whose language is {from}, and a copy brings the source's language (I3), not {to}",
                                    cf.instance
                                ),
                            )
                            .hint(format!("set `language: {from}`, or remove `language` from this instance")),
                        );
                    }
                }
            } else {
                let hint = match closest(&cf.instance, instances.keys().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`? the source is an instance key declared under `instances`"),
                    None => "the source is an instance key declared under `instances`".to_string(),
                };
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
        if let Some(up) = &inst.update {
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

    // U5: update a sandbox first. Warn for a production target newer than every sandbox's.
    if !sandbox.is_empty() {
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

    // P3: at most 5 non-interactive users with roles per instance.
    if let Some(users) = &d.users {
        let mut per_instance: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (upn, u) in users {
            if u.access_mode != Some(AccessMode::NonInteractive) {
                continue;
            }
            for (inst, roles) in u.roles.iter().flatten() {
                if !roles.is_empty() && instances.contains_key(inst) {
                    per_instance.entry(inst).or_default().push(upn);
                }
            }
        }
        for (inst, upns) in per_instance {
            if upns.len() > MAX_NON_INTERACTIVE_PER_INSTANCE {
                let sixth = upns[MAX_NON_INTERACTIVE_PER_INSTANCE];
                out.push(
                    err(
                        format!("users.{sixth}.roles.{inst}"),
                        "P3",
                        format!(
                            "instance `{inst}` has {} non-interactive users with roles; at most {MAX_NON_INTERACTIVE_PER_INSTANCE} are allowed: {}",
                            upns.len(),
                            some_of(upns.iter().copied(), 8)
                        ),
                    )
                    .hint("make some of them `access_mode: application` (unlimited), or remove their roles in this instance"),
                );
            }
        }
    }
}

fn licenses(d: &Desired, out: &mut Vec<Diagnostic>) {
    let Some(purchased) = &d.licenses else { return };
    // T3/T4: assigned licenses per plan must not exceed the purchased count.
    let mut assigned: BTreeMap<LicensePlan, usize> = BTreeMap::new();
    for u in d.users.iter().flat_map(|u| u.values()) {
        if let Some(plan) = u.license {
            *assigned.entry(plan).or_default() += 1;
        }
    }
    for (plan, &count) in purchased {
        let used = assigned.get(plan).copied().unwrap_or(0);
        if used > count as usize {
            out.push(
                err(
                    format!("licenses.{}", plan.as_str()),
                    "T3",
                    format!(
                        "{used} users are assigned a {} license but only {count} are purchased",
                        plan.as_str()
                    ),
                )
                .hint(format!(
                    "raise `licenses.{}` to at least {used}, or remove the license from {} of these users (a count never drops below what is assigned, T4)",
                    plan.as_str(),
                    used - count as usize
                )),
            );
        }
    }
    // T5: add-ons (extra instances, storage) need Professional or Enterprise licenses.
    let pro: u64 = purchased
        .iter()
        .filter(|(p, _)| p.is_pro_or_enterprise())
        .map(|(_, &c)| c as u64)
        .sum();
    if pro == 0 {
        let instances = d.instances.iter().flat_map(|m| m.values());
        let (prod, sbx) = instances.fold((0, 0), |(p, s), i| match i.kind {
            InstanceType::Production => (p + 1, s),
            InstanceType::Sandbox => (p, s + 1),
        });
        let storage = d
            .storage
            .as_ref()
            .and_then(|s| s.additional_gb)
            .unwrap_or(0);
        let mut needs = Vec::new();
        if prod > 1 {
            needs.push(format!("{} additional production instance(s)", prod - 1));
        }
        if sbx > 0 {
            needs.push(format!("{sbx} sandbox instance(s)"));
        }
        if storage > 0 {
            needs.push(format!("{storage} GB of additional storage"));
        }
        if !needs.is_empty() {
            out.push(
                err(
                    "licenses".into(),
                    "T5",
                    format!(
                        "the file needs add-ons ({}), which can be bought only with Professional or Enterprise licenses",
                        needs.join(", ")
                    ),
                )
                .hint("purchase `professional` or `enterprise` licenses, or declare only the included production instance"),
            );
        }
    }
}

fn admins(d: &Desired, out: &mut Vec<Diagnostic>) {
    let Some(users) = &d.users else { return };
    // P6: keep at least two global admins, checked when the file models admin roles at all.
    if !users.values().any(|u| u.admin_roles.is_some()) {
        return;
    }
    let globals: Vec<&str> = users
        .iter()
        .filter(|(_, u)| {
            u.admin_roles
                .as_ref()
                .is_some_and(|r| r.contains(&AdminRole::GlobalAdmin))
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if globals.len() < 2 {
        out.push(
            warn(
                "users".into(),
                "P6",
                format!(
                    "{} global admin(s) declared ({}); keep at least two",
                    globals.len(),
                    some_of(globals.iter().copied(), 2)
                ),
            )
            .hint("add `admin_roles: [global_admin]` to a second administrator"),
        );
    }
}

/// Issue 9 item 2: names the service compares without regard to case (see
/// [`crate::domain::ident`]) must not differ only in case in one file, or two entries would
/// be one object: two user keys (P1: one UPN, one user; today's apply creates the first and
/// the service refuses the second), two security groups with the same display name (I12: a
/// group is adopted by its display name; exact repeats included), two group keys (their
/// state addresses are matched without regard to case). Each entry of a clash gets its
/// own error, so that every line involved is shown.
fn identities(d: &Desired, out: &mut Vec<Diagnostic>) {
    if let Some(users) = &d.users {
        // The map's keys are distinct, so a clash needs a key that is not lower case: only
        // those are folded (no allocation at all when every UPN is written in lower case).
        let mut folded: Vec<(Cow<str>, &str)> = Vec::new();
        for k in users.keys() {
            if let Cow::Owned(f) = ident::fold(k) {
                folded.push((Cow::Owned(f), k));
            }
        }
        if !folded.is_empty() {
            let lower: Vec<(Cow<str>, &str)> = folded
                .iter()
                .filter_map(|(f, _)| users.get_key_value(f.as_ref()))
                .map(|(k, _)| (Cow::Borrowed(k.as_str()), k.as_str()))
                .collect();
            folded.extend(lower);
            for clash in clashes(folded) {
                for &k in &clash {
                    out.push(
                        err(
                            format!("users.{k}"),
                            "P1",
                            format!(
                                "user `{k}` is the same user as {}: user principal names are compared without regard to case",
                                others(&clash, k)
                            ),
                        )
                        .hint("keep one entry for the user, with one spelling of the UPN"),
                    );
                }
            }
        }
    }
    if let Some(groups) = &d.security_groups {
        let name = |k: &str| {
            groups
                .get(k)
                .and_then(|g| g.name.as_deref())
                .unwrap_or(k)
                .to_string()
        };
        let by_name: Vec<(Cow<str>, &str)> = groups
            .iter()
            .map(|(k, g)| (ident::fold(g.name.as_deref().unwrap_or(k)), k.as_str()))
            .collect();
        for clash in clashes(by_name) {
            for &k in &clash {
                let explicit = groups[k].name.is_some();
                let at = if explicit {
                    format!("security_groups.{k}.name")
                } else {
                    format!("security_groups.{k}")
                };
                let shown = name(k);
                out.push(
                    err(
                        at,
                        "I12",
                        format!(
                            "security group `{k}` has the display name `{shown}`, as does {} (display names are compared without regard to case)",
                            others(&clash, k)
                        ),
                    )
                    .hint(if explicit {
                        "give each group its own `name`: a group is adopted by its display name"
                    } else {
                        "the display name defaults to the key: give each group its own `name`, or merge the entries"
                    }),
                );
            }
        }
        let by_key: Vec<(Cow<str>, &str)> = groups
            .keys()
            .map(|k| (ident::fold(k), k.as_str()))
            .collect();
        for clash in clashes(by_key) {
            // Keys whose display names clash as well were reported above.
            let first = ident::fold(&name(clash[0])).into_owned();
            if clash
                .iter()
                .all(|k| ident::fold(&name(k)) == first.as_str())
            {
                continue;
            }
            for &k in &clash {
                out.push(
                    err(
                        format!("security_groups.{k}"),
                        "I12",
                        format!(
                            "security group key `{k}` differs only in case from {}; keys are matched to the state without regard to case",
                            others(&clash, k)
                        ),
                    )
                    .hint("give the groups keys that differ in more than case"),
                );
            }
        }
    }
}

/// The runs of entries whose folded names are equal (two or more), each sorted, in order.
fn clashes<'a>(mut items: Vec<(Cow<'_, str>, &'a str)>) -> Vec<Vec<&'a str>> {
    items.sort_unstable();
    items.dedup();
    let mut out = Vec::new();
    for run in items.chunk_by(|a, b| a.0 == b.0) {
        if run.len() > 1 {
            out.push(run.iter().map(|(_, k)| *k).collect());
        }
    }
    out
}

/// The other members of a clash, for a message: "`a`" or "`a`, `b`".
fn others(clash: &[&str], me: &str) -> String {
    some_of(clash.iter().copied().filter(|k| *k != me), 4)
}

// ---- issue 9 items 6 and 10: input that was accepted silently and is refused now. Each
// check is its own function (other changes to this file merge cleanly around them).

/// Text fields that may hold several lines (a tab or a line break is text there); every
/// other string is a name, key or reference and holds no control character at all.
const MULTI_LINE: [&str; 3] = ["description", "purpose", "message"];

/// Terminal safety (issue 9 item 6): no control character (C0 incl. NUL, ESC, CR; DEL; C1)
/// and no bidi override or isolate (U+202A-U+202E, U+2066-U+2069) in any name-like field,
/// key or reference. `description`, `purpose` and `admin_mode.message` may hold line breaks
/// and tabs (they are multi-line text, shown as a unified diff), nothing else. The same
/// predicate as the printers' escaping ([`crate::render::escape::is_unsafe`]).
fn text_safety(d: &Desired, out: &mut Vec<Diagnostic>) {
    use crate::render::escape::{escape_char, first_unsafe, is_unsafe};
    let mut check = |address: &dyn Fn() -> String, field: &str, s: &str| {
        let multi = MULTI_LINE.contains(&field);
        let bad = if multi {
            first_unsafe(s)
                .and_then(|_| s.chars().find(|&c| is_unsafe(c) && c != '\n' && c != '\t'))
        } else {
            first_unsafe(s)
        };
        if let Some(c) = bad {
            let what = if c.is_control() {
                "a control character"
            } else {
                "a bidirectional-text control character"
            };
            out.push(
                Diagnostic::error(
                    address(),
                    format!("`{field}` contains {what} (`{}`)", escape_char(c)),
                )
                .hint(if multi {
                    "remove it: only line breaks and tabs are allowed in this text; other control and bidi characters can rewrite a terminal or hide text"
                } else {
                    "remove it: names, keys and references cannot hold control or bidi characters, which can rewrite a terminal or hide text"
                }),
            );
        }
    };
    check(&|| "tenant".into(), "tenant", &d.tenant);
    for (k, g) in d.security_groups.iter().flatten() {
        let at = |f: &'static str| move || format!("security_groups.{k}{f}");
        check(&at(""), "key", k);
        if let Some(n) = &g.name {
            check(&at(".name"), "name", n);
        }
        if let Some(n) = &g.description {
            check(&at(".description"), "description", n);
        }
    }
    // Addresses are built only when there is something to report (100,000 users: no
    // formatting).
    for (k, u) in d.users.iter().flatten() {
        check(&|| format!("users.{k}"), "key", k);
        if let Some(n) = &u.name {
            check(&|| format!("users.{k}.name"), "name", n);
        }
        for (inst, roles) in u.roles.iter().flatten() {
            check(&|| format!("users.{k}.roles.{inst}"), "key", inst);
            for (i, r) in roles.iter().enumerate() {
                check(&|| format!("users.{k}.roles.{inst}[{i}]"), "role", r);
            }
        }
    }
    for (k, inst) in d.instances.iter().flatten() {
        let at = |f: &'static str| move || format!("instances.{k}{f}");
        check(&at(""), "key", k);
        check(&at(".name"), "name", &inst.name);
        check(&at(".url"), "url", &inst.url);
        for (f, v) in [
            (".purpose", inst.purpose.as_deref()),
            (".currency", inst.currency.as_deref()),
            (".security_group", inst.security_group.as_deref()),
            (
                ".admin_mode.message",
                inst.admin_mode.as_ref().and_then(|m| m.message.as_deref()),
            ),
            (
                ".copy_from.instance",
                inst.copy_from.as_ref().map(|c| c.instance.as_str()),
            ),
        ] {
            if let Some(v) = v {
                let field = f.rsplit('.').next().unwrap_or(f);
                check(&at(f), field, v);
            }
        }
        for (i, r) in inst.notification_recipients.iter().flatten().enumerate() {
            check(
                &|| format!("instances.{k}.notification_recipients[{i}]"),
                "notification_recipients",
                r,
            );
        }
    }
}

/// Duplicate entries in `roles` (per instance, compared case-insensitively as the service
/// names roles) and in `admin_roles` (issue 9 item 10; P2, P6).
fn duplicate_roles(d: &Desired, out: &mut Vec<Diagnostic>) {
    for (upn, u) in d.users.iter().flatten() {
        for (inst, roles) in u.roles.iter().flatten() {
            if roles.len() < 2 {
                continue;
            }
            // Pairs of (first, repeated) items: pairwise without allocation for the usual
            // short lists, by sorted lower-case keys for long ones (O(k log k)).
            let mut pairs: Vec<(usize, usize)> = Vec::new();
            if roles.len() <= 16 {
                for b in 1..roles.len() {
                    if let Some(a) = (0..b).find(|&a| same_name(&roles[a], &roles[b])) {
                        pairs.push((a, b));
                    }
                }
            } else {
                let mut order: Vec<usize> = (0..roles.len()).collect();
                order.sort_by_cached_key(|&i| (roles[i].to_lowercase(), i));
                for w in order.windows(2) {
                    if same_name(&roles[w[0]], &roles[w[1]]) {
                        pairs.push((w[0], w[1]));
                    }
                }
            }
            for (a, b) in pairs {
                out.push(
                    err(
                        format!("users.{upn}.roles.{inst}[{b}]"),
                        "P2",
                        format!(
                            "role `{}` is listed twice for `{upn}` in instance `{inst}` (also item {a})",
                            roles[b]
                        ),
                    )
                    .hint("remove the duplicate; each role is held once"),
                );
            }
        }
        if let Some(admin) = &u.admin_roles {
            let mut seen = [false; 5];
            for (i, r) in admin.iter().enumerate() {
                if std::mem::replace(&mut seen[*r as usize], true) {
                    out.push(
                        err(
                            format!("users.{upn}.admin_roles[{i}]"),
                            "P6",
                            format!(
                                "admin role `{}` is listed twice for `{upn}`",
                                serde_json::to_value(r)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_string))
                                    .unwrap_or_default()
                            ),
                        )
                        .hint("remove the duplicate; each admin role is held once"),
                    );
                }
            }
        }
    }
}

/// Whether two names are the same without case (Unicode lower case; no allocation).
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || (!(a.is_ascii() && b.is_ascii())
            && a.chars()
                .flat_map(char::to_lowercase)
                .eq(b.chars().flat_map(char::to_lowercase)))
}

/// A user principal name longer than the directory accepts (issue 9 item 10, P1).
fn upn_lengths(d: &Desired, out: &mut Vec<Diagnostic>) {
    for upn in d.users.iter().flatten().map(|(k, _)| k) {
        if upn.len() <= MAX_UPN_LOCAL {
            continue; // cannot be too long in any part
        }
        let local = upn.rsplit_once('@').map_or(upn.as_str(), |(l, _)| l);
        let (n, l) = (upn.chars().count(), local.chars().count());
        if l > MAX_UPN_LOCAL || n > MAX_UPN {
            out.push(
                err(
                    format!("users.{upn}"),
                    "P1",
                    format!(
                        "user principal name is too long ({l} characters before `@`, {n} in all)"
                    ),
                )
                .hint(format!(
                    "the directory accepts at most {MAX_UPN_LOCAL} characters before `@` and {MAX_UPN} in all"
                )),
            );
        }
    }
}
