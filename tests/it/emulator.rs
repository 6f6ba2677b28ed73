//! The Graph emulator over real HTTPS on loopback (issue 12 item 5): a reqwest client that
//! trusts only the emulator's generated root (no certificate checks turned off) against
//! the token endpoint and the Graph subset, with the tenant's rules (P1, P6) and the
//! fault knobs.

use std::time::Duration;

use crmctl::domain::kinds::{AccessMode, AdminRole};
use crmctl::emulator::{Emulator, EmulatorConfig, EmulatorHandle, Faults};
use crmctl::observed::Tenant;
use serde_json::{json, Value};

use crate::common::{fresh, user};

pub(crate) const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub(crate) const CLIENT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
pub(crate) const SECRET: &str = "emulator-test-secret~value";

/// A tenant with `n` users `u0000..` (`u0000` and `u0001` global admins).
pub(crate) fn tenant_with(n: usize) -> Tenant {
    let mut t = fresh();
    for i in 0..n {
        let mut u = user(&format!("u{i:04}"), None, AccessMode::ReadWrite);
        if i < 2 {
            u.admin_roles.insert(AdminRole::GlobalAdmin);
        }
        t.users.insert(u.id.clone(), u);
    }
    t
}

fn start(tenant: Tenant, faults: Faults) -> EmulatorHandle {
    let mut cfg = EmulatorConfig::new(tenant, TENANT, CLIENT, SECRET);
    cfg.faults = faults;
    Emulator::start(cfg).expect("emulator starts")
}

/// A client that trusts the emulator's root only.
pub(crate) fn client(emu: &EmulatorHandle) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(emu.ca_file()).expect("root PEM written");
    let root = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
    reqwest::Client::builder()
        .tls_certs_only([root])
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client-credentials token request to `url` with `secret`.
async fn token_request(c: &reqwest::Client, url: &str, secret: &str) -> reqwest::Response {
    c.post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
}

pub(crate) async fn token(emu: &EmulatorHandle, c: &reqwest::Client) -> String {
    let r = token_request(c, &emu.token_url(), SECRET).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// `GET url` with the token: the JSON body.
pub(crate) async fn get_json(c: &reqwest::Client, tok: &str, url: impl reqwest::IntoUrl) -> Value {
    c.get(url)
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `method url` with the token and a JSON body.
async fn send(
    c: &reqwest::Client,
    tok: &str,
    method: reqwest::Method,
    url: impl reqwest::IntoUrl,
    body: &Value,
) -> reqwest::Response {
    c.request(method, url)
        .bearer_auth(tok)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// `DELETE url` with the token.
async fn delete(c: &reqwest::Client, tok: &str, url: impl reqwest::IntoUrl) -> reqwest::Response {
    c.delete(url).bearer_auth(tok).send().await.unwrap()
}

/// Asserts Graph's error body shape and returns its code.
fn graph_error_code(body: &Value) -> String {
    let e = &body["error"];
    assert!(e["message"].is_string(), "{body}");
    for k in ["date", "request-id", "client-request-id"] {
        assert!(
            e["innerError"][k].is_string(),
            "innerError.{k} missing: {body}"
        );
    }
    e["code"].as_str().unwrap().to_string()
}

// issue 12 item 5: the token endpoint answers client credentials with a bearer token, a
// wrong secret with 401 invalid_client / AADSTS7000215; Graph without a valid token is 401
// with Graph's error body; every answer has a request-id.
#[test]
fn token_endpoint_and_unauthenticated_graph() {
    let emu = start(tenant_with(1), Faults::default());
    rt().block_on(async {
        let c = client(&emu);
        let r = token_request(&c, &emu.token_url(), SECRET).await;
        assert_eq!(r.status(), 200);
        let ok: Value = r.json().await.unwrap();
        assert_eq!(ok["token_type"], "Bearer");
        assert!(ok["expires_in"].as_u64().unwrap() > 0);
        let access = ok["access_token"].as_str().unwrap().to_string();

        let r = token_request(&c, &emu.token_url(), "wrong").await;
        assert_eq!(r.status(), 401);
        let bad: Value = r.json().await.unwrap();
        assert_eq!(bad["error"], "invalid_client");
        let desc = bad["error_description"].as_str().unwrap();
        assert!(desc.starts_with("AADSTS7000215:"), "{desc}");
        assert!(!desc.contains(SECRET) && !bad.to_string().contains("wrong"));

        let users = format!("{}/v1.0/users", emu.graph_url());
        for auth in [None, Some("Bearer not-a-token")] {
            let mut req = c.get(&users);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401);
            assert!(r.headers().contains_key("request-id"));
            let body: Value = r.json().await.unwrap();
            assert_eq!(graph_error_code(&body), "InvalidAuthenticationToken");
        }
        let r = c.get(&users).bearer_auth(&access).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("request-id"));
    });
    assert!(emu.ca_file().exists());
    assert!(emu.env_lines()[2].starts_with("CRMCTL_CA_FILE="));
}

// issue 12 item 5: paging with $top follows @odata.nextLink verbatim to the end; every
// user once, $select honoured; $top above 999 is a 400.
#[test]
fn paging_follows_next_link_to_the_end() {
    let emu = start(tenant_with(23), Faults::default());
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let mut url = format!(
            "{}/v1.0/users?$top=5&$select=id,userPrincipalName",
            emu.graph_url()
        );
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let body: Value = get_json(&c, &tok, &url).await;
            pages += 1;
            let value = body["value"].as_array().unwrap();
            assert!(value.len() <= 5);
            for u in value {
                assert_eq!(
                    u.as_object().unwrap().len(),
                    2,
                    "only the selected properties: {u}"
                );
                seen.push(u["userPrincipalName"].as_str().unwrap().to_string());
            }
            match body["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_string(),
                None => break,
            }
        }
        assert_eq!(pages, 5);
        let mut expected: Vec<String> = (0..23).map(|i| format!("u{i:04}@coho.com")).collect();
        expected.sort();
        assert_eq!(seen, expected);

        let r = c
            .get(format!("{}/v1.0/users?$top=1000", emu.graph_url()))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    });
}

fn new_user(upn: &str) -> Value {
    json!({
        "accountEnabled": true,
        "displayName": "Ana",
        "mailNickname": upn.split('@').next().unwrap(),
        "userPrincipalName": upn,
        "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "x-Temp-123!"},
    })
}

// issue 12 item 5, P1: POST /users creates (201 with the user); the same UPN again (in
// another case) is Graph's 400 Request_BadRequest.
#[test]
fn post_user_and_duplicate_upn() {
    let emu = start(tenant_with(1), Faults::default());
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let url = format!("{}/v1.0/users", emu.graph_url());
        let r = send(
            &c,
            &tok,
            reqwest::Method::POST,
            &url,
            &new_user("ana@coho.com"),
        )
        .await;
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        assert_eq!(created["userPrincipalName"], "ana@coho.com");
        let id = created["id"].as_str().unwrap();
        let got: Value = get_json(&c, &tok, format!("{url}/{id}")).await;
        assert_eq!(got["displayName"], "Ana");

        let r = send(
            &c,
            &tok,
            reqwest::Method::POST,
            &url,
            &new_user("ANA@coho.com"),
        )
        .await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(graph_error_code(&body), "Request_BadRequest");
        assert_eq!(
            body["error"]["message"],
            "Another object with the same value for property userPrincipalName already exists."
        );
    });
}

// issue 12 item 5: PATCH members@odata.bind takes at most 20 references, all or nothing
// (21 change nothing; 20 with one unknown change nothing; 20 good ones all land).
#[test]
fn members_bind_limit_is_twenty_all_or_nothing() {
    let emu = start(tenant_with(25), Faults::default());
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let g = format!("{}/v1.0/groups", emu.graph_url());
        let r = send(&c, &tok, reqwest::Method::POST, &g, &json!({"displayName": "Sales", "mailEnabled": false, "mailNickname": "sales", "securityEnabled": true})).await;
        assert_eq!(r.status(), 201);
        let gid = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
        let refs = |ids: &mut dyn Iterator<Item = String>| -> Value {
            json!({"members@odata.bind": ids
                .map(|id| format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}"))
                .collect::<Vec<_>>()})
        };
        let members = |c: reqwest::Client, tok: String, url: String| async move {
            let body: Value = get_json(&c, &tok, url).await;
            body["value"].as_array().unwrap().len()
        };
        let murl = format!("{g}/{gid}/members?$top=999");

        let r = c
            .patch(format!("{g}/{gid}"))
            .bearer_auth(&tok)
            .json(&refs(&mut (0..21).map(|i| format!("u{i:04}"))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(graph_error_code(&r.json().await.unwrap()), "Request_BadRequest");
        assert_eq!(members(c.clone(), tok.clone(), murl.clone()).await, 0);

        let mut with_unknown = (0..19).map(|i| format!("u{i:04}")).chain(["nobody".to_string()]);
        let r = send(&c, &tok, reqwest::Method::PATCH, format!("{g}/{gid}"), &refs(&mut with_unknown)).await;
        assert_eq!(r.status(), 404);
        assert_eq!(members(c.clone(), tok.clone(), murl.clone()).await, 0, "all or nothing");

        let r = c
            .patch(format!("{g}/{gid}"))
            .bearer_auth(&tok)
            .json(&refs(&mut (0..20).map(|i| format!("u{i:04}"))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(members(c.clone(), tok.clone(), murl.clone()).await, 20);

        // Adding a member again through members/$ref is a 400; removing one is a 204.
        let r = send(&c, &tok, reqwest::Method::POST, format!("{g}/{gid}/members/$ref"), &json!({"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/u0003"})).await;
        assert_eq!(r.status(), 400);
        let r = delete(&c, &tok, format!("{g}/{gid}/members/u0003/$ref")).await;
        assert_eq!(r.status(), 204);
        assert_eq!(members(c.clone(), tok.clone(), murl.clone()).await, 19);
    });
}

// issue 12 item 5: $batch serves dependsOn in order, answers 424 for a failed
// dependency, correlates by id; more than 20 requests is a 400.
#[test]
fn batch_depends_on_and_424() {
    let emu = start(tenant_with(1), Faults::default());
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let url = format!("{}/v1.0/$batch", emu.graph_url());
        let body = json!({"requests": [
            {"id": "1", "method": "POST", "url": "/users", "body": new_user("bo@coho.com"), "headers": {"Content-Type": "application/json"}},
            {"id": "2", "method": "POST", "url": "/users", "body": new_user("bo@coho.com"), "dependsOn": ["1"], "headers": {"Content-Type": "application/json"}},
            {"id": "3", "method": "GET", "url": "/users?$top=1", "dependsOn": ["2"]},
            {"id": "4", "method": "GET", "url": "/organization"},
        ]});
        let r = send(&c, &tok, reqwest::Method::POST, &url, &body).await;
        assert_eq!(r.status(), 200);
        let out: Value = r.json().await.unwrap();
        let status = |id: &str| {
            out["responses"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap()["status"].as_u64().unwrap()
        };
        assert_eq!(out["responses"].as_array().unwrap().len(), 4);
        assert_eq!(status("1"), 201);
        assert_eq!(status("2"), 400, "P1: the duplicate fails");
        assert_eq!(status("3"), 424, "its dependent is not run");
        assert_eq!(status("4"), 200);
        let org = out["responses"].as_array().unwrap().iter().find(|r| r["id"] == "4").unwrap();
        assert_eq!(org["body"]["value"][0]["countryLetterCode"], "US");

        let many: Vec<Value> = (0..21).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"})).collect();
        let r = send(&c, &tok, reqwest::Method::POST, &url, &json!({"requests": many})).await;
        assert_eq!(r.status(), 400);
        graph_error_code(&r.json().await.unwrap());
    });
}

// issue 12 item 5: the throttle knob answers 429 with Retry-After in seconds and Graph's
// error body, and changes nothing; deterministic from the seed.
#[test]
fn throttle_knob_answers_429_with_retry_after() {
    let faults = Faults {
        throttle_rate: 1.0,
        retry_after_secs: 7,
        ..Faults::default()
    };
    let emu = start(tenant_with(1), faults);
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let r = send(
            &c,
            &tok,
            reqwest::Method::POST,
            format!("{}/v1.0/users", emu.graph_url()),
            &new_user("cy@coho.com"),
        )
        .await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        assert_eq!(
            graph_error_code(&r.json().await.unwrap()),
            "TooManyRequests"
        );
    });
    drop(emu);
}

// issue 12 item 5: the 5xx knob answers 500/503 with Graph's error body before anything
// is done, and the latency knob delays every answer.
#[test]
fn server_error_and_latency_knobs() {
    let faults = Faults {
        server_error_rate: 1.0,
        latency: Duration::from_millis(150),
        ..Faults::default()
    };
    let emu = start(tenant_with(1), faults);
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let url = format!("{}/v1.0/users", emu.graph_url());
        for _ in 0..4 {
            let started = std::time::Instant::now();
            let r = send(
                &c,
                &tok,
                reqwest::Method::POST,
                &url,
                &new_user("gil@coho.com"),
            )
            .await;
            assert!(started.elapsed() >= Duration::from_millis(150));
            let status = r.status().as_u16();
            assert!(matches!(status, 500 | 503), "{status}");
            let code = graph_error_code(&r.json().await.unwrap());
            assert_eq!(
                code,
                if status == 500 {
                    "generalException"
                } else {
                    "serviceNotAvailable"
                }
            );
        }
    });
}

// issue 12 item 5: a dropped answer closes the connection without a response, yet the
// change was made (the user exists when looked up afterwards).
#[test]
fn dropped_response_still_made_the_change() {
    let faults = Faults {
        drop_rate: 1.0,
        ..Faults::default()
    };
    let emu = start(tenant_with(1), faults);
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let r = c
            .post(format!("{}/v1.0/users", emu.graph_url()))
            .bearer_auth(&tok)
            .json(&new_user("dee@coho.com"))
            .send()
            .await;
        assert!(r.is_err(), "no answer: {r:?}");
        // GETs are never dropped: the user is there.
        let body: Value =
            get_json(&c, &tok, format!("{}/v1.0/users?$top=999", emu.graph_url())).await;
        let upns: Vec<&str> = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userPrincipalName"].as_str().unwrap())
            .collect();
        assert!(upns.contains(&"dee@coho.com"), "{upns:?}");
    });
    assert_eq!(
        emu.dropped_answers(),
        1,
        "the one write's answer was dropped"
    );
}

// issue 12 item 5: replication lag: a new user answers 404 Request_ResourceNotFound by id
// for the lag, then 200.
#[test]
fn replication_lag_404_then_found() {
    let faults = Faults {
        replication_lag: Duration::from_millis(600),
        ..Faults::default()
    };
    let emu = start(tenant_with(1), faults);
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let url = format!("{}/v1.0/users", emu.graph_url());
        let created: Value = send(
            &c,
            &tok,
            reqwest::Method::POST,
            &url,
            &new_user("eve@coho.com"),
        )
        .await
        .json()
        .await
        .unwrap();
        let id = created["id"].as_str().unwrap();
        let r = c
            .get(format!("{url}/{id}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            graph_error_code(&r.json().await.unwrap()),
            "Request_ResourceNotFound"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        let r = c
            .get(format!("{url}/{id}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
}

// issue 12 item 5, P6: removing a global admin through the directory role goes through
// the tenant's rule: with two global admins, the removal of one is refused (400).
#[test]
fn global_admin_removal_keeps_p6() {
    let emu = start(tenant_with(3), Faults::default());
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let base = format!(
            "{}/v1.0/directoryRoles/roleTemplateId=62e90394-69f5-4237-9190-012177145e10",
            emu.graph_url()
        );
        let body: Value = get_json(&c, &tok, format!("{base}/members")).await;
        assert_eq!(body["value"].as_array().unwrap().len(), 2);
        let r = delete(&c, &tok, format!("{base}/members/u0000/$ref")).await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(graph_error_code(&body), "Request_BadRequest");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("(P6)"),
            "{body}"
        );
        // A third admin first, then the removal passes.
        let r = send(
            &c,
            &tok,
            reqwest::Method::POST,
            format!("{base}/members/$ref"),
            &json!({"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/u0002"}),
        )
        .await;
        assert_eq!(r.status(), 204);
        let r = delete(&c, &tok, format!("{base}/members/u0000/$ref")).await;
        assert_eq!(r.status(), 204);
    });
}

// issue 12 item 5, T3: subscribedSkus shows the tenant's counts through the SKU table
// (prepaidUnits.enabled = bought, consumedUnits = assigned); assignLicense needs a usage
// location, takes a licence while one is free and refuses when all are assigned.
#[test]
fn subscribed_skus_and_assign_license_keep_t3() {
    use crmctl::domain::kinds::LicensePlan;
    use crmctl::provider::graph::skus;
    let mut t = tenant_with(2);
    t.licenses.insert(LicensePlan::Professional, 1);
    let emu = start(t, Faults::default());
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let g = emu.graph_url().to_string();
        let sku = skus::builtin_sku_id(LicensePlan::Professional);
        let skus_now = |c: reqwest::Client, tok: String| {
            let g = g.clone();
            async move {
                let body: Value = get_json(&c, &tok, format!("{g}/v1.0/subscribedSkus")).await;
                let s = body["value"].as_array().unwrap()[0].clone();
                (
                    s["skuPartNumber"].as_str().unwrap().to_string(),
                    s["prepaidUnits"]["enabled"].as_u64().unwrap(),
                    s["consumedUnits"].as_u64().unwrap(),
                )
            }
        };
        assert_eq!(
            skus_now(c.clone(), tok.clone()).await,
            (
                skus::builtin_part_number(LicensePlan::Professional).to_string(),
                1,
                0
            )
        );
        let assign =
            json!({"addLicenses": [{"skuId": sku, "disabledPlans": []}], "removeLicenses": []});
        let r = send(
            &c,
            &tok,
            reqwest::Method::POST,
            format!("{g}/v1.0/users/u0000/assignLicense"),
            &assign,
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(skus_now(c.clone(), tok.clone()).await.2, 1);
        let got: Value = get_json(
            &c,
            &tok,
            format!("{g}/v1.0/users/u0000?$select=id,assignedLicenses"),
        )
        .await;
        assert_eq!(got["assignedLicenses"][0]["skuId"], sku);
        // T3: the one licence is taken.
        let r = send(
            &c,
            &tok,
            reqwest::Method::POST,
            format!("{g}/v1.0/users/u0001/assignLicense"),
            &assign,
        )
        .await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains("(T3)"),
            "{body}"
        );
        // A user created without usageLocation cannot be given one.
        let created: Value = send(
            &c,
            &tok,
            reqwest::Method::POST,
            format!("{g}/v1.0/users"),
            &new_user("fay@coho.com"),
        )
        .await
        .json()
        .await
        .unwrap();
        let id = created["id"].as_str().unwrap();
        let r = send(
            &c,
            &tok,
            reqwest::Method::POST,
            format!("{g}/v1.0/users/{id}/assignLicense"),
            &assign,
        )
        .await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("usage location"),
            "{body}"
        );
        // Removing frees it.
        let remove = json!({"addLicenses": [], "removeLicenses": [sku]});
        let r = send(
            &c,
            &tok,
            reqwest::Method::POST,
            format!("{g}/v1.0/users/u0000/assignLicense"),
            &remove,
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(skus_now(c.clone(), tok.clone()).await.2, 0);
    });
}

// issue 12 item 5: the $filter forms the Graph provider sends (a UPN without case, a
// security group by name) select the right objects.
#[test]
fn filter_by_upn_and_group_name() {
    let emu = start(tenant_with(3), Faults::default());
    rt().block_on(async {
        let c = client(&emu);
        let tok = token(&emu, &c).await;
        let g = emu.graph_url();
        let body: Value = get_json(&c, &tok, format!("{g}/v1.0/users?$filter=userPrincipalName%20eq%20'U0001@COHO.com'&$select=id")).await;
        assert_eq!(body["value"], json!([{"id": "u0001"}]));
        let r = send(&c, &tok, reqwest::Method::POST, format!("{g}/v1.0/groups"), &json!({"displayName": "Ops", "mailEnabled": false, "mailNickname": "ops", "securityEnabled": true})).await;
        assert_eq!(r.status(), 201);
        let body: Value = get_json(&c, &tok, format!("{g}/v1.0/groups?$filter=displayName%20eq%20'Ops'%20and%20securityEnabled%20eq%20true&$select=id,displayName")).await;
        assert_eq!(body["value"].as_array().unwrap().len(), 1);
        assert_eq!(body["value"][0]["displayName"], "Ops");
        let r = c.get(format!("{g}/v1.0/users?$filter=startswith(displayName,'a')")).bearer_auth(&tok).send().await.unwrap();
        assert_eq!(r.status(), 400);
    });
}

// issue 12 item 5: `crmctl emulate` prints the env lines (never the secret) and serves a
// local tenant file until stopped; without AZURE_CLIENT_SECRET it says what to set.
#[test]
fn emulate_command_prints_env_lines_and_serves() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    crate::support::crmctl(dir.path())
        .args(["emulate"])
        .env_remove("AZURE_CLIENT_SECRET")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("AZURE_CLIENT_SECRET is not set"));

    #[allow(deprecated)]
    let bin = assert_cmd::cargo::cargo_bin("crmctl");
    let mut child = std::process::Command::new(bin)
        .current_dir(dir.path())
        .args(["emulate", "--tenant", "local:tenant.db", "--page-size", "2"])
        .env("AZURE_CLIENT_SECRET", SECRET)
        .env("AZURE_CLIENT_ID", CLIENT)
        .env("AZURE_TENANT_ID", TENANT)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let last = line.starts_with("CRMCTL_CA_FILE=");
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
    let (graph, authority, ca) = (
        env("CRMCTL_GRAPH_URL"),
        env("AZURE_AUTHORITY_HOST"),
        env("CRMCTL_CA_FILE"),
    );
    assert_eq!(env("AZURE_TENANT_ID"), TENANT);
    assert!(
        !printed.join("\n").contains(SECRET),
        "the secret is never printed"
    );
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
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tok = tok["access_token"].as_str().unwrap();
        for upn in ["a@contoso.com", "b@contoso.com", "c@contoso.com"] {
            let r = send(
                &c,
                tok,
                reqwest::Method::POST,
                format!("{graph}/v1.0/users"),
                &new_user(upn),
            )
            .await;
            assert_eq!(r.status(), 201);
        }
        // The default page size is the flag's.
        let body: Value = get_json(&c, tok, format!("{graph}/v1.0/users")).await;
        assert_eq!(body["value"].as_array().unwrap().len(), 2);
        assert!(body["@odata.nextLink"].is_string());
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // The users were written to the local tenant file.
    let local =
        crmctl::provider::local::LocalProvider::open(&dir.path().join("tenant.db")).unwrap();
    assert_eq!(local.observe().unwrap().users.len(), 3);
}

/// A test-only [`Http`] over reqwest (the real transport is another module's): relative
/// URLs against the emulator, a bearer token fetched once, requests run on a runtime of
/// its own (callers use `provider::block_on`, which has no I/O driver).
struct TestHttp {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    token: String,
}

impl TestHttp {
    fn new(emu: &EmulatorHandle) -> TestHttp {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let client = client(emu);
        let token = rt.block_on(token(emu, &client));
        TestHttp {
            rt,
            client,
            base: emu.graph_url().to_string(),
            token,
        }
    }
}

impl crmctl::provider::http::Http for TestHttp {
    fn send<'a>(
        &'a self,
        req: crmctl::provider::http::Request,
    ) -> crmctl::provider::BoxFuture<
        'a,
        Result<crmctl::provider::http::Response, crmctl::provider::ProviderError>,
    > {
        use crmctl::provider::ProviderError;
        let url = if req.url.starts_with("https://") {
            req.url.clone()
        } else {
            format!("{}{}", self.base, req.url)
        };
        let mut rb = self
            .client
            .request(
                reqwest::Method::from_bytes(req.method.as_bytes()).unwrap(),
                url,
            )
            .bearer_auth(&self.token);
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        if let Some(b) = &req.body {
            rb = rb.json(b);
        }
        let idempotent = req.idempotent;
        // Like the real transport (item 3), 429/500/503 (and dropped connections of
        // idempotent requests) are retried a bounded number of times; a dropped
        // non-idempotent request is an unknown outcome.
        let h = self.rt.spawn(async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let last = attempt == 8;
                let r = match rb.try_clone().unwrap().send().await {
                    Ok(r) => r,
                    Err(_) if idempotent && !last => continue,
                    Err(e) if idempotent => return Err(ProviderError::Transient(e.to_string())),
                    Err(e) => return Err(ProviderError::OutcomeUnknown(e.to_string())),
                };
                let status = r.status().as_u16();
                if matches!(status, 429 | 500 | 503) && !last {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let headers = r
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let body = r
                    .bytes()
                    .await
                    .map_err(|e| ProviderError::OutcomeUnknown(e.to_string()))?
                    .to_vec();
                return Ok(crmctl::provider::http::Response {
                    status,
                    headers,
                    body,
                });
            }
        });
        Box::pin(async move { h.await.unwrap() })
    }
}

// issue 12 item 5 (done-when, directory part): the Graph provider applies a directory
// file (users, a group with members, licences, a global admin) against the emulator and
// the next plan has no changes; the emulator's tenant holds exactly what was asked.
#[test]
fn graph_provider_converges_against_the_emulator() {
    converge_directory_file(Faults::default());
}

// issue 12 item 5 (done-when, directory part, with faults): 10% 429/5xx (absorbed by a
// retrying transport, as the real one does), 5% dropped
// answers and replication lag: still converges, no duplicates.
#[test]
fn graph_provider_converges_against_a_faulty_emulator() {
    for seed in [1, 2, 3] {
        converge_directory_file(Faults {
            seed,
            throttle_rate: 0.05,
            retry_after_secs: 0,
            server_error_rate: 0.05,
            drop_rate: 0.05,
            replication_lag: Duration::from_millis(300),
            ..Faults::default()
        });
    }
}

fn converge_directory_file(faults: Faults) {
    use crmctl::provider::graph::GraphProvider;
    use crmctl::provider::Provider as _;
    use std::sync::Arc;
    let t = cli_tenant();
    let emu = start(t, faults);
    let graph = GraphProvider::new(Arc::new(TestHttp::new(&emu))).with_graph_base(emu.graph_url());
    let d = crate::common::desired(
        "licenses: {professional: 5}\n\
         users:\n  u0000@coho.com: {name: u0000, admin_roles: [global_admin]}\n  u0001@coho.com: {name: u0001, admin_roles: [global_admin]}\n\
         \x20 ana@coho.com: {name: Ana, license: professional, admin_roles: [global_admin]}\n  bo@coho.com: {name: Bo, license: professional}\n\
         security_groups:\n  sales: {name: Sales_SG, description: Sales team, members: [ana@coho.com, bo@coho.com, u0000@coho.com]}\n",
    );
    // Observe until a read passes the injected faults (the real transport retries them).
    let observe = |g: &GraphProvider| {
        (0..50)
            .find_map(|_| {
                crmctl::provider::block_on(g.observe(&crmctl::provider::Scope::all()))
                    .unwrap()
                    .ok()
            })
            .expect("an observe passes the faults")
    };
    let state = crmctl::state::State::empty("emulator-test");
    let plan = crmctl::plan::plan(&d, &observe(&graph), &state);
    assert!(!plan.has_errors(), "{:#?}", plan.diagnostics);
    assert!(!plan.actions.is_empty());
    let state = crate::common::apply_on(&plan, &graph, &state, 4).unwrap();
    let after = observe(&graph);
    let again = crmctl::plan::plan(&d, &after, &state);
    assert!(
        again.actions.is_empty(),
        "re-plan not empty: {:#?}",
        crate::common::steps(&again)
    );
    let ana = after
        .users
        .values()
        .find(|u| u.upn == "ana@coho.com")
        .unwrap();
    assert_eq!(
        ana.license,
        Some(crmctl::domain::kinds::LicensePlan::Professional)
    );
    assert_eq!(after.users.len(), 4, "no duplicates");
    let sales = after
        .groups
        .values()
        .find(|g| g.name == "Sales_SG")
        .unwrap();
    assert_eq!(sales.members.len(), 3);
    eprintln!(
        "{} actions, {} Graph requests",
        plan.actions.len(),
        emu.graph_requests()
    );
    assert!(emu.graph_requests() > plan.actions.len() as u64);
}

/// `tenant_with(2)` in the test domain with 5 professional licences: the tests that apply
/// a directory file.
fn cli_tenant() -> Tenant {
    let mut t = tenant_with(2);
    t.domain = crate::common::DOMAIN.to_string();
    t.licenses
        .insert(crmctl::domain::kinds::LicensePlan::Professional, 5);
    t
}

/// `crmctl CMD --backend microsoft -f directory.yaml`, approved (apply) or with
/// `--detailed-exitcode` (plan).
fn cli_args(cmd: &'static str) -> [&'static str; 6] {
    let last = if cmd == "apply" {
        "--auto-approve"
    } else {
        "--detailed-exitcode"
    };
    [cmd, "--backend", "microsoft", "-f", "directory.yaml", last]
}

/// The next plan shows no changes (`--detailed-exitcode` 0); the tenant behind the emulator.
fn no_changes_then_tenant(
    emu: &EmulatorHandle,
    dir: &std::path::Path,
    provider: &dyn crmctl::provider::Provider,
) -> Tenant {
    crmctl_on(emu, dir).args(cli_args("plan")).assert().code(0);
    crmctl::provider::block_on(provider.observe(&crmctl::provider::Scope::all()))
        .unwrap()
        .unwrap()
}

/// `crmctl` pointed at the emulator as at a real tenant: endpoints, the emulator's root and
/// the client credentials from the environment (issue 12 items 1, 2 and 5).
pub(crate) fn crmctl_on(emu: &EmulatorHandle, dir: &std::path::Path) -> assert_cmd::Command {
    let mut c = crate::support::crmctl(dir);
    for (k, v) in emulator_env(emu) {
        c.env(k, v);
    }
    for k in NOT_INHERITED {
        c.env_remove(k);
    }
    c
}

/// Variables that would point a child `crmctl` elsewhere than at the emulator.
const NOT_INHERITED: [&str; 4] = [
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "CRMCTL_CLOUD",
];

/// The emulator's endpoints and root, and the client credentials it accepts.
pub(crate) fn emulator_env(emu: &EmulatorHandle) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = emu
        .env_lines()
        .iter()
        .map(|line| {
            let (k, v) = line.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect();
    env.push(("AZURE_CLIENT_ID".into(), CLIENT.into()));
    env.push(("AZURE_CLIENT_SECRET".into(), SECRET.into()));
    env
}

// issue 12 done-when (directory part, with faults, through the command line and the real
// transport): 10% 429 and 10% 5xx, 5% of the answers to writes dropped after the change was
// made, and 2 s of replication lag. The apply succeeds (the transport and apply retry; a
// lost create is looked up, never sent twice), the next plan shows no changes, and every
// user and the group exist once.
#[test]
fn crmctl_converges_on_a_faulty_emulator_without_duplicates() {
    let t = cli_tenant();
    let mut cfg = EmulatorConfig::new(t, crate::common::DOMAIN, CLIENT, SECRET);
    cfg.faults = Faults {
        seed: 7,
        throttle_rate: 0.1,
        retry_after_secs: 0,
        server_error_rate: 0.1,
        drop_rate: 0.05,
        replication_lag: Duration::from_secs(2),
        ..Faults::default()
    };
    let provider = cfg.provider.clone();
    let emu = Emulator::start(cfg).expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = format!(
        "tenant: {}\nlicenses: {{professional: 5}}\nusers:\n  \
         u0000@coho.com: {{name: u0000, admin_roles: [global_admin]}}\n  \
         u0001@coho.com: {{name: u0001, admin_roles: [global_admin]}}\n",
        crate::common::DOMAIN
    );
    let names: Vec<String> = (0..8).map(|i| format!("user{i}@coho.com")).collect();
    for (i, upn) in names.iter().enumerate() {
        let license = if i < 3 { ", license: professional" } else { "" };
        yaml.push_str(&format!("  {upn}: {{name: User {i}{license}}}\n"));
    }
    yaml.push_str(&format!(
        "security_groups:\n  sales: {{name: Sales_SG, members: [{}]}}\n",
        names.join(", ")
    ));
    std::fs::write(dir.path().join("directory.yaml"), yaml).unwrap();
    crmctl_on(&emu, dir.path())
        .args(cli_args("apply"))
        .assert()
        .success();
    let t = no_changes_then_tenant(&emu, dir.path(), &*provider);
    for upn in &names {
        assert_eq!(
            t.users
                .values()
                .filter(|u| u.upn.eq_ignore_ascii_case(upn))
                .count(),
            1,
            "{upn} exists once"
        );
    }
    let groups: Vec<_> = t.groups.values().filter(|g| g.name == "Sales_SG").collect();
    assert_eq!(groups.len(), 1, "one group");
    assert_eq!(groups[0].members.len(), names.len());
}

// issue 12 done-when (directory part, through the command line): `crmctl apply --backend
// microsoft` signs in at the emulator's token endpoint, applies a directory-only file over
// HTTPS (trusting the emulator's root through CRMCTL_CA_FILE), and the next plan shows no
// changes (`--detailed-exitcode` 0). The client secret appears in no output, no state and
// no saved plan; the state records the Microsoft backend, not a local file.
#[test]
fn crmctl_applies_a_directory_file_to_the_emulator_and_replans_empty() {
    use predicates::prelude::*;
    let t = cli_tenant();
    // The token endpoint knows the tenant by its domain, as Entra ID does.
    let emu = Emulator::start(EmulatorConfig::new(
        t,
        crate::common::DOMAIN,
        CLIENT,
        SECRET,
    ))
    .expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("directory.yaml"),
        format!(
            "tenant: {}\nlicenses: {{professional: 5}}\nusers:\n  \
             u0000@coho.com: {{name: u0000, admin_roles: [global_admin]}}\n  \
             u0001@coho.com: {{name: u0001, admin_roles: [global_admin]}}\n  \
             ana@coho.com: {{name: Ana, license: professional}}\n  \
             bo@coho.com: {{name: Bo, license: professional}}\n\
             security_groups:\n  sales: {{name: Sales_SG, description: Sales team, members: [ana@coho.com, bo@coho.com]}}\n",
            crate::common::DOMAIN
        ),
    )
    .unwrap();
    let apply = crmctl_on(&emu, dir.path())
        .args([
            "apply",
            "--auto-approve",
            "--backend",
            "microsoft",
            "-f",
            "directory.yaml",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("create_user"));
    let out = apply.get_output();
    let replan = crmctl_on(&emu, dir.path())
        .args([
            "plan",
            "--detailed-exitcode",
            "--backend",
            "microsoft",
            "-f",
            "directory.yaml",
            "--out",
            "plan.json",
        ])
        .assert()
        .code(0);
    let state = std::fs::read_to_string(dir.path().join(".crmctl/state.json")).unwrap();
    assert!(
        state.contains("microsoft:coho.onmicrosoft.com"),
        "the state records the backend: {state}"
    );
    let plan = std::fs::read_to_string(dir.path().join("plan.json")).unwrap();
    for text in [
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        String::from_utf8_lossy(&replan.get_output().stdout).to_string(),
        String::from_utf8_lossy(&replan.get_output().stderr).to_string(),
        state,
        plan,
    ] {
        assert!(!text.contains(SECRET), "the secret leaked: {text}");
    }
    assert!(emu.graph_requests() > 0);
}

// issue 12 item 4, through the command line: usage locations from the file are sent on
// create and update (the emulator keeps them in the tenant), a user synchronised from
// on-premises keeps its name with a warning (P1) while its usage location and licence are
// applied, and the next plan shows no changes.
#[test]
fn crmctl_applies_usage_locations_and_leaves_synced_names() {
    use predicates::prelude::*;
    let mut t = cli_tenant();
    t.users.get_mut("u0001").unwrap().synced = true;
    let cfg = EmulatorConfig::new(t, crate::common::DOMAIN, CLIENT, SECRET);
    let provider = cfg.provider.clone();
    let emu = Emulator::start(cfg).expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("directory.yaml"),
        format!(
            "tenant: {}\nlicenses: {{professional: 5}}\nusers:\n  \
             u0000@coho.com: {{name: u0000, usage_location: FR}}\n  \
             u0001@coho.com: {{name: Renamed, usage_location: CA, license: professional}}\n  \
             ana@coho.com: {{name: Ana, usage_location: JP, license: professional}}\n",
            crate::common::DOMAIN
        ),
    )
    .unwrap();
    let applied = crmctl_on(&emu, dir.path())
        .args(cli_args("apply"))
        .assert()
        .success()
        .stdout(predicate::str::contains(r#"usage_location = "US" -> "FR""#));
    let shown = crate::support::all_output(applied.get_output());
    assert!(
        shown.contains("user `u0001@coho.com` is synchronised from an on-premises directory: its name is managed there"),
        "{shown}"
    );
    let t = no_changes_then_tenant(&emu, dir.path(), &*provider);
    let by_upn = |upn: &str| t.users.values().find(|u| u.upn == upn).unwrap().clone();
    assert_eq!(
        by_upn("u0000@coho.com").usage_location.as_deref(),
        Some("FR")
    );
    let synced = by_upn("u0001@coho.com");
    assert_eq!(
        (
            synced.name.as_str(),
            synced.usage_location.as_deref(),
            synced.license
        ),
        (
            "u0001",
            Some("CA"),
            Some(crmctl::domain::kinds::LicensePlan::Professional)
        )
    );
    assert_eq!(by_upn("ana@coho.com").usage_location.as_deref(), Some("JP"));
}

// issue 12 done-when: kill -9 during a large apply against the emulator, then apply again:
// it converges (the next plan is empty) and nothing exists twice. Users created by the
// killed run but not yet in the state are adopted by their UPN, the group by its name.
#[test]
fn kill_9_during_an_apply_against_the_emulator_then_converge() {
    let mut t = tenant_with(2);
    t.domain = crate::common::DOMAIN.to_string();
    let mut cfg = EmulatorConfig::new(t, crate::common::DOMAIN, CLIENT, SECRET);
    cfg.faults = Faults {
        latency: Duration::from_millis(3),
        ..Faults::default()
    };
    let provider = cfg.provider.clone();
    let emu = Emulator::start(cfg).expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..150).map(|i| format!("user{i:03}@coho.com")).collect();
    let mut yaml = format!(
        "tenant: {}\nusers:\n  u0000@coho.com: {{name: u0000, admin_roles: [global_admin]}}\n  u0001@coho.com: {{name: u0001, admin_roles: [global_admin]}}\n",
        crate::common::DOMAIN
    );
    for (i, upn) in names.iter().enumerate() {
        yaml.push_str(&format!("  {upn}: {{name: User {i}}}\n"));
    }
    yaml.push_str(&format!(
        "security_groups:\n  staff: {{name: Staff, members: [{}]}}\n",
        names.join(", ")
    ));
    std::fs::write(dir.path().join("directory.yaml"), yaml).unwrap();
    let args = [
        "apply",
        "--auto-approve",
        "--backend",
        "microsoft",
        "-f",
        "directory.yaml",
    ];
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("crmctl"));
    for k in NOT_INHERITED {
        child.env_remove(k);
    }
    let mut child = child
        .current_dir(dir.path())
        .envs(emulator_env(&emu))
        .env("NO_COLOR", "1")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 once the run has made some of its writes (the token and the reads come first).
    let start = std::time::Instant::now();
    while emu.graph_requests() < 60 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let killed = !child.wait().unwrap().success();
    // The killed run's lock stays, as after any crash: removed by its id.
    let state = dir.path().join(".crmctl/state.json");
    if let Some(info) = crmctl::state::lock::read_lock(&state).unwrap() {
        crate::support::crmctl(dir.path())
            .args(["force-unlock", &info.id])
            .assert()
            .success();
    }
    crmctl_on(&emu, dir.path()).args(args).assert().success();
    crmctl_on(&emu, dir.path())
        .args([
            "plan",
            "--detailed-exitcode",
            "--backend",
            "microsoft",
            "-f",
            "directory.yaml",
        ])
        .assert()
        .code(0);
    let t = crmctl::provider::block_on(provider.observe(&crmctl::provider::Scope::all()))
        .unwrap()
        .unwrap();
    assert_eq!(t.users.len(), names.len() + 2, "no user twice");
    let staff: Vec<_> = t.groups.values().filter(|g| g.name == "Staff").collect();
    assert_eq!(staff.len(), 1, "one group");
    assert_eq!(staff[0].members.len(), names.len());
    if !killed {
        eprintln!("note: the apply finished before the kill");
    }
}

/// An emulator in front of a local tenant file (so that `crmctl local` can play the
/// administrator in the admin center) holding `t`.
fn emulator_on_local_file(t: Tenant) -> (tempfile::TempDir, EmulatorHandle) {
    let (dir, local) = crate::common::local_seeded(t);
    let mut cfg = EmulatorConfig::new(fresh(), crate::common::DOMAIN, CLIENT, SECRET);
    cfg.provider = std::sync::Arc::new(local);
    (dir, Emulator::start(cfg).expect("emulator starts"))
}

const MANUAL_FILE: &str = "tenant: coho.onmicrosoft.com\nlicenses: {professional: 2}\nusers:\n  \
    u0000@coho.com: {name: u0000, admin_roles: [global_admin]}\n  \
    u0001@coho.com: {name: u0001, admin_roles: [global_admin]}\n  \
    ana@coho.com: {name: Ana, license: professional}\n\
    security_groups:\n  sales: {name: Sales_SG, members: [ana@coho.com]}\n";

// issue 13 item 4 and done-when: Graph has no API that buys licences, so on a Microsoft
// tenant the purchase is a manual step. The plan shows it with where to go and the number
// to reach (human and JSON); apply (here of a saved plan) does everything that does not
// depend on it, prints the instructions and stops with exit code 3 without sending the
// purchase; once the tenant shows the licences (an administrator, played by `crmctl
// local`), the next apply finishes and the plan after it is empty.
#[test]
fn a_licence_purchase_is_a_manual_step_applied_in_two_runs() {
    use predicates::prelude::*;
    let mut t = tenant_with(2);
    t.domain = crate::common::DOMAIN.to_string();
    let (tenant_dir, emu) = emulator_on_local_file(t);
    let tenant_db = format!("local:{}", tenant_dir.path().join("tenant.db").display());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.yaml"), MANUAL_FILE).unwrap();
    let plan = crmctl_on(&emu, dir.path())
        .args([
            "plan",
            "--backend",
            "microsoft",
            "-f",
            "d.yaml",
            "--out",
            "p.json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("Manual steps"))
        .stdout(predicate::str::contains(
            "Buy licenses: raise the quantity of professional licenses from 0 to 2",
        ))
        .stdout(predicate::str::contains("CRMSTANDARD"));
    drop(plan);
    let json = crmctl_on(&emu, dir.path())
        .args([
            "plan",
            "--backend",
            "microsoft",
            "-f",
            "d.yaml",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["manual"][0]["done_when"]["check"], "licenses_at_least");
    assert_eq!(json["manual"][0]["done_when"]["count"], 2);

    crmctl_on(&emu, dir.path())
        .args(["apply", "p.json"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("manual step: purchase_licenses"))
        .stderr(predicate::str::contains("then run apply again"));
    // Nothing bought; what does not need the licences is done.
    let seen = crmctl::provider::local::LocalProvider::open(&tenant_dir.path().join("tenant.db"))
        .unwrap()
        .observe()
        .unwrap();
    assert_eq!(
        seen.purchased(crmctl::domain::kinds::LicensePlan::Professional),
        0
    );
    assert!(seen.groups.values().any(|g| g.name == "Sales_SG"));
    let ana = seen
        .users
        .values()
        .find(|u| u.upn == "ana@coho.com")
        .expect("ana created");
    assert_eq!(ana.license, None, "the assignment waits for the purchase");

    // The administrator buys the licences in the admin center.
    crate::support::crmctl(dir.path())
        .env("CRMCTL_BACKEND", &tenant_db)
        .args(["local", "set", "licenses", "professional", "2"])
        .assert()
        .success();
    crmctl_on(&emu, dir.path())
        .args([
            "apply",
            "--auto-approve",
            "--backend",
            "microsoft",
            "-f",
            "d.yaml",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("Manual steps").not());
    crmctl_on(&emu, dir.path())
        .args([
            "plan",
            "--detailed-exitcode",
            "--backend",
            "microsoft",
            "-f",
            "d.yaml",
        ])
        .assert()
        .code(0);
}

// issue 13 item 4: with --wait-manual, apply waits (re-observing the tenant) until the
// manual step shows done, then goes on with what depends on it, in one run.
#[test]
fn apply_waits_for_a_manual_step_and_finishes() {
    let mut t = tenant_with(2);
    t.domain = crate::common::DOMAIN.to_string();
    let (tenant_dir, emu) = emulator_on_local_file(t);
    let tenant_db = format!("local:{}", tenant_dir.path().join("tenant.db").display());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.yaml"), MANUAL_FILE).unwrap();
    let exe = assert_cmd::cargo::cargo_bin("crmctl");
    let mut cmd = std::process::Command::new(exe);
    cmd.current_dir(dir.path()).args([
        "apply",
        "--auto-approve",
        "--backend",
        "microsoft",
        "-f",
        "d.yaml",
        "--wait-manual",
        "2m",
    ]);
    for (k, v) in emulator_env(&emu) {
        cmd.env(k, v);
    }
    for k in NOT_INHERITED {
        cmd.env_remove(k);
    }
    cmd.env_remove("CRMCTL_BACKEND").env_remove("CRMCTL_STATE");
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Wait until the run has done what does not need the licences (it is waiting now).
    let local =
        crmctl::provider::local::LocalProvider::open(&tenant_dir.path().join("tenant.db")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t = local.observe().unwrap();
        if t.groups.values().any(|g| g.name == "Sales_SG") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the apply never got going"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    crate::support::crmctl(dir.path())
        .env("CRMCTL_BACKEND", &tenant_db)
        .args(["local", "set", "licenses", "professional", "2"])
        .assert()
        .success();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("waiting up to 120s"), "{stderr}");
    let t = local.observe().unwrap();
    let ana = t.users.values().find(|u| u.upn == "ana@coho.com").unwrap();
    assert_eq!(
        ana.license,
        Some(crmctl::domain::kinds::LicensePlan::Professional)
    );
}
