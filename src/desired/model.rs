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
        deserialize_with = "unique_keys::option_roles"
    )]
    pub roles: Option<Roles>,
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

/// A user's security roles per instance key (see [`User::roles`]): a map, kept as a list
/// sorted by instance key.
///
/// Most users hold roles in one or two instances. A `BTreeMap` allocates a node of eleven
/// entries (544 bytes) for its first entry, more than the user's whole entry in the file,
/// so a 10 MB file of such users held 3-4x its size in the model (issue 9 item 7: a late
/// error in a large file is found by the parse that builds it). The sorted list holds the
/// same entries, iterated in the same order, in one allocation of their own size. Lookups
/// are binary searches; a user has roles in at most the tenant's instances (T7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Roles(Vec<(String, Vec<String>)>);

impl Roles {
    /// No roles in any instance.
    pub fn new() -> Roles {
        Roles(Vec::new())
    }

    /// Number of instances listed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no instance is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, instance: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(instance))
    }

    /// The roles listed for an instance key.
    pub fn get(&self, instance: &str) -> Option<&Vec<String>> {
        self.find(instance).ok().map(|i| &self.0[i].1)
    }

    /// Whether an instance key is listed.
    pub fn contains_key(&self, instance: &str) -> bool {
        self.find(instance).is_ok()
    }

    /// List `roles` for `instance`, in key order; the roles listed before, if any.
    pub fn insert(&mut self, instance: String, roles: Vec<String>) -> Option<Vec<String>> {
        match self.find(&instance) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, roles)),
            Err(i) => {
                self.0.insert(i, (instance, roles));
                None
            }
        }
    }

    /// Remove an instance key; its roles, if it was listed.
    pub fn remove(&mut self, instance: &str) -> Option<Vec<String>> {
        self.find(instance).ok().map(|i| self.0.remove(i).1)
    }

    /// Instance keys and their roles, in key order.
    pub fn iter(
        &self,
    ) -> impl DoubleEndedIterator<Item = (&String, &Vec<String>)> + ExactSizeIterator + Clone {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Instance keys, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator + Clone {
        self.0.iter().map(|(k, _)| k)
    }

    /// The roles of each instance, in key order.
    pub fn values(
        &self,
    ) -> impl DoubleEndedIterator<Item = &Vec<String>> + ExactSizeIterator + Clone {
        self.0.iter().map(|(_, v)| v)
    }

    /// The roles of each instance, in key order, to edit.
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut Vec<String>> {
        self.0.iter_mut().map(|(_, v)| v)
    }

    /// Keep the instances for which `keep` says true.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut Vec<String>) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }
}

/// As a `BTreeMap` collects: sorted by key, the last of equal keys kept.
impl FromIterator<(String, Vec<String>)> for Roles {
    fn from_iter<I: IntoIterator<Item = (String, Vec<String>)>>(iter: I) -> Roles {
        let mut v: Vec<(String, Vec<String>)> = iter.into_iter().collect();
        // Stable: equal keys keep their order, and the last one wins below.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, Vec<String>)> = Vec::with_capacity(v.len());
        for (k, r) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = r,
                _ => out.push((k, r)),
            }
        }
        Roles(out)
    }
}

impl From<BTreeMap<String, Vec<String>>> for Roles {
    fn from(m: BTreeMap<String, Vec<String>>) -> Roles {
        Roles(m.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Roles {
    type Item = (&'a String, &'a Vec<String>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Vec<String>)>,
        fn(&'a (String, Vec<String>)) -> (&'a String, &'a Vec<String>),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl IntoIterator for Roles {
    type Item = (String, Vec<String>);
    type IntoIter = std::vec::IntoIter<(String, Vec<String>)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Written as the map it is.
impl Serialize for Roles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Read as a map that refuses a key given twice (as every map of the model).
impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Roles, D::Error> {
        d.deserialize_map(unique_keys::RolesVisitor)
    }
}

/// The schema of the map it is (`schemas/desired.schema.json` unchanged).
impl JsonSchema for Roles {
    fn inline_schema() -> bool {
        <BTreeMap<String, Vec<String>>>::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <BTreeMap<String, Vec<String>>>::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        <BTreeMap<String, Vec<String>>>::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <BTreeMap<String, Vec<String>>>::json_schema(generator)
    }
}

/// Maps that refuse a key given twice, in every input format. serde-saphyr already rejects
/// duplicate YAML keys, but serde_json keeps the last one silently: a generated JSON file
/// with the same user twice must be an error, not a lost user.
mod unique_keys {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, Error, MapAccess, Visitor};

    use super::Roles;

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
        d.deserialize_option(OptionOf(UniqueMap(PhantomData)))
    }

    /// Deserialize `Option<Roles>` refusing duplicate keys, as [`option_map`].
    pub fn option_roles<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Roles>, D::Error> {
        d.deserialize_option(OptionOf(RolesVisitor))
    }

    /// A map read by the map visitor `M`, or null.
    struct OptionOf<M>(M);

    impl<'de, M: Visitor<'de>> Visitor<'de> for OptionOf<M> {
        type Value = Option<M::Value>;
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
            d.deserialize_map(self.0).map(Some)
        }
    }

    /// [`Roles`] read as a map: the entries kept sorted by key (pushed while the keys come
    /// in order, inserted in place otherwise), a key given twice refused with
    /// [`UniqueMap`]'s message.
    pub(super) struct RolesVisitor;

    impl<'de> Visitor<'de> for RolesVisitor {
        type Value = Roles;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Roles, A::Error> {
            let mut out: Vec<(String, Vec<String>)> =
                Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some(key) = map.next_key::<String>()? {
                let at = match out.last() {
                    None => 0,
                    Some((last, _)) if *last < key => out.len(),
                    Some(_) => match out.binary_search_by(|(k, _)| k.cmp(&key)) {
                        Ok(_) => {
                            return Err(A::Error::custom(format!(
                                "duplicate key {key:?}: each key may appear once in a map"
                            )))
                        }
                        Err(i) => i,
                    },
                };
                let mut value: Vec<String> = map.next_value()?;
                // A list read item by item has room for four or more.
                value.shrink_to_fit();
                out.insert(at, (key, value));
            }
            // Most users list one or two instances: no spare capacity kept.
            out.shrink_to_fit();
            Ok(Roles(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_yaml(roles: &str) -> Result<User, String> {
        crate::desired::load::from_yaml::<User>(&format!("roles:\n{roles}"))
    }

    /// issue 9 item 7: roles are a sorted list, read from a map in any order, iterated by
    /// instance key as a `BTreeMap` would be, without spare room.
    #[test]
    fn roles_read_in_any_order_iterate_sorted() {
        let u = user_yaml("  sbx: [B]\n  prod: [A, C]\n  dev: []\n").unwrap();
        let r = u.roles.unwrap();
        let keys: Vec<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(keys, ["dev", "prod", "sbx"]);
        assert_eq!(r.get("prod").unwrap(), &["A", "C"]);
        assert!(r.contains_key("dev") && !r.contains_key("x"));
        assert_eq!(r.0.capacity(), 3);
        assert!(r.values().all(|v| v.capacity() == v.len()));
        let j: User = serde_json::from_str(r#"{"roles": {"b": ["x"], "a": ["y"]}}"#).unwrap();
        let keys: Vec<&String> = j.roles.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b"]);
        // Written back as a map, in key order.
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            r#"{"roles":{"a":["y"],"b":["x"]}}"#
        );
        let null: User = serde_json::from_str(r#"{"roles": null}"#).unwrap();
        assert_eq!(null.roles, None);
    }

    /// A key given twice is refused as in every map of the model, in order or not, in YAML
    /// (before serde-saphyr's own check would) and JSON (which keeps the last silently).
    #[test]
    fn roles_refuse_a_key_given_twice() {
        for text in [
            r#"{"roles": {"a": [], "a": ["x"]}}"#,
            r#"{"roles": {"b": [], "a": [], "b": ["x"]}}"#,
        ] {
            let e = serde_json::from_str::<User>(text).unwrap_err().to_string();
            assert!(
                e.contains("duplicate key") && e.contains("each key may appear once"),
                "{e}"
            );
        }
        let e = serde_json::from_str::<User>(r#"{"roles": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a map"), "{e}");
        assert!(user_yaml("  b: []\n  a: []\n  b: []\n").is_err());
    }

    #[test]
    fn roles_collect_and_edit_as_a_map() {
        let mut r: Roles = [
            ("b".to_string(), vec!["1".to_string()]),
            ("a".to_string(), vec![]),
            ("b".to_string(), vec!["2".to_string()]),
        ]
        .into_iter()
        .collect();
        let as_map: BTreeMap<String, Vec<String>> = [
            ("a".to_string(), vec![]),
            ("b".to_string(), vec!["2".to_string()]),
        ]
        .into();
        assert_eq!(r, Roles::from(as_map.clone()));
        assert!(r.iter().eq(as_map.iter()));
        assert_eq!(r.insert("c".into(), vec![]), None);
        assert_eq!(r.insert("a".into(), vec!["3".into()]), Some(vec![]));
        assert_eq!(r.remove("b"), Some(vec!["2".to_string()]));
        let keys: Vec<&String> = r.keys().collect();
        assert_eq!(keys, ["a", "c"]);
        r.retain(|k, _| k != "c");
        assert_eq!(r.len(), 1);
    }
}
