//! The Prometheus endpoint of `castle serve`: `GET /metrics` renders every
//! registered source in the text exposition format (0.0.4).
//!
//! Shared by every component in the process: a component registers a
//! [`MetricsSource`] (a closure appending its lines) with [`Metrics`] and
//! keeps its own counters; nothing here knows what they mean. Each source
//! must write complete `# HELP`/`# TYPE` blocks with metric names of its own.
//!
//! The same listener answers the orchestrator's probes: `GET /live` is 200
//! while the process serves HTTP at all, `GET /ready` is 200 only once the
//! process has said it is ready (recovery done, every listener bound) and
//! 503 before and while shutting down, so a load balancer or systemd/k8s
//! never routes to a half-started venue.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct MetricsArgs {
    /// Address of the Prometheus endpoint (GET /metrics). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub metrics_listen: SocketAddr,
}

/// Appends metrics in Prometheus text format.
pub trait MetricsSource: Send + Sync + 'static {
    fn render(&self, out: &mut String);
}

impl<F: Fn(&mut String) + Send + Sync + 'static> MetricsSource for F {
    fn render(&self, out: &mut String) {
        self(out)
    }
}

/// The process-wide list of metric sources.
#[derive(Clone, Default)]
pub struct Metrics {
    sources: Arc<RwLock<Vec<Arc<dyn MetricsSource>>>>,
    ready: Arc<AtomicBool>,
}

impl Metrics {
    /// What `GET /ready` answers from now on.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn register(&self, source: impl MetricsSource) {
        self.sources.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(source));
    }

    pub fn render(&self) -> String {
        let sources = self.sources.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::with_capacity(4_096);
        for s in sources {
            s.render(&mut out);
        }
        out
    }
}

pub struct MetricsServer {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn router(metrics: Metrics) -> Router {
    let probe = metrics.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    // Rendering takes short locks only; a blocking-pool hop would cost more than it saves.
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
                }
            }),
        )
        .route("/live", get(|| async { json(StatusCode::OK, r#"{"status":"live"}"#) }))
        .route(
            "/ready",
            get(move || {
                let ready = probe.ready();
                async move {
                    if ready {
                        json(StatusCode::OK, r#"{"status":"ready"}"#)
                    } else {
                        json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not ready"}"#)
                    }
                }
            }),
        )
        .fallback(|| async {
            json(StatusCode::NOT_FOUND, r#"{"error":"not found: the resources are GET /metrics, /live and /ready"}"#)
        })
}

fn json(status: StatusCode, body: &'static str) -> axum::response::Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Binds the endpoint and serves it until [`MetricsServer::shutdown`].
pub async fn serve(args: &MetricsArgs, metrics: Metrics) -> Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics endpoint on {}", args.metrics_listen))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(metrics);
    let task = tokio::spawn(async move {
        let graceful = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = graceful.await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(MetricsServer { addr, stop, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_every_source_and_404s_the_rest() {
        let metrics = Metrics::default();
        metrics.register(|out: &mut String| out.push_str("# TYPE a_total counter\na_total 1\n"));
        metrics.register(|out: &mut String| out.push_str("# TYPE b gauge\nb 2\n"));
        let args = MetricsArgs { metrics_listen: "127.0.0.1:0".parse().unwrap() };
        let server = serve(&args, metrics.clone()).await.unwrap();
        let ok = get(server.addr, "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.contains("\r\n\r\n# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 2\n"), "{ok}");
        assert!(get(server.addr, "/live").await.starts_with("HTTP/1.1 200"));
        let before = get(server.addr, "/ready").await;
        assert!(before.starts_with("HTTP/1.1 503") && before.contains("not ready"), "{before}");
        metrics.set_ready(true);
        assert!(get(server.addr, "/ready").await.starts_with("HTTP/1.1 200"));
        metrics.set_ready(false);
        assert!(get(server.addr, "/ready").await.starts_with("HTTP/1.1 503"));
        let missing = get(server.addr, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404") && missing.contains(r#"{"error":"#), "{missing}");
        server.shutdown().await;
    }
}
