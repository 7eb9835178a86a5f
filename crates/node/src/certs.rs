//! Certificates the node mints for itself and its pods, and the rustls configurations built from them.
//!
//! A real kubelet either loads `--tls-cert-file`/`--tls-private-key-file` or generates a self-signed
//! serving certificate for its node name and addresses; pods bring their own certificates inside their
//! images. Here the pods are in-process echo servers, so the node mints a serving certificate per pod
//! — signed by a CA the node was given (so clients that trust the lab CA can verify pods), or
//! self-signed when there is none.
//!
//! There is one PKI implementation in the lab, core's [`proxylab_core::tls::pki`]: this module only
//! adapts it to the node's call sites (a CA value that can sign, names given as text, certificates
//! already decoded for rustls). Server configurations come from core's [`ServerTls`] builder (ring
//! provider, ALPN h2 and http/1.1), so nothing here depends on which process-wide default provider
//! is installed.

use std::path::Path;
use std::sync::Arc;

use proxylab_core::tls::pki::{self, CaSigner, CertAndKey};
use proxylab_core::tls::{ClientAuth, ServerTls, TlsError};
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Errors while loading or minting certificates and building TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// Loading PEM, minting certificates or assembling the rustls configuration failed (core's
    /// TLS layer).
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The ring crypto provider, shared by every configuration built here (core's).
pub use proxylab_core::tls::provider;

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

impl TryFrom<CertAndKey> for CertifiedKey {
    type Error = CertError;

    /// Decodes core's PEM pair once, so every TLS configuration built from it skips the parsing.
    fn try_from(pem: CertAndKey) -> Result<Self, CertError> {
        let (chain, key) = pem.der()?;
        Ok(Self {
            chain,
            key,
            cert_pem: pem.cert_pem,
            key_pem: pem.key_pem,
        })
    }
}

/// A CA that can sign leaf certificates: the lab's cluster CA handed to the node, or one generated
/// on the spot (tests, standalone use). Core's [`CertAndKey`] and [`CaSigner`], kept together with
/// the decoded certificate and a root store trusting it.
pub struct CertificateAuthority {
    pem: CertAndKey,
    cert_der: CertificateDer<'static>,
    roots: RootCertStore,
    signer: CaSigner,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material into logs.
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Wraps a CA certificate and key held as PEM. Everything is parsed now, so a bad CA is
    /// reported at startup rather than at the first pod.
    pub fn from_cert_and_key(pem: CertAndKey) -> Result<Self, CertError> {
        let signer = CaSigner::new(&pem)?;
        let cert_der = pem.cert_der()?;
        let roots = proxylab_core::tls::root_store(std::slice::from_ref(&cert_der))?;
        Ok(Self {
            pem,
            cert_der,
            roots,
            signer,
        })
    }

    /// Parses a CA certificate and its private key from PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        Self::from_cert_and_key(CertAndKey {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
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
        Self::from_cert_and_key(pki::generate_ca(common_name)?)
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.pem.cert_pem
    }

    /// The CA's private key in PEM (to write a generated CA to files).
    pub fn key_pem(&self) -> String {
        self.pem.key_pem.clone()
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A root store holding just this CA.
    pub fn root_store(&self) -> RootCertStore {
        self.roots.clone()
    }

    /// Issues a client certificate (CN = user, O = groups), as kube-apiserver and the kubelet read them.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertifiedKey, CertError> {
        self.signer.client(user, groups)?.try_into()
    }
}

/// Mints a serving certificate for `names` (DNS names or IP addresses; the first is also the CN),
/// signed by `ca` or self-signed when `ca` is None.
pub fn issue_serving(
    names: &[String],
    ca: Option<&CertificateAuthority>,
) -> Result<CertifiedKey, CertError> {
    let cn = names.first().map(String::as_str).unwrap_or_default();
    let (dns, ips) = pki::split_names(names);
    let minted = match ca {
        Some(ca) => ca.signer.serving(cn, &dns, &ips)?,
        None => pki::self_signed_serving(cn, &dns, &ips)?,
    };
    minted.try_into()
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

#[cfg(test)]
mod tests {
    use super::*;
    use proxylab_core::tls::PeerIdentity;

    #[test]
    fn serving_certificates_are_signed_by_the_ca_or_by_themselves() {
        let ca = CertificateAuthority::generate("lab-ca").expect("ca");
        let names = vec!["web-1".to_string(), "127.0.30.5".to_string()];
        let signed = issue_serving(&names, Some(&ca)).expect("signed");
        let id = PeerIdentity::from_chain(&signed.chain).expect("parse");
        assert_eq!(id.user, "web-1");
        assert!(id.issued_by(ca.cert_der()));

        let own = issue_serving(&names, None).expect("self-signed");
        let id = PeerIdentity::from_chain(&own.chain).expect("parse");
        assert!(!id.issued_by(ca.cert_der()));
        assert!(id.issued_by(&own.chain[0]));
        assert!(server_config(&own, vec![ca.cert_der().clone()]).is_ok());
    }

    #[test]
    fn a_ca_round_trips_through_pem_and_garbage_is_refused() {
        let ca = CertificateAuthority::generate("lab-ca").expect("ca");
        let back = CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).expect("reload");
        assert_eq!(back.cert_der(), ca.cert_der());
        assert_eq!(back.root_store().len(), 1);
        let client = back.issue_client("alice", &["devs"]).expect("client");
        let id = PeerIdentity::from_chain(&client.chain).expect("parse");
        assert_eq!(
            (id.user.as_str(), id.groups.clone()),
            ("alice", vec!["devs".to_string()])
        );
        assert!(id.issued_by(ca.cert_der()));
        assert!(CertificateAuthority::from_pem("not pem", &ca.key_pem()).is_err());
        assert!(CertificateAuthority::from_pem(ca.cert_pem(), "not pem").is_err());
    }
}
