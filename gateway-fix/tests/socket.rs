//! The gateway over real sockets: plain TCP, TLS with client certificates,
//! and a restart in the middle of a session.

mod common;

use castle_gateway_fix::{serve, Config};
use common::*;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

const D1: &str = "D|11=O1|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.5|40=2|44=59000|59=1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_orders_cancels_replaces_and_drop_copy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::parse(&config_text(dir.path(), "ListenAddress=127.0.0.1:0")).unwrap();
    let server = serve(cfg, engine()).await.unwrap();
    let addr = server.local_addr().unwrap();

    // Wrong password: Logout and close.
    let mut bad = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK", "CASTLE");
    bad.send("A|98=0|108=30|553=desk|554=nope").await;
    let f = bad.recv().await.unwrap();
    assert_eq!(get(&f, 35), Some("5"), "{f:?}");

    let mut dc = Client::new(TcpStream::connect(addr).await.unwrap(), "DROP", "CASTLE");
    dc.logon("").await;
    let mut c = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK", "CASTLE");
    c.logon("|553=desk|554=pw").await;

    c.send(D1).await;
    let er = c.recv_type("8").await;
    assert_eq!((get(&er, 150), get(&er, 39), get(&er, 11)), (Some("0"), Some("0"), Some("O1")));
    assert_eq!(get(&dc.recv_type("8").await, 11), Some("O1"), "drop copy sees it");

    c.send("G|41=O1|11=O2|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.3|40=2|44=59001").await;
    let er = c.recv_type("8").await;
    assert_eq!(
        (get(&er, 150), get(&er, 11), get(&er, 41), get(&er, 38)),
        (Some("5"), Some("O2"), Some("O1"), Some("0.3"))
    );

    // Account 8 trades against it.
    let mut c8 = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK8", "CASTLE");
    c8.logon("").await;
    c8.send("D|11=X1|55=BTC-USDT|54=2|60=20240101-00:00:00|38=0.1|40=2|44=59001").await;
    assert_eq!(get(&c8.recv_type("8").await, 150), Some("0"));
    let fill8 = c8.recv_type("8").await;
    assert_eq!((get(&fill8, 150), get(&fill8, 39)), (Some("F"), Some("2")));
    let fill = c.recv_type("8").await;
    assert_eq!(
        (get(&fill, 150), get(&fill, 39), get(&fill, 14), get(&fill, 151)),
        (Some("F"), Some("1"), Some("0.1"), Some("0.2"))
    );

    c.send("F|41=O2|11=O3|55=BTC-USDT|54=1|60=20240101-00:00:00").await;
    let er = c.recv_type("8").await;
    assert_eq!(
        (get(&er, 150), get(&er, 39), get(&er, 11), get(&er, 41)),
        (Some("4"), Some("4"), Some("O3"), Some("O2"))
    );

    // The drop copy may not trade.
    dc.send(D1).await;
    let j = dc.recv_type("j").await;
    assert_eq!(get(&j, 380), Some("6"));

    // Unsupported but valid message type: BusinessMessageReject.
    c.send("R|131=Q1|146=1|55=BTC-USDT").await;
    assert_eq!(get(&c.recv_type("j").await, 380), Some("3"));

    // Garbage on the wire does not kill the session (garbled frames are ignored).
    tokio::io::AsyncWriteExt::write_all(&mut c.s, b"8=FIX.4.4\x019=5\x01garbage").await.unwrap();
    c.send("H|11=O3|55=BTC-USDT|54=1").await;
    let st = c.recv_type("8").await;
    assert_eq!(get(&st, 150), Some("I"));
    server.shutdown().await;
}

struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    use rcgen::*;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(vec![]).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Castle test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, eku: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()], ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf(vec!["desk.example".into()], ExtendedKeyUsagePurpose::ClientAuth);
    Pki { ca_pem: ca_cert.pem(), server_cert, server_key, client_cert, client_key }
}

fn client_tls(p: &Pki, with_cert: bool) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut p.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = if with_cert {
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut p.client_cert.as_bytes()).collect::<Result<_, _>>().unwrap();
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut p.client_key.as_bytes()).unwrap().unwrap();
        b.with_client_auth_cert(certs, key).unwrap()
    } else {
        b.with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let w = |name: &str, s: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, s).unwrap();
        path.display().to_string()
    };
    let extra = format!(
        "TlsListenAddress=127.0.0.1:0\nTlsCertificate={}\nTlsPrivateKey={}\nTlsClientCA={}\nRequireTls=Y",
        w("server.pem", &p.server_cert),
        w("server.key", &p.server_key),
        w("ca.pem", &p.ca_pem)
    );
    let cfg = Config::parse(&config_text(&dir.path().join("store"), &extra)).unwrap();
    let server = serve(cfg, engine()).await.unwrap();
    let addr = server.tls_local_addr().unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

    let tls = client_tls(&p, true).connect(name.clone(), TcpStream::connect(addr).await.unwrap()).await.unwrap();
    let mut c = Client::new(tls, "DESK", "CASTLE");
    c.logon("|553=desk|554=pw").await;
    c.send(D1).await;
    let er = c.recv_type("8").await;
    assert_eq!((get(&er, 150), get(&er, 11)), (Some("0"), Some("O1")));

    // Without a client certificate the handshake (or the first read) fails.
    let r = client_tls(&p, false).connect(name, TcpStream::connect(addr).await.unwrap()).await;
    if let Ok(s) = r {
        let mut c2 = Client::new(s, "DESK8", "CASTLE");
        c2.send("A|98=0|108=30").await;
        assert!(c2.recv().await.is_none(), "no logon without a client certificate");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_session_keeps_sequence_numbers_and_resends() {
    let dir = tempfile::tempdir().unwrap();
    let eng = engine();
    let text = config_text(dir.path(), "ListenAddress=127.0.0.1:0");
    let server = serve(Config::parse(&text).unwrap(), eng.clone()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let mut c = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK", "CASTLE");
    let logon = c.logon("|553=desk|554=pw").await;
    assert_eq!(get(&logon, 34), Some("1"));
    c.send(D1).await;
    let er1 = c.recv_type("8").await;
    c.send(&D1.replace("O1", "O2")).await;
    let er2 = c.recv_type("8").await;
    assert_eq!((get(&er1, 34), get(&er2, 34)), (Some("2"), Some("3")));

    // The gateway dies without a Logout.
    server.shutdown().await;
    assert!(c.recv().await.is_none());

    // Same engine, same store: the client reconnects with its next number.
    let server = serve(Config::parse(&text).unwrap(), eng).await.unwrap();
    let addr = server.local_addr().unwrap();
    let next = c.seq;
    let mut c = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK", "CASTLE");
    c.seq = next;
    let logon = c.logon("|553=desk|554=pw").await;
    assert_eq!(get(&logon, 34), Some("4"), "our numbers continue");

    // Ask again for both execution reports.
    c.send("2|7=2|16=3").await;
    let r1 = c.recv_type("8").await;
    let r2 = c.recv_type("8").await;
    for (r, orig) in [(&r1, &er1), (&r2, &er2)] {
        assert_eq!(get(r, 43), Some("Y"), "PossDupFlag");
        assert!(get(r, 122).is_some(), "OrigSendingTime");
        for tag in [34, 11, 37, 17, 150] {
            assert_eq!(get(r, tag), get(orig, tag), "tag {tag}");
        }
    }
    // New business works after the restart, with the next number.
    c.send(&D1.replace("O1", "O3")).await;
    let er3 = c.recv_type("8").await;
    assert_eq!((get(&er3, 11), get(&er3, 34)), (Some("O3"), Some("5")));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_are_closed_without_an_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::parse(&config_text(dir.path(), "ListenAddress=127.0.0.1:0")).unwrap();
    let server = serve(cfg, engine()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let closed = |mut s: TcpStream| async move {
        let mut b = [0u8; 64];
        matches!(tokio::time::timeout(std::time::Duration::from_secs(15), s.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
    };
    // Not FIX at all.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed(s).await, "HTTP request closed");
    // A valid frame that is not a Logon.
    let mut c = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK", "CASTLE");
    c.send(D1).await;
    assert!(c.recv().await.is_none(), "order before logon: closed");
    // Unknown CompIDs.
    let mut c = Client::new(TcpStream::connect(addr).await.unwrap(), "WHO", "CASTLE");
    c.send("A|98=0|108=30").await;
    assert!(c.recv().await.is_none(), "unknown session: closed");
    // A huge BodyLength is not buffered forever.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"8=FIX.4.4\x019=99999999\x0135=A\x01").await.unwrap();
    assert!(closed(s).await, "absurd BodyLength closed");
    // The configured session still works after all that.
    let mut c = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK", "CASTLE");
    c.logon("|553=desk|554=pw").await;
    c.send(D1).await;
    assert_eq!(get(&c.recv_type("8").await, 150), Some("0"));
    server.shutdown().await;
}

/// An engine link whose first stream can be closed on demand, as a durable engine closes the
/// stream of a subscriber that fell out of its event ring.
struct CuttableLink {
    inner: Arc<castle_gateway_fix::InProcessEngine>,
    cut: Arc<tokio::sync::Notify>,
    subscriptions: std::sync::atomic::AtomicUsize,
}

impl CuttableLink {
    /// Forward `from_engine` until the cut: then the stream closes.
    fn cuttable(
        &self,
        mut from_engine: tokio::sync::mpsc::Receiver<Arc<castle_link::EngineBatch>>,
        capacity: usize,
    ) -> tokio::sync::mpsc::Receiver<Arc<castle_link::EngineBatch>> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        let cut = self.cut.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cut.notified() => return, // drops tx: the stream closes
                    b = from_engine.recv() => match b {
                        Some(b) => if tx.send(b).await.is_err() { return },
                        None => return,
                    },
                }
            }
        });
        rx
    }
}

impl castle_gateway_fix::EngineLink for CuttableLink {
    fn submit(&self, req: castle_link::EngineRequest) -> Result<(), castle_link::LinkError> {
        self.inner.submit(req)
    }

    fn subscribe(
        &self,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<castle_link::EngineBatch>>, castle_link::LinkError> {
        self.subscriptions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.cuttable(self.inner.subscribe(capacity)?, capacity))
    }

    fn subscribe_after(
        &self,
        after: castle_engine::Seq,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<castle_link::EngineBatch>>, castle_link::LinkError> {
        // The first subscription (the gateway's start-up replay) can be cut, the resumed one not.
        let n = self.subscriptions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let rx = self.inner.subscribe_after(after, capacity)?;
        Ok(if n == 0 { self.cuttable(rx, capacity) } else { rx })
    }

    fn instruments(&self) -> Vec<castle_engine::InstrumentSpec> {
        self.inner.instruments()
    }
    fn last_seq(&self) -> Option<castle_engine::Seq> {
        self.inner.last_seq()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_resumes_when_the_engine_closes_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::parse(&config_text(dir.path(), "ListenAddress=127.0.0.1:0")).unwrap();
    let link = Arc::new(CuttableLink {
        inner: engine(),
        cut: Arc::new(tokio::sync::Notify::new()),
        subscriptions: Default::default(),
    });
    let server = serve(cfg, link.clone()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let mut c = Client::new(TcpStream::connect(addr).await.unwrap(), "DESK", "CASTLE");
    c.logon("|553=desk|554=pw").await;
    c.send(D1).await;
    assert_eq!(get(&c.recv_type("8").await, 11), Some("O1"));
    // The engine closes the gateway's stream (a slow consumer); the gateway resumes after the
    // last batch it saw and keeps answering.
    link.cut.notify_one();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while link.subscriptions.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(std::time::Instant::now() < deadline, "the gateway did not resubscribe");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    c.send("D|11=O2|55=BTC-USDT|54=1|60=20240101-00:00:00|38=0.5|40=2|44=59000|59=1").await;
    let er = c.recv_type("8").await;
    assert_eq!((get(&er, 11), get(&er, 150)), (Some("O2"), Some("0")), "{er:?}");
    assert_eq!(link.subscriptions.load(std::sync::atomic::Ordering::SeqCst), 2, "resubscribed once");
    server.shutdown().await;
}
