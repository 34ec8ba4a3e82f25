//! Castle's matching engine: a deterministic, sans-IO state machine.
//!
//! Commands go in ([`Command`]), events come out ([`Event`]), nothing else
//! happens: no I/O, no clock reads (every command comes with its time), no
//! allocation on the order path once buffers are warm. The sequencer and
//! journal around it (later) make it durable; replaying the same commands
//! gives the same events byte for byte and the same [`Engine::state_hash`].
//!
//! ```
//! use castle_engine::*;
//! let mut engine = FastEngine::new(Limits::small());
//! let mut out = Vec::new();
//! engine.apply(1, &Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)), &mut out);
//! engine.apply(2, &Command::Deposit { account: 7, asset: 2, amount: 10_000_000_000 }, &mut out);
//! assert!(engine.check_invariants().is_ok());
//! ```

pub mod account;
pub mod book;
pub mod check;
pub mod codec;
pub mod command;
pub mod engine;
pub mod event;
mod hash;
pub mod instrument;
mod invariants;
mod matching;
pub mod order;
pub mod risk;
pub mod snapshot;
pub mod types;
pub mod workload;

pub use account::Balance;
pub use book::{LadderBook, OrderBook, ReferenceBook};
pub use command::{Command, NewOrder, OrderRef, OrderSize, OrderType, Replace, StpMode, TimeInForce};
pub use engine::{Engine, Limits};
pub use event::{CancelReason, Event, EventKind, OrderKind, RejectReason};
pub use hash::StateHash;
pub use instrument::{ConversionError, InstrumentSpec, Scaling, TradingStatus};
pub use order::Order;
pub use types::*;

/// Entries the two hash indexes (client order id -> order, and each book's order id -> arena
/// slot) are created with; they grow by doubling up to their limit (`max_open_orders`,
/// `max_orders_per_instrument`). Sized to the limit up front (1 M and 256 k entries by default)
/// they spread a 10,000-order book over ~120 MB of sparse buckets: each live entry on its own
/// page (TLB reach), and the first touch of each page a page fault on the order path (perf counted
/// them among the sequencer's page faults). Growing costs one O(open orders) rehash per doubling,
/// a few times in the life of a busy engine.
pub const INDEX_START_CAPACITY: usize = 1 << 14;

/// Write every page of `map`'s table once, so that inserting up to its
/// capacity does not page-fault: a reserved table is only address space
/// until first written, and the first write to each page is a page fault
/// (a zeroed page) on the thread applying commands. Fills the table to
/// capacity with `key(0..)` -> `fill` and clears it (clearing also resets
/// every control byte, so no tombstones are left); entries already there
/// are taken out first and put back after, so `key` only has to give
/// distinct keys. Same contents and capacity afterwards.
pub(crate) fn fault_in_map<K: Eq + std::hash::Hash, V: Clone>(
    map: &mut rustc_hash::FxHashMap<K, V>,
    key: impl Fn(u64) -> K,
    fill: &V,
) {
    let capacity = map.capacity();
    let kept: Vec<(K, V)> = map.drain().collect();
    for i in 0..capacity as u64 {
        map.insert(key(i), fill.clone());
    }
    map.clear();
    map.extend(kept);
    debug_assert_eq!(map.capacity(), capacity, "filled within capacity: no growth");
}

/// The production engine.
pub type FastEngine = Engine<LadderBook>;
/// The oracle: same rules, obviously-correct book.
pub type ReferenceEngine = Engine<ReferenceBook>;

#[cfg(test)]
mod size_tests {
    /// Events are copied into the output buffer by value: keep them small.
    /// (120: `OrderAccepted` grew by its options, post-only, display quantity
    /// and STP, from 112.)
    #[test]
    fn event_and_order_sizes() {
        assert!(std::mem::size_of::<crate::Event>() <= 120, "Event is {} bytes", std::mem::size_of::<crate::Event>());
        assert!(std::mem::size_of::<crate::Order>() <= 144, "Order is {} bytes", std::mem::size_of::<crate::Order>());
    }
}
