//! serve_http over TLS: ALPN, optional client certificates and the identity handed to handlers.

use std::net::IpAddr;

use axum::{Extension, Router, routing::get};
use proxylab_core::serve::{ConnInfo, serve_http};
use proxylab_core::tls::pki::{LabPki, PkiSpec};
use proxylab_core::tls::{ClientAuth, ClientTls, ServerTls, install_crypto_provider};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn whoami(Extension(info): Extension<ConnInfo>) -> String {
    match info.peer {
        Some(p) => format!("user={} groups={}", p.user, p.groups.join(",")),
        None => "anonymous".to_string(),
    }
}

async fn get_over_tls(addr: std::net::SocketAddr, client: ClientTls) -> Result<String, String> {
    let config = client.build().map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::test]
async fn client_certificates_become_identities_and_tokens_are_optional() {
    install_crypto_provider();
    let pki = LabPki::generate(&PkiSpec {
        apiserver_ips: vec![IpAddr::from([127, 0, 0, 1])],
        ..PkiSpec::default()
    })
    .unwrap();
    let (chain, key) = pki.apiserver.der().unwrap();
    let ca = pki.ca_der().unwrap();
    let server = ServerTls::new(chain, key)
        .client_cas(vec![ca.clone()], ClientAuth::Optional)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let app = Router::new().route("/", get(whoami));
    tokio::spawn(serve_http(listener, Some(server), app, token.clone()));

    let (admin_chain, admin_key) = pki.admin.der().unwrap();
    let with_cert = ClientTls::new()
        .ca(vec![ca.clone()])
        .client_cert(admin_chain, admin_key)
        .alpn(&[b"http/1.1"]);
    let out = get_over_tls(addr, with_cert).await.unwrap();
    assert!(
        out.ends_with("user=kubernetes-admin groups=system:masters"),
        "{out}"
    );

    let anonymous = ClientTls::new().ca(vec![ca.clone()]).alpn(&[b"http/1.1"]);
    let out = get_over_tls(addr, anonymous).await.unwrap();
    assert!(out.ends_with("anonymous"), "{out}");

    // Verification is on by default: a client trusting another CA refuses the server.
    let other = LabPki::generate(&PkiSpec::default()).unwrap();
    let wrong_ca = ClientTls::new().ca(vec![other.ca_der().unwrap()]);
    assert!(get_over_tls(addr, wrong_ca).await.is_err());
    // ...unless told to skip it.
    let insecure = ClientTls::new().insecure(true).alpn(&[b"http/1.1"]);
    assert!(
        get_over_tls(addr, insecure)
            .await
            .unwrap()
            .contains("200 OK")
    );

    // A certificate from a CA the server does not trust is refused in the handshake.
    let (fp_chain, fp_key) = other.admin.der().unwrap();
    let foreign = ClientTls::new().ca(vec![ca]).client_cert(fp_chain, fp_key);
    assert!(get_over_tls(addr, foreign).await.is_err());
    token.cancel();
}
