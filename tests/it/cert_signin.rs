//! Certificate sign-in (issue 12 item 1): `crmctl` with `AZURE_CLIENT_ID` +
//! `AZURE_CLIENT_CERTIFICATE_PATH` (no secret) signs a client assertion (RFC 7523, PS256,
//! `x5t#S256`) that the emulator's token endpoint verifies against the registered
//! certificate; an unregistered certificate is refused (AADSTS700027). The file is PEM or
//! PKCS#12 (`.pfx`, with `AZURE_CLIENT_CERTIFICATE_PASSWORD`), told by its content. The
//! private key, the password and the assertion appear in no output, log
//! (`CRMCTL_LOG=debug`), state or saved plan.

use std::path::{Path, PathBuf};

use crmctl::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use predicates::prelude::*;
use rustls::pki_types::{pem::PemObject, CertificateDer};

use crate::emulator::{crmctl_on, tenant_with, CLIENT, SECRET};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/certificate")
        .join(name)
}

fn start() -> EmulatorHandle {
    let mut t = tenant_with(2);
    t.domain = crate::common::DOMAIN.to_string();
    t.licenses
        .insert(crmctl::domain::kinds::LicensePlan::Professional, 5);
    let mut cfg = EmulatorConfig::new(t, crate::common::DOMAIN, CLIENT, SECRET);
    let cert = CertificateDer::from_pem_file(fixture("app.crt")).unwrap();
    cfg.client_certificate = Some(cert.to_vec());
    Emulator::start(cfg).expect("emulator starts")
}

/// `crmctl` at the emulator, signing in with the certificate file `pem` (no secret).
fn with_cert(emu: &EmulatorHandle, dir: &Path, pem: &str) -> assert_cmd::Command {
    let mut c = crmctl_on(emu, dir);
    c.env_remove("AZURE_CLIENT_SECRET")
        .env("AZURE_CLIENT_CERTIFICATE_PATH", fixture(pem))
        .env("CRMCTL_LOG", "debug");
    c
}

/// `d.yaml`: a user to create beside the emulator's two admins.
fn write_desired(dir: &Path) {
    std::fs::write(
        dir.join("d.yaml"),
        format!(
            "tenant: {}\nlicenses: {{professional: 5}}\nusers:\n  \
             u0000@coho.com: {{name: u0000, admin_roles: [global_admin]}}\n  \
             u0001@coho.com: {{name: u0001, admin_roles: [global_admin]}}\n  \
             ana@coho.com: {{name: Ana, license: professional}}\n",
            crate::common::DOMAIN
        ),
    )
    .unwrap();
}

/// The PKCS#12 fixtures' password (tests/fixtures/certificate/README.md).
const PFX_PASSWORD: &str = "crmctl-test-only";

/// `crmctl` at the emulator, signing in with the PKCS#12 file `pfx` opened by `password`.
fn with_pfx(emu: &EmulatorHandle, dir: &Path, pfx: &Path, password: &str) -> assert_cmd::Command {
    let mut c = crmctl_on(emu, dir);
    c.env_remove("AZURE_CLIENT_SECRET")
        .env("AZURE_CLIENT_CERTIFICATE_PATH", pfx)
        .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", password)
        .env("CRMCTL_LOG", "debug");
    c
}

/// Lines of the private key's base64 body in `pem`.
fn key_lines(pem: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixture(pem)).unwrap();
    let key = &text[text.find("PRIVATE KEY-----").unwrap()..];
    key.lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_string)
        .collect()
}

// issue 12 item 1: apply and a no-change plan signed in with the certificate (PKCS#8 and
// PKCS#1 keys); nothing secret in any output.
#[test]
fn crmctl_signs_in_with_a_certificate_and_leaks_neither_key_nor_assertion() {
    let emu = start();
    let dir = tempfile::tempdir().unwrap();
    write_desired(dir.path());
    let apply = with_cert(&emu, dir.path(), "app.pem")
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
        .stdout(predicate::str::contains("create_user"));
    let replan = with_cert(&emu, dir.path(), "app-pkcs1.pem")
        .args([
            "plan",
            "--detailed-exitcode",
            "--backend",
            "microsoft",
            "-f",
            "d.yaml",
            "--out",
            "plan.json",
        ])
        .assert()
        .code(0);
    let mut texts = vec![
        std::fs::read_to_string(dir.path().join(".crmctl/state.json")).unwrap(),
        std::fs::read_to_string(dir.path().join("plan.json")).unwrap(),
    ];
    for out in [apply.get_output(), replan.get_output()] {
        texts.push(String::from_utf8_lossy(&out.stdout).to_string());
        texts.push(String::from_utf8_lossy(&out.stderr).to_string());
    }
    // The debug log was on: the sign-in was logged, without its form.
    assert!(texts.iter().any(|t| t.contains("sign-in")), "{texts:?}");
    let mut secrets = key_lines("app.pem");
    secrets.extend(key_lines("app-pkcs1.pem"));
    // base64url of `{"alg":"PS256"`: the start of every assertion crmctl signs.
    secrets.push("eyJhbGciOiJQUzI1NiI".into());
    secrets.push("client_assertion=".into());
    for text in &texts {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "leaked `{s}`: {text}");
        }
    }
}

// issue 12 item 1: the emulator verifies the signature: a certificate the app registration
// does not hold is refused with AADSTS700027, and crmctl says what to check.
#[test]
fn an_unregistered_certificate_is_refused() {
    let emu = start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.yaml"),
        format!("tenant: {}\n", crate::common::DOMAIN),
    )
    .unwrap();
    with_cert(&emu, dir.path(), "other.pem")
        .args(["plan", "--backend", "microsoft", "-f", "d.yaml"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("AADSTS700027")
                .and(predicate::str::contains("AZURE_CLIENT_CERTIFICATE_PATH")),
        );
    // A file without a key: a clear error before any request.
    with_cert(&emu, dir.path(), "app.crt")
        .args(["plan", "--backend", "microsoft", "-f", "d.yaml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no private key in the file"));
}

// issue 12 item 1 (Azure SDK EnvironmentCredential: AZURE_CLIENT_CERTIFICATE_PATH names a
// PEM or PKCS#12 file, AZURE_CLIENT_CERTIFICATE_PASSWORD opens the latter): apply with the
// OpenSSL 3 default .pfx (PBES2 AES-256-CBC) under a name without extension, then a
// no-change plan with the legacy one (RC2/3DES), both through the emulator's token endpoint
// that verifies the assertion against the registered certificate; a wrong password and an
// encryption crmctl does not read fail before any request, saying what to do; the password
// is in no output, log, state or plan.
#[test]
fn crmctl_signs_in_with_a_pfx_and_its_password() {
    let emu = start();
    let dir = tempfile::tempdir().unwrap();
    write_desired(dir.path());
    let renamed = dir.path().join("signing-cert");
    std::fs::copy(fixture("app.pfx"), &renamed).unwrap();
    let apply = with_pfx(&emu, dir.path(), &renamed, PFX_PASSWORD)
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
        .stdout(predicate::str::contains("create_user"));
    let replan = with_pfx(&emu, dir.path(), &fixture("app-legacy.pfx"), PFX_PASSWORD)
        .args([
            "plan",
            "--detailed-exitcode",
            "--backend",
            "microsoft",
            "-f",
            "d.yaml",
            "--out",
            "plan.json",
        ])
        .assert()
        .code(0);
    let wrong = "Not-The-Pa55word";
    let refused = with_pfx(&emu, dir.path(), &renamed, wrong)
        .args(["plan", "--backend", "microsoft", "-f", "d.yaml"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("the password does not open this PKCS#12 file").and(
                predicate::str::contains("AZURE_CLIENT_CERTIFICATE_PASSWORD"),
            ),
        );
    let unsupported = with_pfx(&emu, dir.path(), &fixture("app-camellia.pfx"), PFX_PASSWORD)
        .args(["plan", "--backend", "microsoft", "-f", "d.yaml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "encrypted with a scheme crmctl does not read",
        ));
    let mut texts = vec![
        std::fs::read_to_string(dir.path().join(".crmctl/state.json")).unwrap(),
        std::fs::read_to_string(dir.path().join("plan.json")).unwrap(),
    ];
    for out in [
        apply.get_output(),
        replan.get_output(),
        refused.get_output(),
        unsupported.get_output(),
    ] {
        texts.push(String::from_utf8_lossy(&out.stdout).to_string());
        texts.push(String::from_utf8_lossy(&out.stderr).to_string());
    }
    assert!(texts.iter().any(|t| t.contains("sign-in")), "{texts:?}");
    let mut secrets = key_lines("app.pem");
    secrets.extend([
        PFX_PASSWORD.to_string(),
        wrong.to_string(),
        "eyJhbGciOiJQUzI1NiI".into(),
        "client_assertion=".into(),
    ]);
    for text in &texts {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "leaked `{s}`: {text}");
        }
    }
}
