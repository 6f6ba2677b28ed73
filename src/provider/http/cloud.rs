//! Clouds and their endpoints (issue 12 item 2): `--cloud public|usgov|usgovhigh|dod|china`
//! selects a table of hosts (authority, Graph, the admin API, the Power Platform API, and the
//! Dataverse host suffix); each one can be overridden by an environment variable, which is
//! what tests (a loopback emulator), proxies and new sovereign clouds need.
//!
//! Sources of the table:
//! - authority and Graph hosts: Microsoft Graph "National cloud deployments"
//!   (<https://learn.microsoft.com/en-us/graph/deployments>): global
//!   `login.microsoftonline.com` + `graph.microsoft.com` (also for GCC, "continue using the
//!   worldwide endpoints"); GCC High `login.microsoftonline.us` + `graph.microsoft.us`; DoD
//!   `login.microsoftonline.us` + `dod-graph.microsoft.us`; China (21Vianet)
//!   `login.chinacloudapi.cn` + `microsoftgraph.chinacloudapi.cn`. The same authority hosts
//!   are the Azure SDK's `AzureAuthorityHosts` (public, government, China).
//! - admin API (BAP) and Power Platform API hosts: microsoft/terraform-provider-power-platform
//!   `internal/config/settings` (cloud table: public `api.bap.microsoft.com` /
//!   `api.powerplatform.com`; gcc `gov.api.bap.microsoft.us` /
//!   `api.gov.powerplatform.microsoft.us`; gcchigh `high.api.bap.microsoft.us` /
//!   `api.high.powerplatform.microsoft.us`; dod `api.bap.appsplatform.us` /
//!   `api.appsplatform.us`; china `api.bap.partner.microsoftonline.cn` /
//!   `api.powerplatform.partner.microsoftonline.cn`), matching the Power Automate
//!   "IP address configuration" page's per-cloud API host list.
//! - Dataverse host suffixes: the global discovery service hosts of the Dataverse samples
//!   (`globaldisco.crm.dynamics.com`, `crm9.dynamics.com` for GCC,
//!   `crm.microsoftdynamics.us` for GCC High, `crm.appsplatform.us` for DoD,
//!   `crm.dynamics.cn` for China). Commercial instances live under `crm{N}.dynamics.com` by
//!   region: the default template uses `crm.dynamics.com`, and the instance's own URL (which
//!   the admin API returns) is preferred where known.

use std::fmt;
use std::str::FromStr;

use super::Service;

/// A Microsoft cloud: which endpoint table crmctl uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cloud {
    /// The global (commercial) cloud.
    #[default]
    Public,
    /// US Government Community Cloud (GCC): the global directory, government Power Platform.
    UsGov,
    /// US Government Community Cloud High (GCC High).
    UsGovHigh,
    /// US Department of Defense.
    Dod,
    /// China, operated by 21Vianet.
    China,
}

/// Every cloud, in the order `--cloud` lists them.
pub const CLOUDS: [Cloud; 5] = [
    Cloud::Public,
    Cloud::UsGov,
    Cloud::UsGovHigh,
    Cloud::Dod,
    Cloud::China,
];

impl Cloud {
    /// The name `--cloud` takes.
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Public => "public",
            Cloud::UsGov => "usgov",
            Cloud::UsGovHigh => "usgovhigh",
            Cloud::Dod => "dod",
            Cloud::China => "china",
        }
    }

    /// The built-in endpoint table of this cloud (no environment overrides).
    pub fn defaults(self) -> Endpoints {
        // (authority, graph, bap, power platform, dataverse suffix); sources in the module doc.
        let (authority, graph, bap, pp, suffix) = match self {
            Cloud::Public => (
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
                "https://api.bap.microsoft.com",
                "https://api.powerplatform.com",
                "crm.dynamics.com",
            ),
            Cloud::UsGov => (
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
                "https://gov.api.bap.microsoft.us",
                "https://api.gov.powerplatform.microsoft.us",
                "crm9.dynamics.com",
            ),
            Cloud::UsGovHigh => (
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us",
                "https://high.api.bap.microsoft.us",
                "https://api.high.powerplatform.microsoft.us",
                "crm.microsoftdynamics.us",
            ),
            Cloud::Dod => (
                "https://login.microsoftonline.us",
                "https://dod-graph.microsoft.us",
                "https://api.bap.appsplatform.us",
                "https://api.appsplatform.us",
                "crm.appsplatform.us",
            ),
            Cloud::China => (
                "https://login.chinacloudapi.cn",
                "https://microsoftgraph.chinacloudapi.cn",
                "https://api.bap.partner.microsoftonline.cn",
                "https://api.powerplatform.partner.microsoftonline.cn",
                "crm.dynamics.cn",
            ),
        };
        Endpoints {
            cloud: self,
            authority: authority.to_string(),
            graph: graph.to_string(),
            bap: bap.to_string(),
            power_platform: pp.to_string(),
            dataverse_suffix: suffix.to_string(),
            dataverse_template: format!("https://{{url}}.{suffix}"),
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown `--cloud` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cloud `{0}`: use one of public, usgov, usgovhigh, dod, china")]
pub struct UnknownCloud(pub String);

impl FromStr for Cloud {
    type Err = UnknownCloud;

    fn from_str(s: &str) -> Result<Cloud, UnknownCloud> {
        CLOUDS
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownCloud(s.to_string()))
    }
}

/// The environment variables that override one endpoint each.
pub const ENV_AUTHORITY: &str = "AZURE_AUTHORITY_HOST";
/// Overrides the Graph base URL.
pub const ENV_GRAPH: &str = "CRMCTL_GRAPH_URL";
/// Overrides the admin API (BAP) base URL.
pub const ENV_BAP: &str = "CRMCTL_BAP_URL";
/// Overrides the Power Platform API base URL.
pub const ENV_POWER_PLATFORM: &str = "CRMCTL_POWERPLATFORM_URL";
/// Overrides the Dataverse URL template (`{url}` is the instance's URL name).
pub const ENV_DATAVERSE: &str = "CRMCTL_DATAVERSE_URL";

/// The endpoints crmctl talks to in one cloud (base URLs without a trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The cloud the table started from.
    pub cloud: Cloud,
    /// The sign-in authority host (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub authority: String,
    /// Microsoft Graph.
    pub graph: String,
    /// The Power Platform admin API (BAP).
    pub bap: String,
    /// The Power Platform API.
    pub power_platform: String,
    /// The Dataverse host suffix of the cloud (e.g. `crm.dynamics.com`).
    pub dataverse_suffix: String,
    /// The Dataverse base URL of an instance, `{url}` standing for its URL name.
    pub dataverse_template: String,
}

/// An endpoint override that is not a usable URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}=`{value}` is not usable: {why}")]
pub struct BadEndpoint {
    /// The environment variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong and what to do.
    pub why: &'static str,
}

impl Endpoints {
    /// The endpoint table of `cloud` with the overrides that `env` gives (`env` looks a
    /// variable up: `|k| std::env::var(k).ok()` in the CLI, a table in tests). Empty values
    /// count as unset. Pure.
    pub fn resolve(
        cloud: Cloud,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Endpoints, BadEndpoint> {
        let mut e = cloud.defaults();
        let fields: [(&'static str, &mut String); 5] = [
            (ENV_AUTHORITY, &mut e.authority),
            (ENV_GRAPH, &mut e.graph),
            (ENV_BAP, &mut e.bap),
            (ENV_POWER_PLATFORM, &mut e.power_platform),
            (ENV_DATAVERSE, &mut e.dataverse_template),
        ];
        for (var, slot) in fields {
            let Some(value) = env(var).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            let value = value.trim().to_string();
            let bad = |why| BadEndpoint {
                var,
                value: value.clone(),
                why,
            };
            if !value.starts_with("https://") {
                return Err(bad("it must start with https:// (crmctl sends tokens only over TLS; give a loopback emulator's root in CRMCTL_CA_FILE)"));
            }
            let value = value.trim_end_matches('/').to_string();
            if value.len() <= "https://".len() {
                return Err(bad("it has no host"));
            }
            if var == ENV_DATAVERSE && !value.contains("{url}") {
                return Err(bad(
                    "it must contain `{url}` where the instance's URL name goes, e.g. https://{url}.crm.dynamics.com",
                ));
            }
            *slot = value;
        }
        Ok(e)
    }

    /// The endpoints of `cloud` with the process environment's overrides.
    pub fn from_env(cloud: Cloud) -> Result<Endpoints, BadEndpoint> {
        Endpoints::resolve(cloud, |k| std::env::var(k).ok())
    }

    /// The Dataverse base URL of the instance whose URL name is `url_name`.
    pub fn dataverse_url(&self, url_name: &str) -> String {
        self.dataverse_template.replace("{url}", url_name)
    }

    /// The base URL of `service` (for a Dataverse instance, its host is the service's own).
    pub fn base_url(&self, service: &Service) -> String {
        match service {
            Service::Graph => self.graph.clone(),
            Service::Bap => self.bap.clone(),
            Service::PowerPlatform => self.power_platform.clone(),
            Service::Dataverse(host) => format!("https://{host}"),
        }
    }

    /// The token scope of `service` (one token per resource): `{resource}/.default`. The
    /// resource of Graph is the cloud's Graph host; the admin API's is the Power Apps
    /// service (`https://service.powerapps.com` in the public cloud, per the
    /// terraform-provider-power-platform settings table); overridden endpoints keep the
    /// cloud's resource for the admin API, since an emulator accepts any audience.
    pub fn scope(&self, service: &Service) -> String {
        let resource = match service {
            Service::Graph => self.cloud.defaults().graph,
            Service::Bap => match self.cloud {
                Cloud::Public => "https://service.powerapps.com".to_string(),
                Cloud::UsGov => "https://gov.service.powerapps.us".to_string(),
                Cloud::UsGovHigh => "https://high.service.powerapps.us".to_string(),
                Cloud::Dod => "https://service.apps.appsplatform.us".to_string(),
                Cloud::China => "https://service.powerapps.cn".to_string(),
            },
            Service::PowerPlatform => self.cloud.defaults().power_platform,
            Service::Dataverse(host) => format!("https://{host}"),
        };
        format!("{resource}/.default")
    }

    /// The token endpoint of `tenant` (documented: `POST {authority}/{tenant}/oauth2/v2.0/token`).
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.authority, tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    // issue 12 item 2: the built-in table, one row per cloud.
    #[test]
    fn each_cloud_has_its_hosts() {
        let table = [
            (
                "public",
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
                "https://api.bap.microsoft.com",
                "https://api.powerplatform.com",
                "https://contoso.crm.dynamics.com",
            ),
            (
                "usgov",
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
                "https://gov.api.bap.microsoft.us",
                "https://api.gov.powerplatform.microsoft.us",
                "https://contoso.crm9.dynamics.com",
            ),
            (
                "usgovhigh",
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us",
                "https://high.api.bap.microsoft.us",
                "https://api.high.powerplatform.microsoft.us",
                "https://contoso.crm.microsoftdynamics.us",
            ),
            (
                "dod",
                "https://login.microsoftonline.us",
                "https://dod-graph.microsoft.us",
                "https://api.bap.appsplatform.us",
                "https://api.appsplatform.us",
                "https://contoso.crm.appsplatform.us",
            ),
            (
                "china",
                "https://login.chinacloudapi.cn",
                "https://microsoftgraph.chinacloudapi.cn",
                "https://api.bap.partner.microsoftonline.cn",
                "https://api.powerplatform.partner.microsoftonline.cn",
                "https://contoso.crm.dynamics.cn",
            ),
        ];
        for (name, authority, graph, bap, pp, dv) in table {
            let cloud: Cloud = name.parse().unwrap();
            assert_eq!(cloud.name(), name);
            let e = Endpoints::resolve(cloud, env(&[])).unwrap();
            assert_eq!(
                (
                    e.authority.as_str(),
                    e.graph.as_str(),
                    e.bap.as_str(),
                    e.power_platform.as_str(),
                    e.dataverse_url("contoso").as_str()
                ),
                (authority, graph, bap, pp, dv),
                "{name}"
            );
        }
    }

    // issue 12 item 2: each variable overrides its endpoint only.
    #[test]
    fn overrides_replace_one_endpoint_each() {
        let local = "https://127.0.0.1:8443";
        type Get = fn(&Endpoints) -> String;
        let rows: [(&str, Get); 5] = [
            (ENV_AUTHORITY, |e| e.authority.clone()),
            (ENV_GRAPH, |e| e.graph.clone()),
            (ENV_BAP, |e| e.bap.clone()),
            (ENV_POWER_PLATFORM, |e| e.power_platform.clone()),
            (ENV_DATAVERSE, |e| e.dataverse_url("contoso")),
        ];
        for (var, get) in rows {
            let value = if var == ENV_DATAVERSE {
                format!("{local}/dv/{{url}}/")
            } else {
                format!("{local}/")
            };
            let e = Endpoints::resolve(Cloud::UsGovHigh, env(&[(var, &value)])).unwrap();
            let expected = if var == ENV_DATAVERSE {
                format!("{local}/dv/contoso")
            } else {
                local.to_string()
            };
            assert_eq!(get(&e), expected, "{var}");
            // The others keep the cloud's hosts.
            let d = Cloud::UsGovHigh.defaults();
            for (other, get_other) in rows {
                if other != var {
                    assert_eq!(get_other(&e), get_other(&d), "{var} changed {other}");
                }
            }
        }
        // Empty counts as unset.
        let e = Endpoints::resolve(Cloud::Dod, env(&[(ENV_GRAPH, " ")])).unwrap();
        assert_eq!(e.graph, "https://dod-graph.microsoft.us");
    }

    // issue 12 item 2: a bad override is refused with the variable and what to do.
    #[test]
    fn bad_overrides_name_the_variable() {
        let rows = [
            (ENV_GRAPH, "http://127.0.0.1:80", "https://"),
            (ENV_AUTHORITY, "https://", "no host"),
            (ENV_DATAVERSE, "https://x.example", "{url}"),
        ];
        for (var, value, why) in rows {
            let err = Endpoints::resolve(Cloud::Public, env(&[(var, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var) && text.contains(why), "{var}: {text}");
        }
        assert!("mars"
            .parse::<Cloud>()
            .unwrap_err()
            .to_string()
            .contains("usgovhigh"));
    }

    #[test]
    fn scopes_are_one_per_resource() {
        let e =
            Endpoints::resolve(Cloud::Public, env(&[(ENV_GRAPH, "https://127.0.0.1:1")])).unwrap();
        assert_eq!(
            e.scope(&Service::Graph),
            "https://graph.microsoft.com/.default"
        );
        assert_eq!(
            e.scope(&Service::Bap),
            "https://service.powerapps.com/.default"
        );
        assert_eq!(
            e.scope(&Service::PowerPlatform),
            "https://api.powerplatform.com/.default"
        );
        assert_eq!(
            e.scope(&Service::Dataverse("contoso.crm4.dynamics.com".into())),
            "https://contoso.crm4.dynamics.com/.default"
        );
        assert_eq!(
            e.token_url("contoso.onmicrosoft.com"),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }
}
