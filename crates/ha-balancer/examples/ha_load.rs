//! Load for `bench/ha-balancer.sh`: apiserver clients through a balancer, with the admin client
//! certificate, over real TLS (the balancer passes it through).
//!
//! - `ha_load requests ADDR SECS CONC PKI_DIR`: CONC clients send `GET /api/v1/namespaces/default`
//!   back to back for SECS, each on a new connection (so every request is balanced, as kubectl's
//!   are). Prints `ok=N failed=M` and, per failure, the second it happened in.
//! - `ha_load hold ADDR COUNT SECS PKI_DIR`: COUNT watches (`?watch=true&allowWatchBookmarks=true`)
//!   held open for SECS, each opened again when its connection ends — informers, in short. Prints
//!   `reconnects=N`.
//!
//! `PKI_DIR` is `proxylab pki --dir`'s: `ca.crt`, `admin.crt`, `admin.key`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proxylab_core::tls::{ClientTls, load_certs, load_private_key};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn usage() -> ! {
    eprintln!("usage: ha_load requests ADDR SECS CONC PKI_DIR | hold ADDR COUNT SECS PKI_DIR");
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

#[tokio::main]
async fn main() {
    proxylab_core::tls::install_crypto_provider();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("requests") => {
            let tls = connector(Path::new(&arg::<String>(&args, 5)));
            requests(tls, arg(&args, 2), arg(&args, 3), arg(&args, 4)).await
        }
        Some("hold") => {
            let tls = connector(Path::new(&arg::<String>(&args, 5)));
            hold(tls, arg(&args, 2), arg(&args, 3), arg(&args, 4)).await
        }
        _ => usage(),
    }
}

fn connector(pki: &Path) -> TlsConnector {
    let config = ClientTls::new()
        .ca(load_certs(pki.join("ca.crt")).expect("ca.crt"))
        .client_cert(
            load_certs(pki.join("admin.crt")).expect("admin.crt"),
            load_private_key(pki.join("admin.key")).expect("admin.key"),
        )
        .alpn(&[b"http/1.1"])
        .build()
        .expect("TLS configuration");
    TlsConnector::from(config)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn open(tls: &TlsConnector, addr: SocketAddr, path: &str) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut s = tls
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    Ok(s)
}

async fn requests(tls: TlsConnector, addr: SocketAddr, secs: u64, conc: usize) {
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(parking_lot::Mutex::new(Vec::<(f64, String)>::new()));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (tls, stop, ok, failures) = (tls.clone(), stop.clone(), ok.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = async {
                    let mut s = open(&tls, addr, "/api/v1/namespaces/default").await?;
                    let mut body = Vec::new();
                    s.read_to_end(&mut body).await?;
                    if body.starts_with(b"HTTP/1.1 200") {
                        Ok(())
                    } else {
                        Err(std::io::Error::other(
                            String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned(),
                        ))
                    }
                };
                match tokio::time::timeout(Duration::from_secs(10), result).await {
                    Ok(Ok(())) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => failures
                        .lock()
                        .push((started.elapsed().as_secs_f64(), e.to_string())),
                    Err(_) => failures
                        .lock()
                        .push((started.elapsed().as_secs_f64(), "timed out".into())),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let failures = failures.lock();
    println!(
        "ok={} failed={}",
        ok.load(Ordering::Relaxed),
        failures.len()
    );
    for (at, e) in failures.iter() {
        println!("failure at={at:.3}s error={e}");
    }
}

async fn hold(tls: TlsConnector, addr: SocketAddr, count: usize, secs: u64) {
    let reconnects = Arc::new(AtomicU64::new(0));
    for i in 0..count {
        let (tls, reconnects) = (tls.clone(), reconnects.clone());
        tokio::spawn(async move {
            let mut first = true;
            loop {
                if !first {
                    reconnects.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                first = false;
                let path = "/api/v1/namespaces?watch=true&allowWatchBookmarks=true";
                match open(&tls, addr, path).await {
                    Ok(mut s) => {
                        let mut buf = vec![0u8; 16 << 10];
                        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    }
                    Err(e) => eprintln!("watch {i}: {e}"),
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    println!("reconnects={}", reconnects.load(Ordering::Relaxed));
}
