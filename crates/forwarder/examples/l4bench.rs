//! A small L4 load tool for `bench/forwarder.sh`: echo servers and the measurements iperf3 does not
//! make (request/response latency, new connections per second, UDP packets per second, many idle
//! connections). Loopback only; every figure is printed as one `key=value` line for the script.
//!
//! ```text
//! l4bench echo-tcp ADDR                 # echo server (TCP)
//! l4bench echo-udp ADDR                 # echo server (UDP)
//! l4bench latency TARGET COUNT SIZE     # sequential round trips on one connection: p50/p99 in µs
//! l4bench connrate TARGET SECS CONC     # connect, 1-byte echo, close, CONC at a time: conn/s
//! l4bench udp-pps TARGET SECS CLIENTS   # CLIENTS sockets doing request/response: replies/s
//! l4bench idle TARGET COUNT             # COUNT connections, one echo each, then held until stdin closes
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn usage() -> ! {
    eprintln!(
        "usage: l4bench echo-tcp ADDR | echo-udp ADDR | latency TARGET COUNT SIZE | connrate TARGET SECS CONC | udp-pps TARGET SECS CLIENTS | idle TARGET COUNT"
    );
    std::process::exit(2);
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage())
}

#[tokio::main]
async fn main() {
    let _ = proxylab_core::runtime::raise_nofile_limit(1 << 20);
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("echo-tcp") => echo_tcp(arg(&args, 2)).await,
        Some("echo-udp") => echo_udp(arg(&args, 2)).await,
        Some("latency") => latency(arg(&args, 2), arg(&args, 3), arg(&args, 4)).await,
        Some("connrate") => connrate(arg(&args, 2), arg(&args, 3), arg(&args, 4)).await,
        Some("udp-pps") => udp_pps(arg(&args, 2), arg(&args, 3), arg(&args, 4)).await,
        Some("idle") => idle(arg(&args, 2), arg(&args, 3)).await,
        _ => usage(),
    }
}

async fn echo_tcp(addr: SocketAddr) {
    let l = proxylab_core::runtime::bind_tcp(
        addr,
        proxylab_core::runtime::ListenOptions {
            reuse_port: false,
            backlog: 8192,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

async fn echo_udp(addr: SocketAddr) {
    let s = UdpSocket::bind(addr).await.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let mut buf = [0u8; 65536];
    loop {
        if let Ok((n, from)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], from).await;
        }
    }
}

async fn latency(target: SocketAddr, count: usize, size: usize) {
    let mut s = TcpStream::connect(target).await.expect("connect");
    s.set_nodelay(true).ok();
    let msg = vec![0x5au8; size];
    let mut back = vec![0u8; size];
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + count / 10 {
        let t = Instant::now();
        s.write_all(&msg).await.expect("write");
        s.read_exact(&mut back).await.expect("read");
        if i >= count / 10 {
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    let p = |q: f64| {
        samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)] as f64 / 1000.0
    };
    println!("p50_us={:.1} p99_us={:.1}", p(0.5), p(0.99));
}

async fn connrate(target: SocketAddr, secs: u64, conc: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut b = [0u8; 1];
            while !stop.load(Ordering::Relaxed) {
                let ok = async {
                    let mut s = TcpStream::connect(target).await?;
                    s.set_nodelay(true)?;
                    // SO_LINGER 0: close with RST so the client side does not pile up TIME_WAIT
                    // sockets and run out of ephemeral ports during the run (a zero linger never
                    // blocks on drop).
                    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
                    s.write_all(b"x").await?;
                    s.read_exact(&mut b).await?;
                    Ok::<_, std::io::Error>(())
                }
                .await;
                if ok.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "conn_per_s={:.0} errors={}",
        n as f64 / secs as f64,
        errors.load(Ordering::Relaxed)
    );
}

async fn udp_pps(target: SocketAddr, secs: u64, clients: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (stop, done, lost) = (stop.clone(), done.clone(), lost.clone());
        tasks.push(tokio::spawn(async move {
            let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            s.connect(target).await.expect("connect");
            let mut buf = [0u8; 2048];
            let msg = [0x42u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if s.send(&msg).await.is_err() {
                    lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match tokio::time::timeout(Duration::from_millis(200), s.recv(&mut buf)).await {
                    Ok(Ok(_)) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "udp_pps={:.0} lost={}",
        done.load(Ordering::Relaxed) as f64 / secs as f64,
        lost.load(Ordering::Relaxed)
    );
}

async fn idle(target: SocketAddr, count: usize) {
    let mut conns = Vec::with_capacity(count);
    let mut b = [0u8; 1];
    for i in 0..count {
        let mut s = match TcpStream::connect(target).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("connection {i}: {e}");
                std::process::exit(1);
            }
        };
        s.write_all(b"x").await.expect("write");
        s.read_exact(&mut b).await.expect("read");
        conns.push(s);
    }
    println!("idle_connections={}", conns.len());
    // Hold them until the script closes our stdin.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(conns);
}
