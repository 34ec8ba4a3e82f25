//! Castle market data.
//!
//! - [`derived`]: books (L3/L2/L1), trades, 24h ticker and candles from engine events (sans-IO).
//! - [`itch`], [`mold`]: the feed codec, MoldUDP64 framing of ITCH 5.0 plus Castle messages (sans-IO; FEED.md).
//! - [`encoder`]: engine events -> feed messages; [`feedbook`]: feed messages -> book.
//! - [`publisher`]: UDP multicast/unicast publisher, re-request server, TCP snapshot service.
//! - [`handler`]: feed handler (gap detection, re-request, snapshot fallback) and [`cli::feed_cli`].
//! - [`redis_fanout`]: Redis streams, snapshot keys and ticker pub/sub, with reconnect and reader resync.
//! - [`consumer`]: a resumable engine-stream consumer that never slows matching; [`service`]: market data
//!   over an `EngineLink` (what `castle serve` runs); [`stats`]: exchange statistics in Prometheus text.
//! - [`pcap`]: a minimal pcap writer for handing feed captures to tshark.

pub mod book;
pub mod cli;
pub mod consumer;
pub mod derived;
pub mod encoder;
pub mod feedbook;
pub mod handler;
pub mod itch;
pub mod mold;
pub mod pcap;
pub mod publisher;
pub mod redis_fanout;
pub mod service;
pub mod stats;

pub use book::{BookOrder, Depth, DepthLevel, L3Book, TopOfBook};
pub use derived::{Candle, MarketData, PublicTrade, Ticker};
pub use encoder::FeedEncoder;
pub use feedbook::FeedBook;
pub use itch::Message;
