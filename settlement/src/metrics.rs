//! Consumer metrics in Prometheus text format, and a minimal HTTP endpoint serving them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::ledger::Flush;
use crate::store::FlushStages;

/// The stages of a flush, in the order they happen (see [`FlushStages`]); `queue` is the time
/// the flush's first batch waited in the consumer before the flush started.
pub const STAGES: [&str; 6] = ["queue", "begin", "append", "wait", "settle", "commit"];

/// One histogram (microseconds) per [`STAGES`] entry, one value per committed flush.
#[derive(Clone, Debug)]
pub struct StageHistograms(pub [Histogram<u64>; 6]);

impl Default for StageHistograms {
    fn default() -> Self {
        StageHistograms(std::array::from_fn(|_| micros_histogram()))
    }
}

impl StageHistograms {
    /// The histogram of a stage named in [`STAGES`].
    pub fn get(&self, stage: &str) -> Option<&Histogram<u64>> {
        STAGES.iter().position(|s| *s == stage).map(|k| &self.0[k])
    }

    /// `stage p50/p99/p99.9 ms` for every stage, one line (benchmark output).
    pub fn summary(&self) -> String {
        let ms = |h: &Histogram<u64>, q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1e3 };
        STAGES
            .iter()
            .zip(&self.0)
            .map(|(name, h)| format!("{name} {:.2}/{:.2}/{:.2}", ms(h, 0.5), ms(h, 0.99), ms(h, 0.999)))
            .collect::<Vec<_>>()
            .join("  ")
    }
}

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
    /// Where each committed flush's time went, per stage (microseconds).
    pub stage_us: Mutex<StageHistograms>,
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
            lag_us: Mutex::new(micros_histogram()),
            stage_us: Mutex::new(StageHistograms::default()),
        }
    }
}

pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Largest value the lag and stage histograms hold: 10 minutes in microseconds (a larger
/// value is recorded as this).
const MAX_US: u64 = 600_000_000;

/// An empty histogram of the kind the lag and the flush stages use (microseconds, 1 us to
/// [`MAX_US`], 3 significant digits).
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
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
                let _ = h.record((now.saturating_sub(f.first_ts) / 1_000).clamp(1, MAX_US));
            }
            for ts in &f.batch_ts {
                let _ = h.record((now.saturating_sub(*ts) / 1_000).clamp(1, MAX_US));
            }
        }
    }

    /// Records one committed flush's stages: `queued` is its first batch's wait in the
    /// consumer, the rest comes from the backend.
    pub(crate) fn stages(&self, queued: std::time::Duration, st: &FlushStages) {
        if let Ok(mut h) = self.stage_us.lock() {
            for (k, d) in [queued, st.begin, st.append, st.wait, st.settle, st.commit].into_iter().enumerate() {
                let _ = h.0[k].record((d.as_micros() as u64).clamp(1, MAX_US));
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
        if let Ok(h) = self.stage_us.lock() {
            s.push_str(
                "# HELP castle_settlement_flush_stage_seconds Time of each committed flush per stage (queue: first batch to \
                 flush start; begin; append: rows only this flush holds; wait: previous flush's commit; settle; commit).\n",
            );
            s.push_str("# TYPE castle_settlement_flush_stage_seconds summary\n");
            for (name, h) in STAGES.iter().zip(&h.0) {
                for q in [0.5, 0.99, 0.999] {
                    let v = if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1e6 };
                    s.push_str(&format!(
                        "castle_settlement_flush_stage_seconds{{stage=\"{name}\",quantile=\"{q}\"}} {v}\n"
                    ));
                }
                let sum = h.mean() * h.len() as f64 / 1e6;
                s.push_str(&format!("castle_settlement_flush_stage_seconds_sum{{stage=\"{name}\"}} {sum}\n"));
                s.push_str(&format!("castle_settlement_flush_stage_seconds_count{{stage=\"{name}\"}} {}\n", h.len()));
            }
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
        let ms = std::time::Duration::from_millis;
        m.stages(ms(0), &FlushStages { wait: ms(3), append: ms(2), ..FlushStages::default() });
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve_metrics(l, m));
        let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\ncastle_settlement_lag_seq 2\n"), "{ok}");
        assert!(ok.contains("\ncastle_settlement_applied_seq 40\n"), "{ok}");
        assert!(ok.contains("castle_settlement_lag_seconds_count 3\n"), "{ok}");
        assert!(ok.contains("# TYPE castle_settlement_flush_stage_seconds summary\n"), "{ok}");
        assert!(ok.contains("castle_settlement_flush_stage_seconds_count{stage=\"append\"} 1\n"), "{ok}");
        assert!(ok.contains("castle_settlement_flush_stage_seconds{stage=\"wait\",quantile=\"0.5\"} 0.003"), "{ok}");
        assert!(ok.contains("castle_settlement_flush_stage_seconds{stage=\"queue\",quantile=\"0.99\"} 0.0"), "{ok}");
        let bad = ask(addr, b"\x00\x01garbage\r\n\r\n").await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    }
}
