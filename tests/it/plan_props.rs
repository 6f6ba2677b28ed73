//! Property tests: random desired files planned against random tenants (themselves made
//! by applying another random file, plus unmanaged objects). The order respects every
//! dependency edge, planning is deterministic, and an error-free plan applies in the
//! rule-checking simulator and leaves nothing to do on a re-plan.

use crate::common;

use common::*;
use proptest::prelude::*;

/// Reads entropy bytes as small choices.
struct Bytes<'a>(&'a [u8], usize);

impl Bytes<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let b = self.0.get(self.1).copied().unwrap_or(0);
        self.1 += 1;
        b as usize % n.max(1)
    }
    fn flip(&mut self) -> bool {
        self.pick(2) == 1
    }
}

const URLS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "eps"];

fn random_desired(bytes: &[u8]) -> String {
    let mut b = Bytes(bytes, 0);
    let mut y = String::from("licenses:\n");
    y.push_str(&format!("  professional: {}\n", b.pick(9)));
    y.push_str(&format!("  basic: {}\n", b.pick(4)));
    if b.flip() {
        y.push_str(&format!("storage: {{additional_gb: {}}}\n", b.pick(3)));
    }
    let n_inst = b.pick(5);
    let offset = b.pick(5);
    let stride = 1 + b.pick(4);
    let n_groups = b.pick(3);
    let n_users = b.pick(7);
    let mut inst_keys = vec![];
    if n_inst > 0 {
        y.push_str("instances:\n");
    }
    for i in 0..n_inst {
        let key = format!("i{}", b.pick(4));
        if inst_keys.contains(&key) {
            continue;
        }
        let sandbox = b.flip();
        let url = URLS[(offset + i * stride) % 5];
        let mut line = format!(
            "  {key}: {{name: N{}, url: {url}, type: {}, currency: {}",
            b.pick(2),
            if sandbox { "sandbox" } else { "production" },
            if b.pick(4) == 0 { "EUR" } else { "USD" }
        );
        if n_groups > 0 && b.flip() {
            line.push_str(&format!(", security_group: g{}", b.pick(n_groups)));
        }
        if sandbox && b.flip() {
            let on = b.flip();
            let bg = !on || b.flip();
            line.push_str(&format!(
                ", admin_mode: {{enabled: {on}, background_operations: {bg}}}"
            ));
        }
        if b.flip() {
            line.push_str(&format!(
                ", notification_recipients: [r{}@x.com]",
                b.pick(2)
            ));
        }
        line.push_str("}\n");
        y.push_str(&line);
        inst_keys.push(key);
    }
    let upns: Vec<String> = (0..n_users).map(|i| format!("u{i}@coho.com")).collect();
    if n_groups > 0 {
        y.push_str("security_groups:\n");
    }
    for g in 0..n_groups {
        let members: Vec<&str> = upns
            .iter()
            .filter(|_| b.flip())
            .map(String::as_str)
            .collect();
        if b.flip() {
            y.push_str(&format!("  g{g}: {{members: [{}]}}\n", members.join(", ")));
        } else {
            y.push_str(&format!("  g{g}: {{description: d{}}}\n", b.pick(2)));
        }
    }
    if n_users > 0 {
        y.push_str("users:\n");
    }
    for upn in &upns {
        let mode = [
            "read-write",
            "read-write",
            "administrative",
            "non-interactive",
            "application",
        ][b.pick(5)];
        let mut line = format!("  {upn}: {{name: Name{}, access_mode: {mode}", b.pick(2));
        if mode != "application" {
            match b.pick(3) {
                0 => line.push_str(", license: professional"),
                1 => line.push_str(", license: basic"),
                _ => {}
            }
        }
        if b.flip() {
            let mut roles: Vec<String> = vec![];
            for k in &inst_keys {
                if b.flip() {
                    roles.push(format!("{k}: [R{}]", b.pick(2)));
                }
            }
            line.push_str(&format!(", roles: {{{}}}", roles.join(", ")));
        }
        line.push_str("}\n");
        y.push_str(&line);
    }
    y
}

static SIMULATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Guards against a generator that only produces error plans (a vacuous property).
#[test]
fn generator_produces_valid_plans() {
    let valid = (0u8..=255)
        .filter(|seed| {
            let bytes: Vec<u8> = (0..96u32)
                .map(|i| seed.wrapping_mul(31).wrapping_add((i * 7) as u8))
                .collect();
            let d = desired(&random_desired(&bytes));
            !crmctl::plan::plan(&d, &fresh(), &state(&[])).has_errors()
        })
        .count();
    assert!(
        valid > 64,
        "only {valid}/256 generated files plan without errors"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn plans_are_ordered_deterministic_and_converge(
        first in prop::collection::vec(any::<u8>(), 96),
        second in prop::collection::vec(any::<u8>(), 96),
        unmanaged in any::<bool>(),
    ) {
        // A tenant made by applying a first random file (when that plan is valid).
        let d1 = desired(&random_desired(&first));
        let p1 = crmctl::plan::plan(&d1, &fresh(), &state(&[]));
        let (mut t, s) = if p1.has_errors() {
            (fresh(), state(&[]))
        } else {
            simulate(&p1, &fresh(), &state(&[])).map_err(|e| TestCaseError::fail(format!("first plan: {e}")))?
        };
        if unmanaged {
            // Objects nobody manages: must never be touched (or adopted when named).
            let extra = tenant("users:\n  x1: {id: x1, upn: stranger@coho.com, access_mode: read-write}\ngroups:\n  xg: {id: xg, name: Strangers, members: [x1]}\n");
            t.users.extend(extra.users);
            t.groups.extend(extra.groups);
        }
        let d2 = desired(&random_desired(&second));
        let a = crmctl::plan::plan(&d2, &t, &s);
        let b = crmctl::plan::plan(&d2, &t, &s);
        // Deterministic: byte-identical JSON.
        prop_assert_eq!(crmctl::render::render_json(&a), crmctl::render::render_json(&b));
        if a.diagnostics.iter().any(|d| d.message.starts_with("dependency cycle")) {
            return Ok(());
        }
        // Every dependency edge points backwards.
        for act in &a.actions {
            prop_assert_eq!(act.id, a.actions.iter().position(|x| std::ptr::eq(x, act)).unwrap());
            for d in &act.depends_on {
                prop_assert!(*d < act.id);
            }
            // Unmanaged objects are never touched.
            prop_assert!(!serde_json::to_string(&act.op).unwrap().contains("\"x1\"") || act.kind == crmctl::domain::op::ActionKind::RemoveGroupMembers);
            prop_assert!(!serde_json::to_string(&act.op).unwrap().contains("\"xg\""));
        }
        if a.has_errors() {
            return Ok(());
        }
        SIMULATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (t2, s2) = simulate(&a, &t, &s).map_err(|e| TestCaseError::fail(format!("{e}\n{:#?}", steps(&a))))?;
        let again = crmctl::plan::plan(&d2, &t2, &s2);
        prop_assert!(again.actions.is_empty(), "re-plan: {:#?}\nfirst:\n{}\nsecond:\n{}\nplan: {:#?}", steps(&again), random_desired(&first), random_desired(&second), steps(&a));
        prop_assert!(!again.has_errors(), "{:#?}", again.diagnostics);
    }
}
