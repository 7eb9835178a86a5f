//! `echo-tcp`: sends back every byte it receives.
//!
//! Half-close matters to L4 proxies: a client may send a request, shut down its write side (FIN) and
//! still expect the answer. So this server echoes until the client's FIN, finishes writing what it
//! has, and only then sends its own FIN — a relay that closes both directions at the first FIN
//! breaks this, and the tests for proxies use this server to prove they do not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::logs::ContainerLog;

/// Accepts connections until `shutdown` is cancelled; open connections are closed then too.
/// Each connection writes an open and a close line (with the bytes echoed) to `log`.
pub async fn serve_tcp_echo(listener: TcpListener, log: ContainerLog, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "echo-tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shutdown = shutdown.clone();
        let log = log.clone();
        let local = stream.local_addr().ok();
        tracker.spawn(async move {
            let local = local.map_or_else(|| "?".to_owned(), |a| a.to_string());
            log.push(format!("{peer} -> {local} connected"));
            let echoed = Arc::new(AtomicU64::new(0));
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => "closed by pod shutdown".to_owned(),
                result = echo_connection(stream, &echoed) => match result {
                    Ok(()) => "closed".to_owned(),
                    Err(err) => format!("ended: {err}"),
                },
            };
            log.push(format!(
                "{peer} -> {local} {outcome} after echoing {} bytes",
                echoed.load(Ordering::Relaxed)
            ));
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Echoes one connection until the peer's FIN, then sends FIN after the last echoed byte.
/// `echoed` counts the bytes sent back (readable even if the future is dropped midway).
pub async fn echo_connection(mut stream: TcpStream, echoed: &AtomicU64) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).await?;
        echoed.fetch_add(n as u64, Ordering::Relaxed);
    }
    writer.shutdown().await
}
