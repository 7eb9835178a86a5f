//! `echo-udp`: sends every datagram back to its sender.
//!
//! UDP has no connection, so an L4 proxy has to remember which client a reply belongs to (a session
//! table keyed by client address) and which source address to send it from. To make that visible,
//! the datagram `whoami` (optionally followed by a newline) is answered with
//! `pod=<name> node=<node> client=<ip:port>`: which endpoint answered and which source address it saw.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::PodIdentity;

/// Serves datagrams on `socket` until `shutdown` is cancelled.
pub async fn serve_udp_echo(socket: UdpSocket, pod: Arc<PodIdentity>, shutdown: CancellationToken) {
    // The largest UDP payload; a smaller buffer would silently truncate datagrams.
    let mut buf = vec![0u8; 65_535];
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
        let result = if is_whoami(payload) {
            let answer = format!("pod={} node={} client={peer}", pod.name, pod.node);
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
