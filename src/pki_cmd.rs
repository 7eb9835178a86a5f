//! `proxylab pki`: writes a kubeadm-style PKI for running the components as separate processes.

use std::net::IpAddr;
use std::path::PathBuf;

use proxylab_core::tls::pki::{LabPki, PkiSpec};

#[derive(Debug, clap::Args)]
pub struct PkiArgs {
    /// Directory to write `ca.crt`, `apiserver.crt`, `admin.crt`, `kubelet-<node>.crt`, `sa.key`, … into.
    #[arg(long, default_value = ".lab/pki")]
    pub dir: PathBuf,
    /// An address the apiserver certificate must cover (repeatable; 127.0.0.1 and ::1 are always in).
    #[arg(long = "apiserver-ip", value_name = "IP")]
    pub apiserver_ips: Vec<IpAddr>,
    /// A DNS name the apiserver certificate must cover besides the Kubernetes names (repeatable).
    #[arg(long = "apiserver-dns", value_name = "NAME")]
    pub apiserver_dns: Vec<String>,
    /// A node to issue a kubelet serving certificate for, as NAME=IP (repeatable).
    #[arg(long = "node", value_name = "NAME=IP", value_parser = parse_node)]
    pub nodes: Vec<(String, IpAddr)>,
    /// Also write an admin kubeconfig (client certificate `kubernetes-admin`, `system:masters`) here…
    #[arg(long, value_name = "FILE", requires = "server")]
    pub kubeconfig: Option<PathBuf>,
    /// …pointing at this apiserver URL (e.g. https://127.0.10.1:6443).
    #[arg(long, value_name = "URL", requires = "kubeconfig", value_parser = parse_server)]
    pub server: Option<String>,
    /// Keep a PKI already in --dir (its `ca.crt` exists) and write only a missing kubeconfig: the
    /// compose lab's one-shot `pki` service runs at every `up`, and new certificates would orphan
    /// every client holding the old CA.
    #[arg(long)]
    pub if_missing: bool,
}

fn parse_server(s: &str) -> Result<String, String> {
    if s.starts_with("https://") && s.len() > "https://".len() {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid server {s:?}: want an https:// URL, e.g. https://127.0.10.1:6443"
        ))
    }
}

fn parse_node(s: &str) -> Result<(String, IpAddr), String> {
    let (name, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid node {s:?}: want NAME=IP, e.g. node-1=127.0.20.1"))?;
    let ip = ip
        .parse()
        .map_err(|_| format!("invalid node {s:?}: {ip:?} is not an IP address"))?;
    if name.is_empty() {
        return Err(format!("invalid node {s:?}: empty name"));
    }
    Ok((name.to_owned(), ip))
}

pub fn run(args: &PkiArgs) -> anyhow::Result<()> {
    let spec = PkiSpec {
        apiserver_ips: args.apiserver_ips.clone(),
        apiserver_dns: args.apiserver_dns.clone(),
        nodes: args.nodes.clone(),
    };
    let pki = if args.if_missing && args.dir.join("ca.crt").exists() {
        let pki = LabPki::load_from(&args.dir)?;
        println!("kept the lab PKI in {}", args.dir.display());
        pki
    } else {
        let pki = LabPki::generate(&spec)?;
        pki.write_to(&args.dir)?;
        println!("wrote the lab PKI to {}", args.dir.display());
        pki
    };
    if let (Some(path), Some(server)) = (&args.kubeconfig, &args.server) {
        if args.if_missing && path.exists() {
            println!("kept the kubeconfig {}", path.display());
            return Ok(());
        }
        // No token user: a standalone apiserver has no token file unless the user writes one.
        let text = crate::lab::kubeconfig::render(
            server,
            &pki.ca.cert_pem,
            &pki.admin.cert_pem,
            &pki.admin.key_pem,
            "",
        );
        std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?;
        println!(
            "wrote an admin kubeconfig for {server} to {}",
            path.display()
        );
    }
    Ok(())
}
