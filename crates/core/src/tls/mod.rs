//! TLS for every proxylab listener and upstream, on rustls with the ring provider.
//!
//! Kubernetes leans on TLS for identity as much as for privacy: kube-apiserver reads the user name from
//! a client certificate's CN and the groups from its O fields, the apiserver authenticates itself to
//! kubelets with a client certificate, and a front proxy vouches for users with a certificate from a
//! separate CA. So this module does three jobs:
//!
//! - builds server configurations ([`ServerTls`]) that may ask for, or require, a client certificate
//!   from a given set of CAs, and offer ALPN `h2` and `http/1.1`;
//! - builds client configurations ([`ClientTls`]) that verify the server against given CAs by default
//!   (skipping verification only when told to, as `insecure-skip-tls-verify` does) and may present a
//!   client certificate;
//! - reads the identity out of a verified client certificate ([`PeerIdentity`]).
//!
//! [`pki`] generates the lab's whole PKI with rcgen.
//!
//! One crypto provider: ring. rustls panics at run time when two providers are compiled in and none was
//! chosen, so every binary calls [`install_crypto_provider`] first.

pub mod pki;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Errors from loading or assembling TLS material. Each names the file (when there is one) so a user
/// can act on it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: String },
    #[error("{what}: no PEM private key found (PKCS#1, PKCS#8 and SEC1 are accepted)")]
    NoPrivateKey { what: String },
    #[error("{what}: invalid PEM: {reason}")]
    Pem { what: String, reason: String },
    #[error("invalid CA certificate: {0}")]
    BadCa(String),
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Installs ring as the process-wide rustls crypto provider. Idempotent: a second call (or a provider
/// installed by someone else first) is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The ring crypto provider as a value, for configurations built explicitly with
/// `builder_with_provider`: those work whatever process-wide default is (or is not) installed.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// All certificates in a PEM file, in order (leaf first for a chain).
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let path = path.as_ref();
    certs_from_pem_named(&read_file(path)?, &path.display().to_string())
}

/// The first private key in a PEM file.
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let path = path.as_ref();
    private_key_from_pem_named(&read_file(path)?, &path.display().to_string())
}

/// All certificates in PEM bytes.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_from_pem_named(pem, "PEM data")
}

/// The first private key in PEM bytes.
pub fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    private_key_from_pem_named(pem, "PEM data")
}

fn certs_from_pem_named(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

fn private_key_from_pem_named(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            what: what.to_owned(),
        },
        other => TlsError::Pem {
            what: what.to_owned(),
            reason: other.to_string(),
        },
    })
}

/// A root store trusting exactly these CAs. A certificate that cannot serve as a trust anchor is
/// an error ([`TlsError::BadCa`]) rather than silently left out, so verification never trusts less
/// than the caller asked for without saying so.
pub fn root_store(cas: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca.clone())
            .map_err(|e| TlsError::BadCa(e.to_string()))?;
    }
    Ok(roots)
}

/// Whether a server asks for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asks (plain server TLS).
    None,
    /// Asks and verifies one when offered, but lets clients without one in — kube-apiserver's mode,
    /// where tokens are the other way to authenticate.
    Optional,
    /// Refuses the handshake without a certificate from the given CAs — a kubelet's mode.
    Required,
}

/// A builder for a rustls server configuration.
#[derive(Debug, Clone)]
pub struct ServerTls {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    client_cas: Vec<CertificateDer<'static>>,
    client_auth: ClientAuth,
    alpn: Vec<Vec<u8>>,
}

impl ServerTls {
    /// A server presenting `chain` (leaf first) with `key`; ALPN `h2` and `http/1.1`.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Self {
            chain,
            key: Arc::new(key),
            client_cas: Vec::new(),
            client_auth: ClientAuth::None,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }

    /// Loads the certificate chain and key from PEM files (`--tls-cert-file`, `--tls-private-key-file`).
    pub fn from_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        Ok(Self::new(load_certs(cert)?, load_private_key(key)?))
    }

    /// Verifies client certificates against these CAs (several are allowed: the cluster CA and the
    /// front-proxy CA are both trusted by kube-apiserver, for different purposes).
    pub fn client_cas(mut self, cas: Vec<CertificateDer<'static>>, mode: ClientAuth) -> Self {
        self.client_cas = cas;
        self.client_auth = mode;
        self
    }

    /// Replaces the ALPN protocols offered (e.g. only `http/1.1` for a listener that must upgrade).
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    pub fn build(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            mode => {
                if self.client_cas.is_empty() {
                    return Err(TlsError::Verifier(
                        "client certificates requested but no client CA given".into(),
                    ));
                }
                let roots = Arc::new(root_store(&self.client_cas)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let verifier = if mode == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_single_cert(self.chain.clone(), self.key.as_ref().clone_key())?;
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }
}

/// A builder for a rustls client configuration. Verification is on unless [`ClientTls::insecure`]
/// says otherwise.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    cas: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    insecure: bool,
    alpn: Vec<Vec<u8>>,
}

impl ClientTls {
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust these CAs (a kubeconfig's `certificate-authority`).
    pub fn ca(mut self, cas: Vec<CertificateDer<'static>>) -> Self {
        self.cas.extend(cas);
        self
    }

    /// Present this client certificate (a kubeconfig's `client-certificate`/`client-key`).
    pub fn client_cert(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.identity = Some((chain, Arc::new(key)));
        self
    }

    /// Skip server verification (`insecure-skip-tls-verify`; the apiserver proxy also dials pods and
    /// services over https without verifying). Signatures are still checked for the handshake.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// ALPN protocols to offer, most preferred first (`h2`, `http/1.1`; only `http/1.1` for upgrades).
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    pub fn build(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
        } else {
            builder.with_root_certificates(root_store(&self.cas)?)
        };
        let mut config = match &self.identity {
            Some((chain, key)) => {
                builder.with_client_auth_cert(chain.clone(), key.as_ref().clone_key())?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }
}

/// Accepts any server certificate but still checks handshake signatures, so the connection is at least
/// bound to the key the server presented.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Who a verified client certificate says the peer is, read as kube-apiserver reads it: the subject's
/// CN is the user name and every O is a group. `issuer` is the issuer's distinguished name, which lets a
/// server that trusts several CAs tell which one vouched (the front-proxy CA may assert other users'
/// names; the cluster CA may not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub user: String,
    pub groups: Vec<String>,
    pub issuer: String,
    /// The chain as presented, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
}

impl PeerIdentity {
    /// Reads the identity from a presented chain (leaf first). `None` when there is no certificate or
    /// it cannot be parsed. Callers must only use this on chains the TLS layer has verified.
    pub fn from_chain(chain: &[CertificateDer<'static>]) -> Option<Self> {
        let leaf = chain.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        let subject = cert.subject();
        let user = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .map(str::to_owned)
            .collect();
        Some(Self {
            user,
            groups,
            issuer: cert.issuer().to_string(),
            chain: chain.to_vec(),
        })
    }

    /// Whether the leaf was issued (signed) by `ca`. Used to tell which of several trusted CAs vouched.
    pub fn issued_by(&self, ca: &CertificateDer<'_>) -> bool {
        let Some(leaf) = self.chain.first() else {
            return false;
        };
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
            return false;
        };
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca.as_ref()) else {
            return false;
        };
        leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }
}

/// The subject CN of a certificate, for messages and checks (`--requestheader-allowed-names`).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_the_path() {
        let err = load_certs("/nonexistent/ca.crt").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/ca.crt: cannot read")
        );
    }

    #[test]
    fn pem_without_certificate_is_reported() {
        let err = certs_from_pem(b"hello").unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let err = private_key_from_pem(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(
            matches!(err, TlsError::NoPrivateKey { .. } | TlsError::Pem { .. }),
            "{err}"
        );
    }

    #[test]
    fn explicit_provider_builds_configs_without_a_process_default() {
        // No install_crypto_provider() here on purpose: the explicit provider must suffice.
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        assert!(!config.crypto_provider().cipher_suites.is_empty());
    }

    #[test]
    fn root_store_holds_each_ca_and_rejects_garbage() {
        let a = pki::generate_ca("a").unwrap().cert_der().unwrap();
        let b = pki::generate_ca("b").unwrap().cert_der().unwrap();
        assert_eq!(root_store(&[a.clone(), b]).unwrap().len(), 2);
        assert!(root_store(&[]).unwrap().is_empty());
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let err = root_store(&[a, garbage]).unwrap_err();
        assert!(matches!(err, TlsError::BadCa(_)), "{err}");
    }

    #[test]
    fn requested_client_auth_needs_a_ca() {
        install_crypto_provider();
        let pki = pki::LabPki::generate(&pki::PkiSpec::default()).unwrap();
        let (chain, key) = pki.apiserver.der().unwrap();
        let err = ServerTls::new(chain, key)
            .client_cas(vec![], ClientAuth::Required)
            .build()
            .unwrap_err();
        assert!(matches!(err, TlsError::Verifier(_)));
    }
}
