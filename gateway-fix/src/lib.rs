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

pub mod dictionary;
pub mod encode;
pub mod field;
pub mod frame;
pub mod session;
pub mod store;
pub mod validate;

pub use dictionary::Dictionary;
pub use encode::Encoder;
pub use field::{Field, Timestamp};
pub use frame::{next_frame, FrameStatus, Message, Parser};
