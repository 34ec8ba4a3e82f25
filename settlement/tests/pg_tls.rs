//! TLS to PostgreSQL through rustls: a private cluster with `ssl=on` and a certificate for
//! 127.0.0.1 signed by a test CA (made with the `openssl` command). `sslmode=require` with the
//! CA given connects and works; without the CA the server is not trusted; the server really
//! speaks TLS on that connection (pg_stat_ssl).

use std::path::Path;
use std::process::Command;

use castle_settlement::testkit::pg::PgCluster;
use castle_settlement::{PgConfig, PgStore, Store, StoreError};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl is missing ({e}): apt-get install openssl"));
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_ca_connects_and_without_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let subj_ca = "/CN=castle test CA";
    openssl(
        d,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", subj_ca,
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let cert = std::fs::read(d.join("server.crt")).unwrap();
    let key = std::fs::read(d.join("server.key")).unwrap();
    let cluster = PgCluster::start_with_tls(&cert, &key).unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    let url = format!("{}?sslmode=require", cluster.url("postgres"));

    let mut cfg = PgConfig::new(url.clone());
    cfg.ca_file = Some(d.join("ca.pem"));
    let store = PgStore::connect(&cfg).await.expect("TLS connection with the test CA");
    assert_eq!(store.applied_seq().await.unwrap(), 0, "migrated and usable over TLS");

    // The same connection settings without the CA: the server's certificate is not trusted.
    match PgStore::connect(&PgConfig::new(url)).await {
        Err(StoreError::Pool(e)) => {
            assert!(e.to_lowercase().contains("certificate") || e.contains("tls") || e.contains("invalid"), "{e}")
        }
        Err(e) => panic!("expected a TLS trust failure, got {e}"),
        Ok(_) => panic!("connected without trusting the server's CA"),
    }

    // And the server saw TLS: every client backend of the first pool is encrypted.
    let (client, conn) = tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.backend_type = 'client backend'", &[])
        .await
        .unwrap();
    let n: i64 = row.get(0);
    assert!(n >= 1, "no TLS connection seen by the server");
}
