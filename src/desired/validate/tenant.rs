//! The tenant and its licences: T1 (the tenant's domain), T3/T4 (assigned licences within
//! the purchased counts), T5 (add-ons need Professional or Enterprise licences).

use std::collections::BTreeMap;

use super::err;
use crate::desired::model::Desired;
use crate::diag::Diagnostic;
use crate::domain::kinds::{InstanceType, LicensePlan};
use crate::domain::syntax;

pub(super) fn tenant(d: &Desired, out: &mut Vec<Diagnostic>) {
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

pub(super) fn licenses(d: &Desired, out: &mut Vec<Diagnostic>) {
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
