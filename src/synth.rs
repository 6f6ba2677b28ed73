//! Generated desired tenants of any size, for benchmarks and scale tests.
//!
//! Deterministic: the same [`SynthParams`] always give the same [`Desired`] value, so that
//! benchmark runs compare like with like. The tenant it builds is valid for the service's
//! rules: purchased licenses cover every assignment (T3), instance counts stay within T7,
//! only read-write users are generated (so P3's limit of 5 non-interactive users per
//! instance never binds), and every role names a declared instance (P2).

use std::collections::{BTreeMap, BTreeSet};

use crate::desired::model::{Desired, Instance, SecurityGroup, User};
use crate::domain::kinds::{AccessMode, InstanceType, LicensePlan, Region};
use crate::domain::limits::{MAX_PRODUCTION_INSTANCES, MAX_SANDBOX_INSTANCES};
use crate::domain::op::ObjKind;
use crate::observed::{self, AdminModeState, InstanceStatus, Tenant};
use crate::state::{Resource, State};

/// Size and shape of a generated tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthParams {
    /// Number of users.
    pub users: usize,
    /// Number of security groups.
    pub groups: usize,
    /// Total group memberships, spread evenly over the groups (at most `users` per group).
    pub memberships: usize,
    /// Number of instances; the first `min(n, 50)` are production (T7), the rest sandboxes.
    pub instances: usize,
    /// Seed of the pseudo-random choices.
    pub seed: u64,
}

impl SynthParams {
    /// The issues' reference size: 100,000 users, 2,000 groups holding 1,000,000
    /// memberships, and 125 instances (50 production + 75 sandbox, the T7 maximum).
    pub fn reference() -> SynthParams {
        SynthParams {
            users: 100_000,
            groups: 2_000,
            memberships: 1_000_000,
            instances: (MAX_PRODUCTION_INSTANCES + MAX_SANDBOX_INSTANCES) as usize,
            seed: 42,
        }
    }

    /// A small tenant of the same shape, for tests.
    pub fn small() -> SynthParams {
        SynthParams {
            users: 200,
            groups: 10,
            memberships: 600,
            instances: 5,
            seed: 7,
        }
    }
}

/// A tiny deterministic generator (SplitMix64); statistical quality is irrelevant here.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const REGIONS: [Region; 10] = [
    Region::NA,
    Region::SAM,
    Region::CAN,
    Region::EMEA,
    Region::APAC,
    Region::OCE,
    Region::JPN,
    Region::IND,
    Region::GCC,
    Region::UK,
];

const ROLES: [&str; 5] = [
    "Salesperson",
    "Sales Manager",
    "Customer Service Representative",
    "Marketing Professional",
    "System Customizer",
];

/// The UPN of generated user `i`.
pub fn user_upn(i: usize) -> String {
    format!("user{i:06}@synth.example.com")
}

/// The key of generated instance `i`.
pub fn instance_key(i: usize) -> String {
    let prod = MAX_PRODUCTION_INSTANCES as usize;
    match instance_type(i) {
        InstanceType::Production => format!("prod{i:03}"),
        InstanceType::Sandbox => format!("sbx{:03}", i - prod),
    }
}

/// The type of generated instance `i`: the first [`MAX_PRODUCTION_INSTANCES`] are
/// production (T7), the rest sandboxes.
fn instance_type(i: usize) -> InstanceType {
    if i < MAX_PRODUCTION_INSTANCES as usize {
        InstanceType::Production
    } else {
        InstanceType::Sandbox
    }
}

/// Generate a desired tenant.
pub fn generate(p: &SynthParams) -> Desired {
    let mut rng = SplitMix(p.seed);
    let instance_keys: Vec<String> = (0..p.instances).map(instance_key).collect();
    let group_keys: Vec<String> = (0..p.groups).map(|g| format!("group{g:04}")).collect();

    let mut instances = BTreeMap::new();
    for (i, key) in instance_keys.iter().enumerate() {
        let kind = instance_type(i);
        let region = REGIONS[i % REGIONS.len()];
        instances.insert(
            key.clone(),
            Instance {
                name: format!("Synth {} {}", kind.as_str(), key),
                url: format!("synth-{key}"),
                kind,
                purpose: Some(format!("Generated instance {i}")),
                region: Some(region),
                currency: Some(["USD", "EUR", "GBP", "JPY", "CAD"][i % 5].to_string()),
                language: Some(1033),
                security_group: if p.groups > 0 && i % 3 == 0 {
                    Some(group_keys[i % p.groups].clone())
                } else {
                    None
                },
                notification_recipients: Some(vec![format!("admins+{key}@synth.example.com")]),
                update: None,
                protect: false,
                admin_mode: None,
                copy_from: None,
            },
        );
    }

    let mut users = BTreeMap::new();
    let (mut pro, mut ent) = (0u32, 0u32);
    for i in 0..p.users {
        let license = if i % 10 == 0 {
            ent += 1;
            LicensePlan::Enterprise
        } else {
            pro += 1;
            LicensePlan::Professional
        };
        let mut roles = crate::desired::model::Roles::new();
        if !instance_keys.is_empty() {
            let inst = &instance_keys[rng.below(instance_keys.len())];
            roles.insert(
                inst.clone(),
                vec![ROLES[rng.below(ROLES.len())].to_string()],
            );
        }
        users.insert(
            user_upn(i),
            User {
                name: Some(format!("Synthetic User {i}")),
                license: Some(license),
                access_mode: Some(AccessMode::ReadWrite),
                roles: Some(roles),
                admin_roles: None,
                usage_location: None,
                application_id: None,
            },
        );
    }

    let mut security_groups = BTreeMap::new();
    let per_group = p
        .memberships
        .checked_div(p.groups)
        .unwrap_or(0)
        .min(p.users);
    for (g, key) in group_keys.iter().enumerate() {
        // A contiguous window of users starting at a pseudo-random offset: distinct members.
        let start = rng.below(p.users.max(1));
        let members = (0..per_group)
            .map(|k| user_upn((start + k) % p.users.max(1)))
            .collect();
        security_groups.insert(
            key.clone(),
            SecurityGroup {
                name: Some(format!("Synth_SG_{g:04}")),
                description: Some(format!("Generated group {g}")),
                members: Some(members),
            },
        );
    }

    let mut licenses = BTreeMap::new();
    // Buy a little headroom over what is assigned (T3), and enough Professional licenses to
    // be allowed to buy instance slots at all (T5).
    licenses.insert(LicensePlan::Professional, pro + pro / 10 + 1);
    licenses.insert(LicensePlan::Enterprise, ent + ent / 10);

    Desired {
        schema: None,
        tenant: "synth.onmicrosoft.com".to_string(),
        licenses: Some(licenses),
        storage: None,
        security_groups: Some(security_groups),
        users: Some(users),
        instances: Some(instances),
        ..Desired::default()
    }
}

/// The tenant (and state) that applying `d` to a fresh tenant gives, with ids derived
/// from the keys (`u-<upn>`, `g-<key>`, `i-<key>`): the starting point of no-change and
/// drift benchmarks and of tests that need an applied tenant without running apply.
pub fn applied(d: &Desired) -> (Tenant, State) {
    let mut t = Tenant::fresh(&d.tenant);
    let mut s = State::empty("synth");
    let record = |s: &mut State, address: String, kind, id: &str| {
        s.resources.insert(
            address,
            Resource {
                kind,
                id: id.to_string(),
                protect: false,
                protected_at: None,
                copied_from: None,
                ids: Default::default(),
            },
        );
    };
    if let Some(l) = &d.licenses {
        t.licenses = l.clone();
    }
    if let Some(gb) = d.storage.as_ref().and_then(|s| s.additional_gb) {
        t.storage.additional_gb = gb;
    }
    let newest = t.versions.last().cloned().unwrap_or_default();
    let mut inst_id = std::collections::BTreeMap::new();
    let (mut prod, mut sand) = (0u32, 0u32);
    for (k, i) in d.instances.iter().flatten() {
        let id = format!("i-{k}");
        inst_id.insert(k.clone(), id.clone());
        match i.kind {
            crate::domain::kinds::InstanceType::Production => prod += 1,
            crate::domain::kinds::InstanceType::Sandbox => sand += 1,
        }
        t.instances.insert(
            id.clone(),
            observed::Instance {
                id: id.clone(),
                name: i.name.clone(),
                url: i.url.clone(),
                kind: i.kind,
                slot: i.kind,
                purpose: i.purpose.clone().unwrap_or_default(),
                region: i.region.unwrap_or(Region::NA),
                currency: i.currency.clone().unwrap_or_else(|| "USD".into()),
                language: i.language.unwrap_or(1033),
                security_group: i.security_group.as_ref().map(|g| format!("g-{g}")),
                status: InstanceStatus::Ready,
                version: newest.clone(),
                admin_mode: AdminModeState::default(),
                notification_recipients: i.notification_recipients.clone().unwrap_or_default(),
                update: None,
            },
        );
        record(&mut s, format!("instances.{k}"), ObjKind::Instance, &id);
    }
    let pe = t.pro_enterprise();
    t.slots.production = prod.saturating_sub(observed::included_slots(
        crate::domain::kinds::InstanceType::Production,
        pe,
    ));
    t.slots.sandbox = sand.saturating_sub(observed::included_slots(
        crate::domain::kinds::InstanceType::Sandbox,
        pe,
    ));
    for (upn, u) in d.users.iter().flatten() {
        let id = format!("u-{upn}");
        t.users.insert(
            id.clone(),
            observed::User {
                id: id.clone(),
                upn: upn.clone(),
                name: u.name.clone().unwrap_or_default(),
                license: u.license,
                access_mode: u
                    .access_mode
                    .unwrap_or(crate::domain::kinds::AccessMode::ReadWrite),
                roles: u
                    .roles
                    .iter()
                    .flatten()
                    .filter(|(_, r)| !r.is_empty())
                    .map(|(k, r)| (inst_id[k].clone(), r.iter().cloned().collect()))
                    .collect(),
                admin_roles: u.admin_roles.iter().flatten().copied().collect(),
                usage_location: u.usage_location.clone(),
                synced: false,
                application_id: None,
            },
        );
        record(&mut s, format!("users.{upn}"), ObjKind::User, &id);
    }
    for (k, g) in d.security_groups.iter().flatten() {
        let id = format!("g-{k}");
        t.groups.insert(
            id.clone(),
            observed::Group {
                id: id.clone(),
                name: g.name.clone().unwrap_or_else(|| k.clone()),
                description: g.description.clone().unwrap_or_default(),
                members: g
                    .members
                    .iter()
                    .flatten()
                    .map(|m| format!("u-{m}"))
                    .collect::<BTreeSet<_>>(),
            },
        );
        record(&mut s, format!("security_groups.{k}"), ObjKind::Group, &id);
    }
    (t, s)
}

/// An applied tenant (see [`applied`]) with Graph-shaped user ids: `applied` derives user
/// ids from the UPN, which a directory object id cannot hold, so the benchmarks that serve
/// the tenant through the Graph emulator renumber them as GUIDs (members and state too).
pub fn with_directory_ids((mut t, mut s): (Tenant, State)) -> (Tenant, State) {
    let map: std::collections::HashMap<String, String> = t
        .users
        .keys()
        .enumerate()
        .map(|(i, id)| (id.clone(), format!("{i:08x}-0000-4000-8000-{i:012x}")))
        .collect();
    t.users = std::mem::take(&mut t.users)
        .into_values()
        .map(|mut u| {
            u.id = map[&u.id].clone();
            (u.id.clone(), u)
        })
        .collect();
    for g in t.groups.values_mut() {
        g.members = g.members.iter().map(|m| map[m].clone()).collect();
    }
    for r in s.resources.values_mut() {
        if let Some(id) = map.get(&r.id) {
            r.id = id.clone();
        }
    }
    (t, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let p = SynthParams::small();
        let a = generate(&p);
        assert_eq!(a, generate(&p));
        assert_eq!(a.users.as_ref().unwrap().len(), 200);
        let groups = a.security_groups.as_ref().unwrap();
        assert_eq!(groups.len(), 10);
        let members: usize = groups
            .values()
            .map(|g| g.members.as_ref().unwrap().len())
            .sum();
        assert_eq!(members, 600);
        // T3: purchased covers assigned.
        let lic = a.licenses.as_ref().unwrap();
        assert!(lic[&LicensePlan::Professional] >= 180);
        assert!(lic[&LicensePlan::Enterprise] >= 20);
    }

    #[test]
    fn memberships_are_distinct_within_a_group() {
        let d = generate(&SynthParams::small());
        for g in d.security_groups.unwrap().values() {
            let m = g.members.as_ref().unwrap();
            let set: std::collections::BTreeSet<_> = m.iter().collect();
            assert_eq!(set.len(), m.len());
        }
    }

    /// Issue 11 item 2: the reference tenant has the T7 maximum of each type (the limits
    /// read from `domain::limits`), keyed `prodNNN` then `sbxNNN`, each key's type matching.
    #[test]
    fn reference_instances_fill_the_t7_limits() {
        let mut p = SynthParams::small();
        p.instances = SynthParams::reference().instances;
        let d = generate(&p);
        let instances = d.instances.as_ref().unwrap();
        let count = |kind| instances.values().filter(|i| i.kind == kind).count();
        assert_eq!(count(InstanceType::Production), 50);
        assert_eq!(count(InstanceType::Sandbox), 75);
        for (i, want) in [
            (0, "prod000"),
            (49, "prod049"),
            (50, "sbx000"),
            (124, "sbx074"),
        ] {
            assert_eq!(instance_key(i), want);
            let kind = if want.starts_with("prod") {
                InstanceType::Production
            } else {
                InstanceType::Sandbox
            };
            assert_eq!(instances[want].kind, kind);
        }
    }
}
