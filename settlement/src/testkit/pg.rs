//! A throwaway PostgreSQL 15 for tests and benchmarks: `initdb` + `pg_ctl` on a free
//! loopback port in a temporary directory (as the `postgres` user when running as root,
//! since initdb refuses root). Missing binaries are an error naming the Debian package;
//! nothing is skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN_DIRS: &[&str] = &["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"];

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(d) = std::env::var("CASTLE_PG_BIN") {
        return Ok(PathBuf::from(d));
    }
    BIN_DIRS.iter().map(PathBuf::from).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists()).ok_or_else(
        || {
            "PostgreSQL server binaries not found in /usr/lib/postgresql/15/bin: apt-get install postgresql-15 \
             (or set DATABASE_URL to a server tests may create databases on)"
                .to_string()
        },
    )
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Server settings of the test and benchmark clusters (and of scripts/services/postgres.sh;
/// an Aurora or RDS deployment needs the equivalent in its parameter group, see
/// ARCHITECTURE.md). Durability is untouched: `fsync`, `synchronous_commit` and
/// `full_page_writes` stay on (the defaults). What they change:
/// - `shared_buffers`, `wal_buffers`: the ledger's hot index pages and a large COPY's WAL
///   stay in memory between commits instead of being written out early;
/// - `max_wal_size`, `checkpoint_timeout`: fewer checkpoints, so fewer full-page images
///   (after a checkpoint, the first change to every page logs the whole 8 kB page);
/// - `wal_compression=lz4`: the full-page images that remain are compressed;
/// - `min_wal_size`: the WAL segments a busy period created are kept for reuse through a
///   quiet one, instead of being removed and created again (each creation writes 16 MB of
///   zeros and fsyncs them while holding the WAL write lock);
/// - `backend_flush_after`: the table pages a backend writes out itself (a COPY recycles its
///   ring of buffers by writing them, which was most of the ledger's data writes) are handed
///   to the kernel's writeback every 256 kB. Without it they pile up dirty in the page cache
///   until the kernel flushes hundreds of MB at once (the 30 s dirty expiry, a checkpoint's
///   fsync), and every commit's WAL fsync waits behind that burst: measured, lag p99 at 50k
///   fills/s fell from 151 to 76 ms (BENCHMARKS.md settle10).
pub const SERVER_SETTINGS: &[(&str, &str)] = &[
    ("shared_buffers", "256MB"),
    ("wal_buffers", "32MB"),
    ("min_wal_size", "1GB"),
    ("max_wal_size", "2GB"),
    ("backend_flush_after", "256kB"),
    ("checkpoint_timeout", "15min"),
    ("wal_compression", "lz4"),
];

/// A private PostgreSQL cluster. Stopped (immediate) and deleted when dropped.
pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    _tmp: tempfile::TempDir,
    tls: bool,
    /// Start with PostgreSQL's defaults instead of [`SERVER_SETTINGS`] (for comparison).
    defaults: bool,
    /// Settings given after the others, so they win (benchmark comparisons).
    overrides: Vec<(String, String)>,
}

impl PgCluster {
    fn init() -> Result<PgCluster, String> {
        let bin = bin_dir()?;
        let as_postgres = is_root();
        let tmp = tempfile::Builder::new().prefix("castle-pg").tempdir().map_err(|e| e.to_string())?;
        let dir = tmp.path().join("data");
        if as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(tmp.path())
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !st.success() {
                return Err("chown of the cluster directory to postgres failed (does user postgres exist?)".into());
            }
        }
        let c = PgCluster {
            port: free_port()?,
            dir,
            bin,
            as_postgres,
            _tmp: tmp,
            tls: false,
            defaults: false,
            overrides: Vec::new(),
        };
        c.run("initdb", &["-D", &c.dir_str(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])?;
        Ok(c)
    }

    /// initdb + start with [`SERVER_SETTINGS`]. `fsync` and `synchronous_commit` on (the
    /// defaults): benchmarks measure durable commits.
    pub fn start() -> Result<PgCluster, String> {
        Self::start_with_overrides(&[])
    }

    /// Like [`start`](Self::start) with PostgreSQL's default settings (benchmark comparison).
    pub fn start_with_defaults() -> Result<PgCluster, String> {
        let mut c = Self::init()?;
        c.defaults = true;
        c.first_start()?;
        Ok(c)
    }

    /// Like [`start`](Self::start) with some settings replaced or added (`name`, `value`),
    /// to measure against an earlier configuration in the same run.
    pub fn start_with_overrides(overrides: &[(String, String)]) -> Result<PgCluster, String> {
        let mut c = Self::init()?;
        c.overrides = overrides.to_vec();
        c.first_start()?;
        Ok(c)
    }

    /// Like [`start`](Self::start), with TLS on (`ssl=on`) using the given PEM certificate
    /// chain and key; clients may still connect without TLS.
    pub fn start_with_tls(cert_pem: &[u8], key_pem: &[u8]) -> Result<PgCluster, String> {
        let mut c = Self::init()?;
        for (name, data) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = c.dir.join(name);
            std::fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
            if c.as_postgres {
                let st =
                    Command::new("chown").arg("postgres:postgres").arg(&path).status().map_err(|e| e.to_string())?;
                if !st.success() {
                    return Err(format!("chown {}", path.display()));
                }
            }
        }
        c.tls = true;
        c.first_start()?;
        Ok(c)
    }

    fn dir_str(&self) -> String {
        self.dir.display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new(runuser()).args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .map_err(|e| format!("{}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// The first start. The port came from [`free_port`], which closes its probe socket
    /// before the server binds: another process (a parallel test, a Redis helper) can take
    /// the port in between. The server then exits with "Address already in use"; try again
    /// on another free port instead of failing the test. Any other failure is returned.
    fn first_start(&mut self) -> Result<(), String> {
        const ATTEMPTS: usize = 5;
        let log = self.dir.join("server.log");
        for attempt in 1..=ATTEMPTS {
            // pg_ctl appends to the log: start each attempt with an empty one, so the check
            // below reads this attempt's failure only.
            let _ = std::fs::remove_file(&log);
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
                    if attempt == ATTEMPTS || !server_log.contains("Address already in use") {
                        return Err(format!("{e}\nserver log:\n{server_log}"));
                    }
                    self.port = free_port()?;
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    pub fn pg_ctl_start(&self) -> Result<(), String> {
        let mut opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            self.port,
            self.dir_str()
        );
        if !self.defaults {
            for (k, v) in SERVER_SETTINGS {
                opts.push_str(&format!(" -c {k}={v}"));
            }
        }
        for (k, v) in &self.overrides {
            opts.push_str(&format!(" -c {k}={v}"));
        }
        if self.tls {
            opts.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let log = self.dir.join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.dir_str(), "-o", &opts, "-l", &log, "-w", "-t", "60", "start"])
    }

    /// `pg_ctl stop -m immediate`: the crash-like stop (no checkpoint; recovery at next start).
    pub fn stop_immediate(&self) -> Result<(), String> {
        self.run("pg_ctl", &["-D", &self.dir_str(), "-m", "immediate", "-w", "stop"])
    }

    /// A shell command that stops this cluster (for a watchdog outliving the owner).
    pub fn stop_command(&self) -> String {
        let ctl = format!("{} -D {} -m immediate -w stop", self.bin.join("pg_ctl").display(), self.dir_str());
        let root = self.dir.parent().map(|p| p.display().to_string()).unwrap_or_default();
        if self.as_postgres {
            format!("{} -u postgres -- {ctl} >/dev/null 2>&1; rm -rf {root}", runuser())
        } else {
            format!("{ctl} >/dev/null 2>&1; rm -rf {root}")
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop_immediate();
    }
}

/// Creates a fresh, empty database on the server at `admin_url` (a URL whose database can be
/// connected to, e.g. `.../postgres`) and returns its URL.
pub async fn create_database(admin_url: &str, name: &str) -> Result<String, String> {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await.map_err(|e| {
        format!("cannot connect to PostgreSQL at {admin_url}: {e} (start one with scripts/services/postgres.sh)")
    })?;
    let task = tokio::spawn(conn);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.map_err(|e| e.to_string())?;
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.map_err(|e| e.to_string())?;
    drop(client);
    let _ = task.await;
    let cfg: tokio_postgres::Config = admin_url.parse().map_err(|e| format!("{admin_url}: {e}"))?;
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().unwrap_or("postgres");
    let password = cfg.get_password().map(|p| format!(":{}", String::from_utf8_lossy(p))).unwrap_or_default();
    Ok(format!("postgres://{user}{password}@{host}:{port}/{name}"))
}

/// runuser(1) lives in /usr/sbin, which a minimal PATH may lack: use it from
/// there when present, else whatever PATH finds.
fn runuser() -> &'static str {
    const SBIN: &str = "/usr/sbin/runuser";
    if std::path::Path::new(SBIN).exists() {
        SBIN
    } else {
        "runuser"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The race `first_start` covers, forced: the chosen port is taken before the server
    /// binds. The cluster must come up anyway, on another port, and accept connections.
    #[test]
    fn a_port_taken_before_the_first_start_is_replaced() {
        let mut c = PgCluster::init().expect("initdb (PostgreSQL 15 server binaries: apt-get install postgresql-15)");
        let taken = c.port;
        let _holder = TcpListener::bind(("127.0.0.1", taken)).expect("hold the chosen port");
        c.first_start().expect("the start retries on another port");
        assert_ne!(c.port, taken, "the server cannot listen on the held port");
        std::net::TcpStream::connect(("127.0.0.1", c.port)).expect("the server accepts connections on its new port");
    }
}
