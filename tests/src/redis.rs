//! A throwaway redis-server on a free loopback port, killed on drop.
//!
//! The port is found by binding port 0 and closing it, so another process may take it before
//! redis-server binds it. Both outcomes of that race are caught: our server exits (port in
//! use), and we try again on another port; or something else answers there, which the
//! process id in `INFO server` tells apart from ours.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports tried before giving up (each lost race costs one).
const ATTEMPTS: usize = 10;

pub struct RedisServer {
    child: Child,
    pub url: String,
}

impl RedisServer {
    /// Starts redis-server without persistence and waits (deadline 60 s a port) until it
    /// answers as itself.
    pub fn start() -> RedisServer {
        assert!(
            Command::new("redis-server").arg("--version").output().is_ok(),
            "redis-server is missing: apt-get install redis-server (scripts/test installs it when run as root)"
        );
        for _ in 0..ATTEMPTS {
            let port =
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("free port").port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            let mut server = RedisServer { child, url: format!("redis://127.0.0.1:{port}/") };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if server.child.try_wait().expect("redis-server status").is_some() {
                    break; // port taken before it bound it: another port
                }
                if let Some(pid) = server.process_id() {
                    assert_eq!(pid, server.child.id(), "another redis-server answers on port {port}");
                    return server;
                }
                assert!(Instant::now() < deadline, "redis-server did not answer on port {port} within 60 s");
                std::thread::sleep(Duration::from_millis(20)); // polling a condition with a deadline
            }
        }
        panic!("redis-server could not bind a free loopback port in {ATTEMPTS} attempts");
    }

    /// The `process_id` of whatever answers `INFO server` at our address, if anything does yet
    /// (a raw RESP exchange: no client library needed here).
    fn process_id(&self) -> Option<u32> {
        let addr = self.url.trim_start_matches("redis://").trim_end_matches('/');
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"INFO server\r\n").ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&reply);
            if let Some((pid, _)) = text.split_once("process_id:").and_then(|(_, r)| r.split_once("\r\n")) {
                return pid.trim().parse().ok();
            }
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            reply.extend_from_slice(&buf[..n]);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
