//! The ledger's server settings are applied and stay the same in both places that start a
//! PostgreSQL: the testkit's throwaway clusters (`testkit::pg::SERVER_SETTINGS`, also the
//! benchmark's) and scripts/services/postgres.sh (the test suite's server). A setting added
//! to one and not the other would make the suite and the benchmark measure different servers.

use castle_settlement::testkit::pg::{PgCluster, SERVER_SETTINGS};

const SCRIPT: &str = include_str!("../../scripts/services/postgres.sh");

/// The `-c name=value` pairs of the script's CASTLE_PG_SETTINGS.
fn script_settings() -> Vec<(String, String)> {
    let start = SCRIPT.find("CASTLE_PG_SETTINGS=\"").expect("CASTLE_PG_SETTINGS in postgres.sh") + 20;
    let body = &SCRIPT[start..start + SCRIPT[start..].find('"').expect("closing quote")];
    let words: Vec<&str> = body.split_whitespace().filter(|w| *w != "\\").collect();
    words
        .chunks(2)
        .map(|c| {
            assert_eq!(c[0], "-c", "postgres.sh settings are `-c name=value` pairs: {c:?}");
            let (k, v) = c[1].split_once('=').expect("name=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_test_script_starts_postgres_with_the_testkit_settings() {
    let mut script = script_settings();
    let mut testkit: Vec<(String, String)> =
        SERVER_SETTINGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    script.sort();
    testkit.sort();
    assert_eq!(script, testkit, "scripts/services/postgres.sh and testkit::pg::SERVER_SETTINGS differ");
}

#[tokio::test]
async fn a_testkit_cluster_runs_with_every_server_setting() {
    let c = PgCluster::start().unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    let (client, conn) = tokio_postgres::connect(&c.url("postgres"), tokio_postgres::NoTls).await.expect("connect");
    let conn = tokio::spawn(conn);
    for (name, want) in SERVER_SETTINGS {
        // SHOW prints sizes and times in the unit they were given in when it divides them.
        let got: String = client.query_one(&format!("SHOW {name}"), &[]).await.expect("SHOW").get(0);
        assert_eq!(&got, want, "setting {name}");
    }
    for (name, want) in [("fsync", "on"), ("synchronous_commit", "on"), ("full_page_writes", "on")] {
        let got: String = client.query_one(&format!("SHOW {name}"), &[]).await.expect("SHOW").get(0);
        assert_eq!(got, want, "durability setting {name} must stay on");
    }
    drop(client);
    let _ = conn.await;
}
