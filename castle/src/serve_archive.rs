//! The event archive in `castle serve`: every engine event as a JSON line,
//! into `<data-dir>/archive` by default (the S3 layout, exactly once), or
//! into a Kinesis stream with `--archive-kinesis-stream` (Firehose delivers
//! it to S3 in AWS; at least once, deduplicated by seq).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use castle_archive::{ArchiverConfig, DirSink, KinesisConfig, KinesisSink, Sink, Stats};
use castle_link::EngineLink;
use clap::Args;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::gateway_cmd::{EngineArgs, ProbeArgs};
use crate::metrics::Metrics;

#[derive(Args, Clone, Debug)]
pub struct ArchiveArgs {
    /// Archive into this Kinesis stream instead of the local folder `<data-dir>/archive`.
    #[arg(long, env = "CASTLE_ARCHIVE_KINESIS_STREAM")]
    pub archive_kinesis_stream: Option<String>,
    /// AWS endpoint for the archive (a local emulator such as moto); AWS's own when absent.
    #[arg(long, env = "CASTLE_AWS_ENDPOINT")]
    pub aws_endpoint: Option<String>,
    /// AWS region for the archive (else AWS_REGION or the profile's).
    #[arg(long, env = "CASTLE_AWS_REGION")]
    pub aws_region: Option<String>,
    /// The engine shard this venue runs (the archive's `shard` column).
    #[arg(long, env = "CASTLE_ENGINE_SHARD", default_value = "a")]
    pub shard: String,
}

pub struct Archive {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), castle_archive::ArchiveError>>,
}

pub async fn start(
    args: &ArchiveArgs,
    data_dir: &Path,
    link: Arc<dyn EngineLink>,
    metrics: &Metrics,
) -> Result<Archive> {
    let (sink, what) = match &args.archive_kinesis_stream {
        Some(stream) => {
            let cfg = KinesisConfig {
                stream: stream.clone(),
                region: args.aws_region.clone(),
                endpoint: args.aws_endpoint.clone(),
                cursor_path: data_dir.join(format!("archive-kinesis-{stream}.cursor")),
                key_prefix: args.shard.clone(),
                max_attempts: 8,
            };
            let sink = KinesisSink::connect(cfg).await.context("connecting the archive to Kinesis")?;
            (Sink::Kinesis(Box::new(sink)), format!("Kinesis stream {stream}"))
        }
        None => {
            let root: PathBuf = data_dir.join("archive");
            let sink = DirSink::open(&root, "events").with_context(|| format!("opening {}", root.display()))?;
            let what = sink.root().display().to_string();
            (Sink::Dir(Box::new(sink)), what)
        }
    };
    if let Some(last) = link.last_seq() {
        // An archive from another journal would silently skip this one's first commands.
        anyhow::ensure!(
            sink.cursor_seq() <= last,
            "the archive in {what} holds up to seq {}, past the engine's last seq {last}: it belongs to another journal",
            sink.cursor_seq()
        );
    }
    tracing::info!(after = sink.cursor_seq(), "event archive into {what}");
    let stats = Arc::new(Stats::default());
    let s = stats.clone();
    metrics.register(move |out: &mut String| s.render(out));
    let cfg = ArchiverConfig { shard: args.shard.clone(), ..ArchiverConfig::default() };
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(castle_archive::run(link, sink, cfg, stats, stop_rx));
    Ok(Archive { stop, task })
}

impl Archive {
    /// Flushes what the archiver holds and stops it.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("archive task")?.context("event archive")
    }
}

/// `castle archive`: the archiver as its own process, following `castle engine` over TCP.
#[derive(Args)]
pub struct ArchiveCmdArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Local state: the archive folder (`DIR/archive`) or the Kinesis cursor.
    #[arg(long, env = "CASTLE_DATA_DIR", default_value = "var")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[command(flatten)]
    pub probes: ProbeArgs,
}

pub fn run(a: ArchiveCmdArgs) -> Result<()> {
    crate::gateway_cmd::runtime()?.block_on(async move {
        std::fs::create_dir_all(&a.data_dir).with_context(|| format!("creating {}", a.data_dir.display()))?;
        // The archive only reads the stream: no gateway session at the engine.
        let mut e = a.engine.clone();
        e.gateway_id = Some(0);
        let link: Arc<dyn EngineLink> = crate::gateway_cmd::link(&e, 0)?;
        let metrics = Metrics::default();
        let probe = crate::gateway_cmd::probes(&a.probes, &metrics).await?;
        let archive = start(&a.archive, &a.data_dir, link, &metrics).await?;
        metrics.set_ready(true);
        let term = crate::gateway_cmd::term()?;
        println!("castle archive is up: engine {}, metrics on http://{}/metrics", e.engine, probe.addr);
        crate::gateway_cmd::until_stopped(term).await;
        metrics.set_ready(false);
        archive.stop().await?;
        probe.shutdown().await;
        println!("castle archive stopped");
        Ok(())
    })
}
