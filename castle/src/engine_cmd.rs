//! `castle engine`: the engine server as its own process.
//!
//! Every flag can also come from a `CASTLE_*` environment variable so the
//! systemd unit of the engine AMI (infra/packer) runs a bare `castle engine`
//! with its settings in /etc/castle/engine.env (written by Terraform's user
//! data, infra/terraform/modules/engine).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use castle_engine_server::{Config, Server};
use castle_journal::{JournalError, RecoveryMode, WriterChoice};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Writer {
    /// io_uring when available, else portable (logged).
    Auto,
    IoUring,
    /// pwrite + fdatasync.
    Portable,
}

impl From<Writer> for WriterChoice {
    fn from(w: Writer) -> Self {
        match w {
            Writer::Auto => WriterChoice::Auto,
            Writer::IoUring => WriterChoice::IoUring,
            Writer::Portable => WriterChoice::Portable,
        }
    }
}

#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Journal directory (snapshots go to DIR/snapshots).
    #[arg(long, env = "CASTLE_JOURNAL_DIR")]
    pub journal: PathBuf,
    /// Address to accept gateways, subscribers and standbys on (port 0: any; the bound address is printed).
    #[arg(long, env = "CASTLE_LISTEN", default_value = "127.0.0.1:7400")]
    pub listen: String,
    /// Run as a hot standby of the primary at this address.
    #[arg(long, env = "CASTLE_FOLLOW")]
    pub follow: Option<String>,
    /// Serve GET /metrics (Prometheus), /live and /ready on this address (off when absent).
    #[arg(long, env = "CASTLE_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Discard a corrupt journal from the first bad byte on instead of refusing to start.
    #[arg(long)]
    pub truncate_corrupt: bool,
    #[arg(long, value_enum, default_value = "auto")]
    pub writer: Writer,
    /// Commands between snapshots (0: never).
    #[arg(long, default_value_t = 1_000_000)]
    pub snapshot_every: u64,
    /// Open orders the engine's lookup tables hold before they grow (each growth
    /// pauses the engine for milliseconds at 100k orders; 0 starts small).
    #[arg(long, default_value_t = castle_engine_server::server::RESERVE_ORDERS)]
    pub reserve_orders: usize,
    /// Sequence numbers of events kept in memory for subscribers.
    #[arg(long, default_value_t = 1 << 16)]
    pub ring: usize,
    /// On the first start, journal the demo set-up of `castle serve` (instruments, funded accounts 1 and 2).
    #[arg(long, env = "CASTLE_DEMO")]
    pub demo: bool,
    /// TCP front end: io_uring when available (auto), io-uring (or fail), std (a thread per connection).
    #[arg(long, env = "CASTLE_ENGINE_NET", value_enum, default_value = "auto")]
    pub net: crate::engine_demo::Net,
    /// Fencing referee (`castle referee`) address: orders are accepted only while this node
    /// holds its lease, and promotion claims the next epoch there. Absent: no fencing between
    /// nodes (a single node; the log says so).
    #[arg(long, env = "CASTLE_REFEREE", requires = "node_id")]
    pub referee: Option<String>,
    /// This node's id at the referee (1 or more, distinct per node).
    #[arg(long, env = "CASTLE_NODE_ID", value_parser = clap::value_parser!(u32).range(1..))]
    pub node_id: Option<u32>,
    /// Address other nodes reach this one on, told to the referee (default: the bound listen address).
    #[arg(long, env = "CASTLE_ADVERTISE")]
    pub advertise: Option<String>,
}

pub fn run(a: EngineArgs) -> Result<()> {
    let mut cfg = Config::new(&a.journal, a.listen.clone());
    cfg.follow = a.follow.clone();
    cfg.writer = a.writer.into();
    cfg.recovery = if a.truncate_corrupt { RecoveryMode::Truncate } else { RecoveryMode::Strict };
    cfg.snapshot_every = a.snapshot_every;
    cfg.ring_capacity = a.ring;
    cfg.reserve_orders = a.reserve_orders;
    cfg.net = a.net.into();
    cfg.referee = a.referee.clone().map(|referee| castle_engine_server::referee::NodeConfig {
        referee,
        node: a.node_id.unwrap_or(1),
        advertise: a.advertise.clone().unwrap_or_default(),
    });
    let server = match Server::start(cfg) {
        Ok(s) => s,
        Err(castle_engine_server::ServerError::Journal(e @ JournalError::Corrupt { .. })) => {
            anyhow::bail!(
                "refusing to start: {e}\n(run with --truncate-corrupt to discard the journal from that offset on)"
            )
        }
        Err(e) => return Err(e).with_context(|| format!("starting the engine on {}", a.journal.display())),
    };
    if a.demo {
        println!("demo set-up: {} commands journaled", crate::engine_demo::setup(&server)?);
    }
    // Tests and scripts read the bound address from this line.
    let addr = server.local_addr().context("the engine server has no TCP listener")?;
    println!("castle engine listening on {addr}");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the signal handler")?;
    let status = Arc::new(EngineStatus { lease: Some(server.lease_gauge()), ..EngineStatus::default() });
    let metrics = match a.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, status.clone())?),
        None => None,
    };
    // The status is refreshed here rather than in the scrape handler because
    // `Server::status` waits on the sequencer: a scrape must never queue
    // behind the engine, and the engine never waits for a scrape.
    let mut last_status = std::time::Instant::now() - Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) && !server.stopped() {
        if last_status.elapsed() >= Duration::from_secs(1) {
            last_status = std::time::Instant::now();
            if let Ok(s) = server.status() {
                status.update(s.primary, s.epoch, s.seq);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(m) = &metrics {
        m.0.set_ready(false);
    }
    tracing::info!("engine stopping");
    server.shutdown().context("engine server")?;
    if let Some((_, rt, handle)) = metrics {
        rt.block_on(handle.shutdown());
    }
    Ok(())
}

/// The engine's gauges as the main loop last saw them.
#[derive(Default)]
struct EngineStatus {
    known: AtomicBool,
    primary: AtomicBool,
    epoch: AtomicU64,
    seq: AtomicU64,
    /// Read at scrape time: the lease moves faster than the status refresh.
    lease: Option<castle_engine_server::LeaseGauge>,
}

impl EngineStatus {
    fn update(&self, primary: bool, epoch: u64, seq: u64) {
        self.primary.store(primary, Ordering::Relaxed);
        self.epoch.store(epoch, Ordering::Relaxed);
        self.seq.store(seq, Ordering::Relaxed);
        self.known.store(true, Ordering::Release);
    }

    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        if !self.known.load(Ordering::Acquire) {
            return;
        }
        let _ = write!(
            out,
            "# HELP castle_engine_seq Last sequence number applied and durable.\n# TYPE castle_engine_seq gauge\ncastle_engine_seq {}\n\
             # HELP castle_engine_epoch Fencing epoch of this engine.\n# TYPE castle_engine_epoch gauge\ncastle_engine_epoch {}\n\
             # HELP castle_engine_primary 1 when this engine accepts orders, 0 when it follows a primary.\n# TYPE castle_engine_primary gauge\ncastle_engine_primary {}\n",
            self.seq.load(Ordering::Relaxed),
            self.epoch.load(Ordering::Relaxed),
            u8::from(self.primary.load(Ordering::Relaxed)),
        );
        if let Some(ms) = self.lease.as_ref().and_then(|l| l.remaining_ms()) {
            let _ = write!(
                out,
                "# HELP castle_engine_lease_remaining_ms Milliseconds left of this node's referee lease (0: none held, no orders accepted).\n# TYPE castle_engine_lease_remaining_ms gauge\ncastle_engine_lease_remaining_ms {ms}\n"
            );
        }
    }
}

/// Starts the metrics/probe endpoint on its own small runtime (the engine
/// process is otherwise synchronous). Ready from the start: the server has
/// recovered before this is called.
fn serve_metrics(
    addr: std::net::SocketAddr,
    status: Arc<EngineStatus>,
) -> Result<(crate::metrics::Metrics, tokio::runtime::Runtime, crate::metrics::MetricsServer)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("castle-metrics")
        .enable_all()
        .build()
        .context("metrics runtime")?;
    let metrics = crate::metrics::Metrics::default();
    metrics.register(move |out: &mut String| status.render(out));
    let args = crate::metrics::MetricsArgs { metrics_listen: addr };
    let handle = rt.block_on(crate::metrics::serve(&args, metrics.clone()))?;
    println!("castle engine metrics on http://{}/metrics", handle.addr);
    metrics.set_ready(true);
    Ok((metrics, rt, handle))
}
