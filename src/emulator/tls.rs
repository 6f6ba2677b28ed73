//! The emulator's certificate (issue 12 item 5): a root CA generated at start and a leaf
//! for `127.0.0.1` and `localhost` signed by it (rcgen, ring). The root's PEM is what a
//! client trusts (`CRMCTL_CA_FILE`); nothing is written but that public certificate.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::EmulatorError;

/// The root's PEM and the server's TLS configuration.
pub(super) struct Certs {
    pub root_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

fn tls(what: &str, e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Tls(format!("{what}: {e}"))
}

/// A fresh root CA and a leaf for 127.0.0.1 / localhost, and a rustls server config
/// (ring provider, HTTP/1.1) serving the leaf.
pub(super) fn generate() -> Result<Certs, EmulatorError> {
    let root_key = KeyPair::generate().map_err(|e| tls("root key", e))?;
    let mut root = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls("root", e))?;
    root.distinguished_name
        .push(DnType::CommonName, "crmctl emulator root (generated)");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key).map_err(|e| tls("root", e))?;
    let issuer = rcgen::Issuer::new(root, root_key);

    let leaf_key = KeyPair::generate().map_err(|e| tls("leaf key", e))?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(|e| tls("leaf", e))?;
    leaf.distinguished_name
        .push(DnType::CommonName, "crmctl emulator");
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| tls("leaf", e))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone(), root_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| tls("server certificate", e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Certs {
        root_pem: root_cert.pem(),
        server: Arc::new(server),
    })
}
