//! A throwaway redis-server on a free loopback port, killed on drop.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub url: String,
}

impl RedisServer {
    /// Starts redis-server without persistence and waits (deadline 10 s) until it answers PING.
    pub fn start() -> RedisServer {
        assert!(
            Command::new("redis-server").arg("--version").output().is_ok(),
            "redis-server is missing: apt-get install redis-server (scripts/test installs it when run as root)"
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("free port").port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = RedisServer { child, url: format!("redis://127.0.0.1:{port}/") };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.ping() {
            assert!(Instant::now() < deadline, "redis-server did not answer on port {port} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// PING over a raw connection (no client library needed here).
    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("redis://").trim_end_matches('/');
        let Ok(mut s) = std::net::TcpStream::connect(addr) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
