//! Test support shared by every crate's tests.
//!
//! - A mock origin that counts its calls ([`Origin`]): what it answers
//!   ([`Reply`]) and what it saw ([`Seen`]).
//! - One response type, whichever adapter or transport answered ([`Got`]),
//!   and one way to drive each: [`tower`] (the layer in process), [`actix`]
//!   (the middleware in process), [`client`] (any server over a real
//!   loopback connection), and [`harness`], which runs one case through
//!   every adapter and transport with every store (features `tower`,
//!   `actix`, `client`, `harness`).
//! - Waiting for work the cache finishes in the background, by
//!   notification: [`wait_for_sets`], [`wait_until`].
//! - Throwaway redis-server processes (one per test on a free port, or
//!   three joined into a cluster, killed on drop; skipped locally when
//!   `redis-server` is not installed, a failure in CI where `CI` is set).
//! - A store that fails or hangs ([`FailingStore`]), and a TCP proxy that
//!   can freeze a connection without closing it ([`FreezableProxy`]).

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "client")]
pub mod client;
pub mod exposition;
mod freeze;
mod got;
#[cfg(feature = "harness")]
pub mod harness;
mod origin;
#[cfg(feature = "tower")]
pub mod tower;

pub use freeze::FreezableProxy;
pub use got::Got;
#[cfg(feature = "harness")]
pub use harness::{Adapter, Backend, Harness};
pub use origin::{FailingStore, Origin, OriginDown, Reply, Seen};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uip_cache_core::{HttpCache, StatsSnapshot};

/// Waits (at most 10 s, then panics naming `what` and showing the counters)
/// until `ready` holds for `cache`'s counters. Woken by every update of a
/// counter ([`uip_cache_core::CacheStats::wait_until`]), it never polls.
pub async fn wait_until(
    cache: &HttpCache,
    what: &str,
    ready: impl FnMut(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    let waited =
        tokio::time::timeout(Duration::from_secs(10), cache.stats().wait_until(ready)).await;
    match waited {
        Ok(snapshot) => snapshot,
        Err(_) => panic!(
            "timed out waiting until {what}: {:?}",
            cache.stats().snapshot()
        ),
    }
}

/// Waits (at most 10 s, then panics) until `cache` has written `n` entries:
/// an adapter answers a miss before its entry is stored (the write runs once
/// the body has passed).
pub async fn wait_for_sets(cache: &HttpCache, n: u64) -> StatsSnapshot {
    let what = format!("{n} entries are written");
    wait_until(cache, &what, |s| s.sets >= n).await
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether redis-server is here; panics in CI when it is not.
pub fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is required in CI but is not installed"
        );
        eprintln!("redis-server not installed: skipping (CI installs it)");
        record_skip("redis-server not installed");
    }
    found
}

/// Writes the running test's name to the file named by
/// `UIP_CACHE_SKIP_LOG`, so the test script can report it as skipped
/// instead of passed (libtest has no way to skip at run time).
pub fn record_skip(why: &str) {
    let Some(path) = std::env::var_os("UIP_CACHE_SKIP_LOG") else {
        return;
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("unnamed test");
    let line = format!(
        "{}\t{test}\t{why}\n",
        std::env::args().next().unwrap_or_default()
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// One redis-server.
#[derive(Debug)]
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server; `None` when redis-server is missing outside CI.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line options.
    pub fn start_with(extra: &[&str]) -> Option<Self> {
        if !available() {
            return None;
        }
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("uip-cache-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = RedisServer {
            port,
            child: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not come up",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (data is lost: nothing is persisted).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Freezes the process (it keeps its socket but answers nothing).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Unfreezes it.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Runs redis-cli against it; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A config using this server, with `extra` appended.
    pub fn yaml(&self, extra: &str) -> String {
        format!(
            "store:\n  type: redis\n  timeout: 1s\nredis:\n  host: 127.0.0.1\n  port: {}\n{extra}",
            self.port
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server must be resumed to die cleanly.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three masters joined with `redis-cli --cluster create`.
#[derive(Debug)]
pub struct RedisCluster {
    /// The masters.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts and joins the cluster; `None` when redis-server is missing outside CI.
    pub fn start() -> Option<Self> {
        if !available() {
            return None;
        }
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = format!("nodes-{port}.conf");
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--cluster-node-timeout",
                "2000",
            ])?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(
                Instant::now() < deadline,
                "cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(RedisCluster { nodes })
    }

    /// A config using this cluster.
    pub fn yaml(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"127.0.0.1:{}\"", n.port))
            .collect();
        format!(
            "store:\n  type: redis_cluster\n  timeout: 1s\nredis:\n  cluster_nodes: [{}]\n",
            nodes.join(", ")
        )
    }

    /// Keys held by each node.
    pub fn dbsizes(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.cli(&["dbsize"]).trim().parse().unwrap_or(0))
            .collect()
    }
}
