//! Sign-in with a certificate (issue 12 item 1): `AZURE_CLIENT_ID` +
//! `AZURE_CLIENT_CERTIFICATE_PATH` (a PEM file holding the certificate and its RSA private
//! key, or a PKCS#12 / `.pfx` file opened with `AZURE_CLIENT_CERTIFICATE_PASSWORD`, as the
//! Azure SDKs' EnvironmentCredential takes them: "AZURE_CLIENT_CERTIFICATE_PATH: path to a
//! PEM or PKCS12 certificate file including the private key", "AZURE_CLIENT_CERTIFICATE_PASSWORD:
//! (optional) password of the certificate file, if any",
//! learn.microsoft.com/python/api/azure-identity/azure.identity.environmentcredential),
//! through the client-credentials flow with a client assertion instead of a secret.
//!
//! The file's format is told by its content, not its name: PEM has a `-----BEGIN` line,
//! PKCS#12 is DER (RFC 7292 `PFX`, a SEQUENCE). PKCS#12 is read by the p12-keystore crate
//! (pure Rust, RustCrypto): PBES2 (AES-CBC with PBKDF2, the OpenSSL 3 default) and the legacy
//! PKCS#12 PBE schemes (SHA-1 with 3DES or RC2, the OpenSSL 1.1 default); the MAC is
//! checked with the password first, so a wrong password is told as such.
//!
//! The assertion is a JWT signed with the certificate's private key (RFC 7523 section 2.2,
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`), in the
//! format of "Microsoft identity platform certificate credentials"
//! (learn.microsoft.com/entra/identity-platform/certificate-credentials, "Assertion
//! format"): header `alg` PS256, `typ` JWT, `x5t#S256` the base64url SHA-256 thumbprint of
//! the certificate's DER; claims `aud` (the token endpoint URL), `iss` and `sub` (the
//! application id), `jti` (unique), `nbf`, `iat` (now) and `exp` (a few minutes later);
//! signed with PSS padding. The signing is ring's (already in the tree through rustls):
//! azure_identity's certificate credential needs OpenSSL, which crmctl does not link.
//!
//! The private key, the file's password and the assertion are secrets: they are never part
//! of a `Debug`, an error, a log line or a file.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PSS_SHA256};
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::CertificateDer;
use sha2::Digest as _;

use super::signin::{request_token, AccessToken, Secret, TokenSource};
use crate::provider::{BoxFuture, ProviderError};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: "keep it short, 5-10 minutes after nbf" (certificate
/// credentials page, `exp`).
const LIFETIME: Duration = Duration::from_secs(600);

/// Why the certificate file cannot be used. No variant holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The file cannot be read.
    #[error("cannot read AZURE_CLIENT_CERTIFICATE_PATH `{path}`: {problem}")]
    Read {
        /// The path.
        path: String,
        /// The OS's error.
        problem: String,
    },
    /// Not a PEM file, or one without what is needed.
    #[error("AZURE_CLIENT_CERTIFICATE_PATH `{path}`: {problem}")]
    Content {
        /// The path.
        path: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// A certificate and its private key, ready to sign assertions.
pub struct CertificateKey {
    key: RsaKeyPair,
    /// The certificate's DER (the one the key belongs to).
    cert_der: Vec<u8>,
}

impl fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateKey")
            .field("x5t#S256", &self.thumbprint_s256())
            .field("key", &"<redacted>")
            .finish()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The base64url SHA-256 thumbprint of a certificate's DER (`x5t#S256`).
pub fn thumbprint_s256(cert_der: &[u8]) -> String {
    b64(&sha2::Sha256::digest(cert_der))
}

impl CertificateKey {
    /// Read the certificate file at `path`, PEM or PKCS#12 by its content
    /// ([`CertificateKey::from_bytes`]); `password` opens a PKCS#12 file (none: the empty
    /// password).
    pub fn from_file(
        path: &Path,
        password: Option<&Secret>,
    ) -> Result<CertificateKey, CertificateError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| CertificateError::Read {
            path: shown.clone(),
            problem: e.to_string(),
        })?;
        CertificateKey::from_bytes(&bytes, password.map(Secret::expose)).map_err(|problem| {
            CertificateError::Content {
                path: shown,
                problem,
            }
        })
    }

    /// A PEM file (a `-----BEGIN` line: [`CertificateKey::from_pem`]) or else a PKCS#12 file
    /// (DER, starting with a SEQUENCE: [`CertificateKey::from_pkcs12`]); the error says what
    /// to do and never holds the password.
    pub fn from_bytes(bytes: &[u8], password: Option<&str>) -> Result<CertificateKey, String> {
        if is_pem(bytes) {
            return CertificateKey::from_pem(bytes);
        }
        if bytes.first() == Some(&0x30) {
            return CertificateKey::from_pkcs12(bytes, password);
        }
        Err("neither a PEM file (no `-----BEGIN` line) nor a PKCS#12 / .pfx file: give a PEM file with the certificate and its unencrypted private key, or the .pfx exported with its private key (and AZURE_CLIENT_CERTIFICATE_PASSWORD)".into())
    }

    /// A PKCS#12 (`.pfx`, `.p12`) file opened with `password` (none: the empty password,
    /// as `openssl pkcs12 -export -passout pass:` writes it): its certificates and an RSA
    /// private key (PKCS#8 shrouded or plain key bags).
    pub fn from_pkcs12(bytes: &[u8], password: Option<&str>) -> Result<CertificateKey, String> {
        use p12_keystore::error::Error as P12;
        let archive = p12_keystore::Pkcs12Archive::from_pkcs12(bytes, password.unwrap_or(""))
            .map_err(|e| match e {
                // The MAC (keyed by the password) does not match: the password is wrong.
                // Without a MAC, a wrong password shows as bad padding after decryption.
                P12::MacError(_) | P12::UnpadError => match password {
                    Some(_) => "the password does not open this PKCS#12 file: set AZURE_CLIENT_CERTIFICATE_PASSWORD to the password the .pfx was exported with".to_string(),
                    None => "this PKCS#12 file is protected by a password: set AZURE_CLIENT_CERTIFICATE_PASSWORD to it".to_string(),
                },
                // An encryption outside PBES2's known ciphers is an OID der cannot name.
                P12::DerError(d) if d.to_string().contains("unsupported OID") => format!(
                    "this PKCS#12 file is encrypted with a scheme crmctl does not read ({d}); crmctl reads PBES2 AES-CBC with PBKDF2 (the OpenSSL 3 default) and the legacy SHA-1 3DES / RC2: export it again with `openssl pkcs12 -export -in cert.pem -inkey key.pem -out cert.pfx`, or give a PEM file"
                ),
                P12::UnsupportedEncryptionScheme | P12::UnsupportedMacAlgorithm | P12::Pkcs5Error(_) => format!(
                    "this PKCS#12 file is encrypted with a scheme crmctl does not read ({e}); crmctl reads PBES2 AES-CBC with PBKDF2 (the OpenSSL 3 default) and the legacy SHA-1 3DES / RC2: export it again with `openssl pkcs12 -export -in cert.pem -inkey key.pem -out cert.pfx`, or give a PEM file"
                ),
                other => format!("not a readable PKCS#12 file ({other}): give a .pfx with the certificate and its private key, or a PEM file"),
            })?;
        let mut keys = Vec::new();
        for bag in &archive.keys {
            keys.push(RsaKeyPair::from_pkcs8(bag.key.as_der()).map_err(|e| {
                format!("the private key is not a usable RSA key ({e}): Microsoft Entra certificate credentials are RSA")
            })?);
        }
        let certs = archive
            .certs
            .iter()
            .map(|bag| bag.cert.as_der().to_vec())
            .collect();
        pair(keys, certs, "the .pfx")
    }

    /// A PEM file: its `CERTIFICATE` sections and one RSA private key (`PRIVATE KEY`,
    /// PKCS#8, or `RSA PRIVATE KEY`, PKCS#1). The certificate used is the one whose public
    /// key the private key belongs to (a file may hold a chain). The error says what to do.
    pub fn from_pem(bytes: &[u8]) -> Result<CertificateKey, String> {
        if !is_pem(bytes) {
            return Err("not a PEM file (no `-----BEGIN` line): give a PEM file with the certificate and its unencrypted private key".into());
        }
        const ENCRYPTED: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
        if bytes.windows(ENCRYPTED.len()).any(|w| w == ENCRYPTED) {
            return Err("the private key is encrypted: crmctl reads unencrypted PEM keys only; give a PKCS#12 / .pfx file with AZURE_CLIENT_CERTIFICATE_PASSWORD instead (`openssl pkcs12 -export -in cert.pem -inkey key.pem -out cert.pfx`), or decrypt the key into a file only the service account can read (`openssl pkey -in key.pem -out plain.pem`)".into());
        }
        let mut certs = Vec::new();
        let mut key = None;
        for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
            let (kind, der) = item.map_err(|e| format!("a PEM section cannot be read: {e}"))?;
            match kind {
                SectionKind::Certificate => certs.push(der),
                SectionKind::PrivateKey => {
                    key = Some(RsaKeyPair::from_pkcs8(&der).map_err(|e| {
                        format!("the private key is not a usable RSA key ({e}): Microsoft Entra certificate credentials are RSA")
                    })?)
                }
                SectionKind::RsaPrivateKey => {
                    key = Some(RsaKeyPair::from_der(&der).map_err(|e| {
                        format!("the RSA private key cannot be used ({e})")
                    })?)
                }
                SectionKind::EcPrivateKey => {
                    return Err("the private key is an EC key: Microsoft Entra certificate credentials are RSA (2048 bits or more)".into())
                }
                _ => {}
            }
        }
        pair(key.into_iter().collect(), certs, "the file")
    }

    /// `x5t#S256` of the certificate.
    pub fn thumbprint_s256(&self) -> String {
        thumbprint_s256(&self.cert_der)
    }

    /// The certificate's DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A client assertion for `client_id` at the token endpoint `audience`, valid from
    /// `now` for [`LIFETIME`].
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<Secret, ProviderError> {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti)
            .map_err(|e| ProviderError::Backend(format!("no random source for jti: {e}")))?;
        let header = serde_json::json!({
            "alg": "PS256",
            "typ": "JWT",
            "x5t#S256": self.thumbprint_s256(),
        });
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": b64(&jti),
            "nbf": secs,
            "iat": secs,
            "exp": secs + LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PSS_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| ProviderError::Backend("signing the client assertion failed".into()))?;
        Ok(Secret::new(format!("{signing_input}.{}", b64(&sig))))
    }
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The certificate whose public key verifies a signature of one of `keys`: the leaf of a
/// file that may hold a chain, and the proof that the key belongs to it.
fn pair(keys: Vec<RsaKeyPair>, certs: Vec<Vec<u8>>, what: &str) -> Result<CertificateKey, String> {
    if keys.is_empty() {
        return Err(format!("no private key in {what}: put the certificate and its private key (`-----BEGIN PRIVATE KEY-----`) in one PEM file, or export the .pfx with its private key"));
    }
    if certs.is_empty() {
        return Err(format!("no certificate in {what}: put the certificate (`-----BEGIN CERTIFICATE-----`) beside its private key"));
    }
    let probe = b"crmctl certificate probe";
    for key in keys {
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(&RSA_PSS_SHA256, &SystemRandom::new(), probe, &mut sig)
            .map_err(|_| "the private key cannot sign".to_string())?;
        if let Some(cert_der) = certs
            .iter()
            .find(|der| verify(der, probe, &sig, "PS256").is_ok())
        {
            return Ok(CertificateKey {
                key,
                cert_der: cert_der.clone(),
            });
        }
    }
    Err(format!("the private key belongs to none of the certificates in {what}: give the certificate registered on the app registration together with its own key"))
}

/// Verify `sig` over `msg` with the public key of the certificate `cert_der`, for the JWT
/// algorithm `alg` (PS256 or RS256). Used to pair a key with its certificate, and by the
/// emulator's token endpoint to check an assertion.
pub fn verify(cert_der: &[u8], msg: &[u8], sig: &[u8], alg: &str) -> Result<(), String> {
    let der = CertificateDer::from(cert_der);
    let cert =
        webpki::EndEntityCert::try_from(&der).map_err(|e| format!("bad certificate: {e}"))?;
    let alg: &dyn rustls::pki_types::SignatureVerificationAlgorithm = match alg {
        "PS256" => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        "RS256" => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        other => return Err(format!("algorithm `{other}` is not PS256 or RS256")),
    };
    cert.verify_signature(alg, msg, sig)
        .map_err(|e| format!("signature does not verify: {e}"))
}

/// The client-credentials flow with a certificate: the form of the client-secret flow with
/// `client_assertion_type` + `client_assertion` in place of `client_secret` (Microsoft
/// identity platform, "OAuth 2.0 client credentials flow", second case: access token
/// request with a certificate). A fresh assertion per token request.
pub struct ClientCertificate {
    client: reqwest::Client,
    token_url: String,
    client_id: String,
    key: CertificateKey,
}

impl ClientCertificate {
    /// The flow for `client_id` with `key` against `token_url`, through `client`.
    pub fn new(
        client: reqwest::Client,
        token_url: String,
        client_id: String,
        key: CertificateKey,
    ) -> ClientCertificate {
        ClientCertificate {
            client,
            token_url,
            client_id,
            key,
        }
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("key", &self.key)
            .finish()
    }
}

impl TokenSource for ClientCertificate {
    fn token<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, ProviderError>> {
        Box::pin(async move {
            let assertion =
                self.key
                    .assertion(&self.client_id, &self.token_url, SystemTime::now())?;
            let form = [
                ("client_id", self.client_id.as_str()),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion.expose()),
                ("grant_type", "client_credentials"),
                ("scope", scope),
            ];
            request_token(
                &self.client,
                &self.token_url,
                &form,
                "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_CERTIFICATE_PATH (the certificate must be uploaded to the app registration)",
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &[u8] = include_bytes!("../../../tests/fixtures/certificate/app.pem");
    const APP1: &[u8] = include_bytes!("../../../tests/fixtures/certificate/app-pkcs1.pem");
    const OTHER: &[u8] = include_bytes!("../../../tests/fixtures/certificate/other.pem");
    const CRT: &[u8] = include_bytes!("../../../tests/fixtures/certificate/app.crt");
    const PFX: &[u8] = include_bytes!("../../../tests/fixtures/certificate/app.pfx");
    const PFX_LEGACY: &[u8] = include_bytes!("../../../tests/fixtures/certificate/app-legacy.pfx");
    const PFX_NOPASS: &[u8] = include_bytes!("../../../tests/fixtures/certificate/app-nopass.pfx");
    const PFX_CAMELLIA: &[u8] =
        include_bytes!("../../../tests/fixtures/certificate/app-camellia.pfx");
    /// The fixtures' password (tests/fixtures/certificate/README.md).
    const PASSWORD: &str = "crmctl-test-only";

    fn part(jwt: &str, i: usize) -> serde_json::Value {
        let p = jwt.split('.').nth(i).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    // issue 12 item 1: the assertion has the documented header and claims, and verifies
    // with the certificate's public key (PS256); PKCS#8 and PKCS#1 keys give one thumbprint.
    #[test]
    fn assertion_is_a_ps256_jwt_signed_by_the_certificate() {
        let key = CertificateKey::from_pem(APP).unwrap();
        let key1 = CertificateKey::from_pem(APP1).unwrap();
        assert_eq!(key.thumbprint_s256(), key1.thumbprint_s256());
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let aud = "https://login.example/t/oauth2/v2.0/token";
        let jwt = key.assertion("app-id", aud, now).unwrap();
        let jwt = jwt.expose();
        let header = part(jwt, 0);
        assert_eq!(header["alg"], "PS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["x5t#S256"], key.thumbprint_s256().as_str());
        let claims = part(jwt, 1);
        assert_eq!(claims["aud"], aud);
        assert_eq!(claims["iss"], "app-id");
        assert_eq!(claims["sub"], "app-id");
        assert_eq!(claims["nbf"], 1_700_000_000u64);
        assert_eq!(claims["exp"], 1_700_000_600u64);
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .unwrap();
        verify(key.certificate_der(), input.as_bytes(), &sig, "PS256").unwrap();
        // Another certificate's key does not verify it, nor does a changed claim.
        let other = CertificateKey::from_pem(OTHER).unwrap();
        assert!(verify(other.certificate_der(), input.as_bytes(), &sig, "PS256").is_err());
        assert!(verify(key.certificate_der(), b"x.y", &sig, "PS256").is_err());
        // Two assertions differ (jti).
        assert_ne!(key.assertion("app-id", aud, now).unwrap().expose(), jwt);
    }

    // issue 12 item 1: bad files are refused with what to do; Debug shows no key.
    #[test]
    fn bad_files_say_what_to_do_and_debug_redacts() {
        let mut mixed = CRT.to_vec();
        let at = std::str::from_utf8(OTHER)
            .unwrap()
            .find("-----BEGIN PRIVATE")
            .unwrap();
        mixed.extend_from_slice(&OTHER[at..]);
        let cases: [(&[u8], &str); 5] = [
            (b"\x30\x82binary", "not a readable PKCS#12 file"),
            (b"plain text", "neither a PEM file"),
            (CRT, "no private key"),
            (&mixed, "belongs to none of the certificates"),
            (
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "encrypted",
            ),
        ];
        for (bytes, want) in cases {
            let e = CertificateKey::from_bytes(bytes, None).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        let key = CertificateKey::from_pem(APP).unwrap();
        let text = format!("{key:?}");
        assert!(text.contains("redacted"), "{text}");
        let pem = std::str::from_utf8(APP).unwrap();
        let body = pem[pem.find("PRIVATE KEY-----").unwrap()..]
            .lines()
            .nth(1)
            .unwrap();
        assert!(!text.contains(body));
    }

    // issue 12 item 1 (Azure SDK EnvironmentCredential: a PEM or PKCS#12 file): the .pfx of
    // the OpenSSL 3 default (PBES2 AES-256-CBC, PBKDF2 SHA-256), of the legacy OpenSSL 1.1
    // default (RC2-40 and 3DES, SHA-1 MAC) and one without password give the PEM file's key
    // and certificate; told by content, not by name.
    #[test]
    fn pkcs12_files_give_the_same_key_as_the_pem_file() {
        let want = CertificateKey::from_pem(APP).unwrap().thumbprint_s256();
        for (bytes, password) in [
            (PFX, Some(PASSWORD)),
            (PFX_LEGACY, Some(PASSWORD)),
            (PFX_NOPASS, None),
            (PFX_NOPASS, Some("")),
        ] {
            let key = CertificateKey::from_bytes(bytes, password).unwrap();
            assert_eq!(key.thumbprint_s256(), want);
            // The key signs assertions its certificate verifies.
            let jwt = key.assertion("app", "aud", SystemTime::now()).unwrap();
            let (input, sig) = jwt.expose().rsplit_once('.').unwrap();
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig)
                .unwrap();
            verify(key.certificate_der(), input.as_bytes(), &sig, "PS256").unwrap();
        }
        // A PEM file given with a password is still read as PEM.
        let pem = CertificateKey::from_bytes(APP, Some(PASSWORD)).unwrap();
        assert_eq!(pem.thumbprint_s256(), want);
    }

    // issue 12 item 1: a wrong or missing password and an encryption crmctl does not read
    // are told with what to do; no message holds the password given.
    #[test]
    fn pkcs12_errors_say_what_to_do_without_the_password() {
        let wrong = "Wrong-Pa55word";
        let cases: [(&[u8], Option<&str>, &str); 4] = [
            (
                PFX,
                Some(wrong),
                "the password does not open this PKCS#12 file",
            ),
            (PFX_LEGACY, Some(wrong), "the password does not open"),
            (
                PFX,
                None,
                "protected by a password: set AZURE_CLIENT_CERTIFICATE_PASSWORD",
            ),
            (PFX_CAMELLIA, Some(PASSWORD), "does not read"),
        ];
        for (bytes, password, want) in cases {
            let e = CertificateKey::from_bytes(bytes, password).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
            assert!(!e.contains(wrong) && !e.contains(PASSWORD), "{e}");
        }
    }
}
