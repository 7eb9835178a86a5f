//! The `bastion` binary: the same router as the lab apiserver mounts, served on its own for any
//! cluster.
//!
//! ```text
//! bastion --kubeconfig F --listen 127.0.0.1:8443 --tls-cert-file F --tls-private-key-file F \
//!         --client-ca-file F --token-auth-file F [--kubelet-client-certificate F --kubelet-client-key F]
//! ```
//!
//! It watches Services, EndpointSlices, Nodes and Pods through `proxylab-kube` (the model every
//! proxy routes on) and serves the proxy subresources over HTTPS. Users authenticate as they would
//! to kube-apiserver — a client certificate from `--client-ca-file` (CN the user, O the groups) or a
//! bearer token from `--token-auth-file` — and their credentials never go further. The kubeconfig
//! is the bastion's own identity towards the apiserver (it only lists and watches).
//!
//! Bad flags and files are one line naming the flag or file, exit 2; runtime failures exit 1.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use ipnet::IpNet;
use proxylab_apimachinery::status::Status;
use proxylab_core::authn::{TokenEntry, bearer_token, parse_token_file};
use proxylab_core::balance::Algorithm;
use proxylab_core::serve::ConnInfo;
use proxylab_core::tls::{ClientAuth, ServerTls};
use rustls_pki_types::CertificateDer;

use crate::status::status_response;
use crate::{
    Abac, AllowAll, Authorizer, BastionConfig, Instance, KubeletClient, ServicePortDefault,
    SourceAddress, User,
};

/// The flags of `bastion`.
#[derive(Debug, Clone, clap::Args)]
pub struct BastionArgs {
    /// The kubeconfig the bastion watches the cluster with (default: kubectl's loading rules).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// Where to serve the proxy paths (HTTPS).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Serving certificate (PEM, chain first).
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM).
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Authenticate users by client certificates signed by these CAs (CN = user, O = groups).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Authenticate users by bearer tokens: `token,user,uid[,"group1,group2"]` per line.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// The client certificate the bastion presents to kubelets.
    #[arg(long)]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// Its key.
    #[arg(long)]
    pub kubelet_client_key: Option<PathBuf>,
    /// Verify kubelet serving certificates against these CAs (default: not verified, as
    /// kube-apiserver without this flag).
    #[arg(long)]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Node address types in order of preference.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP"
    )]
    pub kubelet_preferred_address_types: Vec<String>,
    /// Networks the bastion may dial besides global-unicast addresses (CIDRs; link-local never).
    #[arg(long, value_delimiter = ',', value_parser = crate::policy::parse_network)]
    pub allowed_networks: Vec<IpNet>,
    /// An ABAC policy file (one JSON Policy per line) deciding who may use which subresource;
    /// default: every authenticated user may.
    #[arg(long)]
    pub authorization_policy_file: Option<PathBuf>,
    /// How a service's ready endpoints are chosen: random (kube-apiserver), round-robin, least-conn.
    #[arg(long, default_value = "random")]
    pub service_balancing: Algorithm,
    /// What a service id without a port means: `first` (the first port) or `unnamed`
    /// (kube-apiserver: the unnamed port, so services with named ports answer 503).
    #[arg(long, default_value = "first", value_parser = parse_port_default)]
    pub service_default_port: ServicePortDefault,
    /// Dial backends from this address (`listener`: the address the request arrived on).
    #[arg(long)]
    pub source_address: Option<String>,
    /// Admin endpoint (/healthz, /readyz, /metrics, /debug/hops); empty to disable.
    #[arg(long, default_value = "127.0.0.1:8406")]
    pub admin_address: String,
}

fn parse_port_default(s: &str) -> Result<ServicePortDefault, String> {
    match s {
        "first" => Ok(ServicePortDefault::First),
        "unnamed" => Ok(ServicePortDefault::Unnamed),
        other => Err(format!("{other:?}: expected first or unnamed")),
    }
}

/// A flag or file the bastion cannot use; one line.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct ArgError {
    pub flag: String,
    pub message: String,
}

fn arg_err(flag: &str, message: impl std::fmt::Display) -> ArgError {
    ArgError {
        flag: flag.to_owned(),
        message: message.to_string(),
    }
}

fn read_certs(flag: &str, path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, ArgError> {
    // The error names the file already.
    let certs = proxylab_core::tls::load_certs(path).map_err(|e| arg_err(flag, e))?;
    if certs.is_empty() {
        return Err(arg_err(
            flag,
            format!("{}: no certificate in it", path.display()),
        ));
    }
    Ok(certs)
}

/// Who may connect, as the standalone bastion authenticates them.
#[derive(Debug, Clone, Default)]
pub struct Authn {
    tokens: Vec<TokenEntry>,
    client_certs: bool,
}

impl Authn {
    /// The user a request carries: a verified client certificate, else a known bearer token.
    pub fn user(&self, req: &Request) -> Option<User> {
        if self.client_certs
            && let Some(peer) = req
                .extensions()
                .get::<ConnInfo>()
                .and_then(|c| c.peer.as_ref())
        {
            return Some(with_authenticated(User {
                name: peer.user.clone(),
                groups: peer.groups.clone(),
            }));
        }
        let token = bearer_token(req.headers())?;
        let e = self.tokens.iter().find(|e| e.token == token)?;
        Some(with_authenticated(User {
            name: e.user.clone(),
            groups: e.groups.clone(),
        }))
    }
}

fn with_authenticated(mut u: User) -> User {
    if !u.groups.iter().any(|g| g == "system:authenticated") {
        u.groups.push("system:authenticated".into());
    }
    u
}

/// Authenticates, or answers 401 as kube-apiserver does.
async fn authenticate(State(authn): State<Arc<Authn>>, mut req: Request, next: Next) -> Response {
    match authn.user(&req) {
        Some(u) => {
            req.extensions_mut().insert(u);
            next.run(req).await
        }
        None => status_response(&Status::unauthorized()),
    }
}

/// Everything `bastion` resolved from its flags, before anything listens.
pub struct Standalone {
    pub kubeconfig: proxylab_kube::KubeconfigOptions,
    pub listen: SocketAddr,
    pub tls: Arc<rustls::ServerConfig>,
    pub authn: Authn,
    pub config: BastionConfig,
    pub admin_address: Option<SocketAddr>,
}

impl BastionArgs {
    /// Reads every file the flags name. `metrics` receives the hop counters.
    pub fn resolve(
        &self,
        metrics: &Arc<proxylab_core::telemetry::Metrics>,
    ) -> Result<Standalone, ArgError> {
        let (cert, key) = match (&self.tls_cert_file, &self.tls_private_key_file) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                return Err(arg_err(
                    "--tls-cert-file",
                    "the bastion serves HTTPS only: give --tls-cert-file and --tls-private-key-file",
                ));
            }
        };
        let chain = read_certs("--tls-cert-file", cert)?;
        let key = proxylab_core::tls::load_private_key(key)
            .map_err(|e| arg_err("--tls-private-key-file", e))?;
        let client_cas = match &self.client_ca_file {
            Some(p) => read_certs("--client-ca-file", p)?,
            None => Vec::new(),
        };
        let tokens = match &self.token_auth_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| arg_err("--token-auth-file", format!("{}: {e}", p.display())))?;
                parse_token_file(&text)
                    .map_err(|e| arg_err("--token-auth-file", format!("{}: {e}", p.display())))?
            }
            None => Vec::new(),
        };
        if client_cas.is_empty() && tokens.is_empty() {
            return Err(arg_err(
                "--client-ca-file",
                "no way to authenticate users: give --client-ca-file and/or a non-empty --token-auth-file",
            ));
        }
        let mode = if client_cas.is_empty() {
            ClientAuth::None
        } else {
            ClientAuth::Optional
        };
        let tls = ServerTls::new(chain, key)
            .client_cas(client_cas.clone(), mode)
            .build()
            .map_err(|e| arg_err("--tls-cert-file", e))?;
        let kubelet_client = match (&self.kubelet_client_certificate, &self.kubelet_client_key) {
            (Some(c), Some(k)) => Some(KubeletClient {
                chain: read_certs("--kubelet-client-certificate", c)?,
                key: proxylab_core::tls::load_private_key(k)
                    .map_err(|e| arg_err("--kubelet-client-key", e))?,
                ca: match &self.kubelet_certificate_authority {
                    Some(p) => read_certs("--kubelet-certificate-authority", p)?,
                    None => Vec::new(),
                },
            }),
            (None, None) => None,
            _ => {
                return Err(arg_err(
                    "--kubelet-client-certificate",
                    "give both --kubelet-client-certificate and --kubelet-client-key, or neither",
                ));
            }
        };
        let authorizer: Arc<dyn Authorizer> = match &self.authorization_policy_file {
            Some(p) => {
                Arc::new(Abac::from_file(p).map_err(|e| arg_err("--authorization-policy-file", e))?)
            }
            None => Arc::new(AllowAll),
        };
        let source = match self.source_address.as_deref() {
            None | Some("") => SourceAddress::System,
            Some("listener") => SourceAddress::Listener,
            Some(s) => SourceAddress::Fixed(s.parse::<IpAddr>().map_err(|_| {
                arg_err(
                    "--source-address",
                    format!("{s:?} is not an IP address or \"listener\""),
                )
            })?),
        };
        let admin_address = match self.admin_address.as_str() {
            "" => None,
            a => Some(a.parse().map_err(|_| {
                arg_err("--admin-address", format!("{a:?} is not an address:port"))
            })?),
        };
        if self
            .kubelet_preferred_address_types
            .iter()
            .any(|t| t.trim().is_empty())
        {
            return Err(arg_err(
                "--kubelet-preferred-address-types",
                "an empty type",
            ));
        }
        let mut config = BastionConfig::new(Default::default());
        config.resolve.preferred_address_types = self.kubelet_preferred_address_types.clone();
        config.resolve.algorithm = self.service_balancing;
        config.resolve.service_port_default = self.service_default_port;
        config.allowed_networks = self.allowed_networks.clone();
        config.own_addresses = vec![self.listen];
        config.own_addresses.extend(admin_address);
        config.kubelet_client = kubelet_client;
        config.source = source;
        config.authorizer = authorizer;
        config.instances = vec![Instance::new("bastion", None, metrics)];
        // Checked now so that a bad network is a flag error, not a runtime one.
        crate::policy::DestinationPolicy::new(config.allowed_networks.clone(), Vec::new())
            .map_err(|e| arg_err("--allowed-networks", e))?;
        Ok(Standalone {
            kubeconfig: proxylab_kube::KubeconfigOptions {
                kubeconfig: self.kubeconfig.clone(),
                context: self.context.clone(),
                ..Default::default()
            },
            listen: self.listen,
            tls,
            authn: Authn {
                tokens,
                client_certs: !client_cas.is_empty(),
            },
            config,
            admin_address,
        })
    }
}

/// The standalone router: authentication, then the bastion's routes; anything else 404.
pub fn router(bastion: &crate::Bastion, authn: Authn) -> Router {
    bastion
        .router()
        .fallback(|| async {
            status_response(&Status::new(
                404,
                "NotFound",
                "the bastion serves only the proxy subresources: /api/v1/nodes/{name}/proxy/…, \
                 /api/v1/namespaces/{ns}/{pods,services}/{name}/proxy/…, \
                 /api/v1/namespaces/{ns}/pods/{name}/{log,exec,attach,portforward}",
            ))
        })
        .layer(middleware::from_fn_with_state(
            Arc::new(authn),
            authenticate,
        ))
}
