//! Certificates the node mints for itself and its pods, and the rustls configurations built from them.
//!
//! A real kubelet either loads `--tls-cert-file`/`--tls-private-key-file` or generates a self-signed
//! serving certificate for its node name and addresses; pods bring their own certificates inside their
//! images. Here the pods are in-process echo servers, so the node mints a serving certificate per pod
//! with rcgen — signed by a CA the node was given (so clients that trust the lab CA can verify pods),
//! or self-signed when there is none.
//!
//! Server configurations come from core's [`ServerTls`] builder (ring provider, ALPN h2 and
//! http/1.1), so nothing here depends on which process-wide default provider is installed.

use std::path::Path;
use std::sync::Arc;

use proxylab_core::tls::{ClientAuth, ServerTls, TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Errors while loading or minting certificates and building TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// rcgen refused to generate or sign.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// Loading PEM files or assembling the rustls configuration failed (core's TLS layer).
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The ring crypto provider, shared by every configuration built here.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide rustls provider; a no-op when one is already installed
/// (kube-rs builds its client configuration from the process default).
pub use proxylab_core::tls::install_crypto_provider;

/// A certificate chain and its private key, ready for rustls.
#[derive(Debug)]
pub struct CertifiedKey {
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The leaf in PEM (handy for writing files and for tests).
    pub cert_pem: String,
    /// The private key in PEM.
    pub key_pem: String,
}

/// A CA that can sign leaf certificates: the lab's cluster CA handed to the node, or one generated
/// on the spot (tests, standalone use).
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Parses a CA certificate and its private key from PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| CertError::File {
                path: "<CA certificate>".into(),
                reason: e.to_string(),
            })?;
        // Parse once now so a bad CA is reported at startup rather than at the first pod.
        Issuer::from_ca_cert_der(&cert_der, &key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            key,
        })
    }

    /// Reads a CA certificate and key from PEM files.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let cert_pem = read_text(cert)?;
        let key_pem = read_text(key)?;
        Self::from_pem(&cert_pem, &key_pem).map_err(|e| CertError::File {
            path: format!("{} / {}", cert.display(), key.display()),
            reason: e.to_string(),
        })
    }

    /// Generates a fresh self-signed CA with the given common name.
    pub fn generate(common_name: &str) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key in PEM (to write a generated CA to files).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A root store holding just this CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        // A certificate we generated or parsed ourselves; adding it cannot fail in practice, and
        // if it did the store would simply be empty (every verification fails closed).
        let _ = roots.add(self.cert_der.clone());
        roots
    }

    fn sign(
        &self,
        params: &CertificateParams,
        key: &KeyPair,
    ) -> Result<rcgen::Certificate, CertError> {
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key)?;
        Ok(params.signed_by(key, &issuer)?)
    }

    /// Issues a client certificate (CN = user, O = groups), as kube-apiserver and the kubelet read them.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertifiedKey, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = self.sign(&params, &key)?;
        Ok(certified(cert, key))
    }
}

/// Mints a serving certificate for `names` (DNS names or IP addresses; the first is also the CN),
/// signed by `ca` or self-signed when `ca` is None.
pub fn issue_serving(
    names: &[String],
    ca: Option<&CertificateAuthority>,
) -> Result<CertifiedKey, CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = match ca {
        Some(ca) => ca.sign(&params, &key)?,
        None => params.self_signed(&key)?,
    };
    Ok(certified(cert, key))
}

fn certified(cert: rcgen::Certificate, key: KeyPair) -> CertifiedKey {
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    CertifiedKey {
        chain: vec![cert.der().clone()],
        key: key_der,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A server configuration offering ALPN `h2` and `http/1.1` (built with core's [`ServerTls`]).
/// With `client_cas`, clients may present a certificate, which must then chain to those CAs (the
/// handshake fails otherwise); clients without one are let through so the application can answer
/// 401 as the kubelet does.
pub fn server_config(
    key: &CertifiedKey,
    client_cas: Vec<CertificateDer<'static>>,
) -> Result<Arc<ServerConfig>, CertError> {
    let mut tls = ServerTls::new(key.chain.clone(), key.key.clone_key());
    if !client_cas.is_empty() {
        tls = tls.client_cas(client_cas, ClientAuth::Optional);
    }
    Ok(tls.build()?)
}

fn read_text(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|e| CertError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}
