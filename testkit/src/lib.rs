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
//! - `uip-cache serve` on ports the system picks, its addresses read from
//!   its log ([`ServeProcess`]).
//! - Test stores that change a few calls of another store and pass it the
//!   rest: [`storage_put_to!`], [`storage_removals_to!`],
//!   [`store_status_of!`].

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "client")]
pub mod client;
mod delegate;
pub mod exposition;
mod freeze;
mod got;
#[cfg(feature = "harness")]
pub mod harness;
mod origin;
mod serve;
#[cfg(feature = "tower")]
pub mod tower;

pub use freeze::FreezableProxy;
pub use got::Got;
#[cfg(feature = "harness")]
pub use harness::{Adapter, Backend, Harness};
pub use origin::{FailingStore, Origin, OriginDown, Reply, Seen};
pub use serve::{without_escapes, ServeProcess};

/// The crates the macros' paths name.
#[doc(hidden)]
pub use {bytes as __bytes, uip_cache_core as __core};

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
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

/// A port nothing listens on right now; another process may take it
/// before it is bound. Where a listener can be bound here, bind port 0 and
/// read its port instead; [`RedisServer`] tries another port when its
/// server cannot listen, [`ServeProcess`] reads the port from the log.
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
    ///
    /// On a port that was free a moment before: should another process
    /// take it first, the server cannot listen and exits, and another port
    /// is tried (five in all).
    pub fn start_with(extra: &[&str]) -> Option<Self> {
        if !available() {
            return None;
        }
        for _ in 0..5 {
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
            if s.spawn() {
                return Some(s);
            }
        }
        panic!("redis-server could not listen on any of five free ports");
    }

    /// Starts the process and waits until it says it accepts connections
    /// (at most 10 s, then panics); false if it exits first (it could not
    /// listen on the port).
    fn spawn(&mut self) -> bool {
        let mut child = Command::new("redis-server")
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
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        // Its log, read to the end (a full pipe would stall it); the line
        // saying it listens is passed on.
        let log = BufReader::new(child.stdout.take().expect("a piped stdout"));
        let (ready, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in log.lines() {
                let Ok(line) = line else { return };
                if line.contains("Ready to accept connections") {
                    let _ = ready.send(());
                }
            }
        });
        self.child = Some(child);
        match listening.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => true,
            Err(RecvTimeoutError::Disconnected) => {
                // Exited without listening: the port was taken.
                self.kill();
                false
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("redis-server on {} did not come up", self.port)
            }
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
        assert!(
            self.spawn(),
            "redis-server could not listen on {} again",
            self.port
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_server_that_cannot_listen_is_seen_to_exit() {
        let Some(running) = RedisServer::start() else {
            return;
        };
        // A second server on the same port: it cannot listen, and says so
        // by exiting, which `start_with` answers with another port.
        let mut second = RedisServer {
            port: running.port,
            child: None,
            dir: running.dir.join("second"),
            extra: Vec::new(),
        };
        std::fs::create_dir_all(&second.dir).unwrap();
        assert!(!second.spawn(), "a second server on port {}", running.port);
        assert_eq!(running.cli(&["PING"]).trim(), "PONG");
    }
}
