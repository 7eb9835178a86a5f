//! `echo-udp`: sends every datagram back to its sender.
//!
//! UDP has no connection, so an L4 proxy has to remember which client a reply belongs to (a session
//! table keyed by client address) and which source address to send it from. To make that visible,
//! the datagram `whoami` (optionally followed by a newline) is answered with
//! `pod=<name> node=<node> client=<ip:port>`: which endpoint answered and which source address it saw.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::PodIdentity;
use super::logs::ContainerLog;

/// Serves datagrams on `socket` until `shutdown` is cancelled. `log` gets a line for each client
/// address seen for the first time and for each `whoami` (not one per datagram: UDP echo is also a
/// load-test target).
pub async fn serve_udp_echo(
    socket: UdpSocket,
    pod: Arc<PodIdentity>,
    log: ContainerLog,
    shutdown: CancellationToken,
) {
    // The largest UDP payload; a smaller buffer would silently truncate datagrams.
    let mut buf = vec![0u8; 65_535];
    let local = socket
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    // Bounded: forgotten wholesale when full, so a flood of sources cannot grow it.
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(pair) => pair,
                // ICMP errors from earlier sends surface here on Linux (ECONNREFUSED); they concern
                // a previous peer, not this socket, so keep serving.
                Err(err) => {
                    tracing::debug!(error = %err, "echo-udp receive error");
                    continue;
                }
            },
        };
        let payload = &buf[..n];
        if seen.len() >= 4096 {
            seen.clear();
        }
        if seen.insert(peer) {
            log.push(format!("{peer} -> {local}/udp first datagram ({n} bytes)"));
        }
        let result = if is_whoami(payload) {
            let answer = format!("pod={} node={} client={peer}", pod.name, pod.node);
            log.push(format!("{peer} -> {local}/udp whoami"));
            socket.send_to(answer.as_bytes(), peer).await
        } else {
            socket.send_to(payload, peer).await
        };
        if let Err(err) = result {
            tracing::debug!(%peer, error = %err, "echo-udp send error");
        }
    }
}

fn is_whoami(payload: &[u8]) -> bool {
    let trimmed = payload.strip_suffix(b"\n").unwrap_or(payload);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    trimmed == b"whoami"
}

#[cfg(test)]
mod tests {
    #[test]
    fn whoami_detection() {
        assert!(super::is_whoami(b"whoami"));
        assert!(super::is_whoami(b"whoami\n"));
        assert!(super::is_whoami(b"whoami\r\n"));
        assert!(!super::is_whoami(b"whoami?"));
        assert!(!super::is_whoami(b""));
    }
}
