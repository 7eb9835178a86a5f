//! `echo-tcp`: sends back every byte it receives.
//!
//! Half-close matters to L4 proxies: a client may send a request, shut down its write side (FIN) and
//! still expect the answer. So this server echoes until the client's FIN, finishes writing what it
//! has, and only then sends its own FIN — a relay that closes both directions at the first FIN
//! breaks this, and the tests for proxies use this server to prove they do not.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections until `shutdown` is cancelled; open connections are closed then too.
pub async fn serve_tcp_echo(listener: TcpListener, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "echo-tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = echo_connection(stream) => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "echo-tcp connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Echoes one connection until the peer's FIN, then sends FIN after the last echoed byte.
pub async fn echo_connection(mut stream: TcpStream) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).await?;
    }
    writer.shutdown().await
}
