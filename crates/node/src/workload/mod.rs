//! The echo workloads a pod runs, chosen by its container image name.
//!
//! A real kubelet asks a container runtime to pull an image and start its process in the pod's network
//! namespace. Here there is no runtime: the image name picks one of three echo servers written in Rust,
//! and "the pod's network namespace" is the pod's own loopback address (127.0.30.x in the lab) that the
//! servers bind to. That keeps the one property proxies care about — every pod is a distinct address
//! that can be reached, can answer, and can tell who reached it.
//!
//! | image (name after the last `/`, before `:`) | serves |
//! |---|---|
//! | `echo-http` | [`http`]: HTTP on every TCP containerPort, TLS (ALPN h2, http/1.1) on the port named `https`; default 8080 and 8443 |
//! | `echo-tcp`  | [`tcp`]: echoes bytes, half-close aware, on every containerPort; default 9000 |
//! | `echo-udp`  | [`udp`]: echoes datagrams (and answers `whoami`) on every containerPort; default 9000 |
//! | `busybox`   | nothing: it *runs* the container's `command` + `args` to completion in the node's built-in shell ([`crate::shell`]: `echo`, `sleep`, `exit N`, `sh -c 'a; b && c'`, …), its output going to the container log |
//!
//! The image decides the protocol; the declared containerPorts decide the port numbers. Every server
//! stops when the pod's [`CancellationToken`] is cancelled, and none of them panics on input.
//!
//! `busybox` is the one workload that ends: it is what Jobs run. No host process is started — the
//! shell is the same modelled one `kubectl exec` gets — but the program prints, sleeps and exits
//! with a code like a container's process, and the node agent turns that code into the container's
//! `terminated` state and the Pod's phase (see the agent's `completion` module).

pub mod http;
pub mod logs;
pub mod tcp;
pub mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::ServerConfig;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use logs::ContainerLog;

/// The images this node can "run".
pub const SUPPORTED_IMAGES: &[&str] = &["echo-http", "echo-tcp", "echo-udp", "busybox"];

/// Who a workload is: what the echo servers report about themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity {
    /// metadata.name of the pod.
    pub name: String,
    /// metadata.namespace of the pod.
    pub namespace: String,
    /// The node running it.
    pub node: String,
    /// The pod's IP, which every server binds to.
    pub ip: IpAddr,
}

/// Which echo server an image selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// `echo-http`: HTTP/1.1, HTTP/2, TLS, WebSocket.
    EchoHttp,
    /// `echo-tcp`: raw byte echo.
    EchoTcp,
    /// `echo-udp`: datagram echo.
    EchoUdp,
    /// `busybox`: runs its command to completion (no sockets).
    Run,
}

impl WorkloadKind {
    /// Picks the workload for a container image such as `proxylab/echo-http:1`,
    /// `registry.local:5000/echo-tcp@sha256:…` or plain `echo-udp`.
    pub fn from_image(image: &str) -> Option<Self> {
        match image_base_name(image) {
            "echo-http" => Some(Self::EchoHttp),
            "echo-tcp" => Some(Self::EchoTcp),
            "echo-udp" => Some(Self::EchoUdp),
            "busybox" => Some(Self::Run),
            _ => None,
        }
    }

    /// The image base name of this workload.
    pub fn image_name(self) -> &'static str {
        match self {
            Self::EchoHttp => "echo-http",
            Self::EchoTcp => "echo-tcp",
            Self::EchoUdp => "echo-udp",
            Self::Run => "busybox",
        }
    }
}

/// The part of an image reference after the last `/` and before the tag (`:`) or digest (`@`).
/// A `:` before the last `/` belongs to a registry port and is not a tag.
pub fn image_base_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// The transport protocol of a containerPort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortProtocol {
    /// TCP (the Kubernetes default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP (accepted in specs, never served here).
    Sctp,
}

impl PortProtocol {
    /// Parses a Kubernetes protocol string; absent means TCP.
    pub fn parse(protocol: Option<&str>) -> Self {
        match protocol {
            Some("UDP") => Self::Udp,
            Some("SCTP") => Self::Sctp,
            _ => Self::Tcp,
        }
    }
}

/// One declared containerPort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// The port's name, if any (`http`, `https`, …).
    pub name: Option<String>,
    /// The port number.
    pub port: u16,
    /// The declared protocol.
    pub protocol: PortProtocol,
}

/// What a container runs: its name, image, declared ports and program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The container's name.
    pub name: String,
    /// The image reference as written in the pod spec.
    pub image: String,
    /// The declared containerPorts.
    pub ports: Vec<PortSpec>,
    /// `command` followed by `args`: the program a `busybox` container runs (the echo images
    /// have their own entrypoint and ignore it).
    pub argv: Vec<String>,
}

/// A socket a started container listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listening {
    /// Plain HTTP (echo-http).
    Http(SocketAddr),
    /// HTTP over TLS (echo-http's `https` port).
    Https(SocketAddr),
    /// Raw TCP echo.
    Tcp(SocketAddr),
    /// UDP echo.
    Udp(SocketAddr),
}

/// Why a container could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The image names no workload this node knows.
    #[error(
        "image {image:?} is not a proxylab workload (supported: echo-http, echo-tcp, echo-udp, busybox)"
    )]
    UnknownImage {
        /// The image as written.
        image: String,
    },
    /// A socket could not be bound (address in use, address not local, …).
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address that failed.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// An HTTPS port was declared but no TLS configuration was provided.
    #[error("port {0} is named https but the pod has no TLS configuration")]
    NoTls(u16),
}

/// What a pod's workloads share: who they are, their TLS configuration (for echo-http's `https`
/// port), the token that stops them, and the tracker that knows when they have stopped.
#[derive(Clone, Debug)]
pub struct PodContext {
    /// Identity reported by the echo servers; `ip` is where they bind.
    pub identity: Arc<PodIdentity>,
    /// The pod's serving configuration (certificate minted for the pod).
    pub tls: Option<Arc<ServerConfig>>,
    /// Cancelled when the pod is removed.
    pub shutdown: CancellationToken,
    /// Every server task of the pod is spawned on this tracker.
    pub tracker: TaskTracker,
}

enum Planned {
    Http(TcpListener, bool),
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// A started container: where it listens and its log.
#[derive(Clone, Debug)]
pub struct StartedContainer {
    /// Every socket it serves on.
    pub listening: Vec<Listening>,
    /// Its log (one line per request, connection or `whoami`), served as `kubectl logs`.
    pub log: ContainerLog,
    /// A `busybox` container: its program is for the agent to run to completion (it needs the
    /// pod's shell context, which the agent builds).
    pub runs_to_completion: bool,
}

/// Starts one container: binds every socket first (so any failure leaves nothing running), then
/// spawns the servers on the pod's tracker. Returns where they listen and the container's log.
pub async fn start_container(
    container: &ContainerSpec,
    pod: &PodContext,
) -> Result<StartedContainer, WorkloadError> {
    let kind =
        WorkloadKind::from_image(&container.image).ok_or_else(|| WorkloadError::UnknownImage {
            image: container.image.clone(),
        })?;
    let ip = pod.identity.ip;
    let mut planned = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    match kind {
        WorkloadKind::EchoHttp => {
            let mut ports: Vec<(u16, bool)> = container
                .ports
                .iter()
                .filter(|p| p.protocol == PortProtocol::Tcp)
                .map(|p| (p.port, p.name.as_deref() == Some("https")))
                .collect();
            if ports.is_empty() {
                ports = vec![(8080, false), (8443, true)];
            }
            for (port, tls) in ports {
                // Port 0 (tests: "any free port") may repeat; real port numbers may not.
                if port != 0 && !seen.insert(port) {
                    continue;
                }
                if tls && pod.tls.is_none() {
                    return Err(WorkloadError::NoTls(port));
                }
                planned.push(Planned::Http(
                    bind_tcp(SocketAddr::new(ip, port)).await?,
                    tls,
                ));
            }
        }
        WorkloadKind::Run => {
            return Ok(StartedContainer {
                listening: Vec::new(),
                log: ContainerLog::default(),
                runs_to_completion: true,
            });
        }
        WorkloadKind::EchoTcp | WorkloadKind::EchoUdp => {
            let mut ports: Vec<u16> = container.ports.iter().map(|p| p.port).collect();
            if ports.is_empty() {
                ports.push(9000);
            }
            for port in ports {
                if port != 0 && !seen.insert(port) {
                    continue;
                }
                let addr = SocketAddr::new(ip, port);
                planned.push(if kind == WorkloadKind::EchoTcp {
                    Planned::Tcp(bind_tcp(addr).await?)
                } else {
                    Planned::Udp(
                        UdpSocket::bind(addr)
                            .await
                            .map_err(|source| WorkloadError::Bind { addr, source })?,
                    )
                });
            }
        }
    }

    let log = ContainerLog::default();
    let mut listening = Vec::with_capacity(planned.len());
    for plan in planned {
        match plan {
            Planned::Http(listener, tls) => {
                let addr = local_addr(&listener);
                let tls_config = if tls { pod.tls.clone() } else { None };
                let scheme = if tls { "https" } else { "http" };
                log.push(format!("{} serving {scheme} on {addr}", kind.image_name()));
                listening.push(if tls {
                    Listening::Https(addr)
                } else {
                    Listening::Http(addr)
                });
                let state = http::EchoState::new(pod.identity.clone(), pod.shutdown.clone())
                    .with_log(log.clone());
                let router = http::echo_router(state);
                let shutdown = pod.shutdown.clone();
                // A test pod: it reads a PROXY protocol header when one comes (from a load
                // balancer told to send it) and shows the client it names; trusting it from any
                // client is fine for an echo server and wrong for a real one.
                let options = proxylab_core::serve::ServeOptions {
                    proxy_protocol: true,
                    ..Default::default()
                };
                pod.tracker.spawn(async move {
                    if let Err(err) = proxylab_core::serve::serve_http_with(
                        listener, tls_config, router, shutdown, options,
                    )
                    .await
                    {
                        tracing::warn!(%addr, error = %err, "echo-http server stopped");
                    }
                });
            }
            Planned::Tcp(listener) => {
                let addr = local_addr(&listener);
                log.push(format!("echo-tcp serving on {addr}"));
                listening.push(Listening::Tcp(addr));
                pod.tracker.spawn(tcp::serve_tcp_echo(
                    listener,
                    log.clone(),
                    pod.shutdown.clone(),
                ));
            }
            Planned::Udp(socket) => {
                let addr = socket
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::new(ip, 0));
                log.push(format!("echo-udp serving on {addr}/udp"));
                listening.push(Listening::Udp(addr));
                pod.tracker.spawn(udp::serve_udp_echo(
                    socket,
                    pod.identity.clone(),
                    log.clone(),
                    pod.shutdown.clone(),
                ));
            }
        }
    }
    Ok(StartedContainer {
        listening,
        log,
        runs_to_completion: false,
    })
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, WorkloadError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| WorkloadError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    // local_addr only fails on a closed socket; the listener was just bound.
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_base_names() {
        assert_eq!(image_base_name("proxylab/echo-http:1"), "echo-http");
        assert_eq!(image_base_name("echo-tcp"), "echo-tcp");
        assert_eq!(
            image_base_name("registry.local:5000/lab/echo-udp:v2"),
            "echo-udp"
        );
        assert_eq!(
            image_base_name("registry.local:5000/echo-http@sha256:abcd"),
            "echo-http"
        );
        assert_eq!(image_base_name(""), "");
        assert_eq!(WorkloadKind::from_image("nginx:1.27"), None);
        assert_eq!(
            WorkloadKind::from_image("busybox:1.36"),
            Some(WorkloadKind::Run)
        );
        assert_eq!(
            WorkloadKind::from_image("docker.io/proxylab/echo-http:latest"),
            Some(WorkloadKind::EchoHttp)
        );
    }

    #[test]
    fn protocols() {
        assert_eq!(PortProtocol::parse(None), PortProtocol::Tcp);
        assert_eq!(PortProtocol::parse(Some("UDP")), PortProtocol::Udp);
        assert_eq!(PortProtocol::parse(Some("SCTP")), PortProtocol::Sctp);
    }
}
