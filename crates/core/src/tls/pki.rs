//! The lab's PKI, laid out as kubeadm lays out `/etc/kubernetes/pki`.
//!
//! A cluster runs on a handful of certificates, each with one job:
//!
//! | file | what it is |
//! |---|---|
//! | `ca.crt`/`ca.key` | the cluster CA: signs every serving and client certificate below |
//! | `apiserver.crt` | the apiservers' serving certificate; its SANs cover every apiserver address, the HA balancer address, `localhost`, `kubernetes`, `kubernetes.default`, `kubernetes.default.svc[.cluster.local]` |
//! | `apiserver-kubelet-client.crt` | the apiserver's client certificate towards kubelets (`O=system:masters`) |
//! | `admin.crt` | the lab administrator (`CN=kubernetes-admin`, `O=system:masters`) for the kubeconfig |
//! | `kubelet-<node>.crt` | each kubelet's serving certificate, SAN = the node's address and name |
//! | `node-client-<node>.crt` | each node's client identity towards the apiserver (`CN=system:node:<node>`, `O=system:nodes`), as kubelet TLS bootstrap would issue |
//! | `front-proxy-ca.crt` | a separate CA whose clients may assert other users' identities in headers |
//! | `front-proxy-client.crt` | the client certificate a front proxy presents (`CN=front-proxy-client`) |
//! | `sa.key`/`sa.pub` | the service-account token signing key (ECDSA P-256, so tokens are ES256) |
//!
//! Keys are ECDSA P-256 throughout: rcgen generates them with ring in microseconds, which keeps
//! `lab up` fast. Certificates use rcgen's default validity window, which is long; a lab PKI is not
//! meant to be rotated.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material into logs.
        f.debug_struct("CertAndKey").finish_non_exhaustive()
    }
}

impl CertAndKey {
    /// The chain (one certificate) and key as rustls wants them.
    pub fn der(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        Ok((
            super::certs_from_pem(self.cert_pem.as_bytes())?,
            super::private_key_from_pem(self.key_pem.as_bytes())?,
        ))
    }

    /// The certificate alone, DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, TlsError> {
        super::certs_from_pem(self.cert_pem.as_bytes())?
            .into_iter()
            .next()
            .ok_or_else(|| TlsError::NoCertificate {
                what: "certificate".into(),
            })
    }
}

/// What the PKI must cover.
#[derive(Debug, Clone)]
pub struct PkiSpec {
    /// Every address an apiserver is reached at, including the HA balancer's.
    pub apiserver_ips: Vec<IpAddr>,
    /// Extra DNS names for the apiserver certificate (the Kubernetes names are always added).
    pub apiserver_dns: Vec<String>,
    /// Nodes: name and address, one kubelet serving certificate each.
    pub nodes: Vec<(String, IpAddr)>,
}

impl Default for PkiSpec {
    fn default() -> Self {
        Self {
            apiserver_ips: vec![IpAddr::from([127, 0, 0, 1])],
            apiserver_dns: Vec::new(),
            nodes: Vec::new(),
        }
    }
}

/// The whole lab PKI in memory.
#[derive(Debug, Clone)]
pub struct LabPki {
    pub ca: CertAndKey,
    pub front_proxy_ca: CertAndKey,
    pub apiserver: CertAndKey,
    pub apiserver_kubelet_client: CertAndKey,
    pub admin: CertAndKey,
    pub front_proxy_client: CertAndKey,
    pub kubelets: BTreeMap<String, CertAndKey>,
    /// Each node's client certificate (`system:node:<name>` in `system:nodes`).
    pub node_clients: BTreeMap<String, CertAndKey>,
    /// PKCS#8 PEM of the service-account signing key (ECDSA P-256).
    pub service_account_key_pem: String,
    /// SPKI PEM of its public half.
    pub service_account_pub_pem: String,
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

/// A new self-signed CA (ECDSA P-256) with this common name; sign leaves with [`CaSigner`].
pub fn generate_ca(cn: &str) -> Result<CertAndKey, TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn(cn, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Signs leaf certificates with a CA held as PEM.
pub struct CaSigner {
    issuer: Issuer<'static, KeyPair>,
}

impl CaSigner {
    pub fn new(ca: &CertAndKey) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(&ca.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, key)?;
        Ok(Self { issuer })
    }

    /// A serving certificate for these DNS names and IPs.
    pub fn serving(
        &self,
        cn: &str,
        dns: &[String],
        ips: &[IpAddr],
    ) -> Result<CertAndKey, TlsError> {
        self.leaf(
            dn(cn, &[]),
            serving_sans(dns, ips)?,
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        )
    }

    /// A client certificate: CN is the user, each O a group.
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<CertAndKey, TlsError> {
        self.leaf(
            dn(user, groups),
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    fn leaf(
        &self,
        name: DistinguishedName,
        sans: Vec<SanType>,
        ekus: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<CertAndKey, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = leaf_params(name, sans, ekus)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A self-signed serving certificate (not a CA) for these DNS names and IPs: what a kubelet started
/// without `--tls-cert-file` presents. Clients can only trust it by pinning it, which is why the
/// lab normally hands components certificates from [`CaSigner`] instead.
pub fn self_signed_serving(
    cn: &str,
    dns: &[String],
    ips: &[IpAddr],
) -> Result<CertAndKey, TlsError> {
    let key = KeyPair::generate()?;
    let params = leaf_params(
        dn(cn, &[]),
        serving_sans(dns, ips)?,
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    )?;
    let cert = params.self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Splits subject alternative names written as text into DNS names and IP addresses: a name that
/// parses as an IP address is an IP SAN, anything else a DNS name (wildcards such as `*.ns.svc`
/// included). Verifiers match IP SANs only against IPs, so `"127.0.0.1"` as a DNS name would never
/// match a client dialling that address.
pub fn split_names<S: AsRef<str>>(names: &[S]) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in names {
        let name = name.as_ref();
        match name.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(name.to_owned()),
        }
    }
    (dns, ips)
}

fn serving_sans(dns: &[String], ips: &[IpAddr]) -> Result<Vec<SanType>, TlsError> {
    let mut sans: Vec<SanType> = Vec::new();
    for d in dns {
        sans.push(SanType::DnsName(d.clone().try_into()?));
    }
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    Ok(sans)
}

/// Parameters every leaf shares, CA-signed or self-signed: not a CA, signature and key-encipherment
/// key usages, and the extended key usage that says what the certificate is for.
fn leaf_params(
    name: DistinguishedName,
    sans: Vec<SanType>,
    ekus: Vec<ExtendedKeyUsagePurpose>,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = ekus;
    Ok(params)
}

/// DNS names every apiserver certificate carries, as kubeadm's does.
pub const APISERVER_DNS_NAMES: &[&str] = &[
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

impl LabPki {
    /// Generates a fresh PKI.
    pub fn generate(spec: &PkiSpec) -> Result<Self, TlsError> {
        let ca = generate_ca("kubernetes")?;
        let front_proxy_ca = generate_ca("front-proxy-ca")?;
        let signer = CaSigner::new(&ca)?;
        let fp_signer = CaSigner::new(&front_proxy_ca)?;
        let (apiserver, kubelets, node_clients) = Self::issue_leaves(&signer, spec)?;
        let apiserver_kubelet_client =
            signer.client("kube-apiserver-kubelet-client", &["system:masters"])?;
        let admin = signer.client("kubernetes-admin", &["system:masters"])?;
        let front_proxy_client = fp_signer.client("front-proxy-client", &[])?;
        let sa = KeyPair::generate()?;
        Ok(Self {
            ca,
            front_proxy_ca,
            apiserver,
            apiserver_kubelet_client,
            admin,
            front_proxy_client,
            kubelets,
            node_clients,
            service_account_key_pem: sa.serialize_pem(),
            service_account_pub_pem: sa.public_key_pem(),
        })
    }

    /// The same cluster for another layout: the CAs, the service-account key and the client
    /// certificates of the admin, the apiserver and the front proxy are kept (so kubeconfigs, tokens
    /// and clients keep working), while the serving certificates of the apiserver and the kubelets and
    /// the nodes' client certificates are issued afresh for `spec`. A restarted lab uses this: its
    /// topology may have moved an address or added a node, and nobody has to trust a new CA.
    pub fn renew_for(&self, spec: &PkiSpec) -> Result<Self, TlsError> {
        let fresh = Self::issue_leaves(&self.signer()?, spec)?;
        Ok(Self {
            ca: self.ca.clone(),
            front_proxy_ca: self.front_proxy_ca.clone(),
            apiserver: fresh.0,
            apiserver_kubelet_client: self.apiserver_kubelet_client.clone(),
            admin: self.admin.clone(),
            front_proxy_client: self.front_proxy_client.clone(),
            kubelets: fresh.1,
            node_clients: fresh.2,
            service_account_key_pem: self.service_account_key_pem.clone(),
            service_account_pub_pem: self.service_account_pub_pem.clone(),
        })
    }

    /// The apiserver's serving certificate, the kubelets' serving and the nodes' client certificates.
    #[allow(clippy::type_complexity)]
    fn issue_leaves(
        signer: &CaSigner,
        spec: &PkiSpec,
    ) -> Result<
        (
            CertAndKey,
            BTreeMap<String, CertAndKey>,
            BTreeMap<String, CertAndKey>,
        ),
        TlsError,
    > {
        let mut dns: Vec<String> = APISERVER_DNS_NAMES.iter().map(|s| s.to_string()).collect();
        dns.extend(spec.apiserver_dns.iter().cloned());
        let mut ips = spec.apiserver_ips.clone();
        for extra in [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ] {
            if !ips.contains(&extra) {
                ips.push(extra);
            }
        }
        let apiserver = signer.serving("kube-apiserver", &dns, &ips)?;
        let mut kubelets = BTreeMap::new();
        let mut node_clients = BTreeMap::new();
        for (name, ip) in &spec.nodes {
            let cert = signer.serving(
                &format!("system:node:{name}"),
                std::slice::from_ref(name),
                &[*ip],
            )?;
            kubelets.insert(name.clone(), cert);
            node_clients.insert(
                name.clone(),
                signer.client(&format!("system:node:{name}"), &["system:nodes"])?,
            );
        }
        Ok((apiserver, kubelets, node_clients))
    }

    /// A signer for more certificates from the cluster CA (pods' serving certificates, proxies' own).
    pub fn signer(&self) -> Result<CaSigner, TlsError> {
        CaSigner::new(&self.ca)
    }

    /// The cluster CA certificate, DER.
    pub fn ca_der(&self) -> Result<CertificateDer<'static>, TlsError> {
        self.ca.cert_der()
    }

    /// The front-proxy CA certificate, DER.
    pub fn front_proxy_ca_der(&self) -> Result<CertificateDer<'static>, TlsError> {
        self.front_proxy_ca.cert_der()
    }

    /// Writes kubeadm-style files under `dir` (created if missing). Keys are written mode 0600.
    pub fn write_to(&self, dir: &Path) -> Result<(), TlsError> {
        let mkerr = |path: &Path| {
            let path = path.to_owned();
            move |source| TlsError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(mkerr(dir))?;
        let mut files: Vec<(String, &CertAndKey)> = vec![
            ("ca".into(), &self.ca),
            ("front-proxy-ca".into(), &self.front_proxy_ca),
            ("apiserver".into(), &self.apiserver),
            (
                "apiserver-kubelet-client".into(),
                &self.apiserver_kubelet_client,
            ),
            ("admin".into(), &self.admin),
            ("front-proxy-client".into(), &self.front_proxy_client),
        ];
        for (name, ck) in &self.kubelets {
            files.push((format!("kubelet-{name}"), ck));
        }
        for (name, ck) in &self.node_clients {
            files.push((format!("node-client-{name}"), ck));
        }
        for (stem, ck) in files {
            write_file(&dir.join(format!("{stem}.crt")), &ck.cert_pem, false)?;
            write_file(&dir.join(format!("{stem}.key")), &ck.key_pem, true)?;
        }
        write_file(&dir.join("sa.key"), &self.service_account_key_pem, true)?;
        write_file(&dir.join("sa.pub"), &self.service_account_pub_pem, false)?;
        Ok(())
    }

    /// Reads what [`LabPki::write_to`] wrote.
    pub fn load_from(dir: &Path) -> Result<Self, TlsError> {
        let read = |name: &str| -> Result<String, TlsError> {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| TlsError::Read { path, source })
        };
        let pair = |stem: &str| -> Result<CertAndKey, TlsError> {
            Ok(CertAndKey {
                cert_pem: read(&format!("{stem}.crt"))?,
                key_pem: read(&format!("{stem}.key"))?,
            })
        };
        let mut kubelets = BTreeMap::new();
        let mut node_clients = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|source| TlsError::Read {
            path: dir.to_owned(),
            source,
        })?;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(node) = file
                .strip_prefix("kubelet-")
                .and_then(|f| f.strip_suffix(".crt"))
            {
                kubelets.insert(node.to_owned(), pair(&format!("kubelet-{node}"))?);
            }
            if let Some(node) = file
                .strip_prefix("node-client-")
                .and_then(|f| f.strip_suffix(".crt"))
            {
                node_clients.insert(node.to_owned(), pair(&format!("node-client-{node}"))?);
            }
        }
        Ok(Self {
            ca: pair("ca")?,
            front_proxy_ca: pair("front-proxy-ca")?,
            apiserver: pair("apiserver")?,
            apiserver_kubelet_client: pair("apiserver-kubelet-client")?,
            admin: pair("admin")?,
            front_proxy_client: pair("front-proxy-client")?,
            kubelets,
            node_clients,
            service_account_key_pem: read("sa.key")?,
            service_account_pub_pem: read("sa.pub")?,
        })
    }
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mode = if secret { 0o600 } else { 0o644 };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .map_err(err)?;
        f.write_all(contents.as_bytes()).map_err(err)
    }
    #[cfg(not(unix))]
    {
        let _ = secret;
        std::fs::write(path, contents).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::PeerIdentity;

    fn spec() -> PkiSpec {
        PkiSpec {
            apiserver_ips: vec![IpAddr::from([127, 0, 10, 1]), IpAddr::from([127, 0, 10, 2])],
            apiserver_dns: vec![],
            nodes: vec![("node-1".into(), IpAddr::from([127, 0, 20, 1]))],
        }
    }

    #[test]
    fn admin_identity_is_read_as_the_apiserver_reads_it() {
        let pki = LabPki::generate(&spec()).unwrap();
        let (chain, _) = pki.admin.der().unwrap();
        let id = PeerIdentity::from_chain(&chain).unwrap();
        assert_eq!(id.user, "kubernetes-admin");
        assert_eq!(id.groups, vec!["system:masters".to_string()]);
        assert!(id.issued_by(&pki.ca_der().unwrap()));
        assert!(!id.issued_by(&pki.front_proxy_ca_der().unwrap()));
        let (fp_chain, _) = pki.front_proxy_client.der().unwrap();
        let fp = PeerIdentity::from_chain(&fp_chain).unwrap();
        assert!(fp.issued_by(&pki.front_proxy_ca_der().unwrap()));
    }

    #[test]
    fn apiserver_cert_covers_every_address_and_kubernetes_names() {
        let pki = LabPki::generate(&spec()).unwrap();
        let der = pki.apiserver.cert_der().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        use x509_parser::extensions::GeneralName;
        let dns: Vec<&str> = san
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(*d),
                _ => None,
            })
            .collect();
        let ips: Vec<&[u8]> = san
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::IPAddress(ip) => Some(*ip),
                _ => None,
            })
            .collect();
        assert!(dns.contains(&"kubernetes.default.svc"), "{dns:?}");
        assert!(dns.contains(&"localhost"), "{dns:?}");
        assert!(ips.contains(&&[127u8, 0, 10, 2][..]), "{ips:?}");
        assert!(ips.contains(&&[127u8, 0, 0, 1][..]), "{ips:?}");
    }

    #[test]
    fn names_split_into_dns_and_ip_sans() {
        let (dns, ips) = split_names(&["web-1", "127.0.30.5", "*.default.svc", "::1"]);
        assert_eq!(dns, vec!["web-1".to_string(), "*.default.svc".to_string()]);
        assert_eq!(
            ips,
            vec![
                IpAddr::from([127, 0, 30, 5]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            ]
        );
    }

    #[test]
    fn self_signed_serving_names_itself_as_issuer_and_covers_its_names() {
        let ck = self_signed_serving(
            "node-1",
            &["node-1".to_string()],
            &[IpAddr::from([127, 0, 20, 1])],
        )
        .unwrap();
        let (chain, _key) = ck.der().unwrap();
        let der = chain.first().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert_eq!(cert.issuer(), cert.subject());
        assert!(
            cert.verify_signature(None).is_ok(),
            "not signed by its own key"
        );
        assert!(!cert.is_ca());
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        use x509_parser::extensions::GeneralName;
        assert!(san.general_names.contains(&GeneralName::DNSName("node-1")));
        assert!(
            san.general_names
                .contains(&GeneralName::IPAddress(&[127, 0, 20, 1]))
        );
        assert_eq!(crate::tls::common_name(der).as_deref(), Some("node-1"));
    }

    #[test]
    fn round_trips_through_files() {
        let pki = LabPki::generate(&spec()).unwrap();
        let dir = std::env::temp_dir().join(format!("proxylab-pki-{}", std::process::id()));
        pki.write_to(&dir).unwrap();
        let back = LabPki::load_from(&dir).unwrap();
        assert_eq!(back.ca, pki.ca);
        assert_eq!(back.kubelets.len(), 1);
        assert_eq!(back.node_clients, pki.node_clients);
        let (chain, _) = back.node_clients["node-1"].der().unwrap();
        let id = PeerIdentity::from_chain(&chain).unwrap();
        assert_eq!(id.user, "system:node:node-1");
        assert_eq!(id.groups, vec!["system:nodes".to_string()]);
        assert_eq!(back.service_account_key_pem, pki.service_account_key_pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
