//! The journal record payload: the command plus what the server needs to rebuild its own state
//! (fencing epoch, gateway deduplication index) from the journal alone.
//!
//! ```text
//! version u8 = 1 | epoch u64 | gateway id u32 | request id u64 | command (engine codec, version byte included)
//! ```
//!
//! Gateway id 0 is the server itself (ticks, promotion markers): never deduplicated.

use castle_engine::codec::{decode_command, encode_command, CodecError};
use castle_engine::Command;
use castle_link::Origin;

pub const PAYLOAD_VERSION: u8 = 1;
const HEADER: usize = 1 + 8 + 4 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    pub epoch: u64,
    pub gateway: u32,
    pub request: u64,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("journal payload shorter than its header ({0} bytes)")]
    Short(usize),
    #[error("unsupported journal payload version {0}")]
    Version(u8),
    #[error("journal payload command: {0}")]
    Command(#[from] CodecError),
}

/// The origin of a journaled command, read from the header alone: `None` for the server's own
/// commands (gateway 0) and for a payload too short to carry one.
pub fn origin(b: &[u8]) -> Option<Origin> {
    let gateway = u32::from_le_bytes(b.get(9..13)?.try_into().ok()?);
    let request = u64::from_le_bytes(b.get(13..21)?.try_into().ok()?);
    (gateway != 0).then_some(Origin { gateway, request })
}

impl Payload {
    pub fn encode(&self, out: &mut Vec<u8>) {
        // The header as one block: this runs once per command on the sequencer.
        let mut h = [0u8; HEADER];
        h[0] = PAYLOAD_VERSION;
        h[1..9].copy_from_slice(&self.epoch.to_le_bytes());
        h[9..13].copy_from_slice(&self.gateway.to_le_bytes());
        h[13..21].copy_from_slice(&self.request.to_le_bytes());
        out.extend_from_slice(&h);
        encode_command(&self.command, out);
    }

    pub fn decode(b: &[u8]) -> Result<Payload, PayloadError> {
        if b.len() < HEADER {
            return Err(PayloadError::Short(b.len()));
        }
        if b[0] != PAYLOAD_VERSION {
            return Err(PayloadError::Version(b[0]));
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Ok(Payload {
            epoch: u64_at(1),
            gateway: u32::from_le_bytes(b[9..13].try_into().unwrap_or([0; 4])),
            request: u64_at(13),
            command: decode_command(&b[HEADER..])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let p = Payload { epoch: 3, gateway: 9, request: 77, command: Command::Tick };
        let mut b = Vec::new();
        p.encode(&mut b);
        assert_eq!(Payload::decode(&b), Ok(p));
        assert_eq!(origin(&b), Some(Origin { gateway: 9, request: 77 }));
        assert_eq!(origin(&b[..12]), None);
        assert_eq!(Payload::decode(&b[..5]), Err(PayloadError::Short(5)));
        let mut v = b.clone();
        v[0] = 9;
        assert_eq!(Payload::decode(&v), Err(PayloadError::Version(9)));
        b.push(0);
        assert!(matches!(Payload::decode(&b), Err(PayloadError::Command(_))));
    }
}
