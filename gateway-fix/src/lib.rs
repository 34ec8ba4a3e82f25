//! FIX 4.4 acceptor for institutional clients: the sans-IO core.
//!
//! Everything here is plain data and functions fed bytes and time, returning
//! bytes and actions; the tokio transport and the order layer wire it up.
//!
//! - [`frame`]: stream framing, envelope checks (garbled vs valid), zero-copy
//!   field parsing.
//! - [`encode`]: allocation-free message encoder.
//! - [`field`]: tags, value types, timestamps.
//! - [`dictionary`]: data dictionaries (Castle `.cdict` format, generated
//!   from the QuickFIX XML dictionaries).
//! - [`validate`]: message validation against a dictionary, producing the
//!   session-level reject reason.
//! - [`session`]: the acceptor session state machine.
//! - [`store`]: outbound message store and sequence numbers (memory, file).
//! - [`orders`]: the order layer (FIX application messages <-> engine
//!   commands and events), sans-IO.
//! - [`link`]: the seam to the engine ([`EngineLink`]) and its in-process
//!   implementation.
//! - [`config`]: the session configuration file.
//! - [`dialect`]: per-version adjustments of outbound messages (FIX 4.2).
//! - [`server`]: the tokio transport (TCP, TLS) and [`serve`].
//! - [`placement`]: the gateway on its own runtime, its threads pinned to
//!   CPUs and/or SCHED_FIFO ([`placement::FixRuntime`]).

pub mod config;
pub mod dialect;
pub mod dictionary;
pub mod encode;
pub mod field;
pub mod frame;
mod grow;
pub mod link;
mod mapped;
pub mod orders;
pub mod placement;
pub mod server;
pub mod session;
pub mod store;
pub mod validate;

pub use config::{Config, ConfigError};
pub use dictionary::Dictionary;
pub use encode::Encoder;
pub use field::{Field, Timestamp};
pub use frame::{next_frame, FrameStatus, Message, Parser};
pub use link::{EngineBatch, EngineLink, EngineRequest, InProcessEngine, LinkError, Origin};
pub use orders::{OrderLayer, SessionKind, SessionProfile};
pub use placement::{FixRuntime, Placement, PlacementError};
pub use server::{serve, ServeError, Server};
