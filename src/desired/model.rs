//! The desired-state model: what the administrator writes in YAML (or JSON).
//!
//! Conventions (see docs/file-format.md):
//! - maps are keyed by a stable logical key, which is the resource's address
//!   (`users.<upn>`, `security_groups.<key>`, `instances.<key>`, `licenses.<plan>`);
//! - a field that is omitted is *not managed* (left as it is in the tenant), except
//!   `license` and `security_group`, where omission means "none" (as the file format says);
//! - a list that is given is exact.
//!
//! This module knows no file format: only `desired::load` knows YAML and JSON.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::kinds::{AccessMode, AdminRole, CopyKind, InstanceType, LicensePlan, Region};

/// The whole desired tenant, as written in one file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "crmctl desired tenant")]
pub struct Desired {
    /// Optional JSON Schema reference (for editors of JSON files); ignored by crmctl.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The tenant's domain, `<name>.onmicrosoft.com` (T1).
    #[schemars(regex(pattern = crate::domain::syntax::TENANT_PATTERN))]
    pub tenant: String,
    /// Purchased user licenses per plan (T2). A plan that is omitted is not managed.
    /// Address: `licenses.<plan>`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_keys::option_count_map"
    )]
    #[schemars(extend("propertyNames" = { "enum": ["essential", "basic", "professional", "enterprise"] }))]
    pub licenses: Option<BTreeMap<LicensePlan, u32>>,
    /// The SKU of a licence plan, where the tenant bought another offer than crmctl's
    /// built-in table names (issue 12 item 4): a `skuPartNumber` such as
    /// `DYN365_ENTERPRISE_SALES` (its `skuId` is read from the tenant's `subscribedSkus`) or
    /// a `skuId` GUID. Two plans may not share a SKU. A plan that is omitted keeps the
    /// built-in SKU. Used by `--backend microsoft`; the local tenant has no SKUs and ignores
    /// it. Address: `skus.<plan>`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_keys::option_map"
    )]
    #[schemars(extend("propertyNames" = { "enum": ["essential", "basic", "professional", "enterprise"] }))]
    #[schemars(extend("additionalProperties" = { "type": "string", "pattern": crate::domain::skus::SKU_PATTERN }))]
    pub skus: Option<BTreeMap<LicensePlan, String>>,
    /// Storage bought beyond the included capacity (T6). Address: `storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// Security groups by logical key (I12). Address: `security_groups.<key>`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_keys::option_map"
    )]
    pub security_groups: Option<BTreeMap<String, SecurityGroup>>,
    /// Users by user principal name (P1). Address: `users.<upn>`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_keys::option_map"
    )]
    #[schemars(extend("propertyNames" = { "pattern": crate::domain::syntax::EMAIL_PATTERN }))]
    pub users: Option<BTreeMap<String, User>>,
    /// Instances (CRM organizations) by logical key (I1). Address: `instances.<key>`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_keys::option_map"
    )]
    pub instances: Option<BTreeMap<String, Instance>>,
    /// Keys renamed in this file (issue 14 item 3): the object the state manages at `from`
    /// is the one the file now declares at `to`, so the rename is planned as no change,
    /// never as a delete and a create. An entry whose `from` the state no longer holds is
    /// ignored, so entries may stay in the file after they took effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved: Option<Vec<Moved>>,
    /// Large-plan safety (issue 14 item 5): a plan that deletes more than this share
    /// (percent) of the objects of one kind that crmctl manages, or replaces them or
    /// removes their licences, roles or members, is applied only with `--force`. Default 30 for each kind; kinds with fewer than 10 managed objects are
    /// never held back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<Safety>,
}

/// Thresholds of large-plan safety, in percent per kind (see [`Desired::safety`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Safety {
    /// Share of managed users (0-100; 100 turns the check off for users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub users: Option<u32>,
    /// Share of managed security groups (0-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub security_groups: Option<u32>,
    /// Share of managed instances (0-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub instances: Option<u32>,
}

impl Safety {
    /// The threshold of a collection (`users`, `security_groups`, `instances`).
    pub fn percent(&self, collection: &str) -> Option<u32> {
        match collection {
            "users" => self.users,
            "security_groups" => self.security_groups,
            "instances" => self.instances,
            _ => None,
        }
    }
}

/// One renamed key (see [`Desired::moved`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Moved {
    /// The old address, e.g. `instances.prod` (`users.<upn>`, `security_groups.<key>`,
    /// `instances.<key>`).
    pub from: String,
    /// The new address, declared in this file, of the same kind, e.g. `instances.main`.
    pub to: String,
}

impl Desired {
    /// The `protect` flag of every instance, by address (`instances.<key>`): what apply
    /// records in the state so that a protected instance stays protected after it leaves
    /// the file.
    pub fn protect_flags(&self) -> BTreeMap<String, bool> {
        self.instances
            .iter()
            .flatten()
            .map(|(k, i)| (format!("instances.{k}"), i.protect))
            .collect()
    }
}

/// Storage settings (T6, T8).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Storage add-on in GB bought beyond the included capacity (T6). Omit to leave as is.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::desired::load::counts::option"
    )]
    pub additional_gb: Option<u32>,
}

/// A security group (I12).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    /// Display name in the directory; defaults to the key. Used to adopt an existing group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description shown in the directory. Omit to leave as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Members, as user keys (UPNs) declared under `users`. Exact when given; omit to leave
    /// membership as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = crate::domain::syntax::EMAIL_PATTERN)))]
    pub members: Option<Vec<String>>,
}

/// A user of the tenant (P1-P6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Full name (directory profile, synced into every instance, P1). Omit to leave as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The license plan the user holds (T2, T3); omit for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<LicensePlan>,
    /// Access mode (P3). Omit to leave as is (`read-write` for a new user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<AccessMode>,
    /// Only with `access_mode: application` (P3): the application (client) id of the app
    /// registration the application user signs in as, a GUID such as
    /// `8f3c2a1e-5b7d-4c9a-a2e1-3d4f5a6b7c8d`. On a Microsoft tenant an application user is
    /// the instance's system user bound to that app registration, so the `microsoft` backend
    /// needs it to create one; the local tenant keeps it when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::domain::syntax::GUID_PATTERN))]
    pub application_id: Option<String>,
    /// Usage location: the country where the user uses the services, as an ISO 3166-1
    /// alpha-2 code such as `US`, `DE`, `GB` (Graph `usageLocation`; a licence needs one).
    /// Omit to leave as is (a new user gets the tenant's country).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::domain::iso3166::PATTERN))]
    pub usage_location: Option<String>,
    /// Security roles per instance key (P2). Exact when given: instances not listed get no
    /// roles. Omit to leave roles as they are.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_keys::option_map"
    )]
    pub roles: Option<BTreeMap<String, Vec<String>>>,
    /// Tenant administrator roles (P6), distinct from instance security roles.
    /// Omit to leave as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_roles: Option<Vec<AdminRole>>,
}

/// An instance (CRM organization, I1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// Friendly name (editable, I4).
    pub name: String,
    /// URL name: `https://<url>.crm<N>.dynamics.com`; unique in the service (I5).
    #[schemars(regex(pattern = crate::domain::syntax::URL_NAME_PATTERN))]
    pub url: String,
    /// `production` or `sandbox` (I7).
    #[serde(rename = "type")]
    pub kind: InstanceType,
    /// Purpose, shown only in the admin center (I1). Omit to leave as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Datacenter region (I6); fixed once configured. Defaults to `NA` for a new instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
    /// Base currency, ISO 4217 (I3); fixed once configured. Defaults to `USD` for a new
    /// instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::domain::syntax::CURRENCY_PATTERN))]
    pub currency: Option<String>,
    /// Base language as a Windows LCID, e.g. 1033 for English (I3). Defaults to 1033 for a
    /// new instance.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::desired::load::counts::option"
    )]
    pub language: Option<u32>,
    /// Key of the security group bound to the instance (I12); omit for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group: Option<String>,
    /// Extra recipients of update notifications (I13). Exact when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = crate::domain::syntax::EMAIL_PATTERN)))]
    pub notification_recipients: Option<Vec<String>>,
    /// Approve an update to a target version (U2-U4). Omit to leave updates as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateApproval>,
    /// When true, any plan that deletes or resets this instance is an error.
    #[serde(default, skip_serializing_if = "is_false")]
    pub protect: bool,
    /// Administration mode (sandbox only, I10). Omit to leave as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_mode: Option<AdminMode>,
    /// Copy another instance onto this one when it is created (I11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_from: Option<CopyFrom>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_true() -> bool {
    true
}

/// Administration mode settings (I10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminMode {
    /// Only System Administrators and System Customizers can sign in.
    pub enabled: bool,
    /// Background operations (workflows, Exchange sync, outgoing email). `false` is allowed
    /// only while administration mode is enabled (I10).
    #[serde(default = "default_true")]
    pub background_operations: bool,
    /// Custom message shown to users who try to sign in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An approved update (U2-U4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApproval {
    /// Target version, e.g. `8.1.0` (U1, U3).
    #[schemars(regex(pattern = crate::domain::syntax::VERSION_PATTERN))]
    pub target_version: String,
    /// Preferred date and time (RFC 3339, UTC), e.g. `2016-05-14T22:00:00Z`.
    #[schemars(regex(pattern = crate::domain::syntax::DATE_TIME_UTC_PATTERN))]
    pub preferred: String,
    /// Alternate date and time (RFC 3339, UTC), strictly later than `preferred` (U3).
    #[schemars(regex(pattern = crate::domain::syntax::DATE_TIME_UTC_PATTERN))]
    pub alternate: String,
}

/// Copy of another instance onto this sandbox (I11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyFrom {
    /// Key of the source instance.
    pub instance: String,
    /// `full` (data, users, customizations) or `minimal` (users, customizations, schema).
    pub kind: CopyKind,
}

/// Maps that refuse a key given twice, in every input format. serde-saphyr already rejects
/// duplicate YAML keys, but serde_json keeps the last one silently: a generated JSON file
/// with the same user twice must be an error, not a lost user.
mod unique_keys {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, Error, MapAccess, Visitor};

    struct UniqueMap<K, V>(PhantomData<(K, V)>);

    impl<'de, K, V> Visitor<'de> for UniqueMap<K, V>
    where
        K: Deserialize<'de> + Ord + fmt::Debug,
        V: Deserialize<'de>,
    {
        type Value = BTreeMap<K, V>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let duplicate = |key: &K| {
                A::Error::custom(format!(
                    "duplicate key {key:?}: each key may appear once in a map"
                ))
            };
            // Files are mostly written (and always generated) with sorted keys: while the
            // keys come in increasing order, comparing with the previous key is enough to
            // refuse a duplicate, and the sorted entries build the map in one pass
            // (`BTreeMap::from_iter` bulk-loads sorted input). A key out of order moves
            // the entries so far into the map, and the rest are inserted one by one. The
            // error is raised at the same key either way.
            let mut sorted: Vec<(K, V)> =
                Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
            let mut out = loop {
                let Some(key) = map.next_key::<K>()? else {
                    return Ok(sorted.into_iter().collect());
                };
                match sorted.last().map(|(last, _)| last.cmp(&key)) {
                    None | Some(std::cmp::Ordering::Less) => {
                        let value = map.next_value()?;
                        sorted.push((key, value));
                    }
                    Some(std::cmp::Ordering::Equal) => return Err(duplicate(&key)),
                    Some(std::cmp::Ordering::Greater) => {
                        let mut out: BTreeMap<K, V> = sorted.into_iter().collect();
                        if out.contains_key(&key) {
                            return Err(duplicate(&key));
                        }
                        let value = map.next_value()?;
                        out.insert(key, value);
                        break out;
                    }
                }
            };
            while let Some(key) = map.next_key::<K>()? {
                match out.entry(key) {
                    std::collections::btree_map::Entry::Occupied(e) => {
                        return Err(duplicate(e.key()))
                    }
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(map.next_value()?);
                    }
                }
            }
            Ok(out)
        }
    }

    /// Deserialize `Option<BTreeMap<K, u32>>` refusing duplicate keys, each value a plain
    /// count (see `desired::load::counts`).
    pub fn option_count_map<'de, D, K>(d: D) -> Result<Option<BTreeMap<K, u32>>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord + fmt::Debug,
    {
        let m: Option<BTreeMap<K, crate::desired::load::counts::Count>> = option_map(d)?;
        Ok(m.map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect()))
    }

    /// Deserialize `Option<BTreeMap<K, V>>` refusing duplicate keys.
    pub fn option_map<'de, D, K, V>(d: D) -> Result<Option<BTreeMap<K, V>>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord + fmt::Debug,
        V: Deserialize<'de>,
    {
        struct OptionVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K, V> Visitor<'de> for OptionVisitor<K, V>
        where
            K: Deserialize<'de> + Ord + fmt::Debug,
            V: Deserialize<'de>,
        {
            type Value = Option<BTreeMap<K, V>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map or null")
            }
            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_map(UniqueMap(PhantomData)).map(Some)
            }
        }
        d.deserialize_option(OptionVisitor(PhantomData))
    }
}
