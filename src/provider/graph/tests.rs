//! Unit tests of the Graph provider with a fake [`Http`] that records every request and
//! serves recorded-shape answers (issue 12 item 4).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::domain::kinds::{AccessMode, AdminRole, LicensePlan};
use crate::domain::op::ObjRef;
use crate::provider::http::{Request, Response};
use crate::provider::{block_on, ErrorClass, Executed, Outcome};

type Handler = Box<dyn Fn(&Request, usize) -> Result<Response, ProviderError> + Send + Sync>;

/// Records requests; answers with `handler(request, how many requests came before)`.
struct Fake {
    log: Mutex<Vec<Request>>,
    handler: Handler,
}

impl Http for Fake {
    fn send<'a>(&'a self, req: Request) -> BoxFuture<'a, Result<Response, ProviderError>> {
        let n = {
            let mut log = self.log.lock().unwrap();
            log.push(req.clone());
            log.len() - 1
        };
        let out = (self.handler)(&req, n);
        Box::pin(async move { out })
    }
}

fn fake(
    handler: impl Fn(&Request, usize) -> Result<Response, ProviderError> + Send + Sync + 'static,
) -> Arc<Fake> {
    Arc::new(Fake {
        log: Mutex::new(vec![]),
        handler: Box::new(handler),
    })
}

fn provider(f: &Arc<Fake>) -> GraphProvider {
    let http: Arc<dyn Http> = f.clone();
    GraphProvider::new(http).with_consistency(Consistency {
        window: Duration::from_secs(5),
        first_delay: Duration::from_millis(1),
    })
}

fn answer(status: u16, body: Value) -> Result<Response, ProviderError> {
    Ok(Response {
        status,
        headers: vec![],
        body: if body.is_null() {
            vec![]
        } else {
            serde_json::to_vec(&body).unwrap()
        },
    })
}

fn graph_err(status: u16, code: &str, message: &str) -> Result<Response, ProviderError> {
    answer(
        status,
        json!({"error": {"code": code, "message": message, "innerError": {"request-id": "r"}}}),
    )
}

fn r(addr: &str, id: &str) -> ObjRef {
    ObjRef {
        address: addr.into(),
        id: Some(id.to_string()),
    }
}

fn urls(f: &Fake) -> Vec<String> {
    f.log
        .lock()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url))
        .collect()
}

const ORG: &str = "/v1.0/organization?$select=id,countryLetterCode,verifiedDomains";

fn org() -> Result<Response, ProviderError> {
    answer(
        200,
        json!({"value": [{"id": "t", "countryLetterCode": "DE", "verifiedDomains": [
        {"name": "contoso.com", "isInitial": false}, {"name": "contoso.onmicrosoft.com", "isInitial": true}]}]}),
    )
}

// issue 12 item 4: observe reads users (exact $select, $top=999, nextLink verbatim), the
// global admins, subscribedSkus (prepaidUnits.enabled per plan) and security groups with
// their user members through $batch; instances/storage/slots stay empty (next issue).
#[test]
fn observe_reads_the_directory_with_the_documented_requests() {
    let next = "https://graph.microsoft.com/v1.0/users?$select=id&$top=999&$skiptoken=X%27Y";
    let f = fake(move |req, _| {
        match req.url.as_str() {
        ORG => org(),
        "/v1.0/subscribedSkus" => answer(200, json!({"value": [
            {"skuId": "D17B27AF-3F49-4822-99F9-56A661538792", "skuPartNumber": "CRMSTANDARD", "prepaidUnits": {"enabled": 25, "suspended": 0}, "consumedUnits": 3},
            {"skuId": "6fd2c87f-b296-42f0-b197-1e91e994b900", "skuPartNumber": "ENTERPRISEPACK", "prepaidUnits": {"enabled": 100}}]})),
        "/v1.0/users?$select=id,userPrincipalName,displayName,assignedLicenses,accountEnabled,usageLocation,onPremisesSyncEnabled&$top=999" => {
            answer(200, json!({"value": [{"id": "u1", "userPrincipalName": "a@contoso.com", "displayName": "A",
                "usageLocation": "US", "onPremisesSyncEnabled": true,
                "assignedLicenses": [{"skuId": "d17b27af-3f49-4822-99f9-56a661538792", "disabledPlans": []}]}],
                "@odata.nextLink": next}))
        }
        u if u == next => answer(200, json!({"value": [{"id": "u2", "userPrincipalName": "b@contoso.com", "displayName": null, "assignedLicenses": []}]})),
        "/v1.0/groups?$filter=securityEnabled%20eq%20true%20and%20mailEnabled%20eq%20false&$select=id,displayName,description&$top=999" => {
            answer(200, json!({"value": [{"id": "g1", "displayName": "Sales", "description": null}, {"id": "g2", "displayName": "Ops", "description": "d"}]}))
        }
        "/v1.0/$batch" if req.body.as_ref().unwrap()["requests"][0]["url"].as_str().unwrap().starts_with("/directoryRoles/") => {
            // P6: the five admin roles in one batch; the billing role never activated (404).
            let reqs = req.body.as_ref().unwrap()["requests"].as_array().unwrap().clone();
            assert_eq!(reqs.len(), 5);
            assert_eq!(reqs[0]["url"], "/directoryRoles/roleTemplateId=62e90394-69f5-4237-9190-012177145e10/members?$select=id");
            answer(200, json!({"responses": [
                {"id": "1", "status": 200, "body": {"value": [{"@odata.type": "#microsoft.graph.user", "id": "u2"}]}},
                {"id": "2", "status": 404, "body": {"error": {"code": "Request_ResourceNotFound", "message": "no role"}}},
                {"id": "3", "status": 200, "body": {"value": []}},
                {"id": "4", "status": 200, "body": {"value": [{"@odata.type": "#microsoft.graph.user", "id": "u2"}, {"@odata.type": "#microsoft.graph.servicePrincipal", "id": "sp"}]}},
                {"id": "5", "status": 200, "body": {"value": []}}]}))
        }
        "/v1.0/$batch" => {
            let reqs = req.body.as_ref().unwrap()["requests"].as_array().unwrap().clone();
            assert_eq!(reqs.len(), 2);
            assert_eq!(reqs[0]["url"], "/groups/g1/members?$select=id&$top=999");
            assert_eq!(reqs[0]["method"], "GET");
            // answers out of order, one of them throttled: that group is read alone.
            answer(200, json!({"responses": [
                {"id": "2", "status": 429, "headers": {"Retry-After": "1"}, "body": {"error": {"code": "TooManyRequests", "message": "slow"}}},
                {"id": "1", "status": 200, "body": {"value": [{"@odata.type": "#microsoft.graph.user", "id": "u1"}, {"@odata.type": "#microsoft.graph.device", "id": "d1"}], "@odata.nextLink": "https://graph.microsoft.com/v1.0/groups/g1/members?$skiptoken=Z"}}]}))
        }
        "/v1.0/groups/g2/members?$select=id&$top=999" => answer(200, json!({"value": [{"id": "u2"}]})),
        "https://graph.microsoft.com/v1.0/groups/g1/members?$skiptoken=Z" => answer(200, json!({"value": [{"@odata.type": "#microsoft.graph.user", "id": "u3"}]})),
        other => panic!("unexpected request {other}"),
    }
    });
    let t = block_on(provider(&f).observe(&Scope::all()))
        .unwrap()
        .unwrap();
    assert_eq!(t.domain, "contoso.onmicrosoft.com");
    assert_eq!(t.licenses.get(&LicensePlan::Professional), Some(&25));
    assert_eq!(t.licenses.len(), 1);
    assert_eq!(t.users["u1"].license, Some(LicensePlan::Professional));
    assert_eq!(t.users["u1"].access_mode, AccessMode::ReadWrite);
    assert!(t.users["u1"].admin_roles.is_empty());
    assert_eq!(
        t.users["u2"].admin_roles,
        [AdminRole::GlobalAdmin, AdminRole::ServiceAdmin].into()
    );
    assert_eq!(t.users["u2"].name, "");
    // issue 12 item 4: usageLocation and onPremisesSyncEnabled (null: a cloud user).
    assert_eq!(t.users["u1"].usage_location.as_deref(), Some("US"));
    assert!(t.users["u1"].synced);
    assert_eq!(
        (t.users["u2"].usage_location.as_ref(), t.users["u2"].synced),
        (None, false)
    );
    assert_eq!(
        t.groups["g1"].members,
        ["u1".to_string(), "u3".to_string()].into()
    );
    assert_eq!(t.groups["g2"].members, ["u2".to_string()].into());
    assert_eq!(t.groups["g2"].description, "d");
    assert!(t.instances.is_empty() && t.slots == Default::default());
    assert!(
        urls(&f).contains(&format!("GET {next}")),
        "nextLink followed verbatim"
    );
}

// issue 12 item 4: adding 45 members sends PATCH members@odata.bind in chunks of 20
// (20, 20, 5) inside one $batch; removals are DELETE .../members/{id}/$ref, never without
// /$ref; a 404 on removal means already removed.
#[test]
fn membership_changes_chunk_by_20_and_remove_by_ref() {
    let f = fake(|req, _| {
        assert_eq!(req.url, "/v1.0/$batch");
        let reqs = req.body.as_ref().unwrap()["requests"]
            .as_array()
            .unwrap()
            .clone();
        assert!(reqs.len() <= 20);
        let responses: Vec<Value> = reqs
            .iter()
            .map(|it| json!({"id": it["id"], "status": if it["method"] == "DELETE" && it["url"].as_str().unwrap().contains("/u3/") { 404 } else { 204 }}))
            .collect();
        answer(200, json!({ "responses": responses }))
    });
    let users: Vec<ObjRef> = (0..45)
        .map(|i| r(&format!("users.u{i}"), &format!("id{i}")))
        .collect();
    let ops = vec![
        Op::AddGroupMembers {
            group: r("groups.g", "g1"),
            users,
        },
        Op::RemoveGroupMembers {
            group: r("groups.g", "g1"),
            users: vec![r("users.a", "u3"), r("users.b", "u4")],
        },
    ];
    let p = provider(&f);
    assert_eq!(p.family(&ops[0]), MEMBERSHIP);
    assert_eq!(p.family(&ops[1]).max_ops, 20);
    let out = block_on(p.execute_batch(&ops)).unwrap();
    assert!(
        out.iter().all(|o| matches!(o, Ok(Executed::Done(_)))),
        "{out:?}"
    );
    let log = f.log.lock().unwrap();
    assert_eq!(log.len(), 1, "5 requests fit in one $batch");
    let items = log[0].body.as_ref().unwrap()["requests"]
        .as_array()
        .unwrap()
        .clone();
    let sizes: Vec<usize> = items
        .iter()
        .filter(|i| i["method"] == "PATCH")
        .map(|i| {
            assert_eq!(i["url"], "/groups/g1");
            assert_eq!(i["headers"]["Content-Type"], "application/json");
            i["body"]["members@odata.bind"].as_array().unwrap().len()
        })
        .collect();
    assert_eq!(sizes, vec![20, 20, 5]);
    assert_eq!(
        items[0]["body"]["members@odata.bind"][0],
        "https://graph.microsoft.com/v1.0/directoryObjects/id0"
    );
    let deletes: Vec<&str> = items
        .iter()
        .filter(|i| i["method"] == "DELETE")
        .map(|i| i["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        deletes,
        vec!["/groups/g1/members/u3/$ref", "/groups/g1/members/u4/$ref"]
    );
}

// issue 12 item 4: one chunk refused (403) and one done: Partial with each failed member.
#[test]
fn a_failed_chunk_makes_the_op_partial() {
    let f = fake(|req, _| {
        let reqs = req.body.as_ref().unwrap()["requests"]
            .as_array()
            .unwrap()
            .clone();
        let responses: Vec<Value> = reqs
            .iter()
            .map(|it| if it["id"] == "2" {
                json!({"id": "2", "status": 403, "body": {"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}}})
            } else {
                json!({"id": it["id"], "status": 204})
            })
            .collect();
        answer(200, json!({ "responses": responses }))
    });
    let users: Vec<ObjRef> = (0..25)
        .map(|i| r(&format!("users.u{i}"), &format!("id{i}")))
        .collect();
    let op = Op::AddGroupMembers {
        group: r("groups.g", "g1"),
        users,
    };
    match block_on(provider(&f).execute(&op)).unwrap() {
        Err(ProviderError::Partial {
            done,
            total,
            failed,
        }) => {
            assert_eq!((done, total, failed.len()), (20, 25, 5));
            assert_eq!(failed[0].item, "users.u20");
            assert_eq!(failed[0].error.class(), ErrorClass::Permanent);
        }
        other => panic!("{other:?}"),
    }
}

// issue 12 item 4 (P1): a new user gets a random temporary password it must change, the
// mailNickname from its UPN and the tenant's country as usageLocation; the password is in
// no outcome and no error (a duplicate UPN is refused with P1).
#[test]
fn create_user_sends_a_secret_password_that_never_leaks() {
    for dup in [false, true] {
        let f = fake(move |req, _| match (req.method, req.url.as_str()) {
            ("GET", ORG) => org(),
            ("POST", "/v1.0/users") if dup => graph_err(
                400,
                "Request_BadRequest",
                "Another object with the same value for property userPrincipalName already exists.",
            ),
            ("POST", "/v1.0/users") => answer(
                201,
                json!({"id": "new-user", "userPrincipalName": "jo.doe@contoso.com"}),
            ),
            (m, u) => panic!("unexpected {m} {u}"),
        });
        let op = Op::CreateUser {
            upn: "jo.doe@contoso.com".into(),
            name: "Jo Doe".into(),
            access_mode: AccessMode::ReadWrite,
            usage_location: None,
            application_id: None,
        };
        let out = block_on(provider(&f).execute(&op)).unwrap();
        let log = f.log.lock().unwrap();
        let post = log.iter().find(|r| r.method == "POST").unwrap();
        assert!(!post.idempotent);
        let body = post.body.as_ref().unwrap();
        assert_eq!(body["mailNickname"], "jo.doe");
        assert_eq!(body["usageLocation"], "DE");
        assert_eq!(body["accountEnabled"], true);
        assert_eq!(
            body["passwordProfile"]["forceChangePasswordNextSignIn"],
            true
        );
        let password = body["passwordProfile"]["password"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(password.len(), 20);
        let shown = format!(
            "{out:?} {}",
            out.as_ref()
                .map(|_| String::new())
                .unwrap_or_else(|e| e.to_string())
        );
        assert!(!shown.contains(&password), "the password leaked: {shown}");
        if dup {
            assert!(
                matches!(&out, Err(ProviderError::Refused { rule, .. }) if rule == "P1"),
                "{out:?}"
            );
        } else {
            assert_eq!(out, Ok(Executed::Done(Outcome::created("new-user"))));
        }
    }
    // Two passwords differ.
    assert_ne!(
        execute::temporary_password().unwrap(),
        execute::temporary_password().unwrap()
    );
}

// issue 12 item 4: a create whose answer was lost is looked up by its natural key before
// anything else: found = created once; not found = still unknown (never a second POST).
#[test]
fn a_lost_create_is_looked_up_by_natural_key() {
    for found in [true, false] {
        let f = fake(move |req, _| {
            match (req.method, req.url.as_str()) {
            ("POST", "/v1.0/groups") => Err(ProviderError::OutcomeUnknown("connection reset".into())),
            ("GET", "/v1.0/groups?$filter=displayName%20eq%20'Sales%20%26%20Ops''%20EU'%20and%20securityEnabled%20eq%20true&$select=id") => {
                answer(200, json!({"value": if found { json!([{"id": "g9"}]) } else { json!([]) }}))
            }
            (m, u) => panic!("unexpected {m} {u}"),
        }
        });
        let op = Op::CreateGroup {
            name: "Sales & Ops' EU".into(),
            description: String::new(),
        };
        let out = block_on(provider(&f).execute(&op)).unwrap();
        if found {
            assert_eq!(out, Ok(Executed::Done(Outcome::created("g9"))));
        } else {
            assert!(
                matches!(out, Err(ProviderError::OutcomeUnknown(_))),
                "{out:?}"
            );
        }
        assert_eq!(urls(&f).iter().filter(|u| u.starts_with("POST")).count(), 1);
        let log = f.log.lock().unwrap();
        let body = log[0].body.as_ref().unwrap();
        assert_eq!(body["securityEnabled"], true);
        assert_eq!(body["mailEnabled"], false);
        assert!(
            body.get("description").is_none(),
            "Graph refuses an empty description"
        );
    }
}

// issue 12 item 4: Graph error bodies and statuses map to the provider's error classes.
#[test]
fn graph_errors_map_to_classes() {
    // status, code, message, Retry-After, class, delay
    type Case<'a> = (
        u16,
        &'a str,
        &'a str,
        Option<&'a str>,
        ErrorClass,
        Option<Duration>,
    );
    let cases: [Case; 8] = [
        (
            429,
            "TooManyRequests",
            "slow down",
            Some("2.5"),
            ErrorClass::Throttled,
            Some(Duration::from_millis(2500)),
        ),
        (
            409,
            "Request_MultipleObjectsWithSameKeyValue",
            "conflict",
            None,
            ErrorClass::Conflict,
            None,
        ),
        (
            412,
            "PreconditionFailed",
            "etag",
            None,
            ErrorClass::Conflict,
            None,
        ),
        (
            503,
            "serviceNotAvailable",
            "later",
            Some("3"),
            ErrorClass::Transient,
            None,
        ),
        (
            500,
            "generalException",
            "oops",
            None,
            ErrorClass::Transient,
            None,
        ),
        (
            404,
            "Request_ResourceNotFound",
            "Resource 'x' does not exist",
            None,
            ErrorClass::Permanent,
            None,
        ),
        (
            400,
            "Request_BadRequest",
            "Invalid value specified for property 'displayName'",
            None,
            ErrorClass::Permanent,
            None,
        ),
        (
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges",
            None,
            ErrorClass::Permanent,
            None,
        ),
    ];
    for (status, code, message, after, class, delay) in cases {
        let mut resp = graph_err(status, code, message).unwrap();
        if let Some(a) = after {
            resp.headers.push(("retry-after".into(), a.into()));
        }
        let e = wire::graph_error(&resp, "updating user u1");
        assert_eq!(e.class(), class, "{status} {code}: {e}");
        assert_eq!(e.retry_after(), delay, "{status}");
        assert!(e.to_string().contains(code), "{e}");
    }
    let dup = graph_err(
        400,
        "Request_BadRequest",
        "Another object with the same value for property userPrincipalName already exists.",
    )
    .unwrap();
    assert!(
        matches!(wire::graph_error(&dup, "x"), ProviderError::Refused { rule, .. } if rule == "P1")
    );
}

// issue 12 item 4: eventual consistency: adding members to a group this process just
// created retries its "not found" within the window; the same answer for an object it did
// not create fails at once.
#[test]
fn a_just_created_group_is_retried_within_the_window() {
    for just_created in [true, false] {
        let f = fake(|req, n| match (req.method, req.url.as_str()) {
            ("POST", "/v1.0/groups") => answer(201, json!({"id": "g1"})),
            ("POST", "/v1.0/$batch") => answer(
                200,
                json!({"responses": [{"id": "1", "status": 404, "body": {"error": {"code": "Request_ResourceNotFound", "message": "Resource 'g1' does not exist"}}}]}),
            ),
            ("POST", "/v1.0/groups/g1/members/$ref") if n < 4 => graph_err(
                404,
                "Request_ResourceNotFound",
                "Resource 'g1' does not exist",
            ),
            ("POST", "/v1.0/groups/g1/members/$ref") => {
                assert_eq!(
                    req.body.as_ref().unwrap()["@odata.id"],
                    "https://graph.microsoft.com/v1.0/directoryObjects/u1"
                );
                answer(204, Value::Null)
            }
            (m, u) => panic!("unexpected {m} {u}"),
        });
        let p = provider(&f);
        if just_created {
            let op = Op::CreateGroup {
                name: "Sales".into(),
                description: "d".into(),
            };
            block_on(p.execute(&op)).unwrap().unwrap();
        }
        let op = Op::AddGroupMembers {
            group: r("groups.sales", "g1"),
            users: vec![r("users.a", "u1")],
        };
        let out = block_on(p.execute(&op)).unwrap();
        if just_created {
            assert_eq!(out, Ok(Executed::Done(Outcome::default())));
        } else {
            assert!(matches!(out, Err(ProviderError::NotFound(_))), "{out:?}");
        }
    }
}

// issue 12 item 4: buying licences has no API: refused with what to do by hand;
// instance ops are the next issue's.
#[test]
fn purchases_and_instance_ops_are_refused_with_guidance() {
    let f = fake(|req, _| panic!("no request expected: {}", req.url));
    let p = provider(&f);
    let e = block_on(p.execute(&Op::PurchaseLicenses {
        plan: LicensePlan::Basic,
        to: 30,
    }))
    .unwrap()
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("Microsoft 365 admin center")
            && text.contains("CRMPLAN2")
            && text.contains("30"),
        "{text}"
    );
    let e = block_on(p.execute(&Op::DeleteInstance {
        instance: r("instances.x", "i1"),
    }))
    .unwrap()
    .unwrap_err();
    assert!(e.to_string().contains("Power Platform"), "{e}");
}

// issue 12 item 4: assigning a plan reads the user's licences, then one assignLicense adds
// the plan's SKU and removes crmctl's other SKU (T3), leaving other products alone.
#[test]
fn assign_license_swaps_the_crm_sku_only() {
    let f = fake(|req, _| match (req.method, req.url.as_str()) {
        ("GET", "/v1.0/users/u1?$select=id,assignedLicenses") => answer(
            200,
            json!({"id": "u1", "assignedLicenses": [
            {"skuId": "906af65a-2970-46d5-9b58-4e9aa50f0657", "disabledPlans": []},
            {"skuId": "6fd2c87f-b296-42f0-b197-1e91e994b900", "disabledPlans": []}]}),
        ),
        ("POST", "/v1.0/users/u1/assignLicense") => {
            assert_eq!(
                req.body.as_ref().unwrap(),
                &json!({
                "addLicenses": [{"skuId": "d17b27af-3f49-4822-99f9-56a661538792", "disabledPlans": []}],
                "removeLicenses": ["906af65a-2970-46d5-9b58-4e9aa50f0657"]})
            );
            answer(200, json!({"id": "u1"}))
        }
        (m, u) => panic!("unexpected {m} {u}"),
    });
    let op = Op::AssignLicense {
        user: r("users.a", "u1"),
        plan: LicensePlan::Professional,
    };
    assert_eq!(
        block_on(provider(&f).execute(&op)).unwrap(),
        Ok(Executed::Done(Outcome::default()))
    );
    assert_eq!(f.log.lock().unwrap().len(), 2);
}

// issue 12 item 4, P6: each admin role on/off through its role template's members/$ref
// (already a member and not a member are done); a role the tenant never activated is
// activated (POST /directoryRoles) and the add sent again.
#[test]
fn admin_roles_are_added_and_removed_by_ref() {
    const GA: &str =
        "/v1.0/directoryRoles/roleTemplateId=62e90394-69f5-4237-9190-012177145e10/members";
    const BILLING: &str =
        "/v1.0/directoryRoles/roleTemplateId=b0f54661-2d74-4c50-afa3-1ec803f12efe/members";
    let activated = std::sync::atomic::AtomicBool::new(false);
    let f = fake(move |req, _| {
        let url = req.url.as_str();
        match req.method {
            "POST" if url == format!("{GA}/$ref") => graph_err(400, "Request_BadRequest", "One or more added object references already exist for the following modified properties: 'members'."),
            "POST" if url == format!("{BILLING}/$ref") => {
                if activated.load(std::sync::atomic::Ordering::SeqCst) {
                    answer(204, Value::Null)
                } else {
                    graph_err(404, "Request_ResourceNotFound", "Resource 'roleTemplateId=b0f54661' does not exist.")
                }
            }
            "POST" if url == "/v1.0/directoryRoles" => {
                assert_eq!(req.body.as_ref().unwrap()["roleTemplateId"], "b0f54661-2d74-4c50-afa3-1ec803f12efe");
                activated.store(true, std::sync::atomic::Ordering::SeqCst);
                answer(201, json!({"id": "r-billing"}))
            }
            "DELETE" if url.starts_with("/v1.0/directoryRoles/roleTemplateId=") && url.ends_with("/members/u1/$ref") => {
                if url.starts_with(GA) { answer(204, Value::Null) } else { graph_err(404, "Request_ResourceNotFound", "not a member") }
            }
            m => panic!("unexpected {m} {url}"),
        }
    });
    let p = provider(&f);
    for roles in [
        vec![AdminRole::GlobalAdmin],
        vec![],
        vec![AdminRole::BillingAdmin],
    ] {
        let op = Op::UpdateUser {
            user: r("users.a", "u1"),
            name: None,
            admin_roles: Some(roles),
            upn: None,
            usage_location: None,
        };
        assert_eq!(
            block_on(p.execute(&op)).unwrap(),
            Ok(Executed::Done(Outcome::default()))
        );
    }
    let log = urls(&f);
    // 5 requests per op, plus the activation and the second add of the billing role.
    assert_eq!(log.len(), 17, "{log:#?}");
    assert!(
        log.contains(&"POST /v1.0/directoryRoles".to_string()),
        "{log:#?}"
    );
}

// issue 12 item 4: the file's usage location goes into POST /users (no GET /organization
// needed) and PATCH /users/{id} (user-post-users, user-update: `usageLocation`); a licence
// refused for want of one says which file field to set.
#[test]
fn usage_location_is_sent_on_create_and_update() {
    let f = fake(|req, _| match (req.method, req.url.as_str()) {
        ("POST", "/v1.0/users") => answer(201, json!({"id": "new-user"})),
        ("PATCH", "/v1.0/users/u1") => answer(204, Value::Null),
        ("GET", "/v1.0/users/u1?$select=id,assignedLicenses") => {
            answer(200, json!({"id": "u1", "assignedLicenses": []}))
        }
        ("POST", "/v1.0/users/u1/assignLicense") => graph_err(
            400,
            "Request_BadRequest",
            "License assignment cannot be done for user with invalid usage location.",
        ),
        (m, u) => panic!("unexpected {m} {u}"),
    });
    let p = provider(&f);
    let create = Op::CreateUser {
        upn: "jo@contoso.com".into(),
        name: "Jo".into(),
        access_mode: AccessMode::ReadWrite,
        usage_location: Some("JP".into()),
        application_id: None,
    };
    block_on(p.execute(&create)).unwrap().unwrap();
    let update = Op::UpdateUser {
        user: r("users.a@contoso.com", "u1"),
        name: None,
        admin_roles: None,
        upn: None,
        usage_location: Some("GB".into()),
    };
    block_on(p.execute(&update)).unwrap().unwrap();
    {
        let log = f.log.lock().unwrap();
        assert_eq!(log.len(), 2, "no GET /organization: {:?}", urls(&f));
        assert_eq!(log[0].body.as_ref().unwrap()["usageLocation"], "JP");
        assert_eq!(
            log[1].body.as_ref().unwrap(),
            &json!({"usageLocation": "GB"})
        );
    }
    let assign = Op::AssignLicense {
        user: r("users.a@contoso.com", "u1"),
        plan: LicensePlan::Professional,
    };
    match block_on(p.execute(&assign)).unwrap() {
        Err(ProviderError::Invalid(m)) => {
            assert!(
                m.contains("users.a@contoso.com") && m.contains("`usage_location`"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}
