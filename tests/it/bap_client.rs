//! The admin API environments client (issue 13 item 1) against the emulator over real
//! HTTPS: observe, create (validated first), update, administration mode, switch, copy,
//! reset, delete as long-running operations (202 + Location, polled until ready), 409
//! while an operation runs, and the faults (429/5xx) the transport absorbs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crmctl::domain::kinds::{CopyKind, InstanceType, LicensePlan, Region};
use crmctl::domain::op::{ObjRef, Op};
use crmctl::emulator::{Emulator, EmulatorConfig, EmulatorHandle, Faults};
use crmctl::observed::{Group, InstanceStatus, Tenant};
use crmctl::provider::http::cloud::Cloud;
use crmctl::provider::http::connect;
use crmctl::provider::http::transport::{Transport, TransportOptions};
use crmctl::provider::memory::MemoryProvider;
use crmctl::provider::powerplatform::environments as bap;
use crmctl::provider::{
    block_on, ErrorClass, Executed, OperationHandle, Polled, Provider, ProviderError, Scope,
};

use crate::common::{fresh, instance};
use crate::emulator::{CLIENT, SECRET, TENANT};

/// `prod` (production), `sb1`, `sb2` (sandboxes), two free sandbox slots, group `g1`.
fn tenant() -> Tenant {
    let mut t = fresh();
    t.licenses.insert(LicensePlan::Professional, 25);
    t.slots.sandbox = 4;
    t.slots.production = 1;
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
    _emu: EmulatorHandle,
    provider: Arc<MemoryProvider>,
    http: Arc<Transport>,
}

fn setup(faults: Faults) -> Setup {
    let provider = Arc::new(MemoryProvider::new(tenant()));
    let mut cfg = EmulatorConfig::with_provider(provider.clone(), TENANT, CLIENT, SECRET);
    cfg.faults = faults;
    let emu = Emulator::start(cfg).expect("emulator starts");
    let mut env: Vec<(String, String)> = emu
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
        max_attempts: 20,
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        ca_file: Some(emu.ca_file().to_path_buf()),
        ..TransportOptions::default()
    };
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let http = Arc::new(connect(Cloud::Public, TENANT, lookup, Some(opts)).expect("transport"));
    Setup {
        _emu: emu,
        provider,
        http,
    }
}

fn obj(id: &str) -> ObjRef {
    ObjRef {
        address: id.into(),
        id: Some(id.into()),
    }
}

impl Setup {
    fn tenant(&self) -> Tenant {
        block_on(self.provider.observe(&Scope::all()))
            .unwrap()
            .unwrap()
    }

    /// Execute `op`, expecting a 202, and poll its handle until it ends.
    fn run(&self, op: &Op) -> Result<crmctl::provider::Outcome, ProviderError> {
        let h = self.start(op)?;
        self.wait(&h)
    }

    /// Start `op`, retrying what apply retries (a 500 to a POST is not retried by the
    /// transport: it may have acted; the emulator's injected 500s act before nothing).
    fn start(&self, op: &Op) -> Result<OperationHandle, ProviderError> {
        for _ in 0..20 {
            match block_on(bap::execute(self.http.as_ref(), op)).unwrap() {
                Ok(Some(Executed::Accepted(h))) => return Ok(h),
                Err(e) if e.class() == ErrorClass::Transient => continue,
                Err(e) => return Err(e),
                other => panic!("expected a long-running operation, got {other:?}"),
            }
        }
        panic!("never started");
    }

    fn wait(&self, h: &OperationHandle) -> Result<crmctl::provider::Outcome, ProviderError> {
        let t0 = Instant::now();
        loop {
            match block_on(bap::poll(self.http.as_ref(), h)).unwrap()? {
                Polled::Done(o) => return Ok(o),
                Polled::Failed(e) => return Err(e),
                Polled::Running { .. } => {
                    assert!(t0.elapsed() < Duration::from_secs(20), "never ended");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

// issue 13 item 1: observe reads every environment with its Dataverse metadata, across
// pages, as observed instances (I4 status, I10 admin mode, I12 group id).
#[test]
fn bap_client_observes_environments_across_pages() {
    let s = setup(Faults {
        environment_page_size: 2,
        ..Faults::default()
    });
    let got = block_on(bap::list(s.http.as_ref())).unwrap().unwrap();
    let want = s.tenant();
    assert_eq!(got.len(), want.instances.len());
    for listed in &got {
        let (i, base) = (&listed.instance, &listed.base);
        let w = &want.instances[&i.id];
        assert_eq!(
            (&i.name, &i.url, i.kind, i.region),
            (&w.name, &w.url, w.kind, w.region)
        );
        assert_eq!(
            (i.language, &i.version, i.status),
            (w.language, &w.version, w.status)
        );
        assert_eq!(i.security_group, w.security_group);
        assert_eq!(i.admin_mode.enabled, w.admin_mode.enabled);
        assert!(
            base.as_deref().is_some_and(|b| b.contains(&w.url)),
            "{base:?}"
        );
    }
}

// issue 13 item 1 (I5): a create checks the URL name first; a taken name is refused I5
// and no environment is made; a free one is created through a lifecycle operation whose
// handle yields the new environment's id once it is ready.
#[test]
fn bap_client_creates_after_validating_and_resolves_the_new_id() {
    let s = setup(Faults {
        lifecycle_duration: Duration::from_millis(300),
        ..Faults::default()
    });
    let create = |url: &str| Op::ConfigureInstance {
        name: "Dev".into(),
        url: url.into(),
        kind: InstanceType::Sandbox,
        purpose: "development".into(),
        region: Region::NA,
        currency: "EUR".into(),
        language: 1031,
        security_group: Some(obj("g1")),
    };
    let before = s.tenant().instances.len();
    let taken = block_on(bap::execute(s.http.as_ref(), &create("SB1"))).unwrap();
    assert!(
        matches!(&taken, Err(ProviderError::Refused { rule, .. }) if rule == "I5"),
        "{taken:?}"
    );
    assert_eq!(s.tenant().instances.len(), before, "nothing created");

    let h = s.start(&create("contoso-dev")).unwrap();
    assert!(h.id.starts_with(bap::HANDLE_PREFIX));
    // While it runs, polling says running.
    assert!(matches!(
        block_on(bap::poll(s.http.as_ref(), &h)).unwrap().unwrap(),
        Polled::Running { .. }
    ));
    let out = s.wait(&h).unwrap();
    let id = out.created_id.clone().expect("the new environment's id");
    assert_eq!(out.ids.get("environment"), Some(&id));
    let t = s.tenant();
    assert_eq!(t.instances.len(), before + 1);
    let i = &t.instances[&id];
    assert_eq!(
        (i.url.as_str(), i.currency.as_str(), i.language),
        ("contoso-dev", "EUR", 1031)
    );
    assert_eq!(i.security_group.as_deref(), Some("g1"));
    // Polling the finished handle again (a rerun after kill -9) creates nothing more.
    let again = s.wait(&h).unwrap();
    assert_eq!(again.created_id, Some(id));
    assert_eq!(s.tenant().instances.len(), before + 1);
}

// issue 13 item 1: update, administration mode, switch, reset, copy and delete each run as
// a lifecycle operation and change the tenant as domain.md says (I4, I7, I8, I9, I10, I11).
#[test]
fn bap_client_runs_every_lifecycle_op() {
    let s = setup(Faults::default());
    s.run(&Op::UpdateInstance {
        instance: obj("sb1"),
        name: Some("Sandbox one".into()),
        url: Some("sandbox-one".into()),
        purpose: Some("tests".into()),
        security_group: Some(Some(obj("g1"))),
    })
    .unwrap();
    let i = s.tenant().instances["sb1"].clone();
    assert_eq!(
        (i.name.as_str(), i.url.as_str()),
        ("Sandbox one", "sandbox-one")
    );
    assert_eq!(i.security_group.as_deref(), Some("g1"));

    s.run(&Op::SetAdminMode {
        instance: obj("sb1"),
        enabled: true,
        background_operations: false,
        message: None,
    })
    .unwrap();
    let a = s.tenant().instances["sb1"].admin_mode.clone();
    assert!(a.enabled && !a.background_operations);

    s.run(&Op::CopyInstance {
        source: obj("prod"),
        target: obj("sb2"),
        kind: CopyKind::Minimal,
    })
    .unwrap();
    s.run(&Op::ResetInstance {
        instance: obj("sb2"),
        currency: "GBP".into(),
        language: 2057,
    })
    .unwrap();
    let i = s.tenant().instances["sb2"].clone();
    assert_eq!((i.currency.as_str(), i.language), ("GBP", 2057));

    s.run(&Op::SwitchInstance {
        instance: obj("sb2"),
        to: InstanceType::Production,
    })
    .unwrap_or_else(|e| panic!("switch: {e}"));
    assert_eq!(s.tenant().instances["sb2"].kind, InstanceType::Production);

    s.run(&Op::DeleteInstance {
        instance: obj("sb1"),
    })
    .unwrap();
    assert!(!s.tenant().instances.contains_key("sb1"));
}

// issue 13 item 1: while a (slow) copy runs, another mutation of its target answers 409:
// a Conflict (apply waits and retries) with the server's Retry-After; after the copy ends
// it goes through. Throttling and 5xx are absorbed by the transport.
#[test]
fn bap_client_conflicts_while_a_copy_runs_and_survives_faults() {
    let s = setup(Faults {
        seed: 7,
        copy_duration: Duration::from_secs(5),
        throttle_rate: 0.2,
        server_error_rate: 0.1,
        retry_after_secs: 0,
        ..Faults::default()
    });
    let copy = s
        .start(&Op::CopyInstance {
            source: obj("prod"),
            target: obj("sb2"),
            kind: CopyKind::Full,
        })
        .unwrap();
    let rename = Op::UpdateInstance {
        instance: obj("sb2"),
        name: Some("Copy of prod".into()),
        url: None,
        purpose: None,
        security_group: None,
    };
    let mut busy = block_on(bap::execute(s.http.as_ref(), &rename)).unwrap();
    while matches!(&busy, Err(e) if e.class() == ErrorClass::Transient) {
        busy = block_on(bap::execute(s.http.as_ref(), &rename)).unwrap();
    }
    match busy {
        Err(e) => {
            assert_eq!(e.class(), ErrorClass::Conflict, "{e}");
            assert!(e.retry_after().is_some());
        }
        other => panic!("expected 409, got {other:?}"),
    }
    s.wait(&copy).unwrap();
    s.run(&rename).unwrap();
    assert_eq!(s.tenant().instances["sb2"].name, "Copy of prod");
}
