//! Shared helpers for the socket tests: an engine with a demo market, a
//! configuration builder and a tiny FIX initiator over any async stream.
#![allow(dead_code)]

use castle_engine::{Command, InstrumentSpec, Limits};
use castle_gateway_fix::frame::{checksum, next_frame, FrameStatus};
use castle_gateway_fix::{InProcessEngine, Timestamp};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub fn engine() -> Arc<InProcessEngine> {
    let limits = Limits { max_accounts: 1024, ..Limits::default() };
    let mut setup = vec![Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000))];
    for account in [7, 8] {
        for asset in [1, 2] {
            setup.push(Command::Deposit { account, asset, amount: 1_000_000_000_000_000 });
        }
    }
    InProcessEngine::start(limits, &setup, 65_536)
}

pub fn now() -> Timestamp {
    Timestamp::from_unix_nanos(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
    )
}

pub struct Client<S> {
    pub s: S,
    pub sender: String,
    pub target: String,
    pub seq: u64,
    buf: Vec<u8>,
    /// BeginString of the session ("FIX.4.4" unless set).
    pub begin: String,
    /// The last frame received, as bytes (for validation).
    pub last_raw: Vec<u8>,
}

pub type Fields = Vec<(u32, String)>;

pub fn get(f: &Fields, tag: u32) -> Option<&str> {
    f.iter().find(|(t, _)| *t == tag).map(|(_, v)| v.as_str())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(s: S, sender: &str, target: &str) -> Self {
        Client {
            s,
            sender: sender.into(),
            target: target.into(),
            seq: 1,
            buf: Vec::new(),
            begin: "FIX.4.4".into(),
            last_raw: Vec::new(),
        }
    }

    /// Send `35=..|..` (header fields added).
    pub async fn send(&mut self, body: &str) {
        let seq = self.seq;
        self.seq += 1;
        self.send_as(body, seq, "").await;
    }

    /// Send with MsgSeqNum `seq` (the counter is left alone) and extra
    /// header fields (`|43=Y|122=...`), as a resend does.
    pub async fn send_as(&mut self, body: &str, seq: u64, header: &str) {
        let mt_end = body.find('|').unwrap_or(body.len());
        let (mt, rest) = body.split_at(mt_end);
        let b = format!(
            "35={mt}|49={}|56={}|34={}|52={}{header}{rest}|",
            self.sender,
            self.target,
            seq,
            now().to_fix_string()
        )
        .replace("||", "|")
        .replace('|', "\x01");
        let mut v = format!("8={}\x019={}\x01{b}", self.begin, b.len()).into_bytes();
        let cs = checksum(&v);
        v.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
        self.s.write_all(&v).await.unwrap();
        self.s.flush().await.unwrap();
    }

    pub async fn logon(&mut self, extra: &str) -> Fields {
        self.send(&format!("A|98=0|108=30{extra}")).await;
        let f = self.recv().await.expect("logon answer");
        assert_eq!(get(&f, 35), Some("A"), "logon answered with {f:?}");
        f
    }

    /// Next message (None on close or after 10 s).
    pub async fn recv(&mut self) -> Option<Fields> {
        loop {
            if let FrameStatus::Complete { len } = next_frame(&self.buf, 1 << 20) {
                let frame: Vec<u8> = self.buf.drain(..len).collect();
                self.last_raw = frame.clone();
                return Some(
                    String::from_utf8_lossy(&frame)
                        .split('\x01')
                        .filter(|x| !x.is_empty())
                        .map(|x| {
                            let (t, v) = x.split_once('=').unwrap();
                            (t.parse().unwrap(), v.to_string())
                        })
                        .collect(),
                );
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Next message of type `mt`, skipping heartbeats and others.
    pub async fn recv_type(&mut self, mt: &str) -> Fields {
        loop {
            let f = self.recv().await.unwrap_or_else(|| panic!("connection closed waiting for 35={mt}"));
            if get(&f, 35) == Some(mt) {
                return f;
            }
        }
    }
}

pub fn config_text(store: &std::path::Path, extra_default: &str) -> String {
    format!(
        "[DEFAULT]\nGatewayId=1\nSenderCompID=CASTLE\nStoreDir={}\nSendingTimeTolerance=120\n{extra_default}\n\
         [SESSION]\nTargetCompID=DESK\nAccount=7\nUsername=desk\nPassword=pw\n\
         [SESSION]\nTargetCompID=DESK8\nAccount=8\n\
         [SESSION]\nTargetCompID=DROP\nSessionType=drop-copy\nAccounts=7\n",
        store.display()
    )
}
