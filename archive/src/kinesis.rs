//! The AWS sink: each flush becomes one PutRecords call into the events
//! stream; Firehose (infra/terraform/modules/streaming) delivers the stream
//! to S3 under the layout the Glue table reads.
//!
//! Delivery is at least once: Kinesis has no conditional put, so a crash
//! between PutRecords and the cursor write sends that flush again on
//! restart. Every line carries its `seq` (unique per shard), which is the
//! key readers deduplicate on. Entries that PutRecords reports as failed
//! (throttling) are sent again on their own, so arrival order in Kinesis is
//! not seq order; readers order by `seq`.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::chunk::Flush;
use crate::cursor::{Cursor, CursorFile};
use crate::ArchiveError;

#[derive(Clone, Debug)]
pub struct KinesisConfig {
    pub stream: String,
    /// AWS region (the SDK's usual sources apply when None: AWS_REGION, profile).
    pub region: Option<String>,
    /// Another endpoint than AWS's, e.g. a local emulator (moto) in tests.
    pub endpoint: Option<String>,
    /// Where the resume cursor is kept (local disk of the archiver).
    pub cursor_path: PathBuf,
    /// Partition keys are `<prefix>-<first seq of the record>`: records spread over the stream's shards.
    pub key_prefix: String,
    /// Attempts for the entries of one flush before the flush is reported failed.
    pub max_attempts: u32,
}

/// PutRecords takes at most 500 records and 5 MiB (data and partition keys) per call.
const PUT_RECORDS_MAX: usize = 500;
const PUT_RECORDS_MAX_BYTES: usize = 5 << 20;

pub struct KinesisSink {
    client: Client,
    cfg: KinesisConfig,
    cursor_file: CursorFile,
    cursor: Cursor,
}

/// An SDK client with rustls on ring (the crypto provider the rest of Castle uses).
pub async fn client(region: Option<&str>, endpoint: Option<&str>) -> Client {
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    Client::new(&loader.load().await)
}

fn sdk_error<E: std::error::Error + Send + Sync + 'static>(what: &str, e: E) -> ArchiveError {
    ArchiveError::Sink(format!("{what}: {}", aws_sdk_kinesis::error::DisplayErrorContext(e)))
}

impl KinesisSink {
    pub async fn connect(cfg: KinesisConfig) -> Result<Self, ArchiveError> {
        assert!(cfg.max_attempts >= 1);
        let client = client(cfg.region.as_deref(), cfg.endpoint.as_deref()).await;
        // Fail at start, with the stream's name, rather than at the first flush.
        client
            .describe_stream_summary()
            .stream_name(&cfg.stream)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("Kinesis stream {}", cfg.stream), e))?;
        let cursor_file = CursorFile::new(&cfg.cursor_path);
        let cursor = cursor_file.load()?;
        Ok(Self { client, cfg, cursor_file, cursor })
    }

    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    pub async fn put(&mut self, flush: &Flush) -> Result<(), ArchiveError> {
        assert!(flush.first_seq > self.cursor.seq, "flush {}.. at cursor {}", flush.first_seq, self.cursor.seq);
        // Record i starts with the line of some command; the key only needs to spread load.
        let keys: Vec<String> =
            (0..flush.records.len()).map(|i| format!("{}-{}-{i}", self.cfg.key_prefix, flush.first_seq)).collect();
        let mut pending: Vec<usize> = (0..flush.records.len()).collect();
        let mut failures = 0;
        let mut backoff = Duration::from_millis(20);
        while !pending.is_empty() {
            // One call: the longest prefix of what is pending within PutRecords' limits
            // (a single huge command can make a flush larger than one call takes).
            let (mut take, mut bytes) = (0, 0);
            for &i in &pending {
                let b = flush.records[i].len() + keys[i].len();
                if take == PUT_RECORDS_MAX || (take > 0 && bytes + b > PUT_RECORDS_MAX_BYTES) {
                    break;
                }
                take += 1;
                bytes += b;
            }
            let mut entries = Vec::with_capacity(take);
            for &i in &pending[..take] {
                let entry = PutRecordsRequestEntry::builder()
                    .data(Blob::new(flush.records[i].clone()))
                    .partition_key(&keys[i])
                    .build()
                    .map_err(|e| sdk_error("PutRecords entry", e))?;
                entries.push(entry);
            }
            let failed: Vec<usize> = match self
                .client
                .put_records()
                .stream_name(&self.cfg.stream)
                .set_records(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    let results = out.records();
                    if results.len() != take {
                        return Err(ArchiveError::Sink(format!(
                            "PutRecords answered {} results for {take} records",
                            results.len()
                        )));
                    }
                    pending[..take]
                        .iter()
                        .zip(results)
                        .filter(|(_, r)| r.error_code().is_some())
                        .map(|(&i, _)| i)
                        .collect()
                }
                Err(e) => {
                    failures += 1;
                    if failures >= self.cfg.max_attempts {
                        return Err(sdk_error("PutRecords", e));
                    }
                    tracing::warn!(failures, error = %aws_sdk_kinesis::error::DisplayErrorContext(&e), "archive: PutRecords failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            let rest = pending.split_off(take);
            pending = failed;
            if !pending.is_empty() {
                failures += 1;
                if failures >= self.cfg.max_attempts {
                    return Err(ArchiveError::Sink(format!(
                        "{} of {} records not accepted after {} attempts",
                        pending.len(),
                        flush.records.len(),
                        self.cfg.max_attempts
                    )));
                }
                tracing::warn!(
                    failures,
                    failed = pending.len(),
                    "archive: PutRecords partly failed; sending those again"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            pending.extend(rest);
        }
        let cursor = Cursor { seq: flush.last_seq, file: None };
        let file = CursorFile::new(self.cursor_file.path());
        tokio::task::spawn_blocking(move || file.store(&cursor).map(|()| cursor))
            .await
            .map_err(|e| ArchiveError::Sink(format!("cursor writer: {e}")))?
            .map(|c| self.cursor = c)
    }
}
