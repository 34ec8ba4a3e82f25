//! Where engine batches come from: an in-process [`EngineLink`] or the engine server over TCP.

use std::sync::Arc;

use castle_engine::{Event, Seq};
use castle_engine_server::client::{Connection, Delivery};
use castle_engine_server::proto::Role;
use castle_link::{EngineBatch, EngineLink};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("engine link: {0}")]
    Link(#[from] castle_link::LinkError),
    #[error("engine server {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A stream of engine batches that can be (re)opened after a given seq.
pub trait Source: Send + Sync + 'static {
    /// Every batch with seq > `after`, in order, then live. The channel closes when the
    /// stream is lost (the consumer reloads its state and opens it again).
    fn open(
        &self,
        after: Seq,
        capacity: usize,
        metrics: &Arc<Metrics>,
    ) -> Result<mpsc::Receiver<Arc<EngineBatch>>, SourceError>;
}

/// An in-process engine (`castle serve`, tests).
pub struct LinkSource(pub Arc<dyn EngineLink>);

impl Source for LinkSource {
    fn open(
        &self,
        after: Seq,
        capacity: usize,
        _: &Arc<Metrics>,
    ) -> Result<mpsc::Receiver<Arc<EngineBatch>>, SourceError> {
        Ok(self.0.subscribe_after(after, capacity)?)
    }
}

/// The engine server (`castle engine`) as a subscriber over TCP. A reader thread (the
/// client is blocking) turns `Events` frames into batches; it ends on Goodbye, a closed
/// connection or, at the next frame, when the consumer has dropped the receiver (the
/// server sends a frame for every seq, and time ticks while idle, so that comes soon).
pub struct TcpSource {
    pub addr: String,
}

impl Source for TcpSource {
    fn open(
        &self,
        after: Seq,
        capacity: usize,
        metrics: &Arc<Metrics>,
    ) -> Result<mpsc::Receiver<Arc<EngineBatch>>, SourceError> {
        // The client is blocking: on a multi-threaded runtime, tell tokio this worker is busy
        // (a connect to a dead host can take the kernel's SYN timeout).
        let connect = || Connection::connect(&self.addr, Role::Subscriber, 0, after);
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let mut conn = if multi { tokio::task::block_in_place(connect) } else { connect() }
            .map_err(|source| SourceError::Connect { addr: self.addr.clone(), source })?;
        metrics.saw_engine_seq(conn.welcome.durable_seq);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let metrics = metrics.clone();
        let addr = self.addr.clone();
        std::thread::Builder::new()
            .name("settlement-tcp".into())
            .spawn(move || loop {
                match conn.recv() {
                    Ok(Some(Delivery::Events { seq, ts, events })) => {
                        metrics.saw_engine_seq(seq);
                        let events = events.into_iter().map(|kind| Event { seq, ts, kind }).collect();
                        if tx.blocking_send(Arc::new(EngineBatch { origin: None, seq, ts, events })).is_err() {
                            return;
                        }
                    }
                    Ok(Some(Delivery::Goodbye { reason, resume_from, text })) => {
                        tracing::warn!(%addr, reason, resume_from, %text, "engine said goodbye");
                        return;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::warn!(%addr, "engine closed the stream");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "engine stream failed");
                        return;
                    }
                }
            })
            .map_err(|source| SourceError::Connect { addr: self.addr.clone(), source })?;
        Ok(rx)
    }
}
