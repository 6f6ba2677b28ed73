//! Unit tests of the Dataverse client (issue 13 item 2) against a scripted [`Http`]: the
//! requests it sends (URLs, headers, bodies) and what it reads from recorded-shape
//! answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::domain::kinds::{InstanceType, Region};
use crate::domain::op::{ObjRef, Op};
use crate::observed::{InstanceStatus, User};
use crate::provider::http::{Request, Response};
use crate::provider::{block_on, BoxFuture, Executed};

const BASE: &str = "https://contoso.crm4.dynamics.com";
const ROOT: &str = "bu000000-0000-0000-0000-000000000001";
const ALICE: &str = "aaaaaaaa-0000-0000-0000-000000000001";

/// A route: method, URL fragment, replies in turn.
type Route = (&'static str, String, Vec<(u16, Value)>);

/// Answers by the first route whose method and URL fragment match; each route answers
/// its list of replies in turn (the last one again when used up). Logs every request.
#[derive(Default)]
struct Script {
    routes: Mutex<Vec<Route>>,
    seen: Mutex<Vec<Request>>,
}

impl Script {
    fn on(self, method: &'static str, fragment: &str, replies: Vec<(u16, Value)>) -> Script {
        self.routes
            .lock()
            .unwrap()
            .push((method, fragment.to_string(), replies));
        self
    }

    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

impl Http for Script {
    fn send<'a>(&'a self, req: Request) -> BoxFuture<'a, Result<Response, ProviderError>> {
        self.seen.lock().unwrap().push(req.clone());
        let mut routes = self.routes.lock().unwrap();
        let hit = routes
            .iter_mut()
            .find(|(m, frag, _)| *m == req.method && req.url.contains(frag.as_str()));
        let (status, body) = match hit {
            Some((_, _, replies)) if replies.len() > 1 => replies.remove(0),
            Some((_, _, replies)) => replies[0].clone(),
            None => (
                404,
                json!({"error": {"code": "0x80060888", "message": "no route"}}),
            ),
        };
        let resp = Response {
            status,
            headers: vec![("retry-after".into(), "7".into())],
            body: if body.is_null() {
                vec![]
            } else {
                body.to_string().into_bytes()
            },
        };
        Box::pin(async move { Ok(resp) })
    }
}

/// An instance that answers only its root business unit.
fn root_unit() -> Script {
    Script::default().on(
        "GET",
        "/businessunits?",
        vec![(200, json!({"value": [{"businessunitid": ROOT}]}))],
    )
}

/// The answers of an instance with Alice (two roles, one in another business unit), an
/// application user and the SYSTEM account (no object id).
fn instance_script() -> Script {
    root_unit()
        .on(
            "GET",
            "/organizations?",
            vec![(200, json!({"value": [{"languagecode": 1036, "_basecurrencyid_value": "c0000000-0000-0000-0000-000000000001"}]}))],
        )
        .on(
            "GET",
            "/transactioncurrencies(c0000000-0000-0000-0000-000000000001)",
            vec![(200, json!({"isocurrencycode": "EUR"}))],
        )
        .on(
            "GET",
            "/systemusers?",
            vec![(
                200,
                json!({"value": [
                    {"systemuserid": "s1", "azureactivedirectoryobjectid": ALICE, "domainname": "alice@contoso.com", "accessmode": 0,
                     "modifiedon": "2024-03-15T16:21:58Z", "_modifiedby_value": "S3",
                     "systemuserroles_association": [
                        {"roleid": "r1", "name": "Salesperson", "_businessunitid_value": ROOT},
                        {"roleid": "r9", "name": "Salesperson", "_businessunitid_value": "child-bu"}]},
                    {"systemuserid": "s2", "azureactivedirectoryobjectid": "app-sp-1", "accessmode": 4, "applicationid": "app-1",
                     "_modifiedby_value": "s9", "_modifiedby_value@OData.Community.Display.V1.FormattedValue": "Ana Admin",
                     "systemuserroles_association": []},
                    {"systemuserid": "s3", "azureactivedirectoryobjectid": null, "domainname": "SYSTEM", "accessmode": 0}
                ]}),
            )],
        )
}

/// The variant of an error, for tables.
fn variant(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::Refused { .. } => "refused",
        ProviderError::NotFound(_) => "not found",
        ProviderError::Invalid(_) => "invalid",
        ProviderError::Conflict { .. } => "conflict",
        ProviderError::Throttled { .. } => "throttled",
        ProviderError::Transient(_) => "transient",
        ProviderError::OutcomeUnknown(_) => "outcome unknown",
        ProviderError::Backend(_) => "backend",
        ProviderError::Partial { .. } => "partial",
    }
}

fn client(s: &Arc<Script>) -> DataverseClient {
    let http: Arc<dyn Http> = s.clone();
    DataverseClient::new(http, PUBLIC_TEMPLATE).with_sync_wait(SyncWait {
        window: Duration::from_millis(40),
        first_delay: Duration::from_millis(5),
    })
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn alice() -> ObjRef {
    ObjRef {
        address: "users.alice@contoso.com".into(),
        id: Some(ALICE.into()),
    }
}

fn inst_ref() -> ObjRef {
    ObjRef {
        address: "instances.europe".into(),
        id: Some("env-1".into()),
    }
}

// issue 13 item 2: observe reads the root business unit, the organisation (language,
// currency) and the users with their roles, paged at the largest page, with Dataverse's
// OData headers and the instance's own token scope; SYSTEM (no object id) is left out,
// roles of other business units too, an application user is `application` (P3).
#[test]
fn observe_reads_users_roles_currency_and_language() {
    let s = Arc::new(instance_script());
    let found = block_on(client(&s).observe_base(BASE)).unwrap().unwrap();
    assert_eq!(found.root_business_unit, ROOT);
    assert_eq!(found.currency.as_deref(), Some("EUR"));
    assert_eq!(found.language, Some(1036));
    assert_eq!(found.users.len(), 1, "{:?}", found.users);
    let a = &found.users[ALICE];
    assert_eq!(a.id, "s1");
    assert_eq!(
        a.roles,
        BTreeMap::from([("Salesperson".to_string(), "r1".to_string())])
    );
    assert_eq!(a.mode(), Some(AccessMode::ReadWrite));
    // P3: an application user apart, by application id (lower case).
    assert_eq!(found.apps["app-1"].mode(), Some(AccessMode::Application));
    assert_eq!(found.apps["app-1"].object_id, "app-sp-1");
    // Issue 14 item 2: the modifier by its principal name from the same listing (ids
    // compared without case), else the formatted value; `modifiedon` as given.
    let c = a.changed.as_ref().unwrap();
    assert_eq!(c.by.as_deref(), Some("SYSTEM"));
    assert_eq!(c.at.as_deref(), Some("2024-03-15T16:21:58Z"));
    let c = found.apps["app-1"].changed.as_ref().unwrap();
    assert_eq!(
        (c.by.as_deref(), c.at.as_deref()),
        (Some("Ana Admin"), None)
    );
    let seen = s.seen();
    assert_eq!(seen.len(), 4, "four requests for one page of users");
    for r in &seen {
        assert_eq!(r.method, "GET");
        assert!(
            r.url.starts_with(&format!("{BASE}/api/data/v9.2/")),
            "{}",
            r.url
        );
        assert_eq!(
            r.service,
            crate::provider::http::Service::Dataverse("contoso.crm4.dynamics.com".into())
        );
        assert_eq!(header(r, "OData-Version"), Some("4.0"));
        assert_eq!(header(r, "OData-MaxVersion"), Some("4.0"));
        assert_eq!(header(r, "Accept"), Some("application/json"));
    }
    let users = seen
        .iter()
        .find(|r| r.url.contains("/systemusers?"))
        .unwrap();
    // Issue 14 item 2: the list asks for formatted values (the modifier's name).
    assert_eq!(
        header(users, "Prefer"),
        Some(format!("odata.maxpagesize=5000,{}", wire::FORMATTED_VALUES).as_str())
    );
    assert!(users.url.contains(&format!("$select={USER_SELECT}")));
    assert!(users.url.contains(&format!("$expand={ROLES_EXPAND}")));
    assert!(seen[0]
        .url
        .contains("_parentbusinessunitid_value%20eq%20null"));
}

// issue 13 item 2: a next link is followed verbatim, and a client's page size is asked.
#[test]
fn observe_follows_next_links() {
    let next = format!("{BASE}/api/data/v9.2/systemusers?$skiptoken=2");
    let s = Arc::new(
        instance_script().on(
            "GET",
            "$skiptoken=2",
            vec![(200, json!({"value": [{"systemuserid": "s4", "azureactivedirectoryobjectid": "bob", "accessmode": 1}]}))],
        ),
    );
    // The first page points at the second.
    s.routes.lock().unwrap()[3].2[0].1["@odata.nextLink"] = json!(next);
    s.routes.lock().unwrap().swap(3, 4);
    let found = block_on(client(&s).with_page_size(2).observe_base(BASE))
        .unwrap()
        .unwrap();
    assert_eq!((found.users.len(), found.apps.len()), (2, 1));
    assert_eq!(found.users["bob"].mode(), Some(AccessMode::Administrative));
    let seen = s.seen();
    assert!(seen.iter().any(|r| r.url == next));
    assert!(seen
        .iter()
        .filter(|r| r.url.contains("systemusers"))
        .all(|r| header(r, "Prefer")
            .is_some_and(|p| p.starts_with("odata.maxpagesize=2,odata.include-annotations="))));
}

// issue 13 item 2: assigning sends one `$ref` POST per missing role (a held role is not
// sent again), role ids looked up by name in the root business unit in one request.
#[test]
fn assign_roles_associates_only_missing_roles() {
    let s = Arc::new(
        instance_script()
            .on(
                "GET",
                "/roles?",
                vec![(200, json!({"value": [{"roleid": "r2", "name": "O'Brien Role", "_businessunitid_value": ROOT}]}))],
            )
            .on("POST", "/systemuserroles_association/$ref", vec![(204, Value::Null)]),
    );
    let op = Op::AssignRoles {
        user: alice(),
        instance: inst_ref(),
        roles: vec!["Salesperson".into(), "O'Brien Role".into()],
    };
    let out = block_on(client(&s).execute(&op, BASE)).unwrap().unwrap();
    let Executed::Done(out) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        out.ids.get("instance:env-1").map(String::as_str),
        Some("s1")
    );
    let seen = s.seen();
    let lookup = seen.iter().find(|r| r.url.contains("/roles?")).unwrap();
    assert!(
        lookup.url.contains(&format!(
            "_businessunitid_value%20eq%20{ROOT}%20and%20(name%20eq%20'O''Brien%20Role')"
        )),
        "{}",
        lookup.url
    );
    let posts: Vec<&Request> = seen.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1, "Salesperson is held already");
    assert_eq!(
        posts[0].url,
        format!("{BASE}/api/data/v9.2/systemusers(s1)/systemuserroles_association/$ref")
    );
    assert_eq!(
        posts[0].body,
        Some(json!({"@odata.id": format!("{BASE}/api/data/v9.2/roles(r2)")}))
    );
}

// P3, issue 13 item 2: an application user's create answered "duplicate key" (another
// step created it since this one looked) is that user, looked up again; the create is
// sent once.
#[test]
fn application_user_create_answered_duplicate_key_is_the_user_made_meanwhile() {
    const APP: &str = "0a0b0c0d-1111-2222-3333-444455556666";
    let made = json!({"value": [{"systemuserid": "s7", "azureactivedirectoryobjectid": "app-sp-7",
        "accessmode": 4, "applicationid": APP, "internalemailaddress": "bot@contoso.com",
        "systemuserroles_association": []}]});
    let s = Arc::new(
        root_unit()
            .on(
                "GET",
                "/systemusers?",
                vec![(200, json!({"value": []})), (200, made)],
            )
            .on(
                "POST",
                "/systemusers",
                vec![(
                    400,
                    json!({"error": {"code": "0x80040237", "message": "Cannot insert duplicate key."}}),
                )],
            ),
    );
    let su = block_on(client(&s).ensure_app_user(BASE, APP, "bot@contoso.com", "Bot"))
        .unwrap()
        .expect("the user made meanwhile");
    assert_eq!(su.id, "s7");
    assert_eq!(su.application_id.as_deref(), Some(APP));
    let posts = s.seen().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1, "the create is not sent again");
}

// issue 13 item 2: "duplicate key" (the association exists: a repeated request) is done;
// a role the instance lacks fails with what to do; a refusal carries its rule (P2).
#[test]
fn assign_roles_outcomes() {
    let lookup = |names: &[&str]| {
        let rows: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"roleid": format!("r{i}"), "name": n, "_businessunitid_value": ROOT}))
            .collect();
        (200, json!({ "value": rows }))
    };
    let cases: Vec<(&str, (u16, Value), Option<&str>)> = vec![
        (
            "duplicate",
            (
                400,
                json!({"error": {"code": "0x80040237", "message": "Cannot insert duplicate key."}}),
            ),
            None,
        ),
        (
            "refused",
            (
                400,
                json!({"error": {"code": "0x80040265", "message": "`alice` needs a license before it gets security roles (P2)"}}),
            ),
            Some("refused"),
        ),
    ];
    for (name, reply, want) in cases {
        let s = Arc::new(
            instance_script()
                .on("GET", "/roles?", vec![lookup(&["Basic User"])])
                .on("POST", "/$ref", vec![reply]),
        );
        let op = Op::AssignRoles {
            user: alice(),
            instance: inst_ref(),
            roles: vec!["Basic User".into()],
        };
        let got = block_on(client(&s).execute(&op, BASE)).unwrap();
        match want {
            None => assert!(got.is_ok(), "{name}: {got:?}"),
            Some(class) => {
                let e = got.unwrap_err();
                assert_eq!(variant(&e), class, "{name}: {e}");
                assert!(
                    matches!(&e, ProviderError::Refused { rule, .. } if rule == "P2"),
                    "{e:?}"
                );
            }
        }
    }
    // A name the instance does not have.
    let s = Arc::new(instance_script().on("GET", "/roles?", vec![lookup(&[])]));
    let op = Op::AssignRoles {
        user: alice(),
        instance: inst_ref(),
        roles: vec!["Nope".into()],
    };
    let e = block_on(client(&s).execute(&op, BASE))
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("no security role `Nope`"), "{e}");
    assert!(s.seen().iter().all(|r| r.method == "GET"));
}

// issue 13 item 2: removing sends `DELETE .../systemuserroles_association({roleid})/$ref`
// (never a DELETE of the role itself) for held roles only; a 404 is already gone.
#[test]
fn remove_roles_disassociates_by_ref() {
    let s = Arc::new(instance_script().on(
        "DELETE",
        "/$ref",
        vec![(
            404,
            json!({"error": {"code": "0x80040217", "message": "gone"}}),
        )],
    ));
    let op = Op::RemoveRoles {
        user: alice(),
        instance: inst_ref(),
        roles: vec!["Salesperson".into(), "Not Held".into()],
    };
    assert!(block_on(client(&s).execute(&op, BASE)).unwrap().is_ok());
    let deletes: Vec<String> = s
        .seen()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.url)
        .collect();
    assert_eq!(
        deletes,
        vec![format!(
            "{BASE}/api/data/v9.2/systemusers(s1)/systemuserroles_association(r1)/$ref"
        )]
    );
}

// issue 13 item 2 (P3, P4): the access mode is a PATCH of `accessmode` with `If-Match: *`
// (never an upsert); an unchanged mode sends nothing; no user becomes an application user.
#[test]
fn set_access_mode_patches_accessmode() {
    let s = Arc::new(instance_script().on("PATCH", "/systemusers(s1)", vec![(204, Value::Null)]));
    let c = client(&s);
    let op = |mode| Op::SetAccessMode {
        user: alice(),
        mode,
    };
    block_on(c.execute(&op(AccessMode::Administrative), BASE))
        .unwrap()
        .unwrap();
    block_on(c.execute(&op(AccessMode::ReadWrite), BASE))
        .unwrap()
        .unwrap();
    let patches: Vec<Request> = s
        .seen()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "read-write is what alice has");
    assert_eq!(patches[0].body, Some(json!({"accessmode": 1})));
    assert_eq!(header(&patches[0], "If-Match"), Some("*"));
    let e = block_on(c.execute(&op(AccessMode::Application), BASE))
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Refused { rule, .. } if rule == "P3"),
        "{e:?}"
    );
}

// issue 13 item 2: a user the instance has not synchronised yet is looked for again
// (bounded), then found; past the window the error says what to do.
#[test]
fn unsynchronised_user_is_waited_for_then_reported() {
    let alice_row = json!({"value": [{"systemuserid": "s1", "azureactivedirectoryobjectid": ALICE, "accessmode": 0}]});
    let s = Arc::new(
        instance_script()
            .on(
                "GET",
                "azureactivedirectoryobjectid%20eq%20",
                vec![
                    (200, json!({"value": []})),
                    (200, json!({"value": []})),
                    (200, alice_row),
                ],
            )
            .on("PATCH", "/systemusers(s1)", vec![(204, Value::Null)]),
    );
    // The filter route must win over the list route.
    s.routes.lock().unwrap().swap(3, 4);
    let op = Op::SetAccessMode {
        user: alice(),
        mode: AccessMode::Administrative,
    };
    block_on(client(&s).execute(&op, BASE)).unwrap().unwrap();
    let lookups = s
        .seen()
        .iter()
        .filter(|r| r.url.contains("azureactivedirectoryobjectid%20eq%20"))
        .count();
    assert_eq!(lookups, 3);

    let s = Arc::new(
        Script::default()
            .on(
                "GET",
                "/businessunits?",
                vec![(200, json!({"value": [{"businessunitid": ROOT}]}))],
            )
            .on("GET", "/systemusers?", vec![(200, json!({"value": []}))]),
    );
    let e = block_on(client(&s).execute(&op, BASE))
        .unwrap()
        .unwrap_err();
    assert_eq!(variant(&e), "not found");
    assert!(e.to_string().contains("is not in the instance"), "{e}");
    assert!(e.to_string().contains("apply again"), "{e}");
}

// issue 13 item 2: Dataverse's error answers map to the provider's classes; a rule id at
// the end of the message is a refusal with that rule; 429 keeps its Retry-After.
#[test]
fn errors_map_to_classes() {
    let cases: [(u16, &str, &str); 7] = [
        (429, "Number of requests exceeded the limit", "throttled"),
        (400, "needs a license (P2)", "refused"),
        (404, "systemuser With Id = x Does Not Exist", "not found"),
        (403, "missing privilege", "backend"),
        (503, "unavailable", "transient"),
        (409, "concurrency", "conflict"),
        (400, "bad (request)", "invalid"),
    ];
    for (status, message, class) in cases {
        let resp = Response {
            status,
            headers: vec![("retry-after".into(), "7".into())],
            body: json!({"error": {"code": "0x80040000", "message": message}})
                .to_string()
                .into_bytes(),
        };
        let e = wire::dataverse_error(&resp, "testing");
        assert_eq!(variant(&e), class, "{status} {message}: {e}");
        if status == 429 {
            assert!(
                matches!(e, ProviderError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(7))
            );
        }
    }
    assert_eq!(wire::rule_of("x (I12)"), Some("I12"));
    assert_eq!(wire::rule_of("x (abc)"), None);
    assert_eq!(wire::literal("a b'c&"), "'a%20b''c%26'");
}

fn tenant_with_instance() -> Tenant {
    let mut t = Tenant::default();
    for (id, mode) in [
        (ALICE, AccessMode::ReadWrite),
        ("bob", AccessMode::ReadWrite),
    ] {
        t.users.insert(
            id.into(),
            User {
                id: id.into(),
                upn: format!("{id}@contoso.com"),
                name: String::new(),
                license: None,
                access_mode: mode,
                roles: BTreeMap::from([("env-1".to_string(), BTreeSet::from(["Old".to_string()]))]),
                admin_roles: BTreeSet::new(),
                usage_location: None,
                synced: false,
                application_id: None,
            },
        );
    }
    t.instances.insert(
        "env-1".into(),
        Instance {
            id: "env-1".into(),
            name: "Europe".into(),
            url: "contoso".into(),
            kind: InstanceType::Production,
            slot: InstanceType::Production,
            purpose: String::new(),
            region: Region::EMEA,
            currency: String::new(),
            language: 0,
            security_group: None,
            status: InstanceStatus::Ready,
            version: "9.2".into(),
            admin_mode: Default::default(),
            notification_recipients: vec![],
            update: None,
        },
    );
    t
}

fn su(oid: &str, mode: i64, app: bool, roles: &[&str]) -> SystemUser {
    SystemUser {
        id: format!("s-{oid}"),
        object_id: oid.into(),
        domain_name: String::new(),
        access_mode: mode,
        application_id: app.then(|| "0A0B0C0D-1111-2222-3333-444455556666".to_string()),
        disabled: false,
        email: format!("{oid}@contoso.com"),
        name: format!("{oid} app"),
        roles: roles
            .iter()
            .map(|r| (r.to_string(), format!("id-{r}")))
            .collect(),
        changed: None,
    }
}

// issue 13 item 2: merge puts an instance's roles and modes into the tenant: roles
// replace that instance's set (empty removes it), the most specific mode wins whatever the
// order of instances, currency and language go to the instance; the rest is reported.
#[test]
fn merge_puts_roles_modes_and_currency_into_the_tenant() {
    let found = |users: Vec<SystemUser>| InstanceUsers {
        base: BASE.into(),
        root_business_unit: ROOT.into(),
        currency: Some("EUR".into()),
        language: Some(1036),
        users: users
            .iter()
            .filter(|u| u.application_id.is_none())
            .map(|u| (u.object_id.clone(), u.clone()))
            .collect(),
        apps: users
            .iter()
            .filter_map(|u| {
                let app = u.application_id.as_ref()?;
                Some((app.to_ascii_lowercase(), u.clone()))
            })
            .collect(),
    };
    let mut t = tenant_with_instance();
    let report = merge(
        &mut t,
        "env-1",
        &found(vec![
            su(ALICE, 1, false, &["Salesperson", "Basic User"]),
            su("bob", 0, false, &[]),
            su("stranger", 4, true, &[]),
            su("support", 3, false, &[]),
        ]),
    );
    assert_eq!(
        t.users[ALICE].roles["env-1"],
        BTreeSet::from(["Basic User".to_string(), "Salesperson".to_string()])
    );
    assert_eq!(t.users[ALICE].access_mode, AccessMode::Administrative);
    assert!(
        !t.users["bob"].roles.contains_key("env-1"),
        "no roles: no entry"
    );
    assert_eq!(t.instances["env-1"].currency, "EUR");
    assert_eq!(t.instances["env-1"].language, 1036);
    assert_eq!(report.unknown, vec!["support".to_string()]);
    // P3: an application user is no directory user: it comes from the instance, as
    // `app:{application id}` with its primary email as principal name.
    let app = &t.users["app:0a0b0c0d-1111-2222-3333-444455556666"];
    assert_eq!(
        (app.upn.as_str(), app.access_mode, app.license),
        ("stranger@contoso.com", AccessMode::Application, None)
    );
    assert_eq!(
        app.application_id.as_deref(),
        Some("0a0b0c0d-1111-2222-3333-444455556666")
    );
    // A second instance where alice is read-write does not lower her mode; one where she
    // is non-interactive raises it (order-independent).
    merge(&mut t, "env-2", &found(vec![su(ALICE, 0, false, &[])]));
    assert_eq!(t.users[ALICE].access_mode, AccessMode::Administrative);
    merge(&mut t, "env-3", &found(vec![su(ALICE, 4, false, &[])]));
    assert_eq!(t.users[ALICE].access_mode, AccessMode::NonInteractive);
    // A mode crmctl does not manage is reported.
    let r = merge(&mut t, "env-1", &found(vec![su("bob", 3, false, &[])]));
    assert_eq!(r.unmanaged_modes, vec![("bob".to_string(), 3)]);
}

// Issue 14 item 2: a user is a system user in each instance; its last change is the
// latest `modifiedon` over them, whatever the order of the merges.
#[test]
fn merge_keeps_the_latest_change_of_a_user_over_its_instances() {
    let found = |at: &str, by: &str| {
        let mut u = su(ALICE, 0, false, &[]);
        u.changed = Some(LastChange {
            by: Some(by.into()),
            at: Some(at.into()),
        });
        InstanceUsers {
            base: BASE.into(),
            root_business_unit: ROOT.into(),
            users: BTreeMap::from([(ALICE.to_string(), u)]),
            ..InstanceUsers::default()
        }
    };
    let early = found("2026-01-01T00:00:00Z", "early@contoso.com");
    let late = found("2026-06-01T00:00:00Z", "late@contoso.com");
    for order in [[&early, &late], [&late, &early]] {
        let mut t = tenant_with_instance();
        merge(&mut t, "env-1", order[0]);
        merge(&mut t, "env-2", order[1]);
        let c = &t.changed.users[ALICE];
        assert_eq!(c.by.as_deref(), Some("late@contoso.com"));
        assert_eq!(c.at.as_deref(), Some("2026-06-01T00:00:00Z"));
    }
}

// issue 13 item 2 (I6): the public default template takes the region's host; another
// template (a sovereign cloud, the emulator) substitutes the URL name.
#[test]
fn base_url_by_region_or_template() {
    let t = tenant_with_instance();
    let inst = &t.instances["env-1"];
    let s: Arc<dyn Http> = Arc::new(Script::default());
    assert_eq!(
        DataverseClient::new(s.clone(), PUBLIC_TEMPLATE).base_of(inst),
        "https://contoso.crm4.dynamics.com"
    );
    assert_eq!(
        DataverseClient::new(s, "https://127.0.0.1:8443/dataverse/{url}/").base_of(inst),
        "https://127.0.0.1:8443/dataverse/contoso"
    );
}
