//! Echo servers: the backends behind a relay under test.
//!
//! Each says who it is, so a test can tell which endpoint a relay chose: the TCP one writes its name
//! and a newline first, the UDP one prefixes every answer with `name:`. An empty name makes a plain
//! echo. Both run until the test's runtime ends.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// A TCP server on `addr` (port 0 for any) that writes `name\n` (unless `name` is empty), echoes
/// until EOF, then closes its side (so half-close travels through a relay). Returns the bound address.
pub async fn tcp_echo(addr: &str, name: &'static str) -> SocketAddr {
    tcp_echo_until(addr, name, CancellationToken::new()).await
}

/// [`tcp_echo`] whose listener closes when `stop` is cancelled, while the connections it accepted
/// run on: a backend that stops accepting (a crash of the listener, a health check that starts
/// failing) with its established streams still alive. Bind the same address again to bring it
/// back.
pub async fn tcp_echo_until(addr: &str, name: &'static str, stop: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("tcp echo on {addr}: {e}"));
    let bound = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((mut s, _)) = accepted else { return };
            tokio::spawn(async move {
                if !name.is_empty() && s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    bound
}

/// A UDP server on `addr` answering each datagram with `name:` + the datagram (the datagram alone
/// when `name` is empty). Returns the bound address.
pub async fn udp_echo(addr: &str, name: &'static str) -> SocketAddr {
    let socket = UdpSocket::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("udp echo on {addr}: {e}"));
    let bound = socket.local_addr().expect("local address");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let mut out = if name.is_empty() {
                Vec::with_capacity(n)
            } else {
                format!("{name}:").into_bytes()
            };
            out.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&out, from).await;
        }
    });
    bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn tcp_greets_echoes_and_half_closes() {
        let addr = tcp_echo("127.0.0.1:0", "a").await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"hi").await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "a\nhi");
    }

    #[tokio::test]
    async fn udp_prefixes_with_its_name_or_not() {
        let named = udp_echo("127.0.0.1:0", "b").await;
        let plain = udp_echo("127.0.0.1:0", "").await;
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 64];
        s.send_to(b"x", named).await.unwrap();
        let (n, _) = s.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"b:x");
        s.send_to(b"y", plain).await.unwrap();
        let (n, _) = s.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"y");
    }
}
