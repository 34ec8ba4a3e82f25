//! HTTPS with the self-signed certificate generated on first start (rcgen):
//! the key file is owner-only, a client trusting that certificate completes
//! a request, and a restart reuses the same certificate.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use castle_engine::Limits;
use castle_gateway_rest::{serve, Gateway, RestConfig, Tls, DEMO_MASTER_KEY};
use castle_link::{EngineLink, InProcessEngine};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get_time(addr: std::net::SocketAddr, cert: &std::path::Path) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the generated certificate verifies for localhost");
    tls.write_all(b"GET /api/v1/time HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn self_signed_certificate_is_generated_once_and_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let mut pems = Vec::new();
    for _ in 0..2 {
        let link: Arc<dyn EngineLink> = InProcessEngine::start(Limits::default(), &[], 64);
        let gw = Gateway::new(RestConfig::new(3, DEMO_MASTER_KEY.to_vec()), link, None);
        let srv = serve(gw, "127.0.0.1:0".parse().unwrap(), Tls::SelfSigned(dir.path().to_path_buf())).await.unwrap();
        assert!(srv.url().starts_with("https://"));
        let cert = dir.path().join("rest-cert.pem");
        let key = dir.path().join("rest-key.pem");
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "private key owner-only");
        let resp = get_time(srv.addr, &cert).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("server_time"), "{resp}");
        pems.push(std::fs::read(&cert).unwrap());
        srv.shutdown().await;
    }
    assert_eq!(pems[0], pems[1], "the certificate is reused on the next start");
}
