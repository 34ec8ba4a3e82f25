//! Consumer metrics in Prometheus text format, and a minimal HTTP endpoint serving them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::ledger::Flush;

/// Counters and gauges of one consumer. Cheap to update (atomics; one short lock per flush).
pub struct Metrics {
    /// Highest engine seq the consumer has seen (from the stream, or the engine's Welcome).
    pub engine_seq: AtomicU64,
    /// Last seq committed to the ledger.
    pub applied_seq: AtomicU64,
    pub flushes: AtomicU64,
    pub batches: AtomicU64,
    pub fills: AtomicU64,
    pub entries: AtomicU64,
    /// Failed flushes or stream losses (each followed by a reload and resume).
    pub retries: AtomicU64,
    /// Engine time to commit time of every batch (command), in microseconds.
    pub lag_us: Mutex<Histogram<u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            engine_seq: AtomicU64::new(0),
            applied_seq: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            fills: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            lag_us: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")),
        }
    }
}

pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Metrics {
    pub fn saw_engine_seq(&self, seq: u64) {
        self.engine_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// Engine seq minus applied seq (0 when caught up).
    pub fn lag_seq(&self) -> u64 {
        self.engine_seq.load(Ordering::Relaxed).saturating_sub(self.applied_seq.load(Ordering::Relaxed))
    }

    pub(crate) fn committed(&self, f: &Flush) {
        self.applied_seq.fetch_max(f.seq, Ordering::Relaxed);
        self.saw_engine_seq(f.seq);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(f.batches, Ordering::Relaxed);
        self.fills.fetch_add(f.fills.len() as u64, Ordering::Relaxed);
        self.entries.fetch_add(f.entries.len() as u64, Ordering::Relaxed);
        let now = now_nanos();
        if let Ok(mut h) = self.lag_us.lock() {
            if f.batch_ts.is_empty() {
                // A flush built by hand: count it once, at its oldest batch.
                let _ = h.record((now.saturating_sub(f.first_ts) / 1_000).clamp(1, 600_000_000));
            }
            for ts in &f.batch_ts {
                let _ = h.record((now.saturating_sub(*ts) / 1_000).clamp(1, 600_000_000));
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut s = String::with_capacity(1_024);
        let mut line = |name: &str, kind: &str, help: &str, v: String| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
        };
        line(
            "castle_settlement_engine_seq",
            "gauge",
            "Highest engine sequence number seen.",
            g(&self.engine_seq).to_string(),
        );
        line(
            "castle_settlement_applied_seq",
            "gauge",
            "Last engine sequence number committed to the ledger.",
            g(&self.applied_seq).to_string(),
        );
        line("castle_settlement_lag_seq", "gauge", "Engine seq minus applied seq.", self.lag_seq().to_string());
        line(
            "castle_settlement_flushes_total",
            "counter",
            "Ledger transactions committed.",
            g(&self.flushes).to_string(),
        );
        line("castle_settlement_batches_total", "counter", "Engine commands applied.", g(&self.batches).to_string());
        line("castle_settlement_fills_total", "counter", "Fills recorded.", g(&self.fills).to_string());
        line("castle_settlement_entries_total", "counter", "Ledger entries recorded.", g(&self.entries).to_string());
        line(
            "castle_settlement_retries_total",
            "counter",
            "Reloads after a database or stream failure.",
            g(&self.retries).to_string(),
        );
        if let Ok(h) = self.lag_us.lock() {
            s.push_str("# HELP castle_settlement_lag_seconds Engine time to ledger commit, per command.\n");
            s.push_str("# TYPE castle_settlement_lag_seconds summary\n");
            for q in [0.5, 0.99, 0.999] {
                let v = if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1e6 };
                s.push_str(&format!("castle_settlement_lag_seconds{{quantile=\"{q}\"}} {v}\n"));
            }
            s.push_str(&format!("castle_settlement_lag_seconds_count {}\n", h.len()));
        }
        s
    }
}

/// Serves `GET /metrics` (any path, in fact) on `listener` until the task is dropped.
/// Requests are read up to 8 KiB and answered with the current exposition.
pub async fn serve_metrics(listener: TcpListener, metrics: std::sync::Arc<Metrics>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8_192];
            let mut n = 0;
            // Read until the end of the request head, a full buffer, or 5 s.
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            let ok = read.is_ok() && buf[..n].starts_with(b"GET ");
            let (status, body) =
                if ok { ("200 OK", m.render()) } else { ("400 Bad Request", "bad request\n".to_string()) };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text_and_bad_requests_get_400() {
        let m = Arc::new(Metrics::default());
        m.saw_engine_seq(42);
        let ts = now_nanos();
        m.committed(&Flush { prev_seq: 0, seq: 40, batches: 3, batch_ts: vec![ts; 3], ..Flush::default() });
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve_metrics(l, m));
        let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\ncastle_settlement_lag_seq 2\n"), "{ok}");
        assert!(ok.contains("\ncastle_settlement_applied_seq 40\n"), "{ok}");
        assert!(ok.contains("castle_settlement_lag_seconds_count 3\n"), "{ok}");
        let bad = ask(addr, b"\x00\x01garbage\r\n\r\n").await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    }
}
