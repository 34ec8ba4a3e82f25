//! `castle feed`: join the feed, recover gaps, keep the book, print it live.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use castle_engine::Side;

use crate::handler::{FeedClient, FeedClientConfig, HandlerConfig, HandlerError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("usage: castle feed --listen ADDR:PORT [--group GROUP --interface IP] [--rerequest ADDR:PORT] [--snapshot ADDR:PORT] [--depth N] [--seconds N]\n{0}")]
    Usage(String),
    #[error(transparent)]
    Handler(#[from] HandlerError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedArgs {
    pub listen: SocketAddr,
    pub group: Option<Ipv4Addr>,
    pub interface: Ipv4Addr,
    pub rerequest: Option<SocketAddr>,
    pub snapshot: Option<SocketAddr>,
    pub depth: usize,
    /// Stop after this long (None: until End of Session).
    pub seconds: Option<u64>,
}

pub fn parse_args(args: &[String]) -> Result<FeedArgs, CliError> {
    let mut a = FeedArgs {
        listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        group: None,
        interface: Ipv4Addr::LOCALHOST,
        rerequest: None,
        snapshot: None,
        depth: 5,
        seconds: None,
    };
    let mut listen = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| CliError::Usage(format!("{flag} needs a value")));
        let bad = |v: &str| CliError::Usage(format!("bad value for {flag}: {v}"));
        match flag.as_str() {
            "--listen" => {
                let v = val()?;
                a.listen = v.parse().map_err(|_| bad(&v))?;
                listen = true;
            }
            "--group" => {
                let v = val()?;
                a.group = Some(v.parse().map_err(|_| bad(&v))?);
            }
            "--interface" => {
                let v = val()?;
                a.interface = v.parse().map_err(|_| bad(&v))?;
            }
            "--rerequest" => {
                let v = val()?;
                a.rerequest = Some(v.parse().map_err(|_| bad(&v))?);
            }
            "--snapshot" => {
                let v = val()?;
                a.snapshot = Some(v.parse().map_err(|_| bad(&v))?);
            }
            "--depth" => {
                let v = val()?;
                a.depth = v.parse().map_err(|_| bad(&v))?;
            }
            "--seconds" => {
                let v = val()?;
                a.seconds = Some(v.parse().map_err(|_| bad(&v))?);
            }
            other => return Err(CliError::Usage(format!("unknown argument {other}"))),
        }
    }
    if !listen {
        return Err(CliError::Usage("--listen is required".into()));
    }
    Ok(a)
}

/// Entry point for `castle feed ARGS...` (args without the program and subcommand names).
/// Prints the top of each book once a second; returns at End of Session or after `--seconds`.
pub fn feed_cli(args: &[String]) -> Result<(), CliError> {
    let a = parse_args(args)?;
    let mut client = FeedClient::new(FeedClientConfig {
        bind: a.listen,
        group: a.group.map(|g| (g, a.interface)),
        rerequest: a.rerequest,
        snapshot: a.snapshot,
        handler: HandlerConfig::default(),
    })?;
    let start = Instant::now();
    loop {
        client.run_for(Duration::from_secs(1), &mut |_, _| {})?;
        let core = &client.core;
        println!("feed seq {} engine seq {} stats {:?}", core.next_seq(), core.book.engine_seq, core.stats);
        for i in core.book.instruments() {
            let name = crate::itch::alpha_str(&i.directory.stock);
            let d = i.book.depth(a.depth);
            println!("  {name} ({:?}) {} orders", i.status, i.book.len());
            for (side, levels) in [(Side::Sell, &d.asks), (Side::Buy, &d.bids)] {
                for l in levels {
                    println!("    {side:?} {:>12} x {:<10} ({} orders)", l.price, l.qty, l.orders);
                }
            }
        }
        if core.end_of_session && core.in_sync() {
            return Ok(());
        }
        if a.seconds.is_some_and(|s| start.elapsed() >= Duration::from_secs(s)) {
            return Ok(());
        }
    }
}
