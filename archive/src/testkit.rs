//! Test support shared by the archive's tests and the cross-process tests:
//! a throwaway moto AWS emulator on loopback, and reading a stream back.

use std::net::TcpStream;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

/// A moto server on a free loopback port (or CASTLE_AWS_ENDPOINT when set), stopped on drop.
pub struct Moto {
    pub endpoint: String,
    child: Option<Child>,
}

impl Moto {
    pub fn start() -> Moto {
        if let Ok(endpoint) = std::env::var("CASTLE_AWS_ENDPOINT") {
            return Moto { endpoint, child: None };
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Process::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is missing: apt-get install python3, then pip install 'moto[server]'");
        let mut moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = moto.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("moto server exited ({status}): pip install 'moto[server]' (the AWS emulator)");
            }
            assert!(Instant::now() < deadline, "moto server did not listen on {port} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every record's data in every shard of `stream`, shard by shard, in arrival order.
pub async fn read_stream(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<u8> {
    let shards = client.list_shards().stream_name(stream).send().await.unwrap();
    let mut all = Vec::new();
    for shard in shards.shards() {
        let mut it = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        loop {
            let out = client.get_records().shard_iterator(&it).limit(10_000).send().await.unwrap();
            for r in out.records() {
                all.extend_from_slice(r.data().as_ref());
            }
            match out.next_shard_iterator {
                Some(next) if !out.records().is_empty() => it = next,
                _ => break,
            }
        }
    }
    all
}
