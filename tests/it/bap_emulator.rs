//! The Power Platform admin API (BAP) and the Power Platform API's backups served by the
//! emulator (issue 13 items 3 and 5), over real HTTPS with a client that trusts only the
//! emulator's root: shapes of environments and lifecycle operations, 202 + `Location`
//! polling, 409 `OperationNotStartable` while an operation runs, domain.md's rules answered
//! in BAP's error bodies, paging, fault knobs, and the backup client end to end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crmctl::domain::kinds::{InstanceType, LicensePlan};
use crmctl::domain::op::{ObjRef, Op};
use crmctl::emulator::{Emulator, EmulatorConfig, EmulatorHandle, Faults};
use crmctl::observed::{Group, InstanceStatus, Tenant};
use crmctl::provider::http::cloud::Cloud;
use crmctl::provider::http::transport::{Transport, TransportOptions};
use crmctl::provider::http::{connect, Http};
use crmctl::provider::memory::MemoryProvider;
use crmctl::provider::powerplatform::backup;
use crmctl::provider::{block_on, Executed, Provider, ProviderError, Scope};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{fresh, instance};
use crate::emulator::{client, token, CLIENT, SECRET, TENANT};

const RP: &str = "/providers/Microsoft.BusinessAppPlatform";
const V: &str = "api-version=2023-06-01";

/// `prod` (production), `sb1`, `sb2` (sandboxes), a free sandbox slot, group `g1`.
fn tenant() -> Tenant {
    let mut t = fresh();
    t.licenses.insert(LicensePlan::Professional, 25);
    t.slots.sandbox = 3;
    t.instances.insert(
        "prod".into(),
        instance("prod", InstanceType::Production, InstanceStatus::Ready),
    );
    for s in ["sb1", "sb2"] {
        t.instances.insert(
            s.into(),
            instance(s, InstanceType::Sandbox, InstanceStatus::Ready),
        );
    }
    t.groups.insert(
        "g1".into(),
        Group {
            id: "g1".into(),
            name: "Sales".into(),
            ..Group::default()
        },
    );
    t
}

struct Setup {
    emu: EmulatorHandle,
    provider: Arc<MemoryProvider>,
    c: reqwest::Client,
}

fn setup(faults: Faults) -> Setup {
    let provider = Arc::new(MemoryProvider::new(tenant()));
    let mut cfg = EmulatorConfig::with_provider(provider.clone(), TENANT, CLIENT, SECRET);
    cfg.faults = faults;
    let emu = Emulator::start(cfg).expect("emulator starts");
    let c = client(&emu);
    Setup { emu, provider, c }
}

impl Setup {
    async fn observed(&self) -> Tenant {
        self.provider.observe(&Scope::all()).await.unwrap()
    }

    fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{RP}{path}{sep}{V}", self.emu.bap_url())
    }

    /// The crmctl transport, pointed at the emulator by its `env_lines`.
    fn transport(&self) -> Arc<Transport> {
        let mut env: Vec<(String, String)> = self
            .emu
            .env_lines()
            .iter()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        env.push(("AZURE_CLIENT_ID".into(), CLIENT.into()));
        env.push(("AZURE_CLIENT_SECRET".into(), SECRET.into()));
        let opts = TransportOptions {
            max_attempts: 10,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(10),
            ca_file: Some(self.emu.ca_file().to_path_buf()),
            ..TransportOptions::default()
        };
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Arc::new(connect(Cloud::Public, TENANT, lookup, Some(opts)).expect("transport"))
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Status, headers we look at, JSON body (Null when empty).
struct Got {
    status: u16,
    location: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

async fn call(s: &Setup, tok: &str, method: Method, url: &str, body: Option<Value>) -> Got {
    let mut r = s.c.request(method, url).bearer_auth(tok);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let h = |k: &str| {
        r.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (location, retry_after) = (h("location"), h("retry-after"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    Got {
        status,
        location,
        retry_after,
        body,
    }
}

/// The error code of a BAP error body (`{"error":{"code","message"}}`).
fn code(g: &Got) -> &str {
    assert!(g.body["error"]["message"].is_string(), "{}", g.body);
    g.body["error"]["code"].as_str().unwrap()
}

/// Poll a lifecycle operation until it is no longer Running; the states seen.
async fn poll(s: &Setup, tok: &str, location: &str) -> (Vec<String>, Value) {
    let mut seen = vec![];
    let t0 = Instant::now();
    loop {
        let g = call(s, tok, Method::GET, location, None).await;
        assert_eq!(g.status, 200, "{}", g.body);
        let st = g.body["state"]["id"].as_str().unwrap().to_string();
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        if st != "Running" {
            return (seen, g.body);
        }
        assert!(
            g.retry_after.is_some(),
            "a running operation says when to poll"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "operation never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// issue 13 item 5: the environment list pages with `nextLink` at the page-size knob, every
// environment in the admin API's shape; one environment by id; 404 EnvironmentNotFound;
// no api-version is 400; no token is 401.
#[test]
fn bap_lists_in_pages_and_gets_one_in_the_real_shape() {
    let s = setup(Faults {
        environment_page_size: 2,
        ..Faults::default()
    });
    rt().block_on(async {
        let tok = token(&s.emu, &s.c).await;
        let first = call(
            &s,
            &tok,
            Method::GET,
            &s.url("/scopes/admin/environments"),
            None,
        )
        .await;
        assert_eq!(first.status, 200);
        assert_eq!(first.body["value"].as_array().unwrap().len(), 2);
        let next = first.body["nextLink"]
            .as_str()
            .expect("a second page")
            .to_string();
        assert!(next.starts_with(&s.emu.bap_url()), "{next}");
        let second = call(&s, &tok, Method::GET, &next, None).await;
        assert_eq!(second.body["value"].as_array().unwrap().len(), 1);
        assert!(second.body.get("nextLink").is_none(), "{}", second.body);
        let mut names: Vec<&str> = first.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .chain(second.body["value"].as_array().unwrap())
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["prod", "sb1", "sb2"]);

        let e = call(
            &s,
            &tok,
            Method::GET,
            &s.url("/scopes/admin/environments/prod"),
            None,
        )
        .await
        .body;
        assert_eq!(e["id"], format!("{RP}/scopes/admin/environments/prod"));
        assert_eq!(e["location"], "unitedstates");
        let p = &e["properties"];
        assert_eq!(p["displayName"], "prod");
        assert_eq!(p["environmentSku"], "Production");
        assert_eq!(p["databaseType"], "CommonDataService");
        assert_eq!(p["provisioningState"], "Succeeded");
        let m = &p["linkedEnvironmentMetadata"];
        assert_eq!(m["domainName"], "prod");
        assert_eq!(m["instanceUrl"], "https://prod.crm.dynamics.com/");
        assert_eq!(m["baseLanguage"], 1033);
        assert_eq!(m["version"], "8.0.0");
        assert_eq!(m["backgroundOperationsState"], "Enabled");
        assert_eq!(m["securityGroupId"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(p["states"]["management"]["id"], "Ready");
        assert_eq!(p["states"]["runtime"]["id"], "Enabled");

        let missing = call(
            &s,
            &tok,
            Method::GET,
            &s.url("/scopes/admin/environments/nope"),
            None,
        )
        .await;
        assert_eq!(missing.status, 404);
        assert_eq!(code(&missing), "EnvironmentNotFound");
        let no_version = format!("{}{RP}/scopes/admin/environments", s.emu.bap_url());
        let g = call(&s, &tok, Method::GET, &no_version, None).await;
        assert_eq!(g.status, 400);
        assert_eq!(code(&g), "MissingApiVersionParameter");
        let anon =
            s.c.get(s.url("/scopes/admin/environments"))
                .send()
                .await
                .unwrap();
        assert_eq!(anon.status(), 401);
    });
    assert!(s.emu.bap_requests() >= 5);
}

// issue 13 item 5 (I5): validateEnvironmentDetails answers 200 for a free URL name, 400
// InvalidDomainName for a taken one (any case) or a malformed one; create answers 202 with
// Location and Retry-After; the operation reports Running, then Succeeded with the new
// environment's link; meanwhile the environment is not Ready and another mutation of it
// answers 409 OperationNotStartable (and changes nothing).
#[test]
fn bap_create_is_a_lifecycle_operation_polled_through_location() {
    let s = setup(Faults {
        lifecycle_duration: Duration::from_millis(700),
        ..Faults::default()
    });
    rt().block_on(async {
        let tok = token(&s.emu, &s.c).await;
        let validate = s.url("/validateEnvironmentDetails").replace(V, "api-version=2021-04-01");
        for (domain, ok) in [("newsales", true), ("SB1", false), ("-bad-", false)] {
            let g = call(&s, &tok, Method::POST, &validate,
                Some(json!({"domainName": domain, "environmentLocation": "unitedstates"}))).await;
            if ok {
                assert_eq!(g.status, 200, "{domain}: {}", g.body);
            } else {
                assert_eq!(g.status, 400, "{domain}");
                assert_eq!(code(&g), "InvalidDomainName");
            }
        }
        let create = json!({
            "location": "unitedstates",
            "properties": {
                "displayName": "New Sales",
                "description": "pipeline",
                "environmentSku": "Sandbox",
                "databaseType": "CommonDataService",
                "linkedEnvironmentMetadata": {
                    "baseLanguage": 1031,
                    "currency": {"code": "EUR"},
                    "domainName": "newsales",
                    "securityGroupId": "g1",
                }
            }
        });
        let g = call(&s, &tok, Method::POST, &s.url("/environments"), Some(create)).await;
        assert_eq!(g.status, 202, "{}", g.body);
        assert!(g.retry_after.is_some());
        let location = g.location.expect("Location");
        assert!(location.starts_with(&s.emu.bap_url()), "{location}");
        let first = call(&s, &tok, Method::GET, &location, None).await;
        assert_eq!(first.body["state"]["id"], "Running");
        assert_eq!(first.body["type"]["id"], "Create");
        let path = first.body["links"]["environment"]["path"].as_str().unwrap().to_string();
        let id = path.rsplit('/').next().unwrap().to_string();
        let inst = s.observed().await.instances.get(&id).cloned().expect("configured");
        assert_eq!((inst.url.as_str(), inst.currency.as_str(), inst.language), ("newsales", "EUR", 1031));
        assert_eq!(inst.security_group.as_deref(), Some("g1"));

        let env_url = s.url(&format!("/scopes/admin/environments/{id}"));
        let e = call(&s, &tok, Method::GET, &env_url, None).await.body;
        assert_eq!(e["properties"]["states"]["management"]["id"], "Running");
        assert_eq!(e["properties"]["linkedEnvironmentMetadata"]["instanceState"], "NotReady");
        let busy = call(&s, &tok, Method::PATCH, &env_url,
            Some(json!({"properties": {"displayName": "Too Soon"}}))).await;
        assert_eq!(busy.status, 409);
        assert_eq!(code(&busy), "OperationNotStartable");
        assert!(busy.retry_after.is_some());
        assert_eq!(s.observed().await.instances[&id].name, "New Sales", "409 changed nothing");

        let (seen, done) = poll(&s, &tok, &location).await;
        assert_eq!(seen, ["Running", "Succeeded"]);
        assert_eq!(done["links"]["environment"]["path"], format!("{RP}/environments/{id}"));
        let e = call(&s, &tok, Method::GET, &env_url, None).await.body;
        assert_eq!(e["properties"]["states"]["management"]["id"], "Ready");
        assert_eq!(e["location"], "unitedstates");
        assert_eq!(e["properties"]["environmentSku"], "Sandbox");
        assert_eq!(e["properties"]["linkedEnvironmentMetadata"]["securityGroupId"], "g1");
        let g = call(&s, &tok, Method::PATCH, &env_url,
            Some(json!({"properties": {"displayName": "Sales EU",
                "linkedEnvironmentMetadata": {"securityGroupId": "00000000-0000-0000-0000-000000000000"}}}))).await;
        assert_eq!(g.status, 202, "{}", g.body);
        let inst = &s.observed().await.instances[&id];
        assert_eq!((inst.name.as_str(), inst.security_group.as_deref()), ("Sales EU", None));
    });
}

// issue 13 item 5, slow operations: a copy that takes its configured time holds target and
// source (409 to a switch, a reset and a backup of either) and reports Running until then;
// afterwards the target has the source's currency and is in administration mode with
// background operations off (I11), as the environment's runtime state shows.
#[test]
fn bap_slow_copy_holds_its_environments_until_it_ends() {
    let s = setup(Faults {
        copy_duration: Duration::from_millis(1200),
        ..Faults::default()
    });
    rt().block_on(async {
        let tok = token(&s.emu, &s.c).await;
        let t0 = Instant::now();
        let g = call(&s, &tok, Method::POST, &s.url("/environments/sb1/copyTo"),
            Some(json!({"sourceEnvironmentId": "sb2", "targetEnvironmentName": "sb1 copy", "copyType": "MinimalCopy"}))).await;
        assert_eq!(g.status, 202, "{}", g.body);
        let location = g.location.unwrap();
        for (method, path, body) in [
            (Method::POST, "/scopes/admin/environments/sb1/modifySku", json!({"environmentSku": "Production"})),
            (Method::POST, "/environments/sb2/reset", json!({})),
            (Method::DELETE, "/scopes/admin/environments/sb1", Value::Null),
        ] {
            let b = (!body.is_null()).then_some(body);
            let busy = call(&s, &tok, method, &s.url(path), b).await;
            assert_eq!(busy.status, 409, "{path}: {}", busy.body);
            assert_eq!(code(&busy), "OperationNotStartable");
        }
        let bk = format!(
            "{}/environmentmanagement/environments/sb1/backups?api-version=2024-10-01",
            s.emu.powerplatform_url()
        );
        let busy = call(&s, &tok, Method::POST, &bk, Some(json!({"label": "x"}))).await;
        assert_eq!(busy.status, 409);
        assert_eq!(code(&busy), "OperationNotStartable");

        let (seen, done) = poll(&s, &tok, &location).await;
        assert!(t0.elapsed() >= Duration::from_millis(1200), "a slow copy takes its time");
        assert_eq!(seen, ["Running", "Succeeded"]);
        assert_eq!(done["type"]["id"], "Copy");
        let e = call(&s, &tok, Method::GET, &s.url("/scopes/admin/environments/sb1"), None).await.body;
        assert_eq!(e["properties"]["displayName"], "sb1 copy");
        assert_eq!(e["properties"]["states"]["runtime"]["id"], "AdminMode");
        assert_eq!(e["properties"]["linkedEnvironmentMetadata"]["backgroundOperationsState"], "Disabled");
        assert_eq!(e["properties"]["states"]["management"]["id"], "Ready");
        // Free again: leaving administration mode is accepted.
        let g = call(&s, &tok, Method::PATCH, &s.url("/scopes/admin/environments/sb1"),
            Some(json!({"properties": {"states": {"runtime": {"id": "Enabled"}}}}))).await;
        assert_eq!(g.status, 202, "{}", g.body);
        assert!(!s.observed().await.instances["sb1"].admin_mode.enabled);
    });
}

// issue 13 item 5: the tenant's rules answer through the admin API as 400 BadRequest with
// the rule id last: deleting a production instance (I8), copying onto production (I11),
// resetting production (I9), creating without a free slot (I2), binding a group that does
// not exist (I12); nothing changes. Allowed writes go through: switch (I7), reset (I9,
// currency chosen again), delete of a sandbox.
#[test]
fn bap_rules_answer_with_bap_errors() {
    let s = setup(Faults::default());
    rt().block_on(async {
        let tok = token(&s.emu, &s.c).await;
        let before = s.observed().await;
        let refused = [
            (Method::DELETE, "/scopes/admin/environments/prod", Value::Null, "(I8)"),
            (Method::POST, "/environments/prod/copyTo", json!({"sourceEnvironmentId": "sb1", "copyType": "FullCopy"}), "(I11)"),
            (Method::POST, "/environments/prod/reset", json!({}), "(I9)"),
            (Method::PATCH, "/scopes/admin/environments/sb1", json!({"properties": {"linkedEnvironmentMetadata": {"securityGroupId": "no-such-group"}}}), "(I12)"),
            (Method::POST, "/environments", json!({"location": "unitedstates", "properties": {"displayName": "P2", "environmentSku": "Production",
                "linkedEnvironmentMetadata": {"domainName": "p2", "baseLanguage": 1033, "currency": {"code": "USD"}}}}), "(I2)"),
        ];
        for (method, path, body, rule) in refused {
            let b = (!body.is_null()).then_some(body);
            let g = call(&s, &tok, method, &s.url(path), b).await;
            assert_eq!(g.status, 400, "{path}: {}", g.body);
            assert_eq!(code(&g), "BadRequest");
            let m = g.body["error"]["message"].as_str().unwrap();
            assert!(m.ends_with(rule), "{path}: {m}");
        }
        assert_eq!(s.observed().await.instances, before.instances, "refusals change nothing");

        let g = call(&s, &tok, Method::POST, &s.url("/scopes/admin/environments/sb2/modifySku"),
            Some(json!({"environmentSku": "Trial"}))).await;
        assert_eq!((g.status, code(&g)), (400, "ValidationError"));
        let g = call(&s, &tok, Method::POST, &s.url("/environments/sb1/reset"),
            Some(json!({"BaseLanguageCode": 1036, "Currency": {"Code": "CAD"}}))).await;
        assert_eq!(g.status, 202, "{}", g.body);
        let sb1 = &s.observed().await.instances["sb1"];
        assert_eq!((sb1.currency.as_str(), sb1.language), ("CAD", 1036));
        let g = call(&s, &tok, Method::DELETE, &s.url("/scopes/admin/environments/sb2"), None).await;
        assert_eq!(g.status, 202);
        let (seen, _) = poll(&s, &tok, &g.location.unwrap()).await;
        assert_eq!(seen, ["Succeeded"]);
        assert!(!s.observed().await.instances.contains_key("sb2"));
        let gone = call(&s, &tok, Method::GET, &s.url("/scopes/admin/environments/sb2"), None).await;
        assert_eq!(gone.status, 404);
        let g = call(&s, &tok, Method::POST, &s.url("/scopes/admin/environments/prod/modifySku"),
            Some(json!({"environmentSku": "Sandbox"}))).await;
        assert_eq!(g.status, 202, "{}", g.body);
        assert_eq!(s.observed().await.instances["prod"].kind, InstanceType::Sandbox);
    });
}

// issue 13 item 5: the existing fault knobs apply to the admin API: 429 with Retry-After and
// nothing done; a dropped answer after the change was made (the connection closes, the
// reset happened).
#[test]
fn bap_fault_knobs_apply() {
    let s = setup(Faults {
        throttle_rate: 1.0,
        retry_after_secs: 4,
        ..Faults::default()
    });
    rt().block_on(async {
        let tok = token(&s.emu, &s.c).await;
        let g = call(
            &s,
            &tok,
            Method::POST,
            &s.url("/environments/sb1/reset"),
            Some(json!({"currency": {"code": "EUR"}})),
        )
        .await;
        assert_eq!(g.status, 429);
        assert_eq!(code(&g), "TooManyRequests");
        assert_eq!(g.retry_after.as_deref(), Some("4"));
        assert_eq!(s.observed().await.instances["sb1"].currency, "USD");
    });
    let s = setup(Faults {
        drop_rate: 1.0,
        ..Faults::default()
    });
    rt().block_on(async {
        let tok = token(&s.emu, &s.c).await;
        let r =
            s.c.post(s.url("/environments/sb1/reset"))
                .bearer_auth(&tok)
                .json(&json!({"currency": {"code": "EUR"}}))
                .send()
                .await;
        assert!(r.is_err(), "the answer is dropped");
        assert_eq!(
            s.observed().await.instances["sb1"].currency,
            "EUR",
            "after the change"
        );
    });
}

// issue 13 item 3: the backup client speaks the Power Platform API through crmctl's
// transport (pointed at the emulator by its env lines, scope api.powerplatform.com):
// POST .../backups with a label is 201 with the backup's id, executed as BackupInstance on
// the tenant (ids count up); an unknown environment is NotFound, a provisioning one is
// refused (I4); `backup::execute` records the id under `backup`.
#[test]
fn backup_client_against_the_emulator() {
    let mut t = tenant();
    t.instances.insert(
        "newby".into(),
        instance("newby", InstanceType::Sandbox, InstanceStatus::Provisioning),
    );
    let provider = Arc::new(MemoryProvider::new(t));
    let mut cfg = EmulatorConfig::with_provider(provider, TENANT, CLIENT, SECRET);
    cfg.faults = Faults::default();
    let emu = Emulator::start(cfg).expect("emulator starts");
    let s = Setup {
        c: client(&emu),
        emu,
        provider: Arc::new(MemoryProvider::new(fresh())),
    };
    let http: Arc<dyn Http> = s.transport();
    block_on(async {
        let b = backup::create_backup(http.as_ref(), "sb1", "crmctl plan 1f2e: reset_instance sb1")
            .await
            .unwrap();
        assert_eq!(b.label, "crmctl plan 1f2e: reset_instance sb1");
        assert!(b.backup_point_date_time.is_some() && b.backup_expiry_date_time.is_some());
        let op = Op::BackupInstance {
            instance: ObjRef {
                address: "instances.sb1".into(),
                id: Some("sb1".into()),
            },
            label: "second".into(),
        };
        let Executed::Done(out) = backup::execute(http.as_ref(), &op).await.unwrap() else {
            panic!("a backup is done at once");
        };
        let second = out.ids.get(backup::OUTCOME_ID).unwrap();
        assert_ne!(second, &b.id, "a second backup is another backup");
        let missing = backup::create_backup(http.as_ref(), "nope", "x").await;
        assert!(
            matches!(missing, Err(ProviderError::NotFound(_))),
            "{missing:?}"
        );
        let provisioning = backup::create_backup(http.as_ref(), "newby", "x").await;
        assert!(
            matches!(&provisioning, Err(ProviderError::Refused { rule, .. }) if rule == "I4"),
            "{provisioning:?}"
        );
    })
    .unwrap();
    // The raw shape: 201 EnvironmentBackup.
    rt().block_on(async {
        let tok = token(&s.emu, &s.c).await;
        let url = format!(
            "{}/environmentmanagement/environments/prod/backups?api-version=2024-10-01",
            s.emu.powerplatform_url()
        );
        let g = call(&s, &tok, Method::POST, &url, Some(json!({"label": "raw"}))).await;
        assert_eq!(g.status, 201, "{}", g.body);
        assert_eq!(g.body["label"], "raw");
        assert!(g.body["id"].as_str().is_some_and(|i| !i.is_empty()));
        let g = call(&s, &tok, Method::POST, &url, Some(json!({}))).await;
        assert_eq!((g.status, code(&g)), (400, "ValidationError"));
    });
}

// issue 13 item 5: `crmctl emulate` prints CRMCTL_BAP_URL and CRMCTL_POWERPLATFORM_URL and
// its `--operation-ms` knob makes a create run that long (Running, then Succeeded) on the
// local tenant file it serves.
#[test]
fn emulate_command_serves_the_admin_api_with_its_knobs() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    #[allow(deprecated)]
    let bin = assert_cmd::cargo::cargo_bin("crmctl");
    let mut child = std::process::Command::new(bin)
        .current_dir(dir.path())
        .args([
            "emulate",
            "--tenant",
            "local:tenant.db",
            "--operation-ms",
            "800",
        ])
        .env("AZURE_CLIENT_SECRET", SECRET)
        .env("AZURE_CLIENT_ID", CLIENT)
        .env("AZURE_TENANT_ID", TENANT)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let last = line.starts_with("CRMCTL_POWERPLATFORM_URL=");
        printed.push(line);
        if last {
            break;
        }
    }
    let env = |k: &str| {
        printed
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} not printed: {printed:?}"))
            .to_string()
    };
    let (bap, authority, ca) = (
        env("CRMCTL_BAP_URL"),
        env("AZURE_AUTHORITY_HOST"),
        env("CRMCTL_CA_FILE"),
    );
    assert!(env("CRMCTL_POWERPLATFORM_URL").ends_with("/powerplatform"));
    let result = std::panic::catch_unwind(|| {
        rt().block_on(async {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
            let c = reqwest::Client::builder()
                .tls_certs_only([root])
                .build()
                .unwrap();
            let tok: Value = c
                .post(format!("{authority}/{TENANT}/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT),
                    ("client_secret", SECRET),
                    ("scope", "https://service.powerapps.com/.default"),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let tok = tok["access_token"].as_str().unwrap();
            let create = json!({"location": "europe", "properties": {"displayName": "Main",
                "environmentSku": "Production", "linkedEnvironmentMetadata": {
                    "domainName": "main", "baseLanguage": 1033, "currency": {"code": "EUR"}}}});
            let r = c
                .post(format!("{bap}{RP}/environments?{V}"))
                .bearer_auth(tok)
                .json(&create)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let location = r.headers()["location"].to_str().unwrap().to_string();
            let t0 = Instant::now();
            let mut seen: Vec<String> = vec![];
            loop {
                let op: Value = c
                    .get(&location)
                    .bearer_auth(tok)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let st = op["state"]["id"].as_str().unwrap().to_string();
                if seen.last() != Some(&st) {
                    seen.push(st.clone());
                }
                if st != "Running" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(seen, ["Running", "Succeeded"]);
            assert!(t0.elapsed() >= Duration::from_millis(600));
            let list: Value = c
                .get(format!("{bap}{RP}/scopes/admin/environments?{V}"))
                .bearer_auth(tok)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(list["value"][0]["location"], "europe");
            assert_eq!(
                list["value"][0]["properties"]["linkedEnvironmentMetadata"]["domainName"],
                "main"
            );
        });
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
