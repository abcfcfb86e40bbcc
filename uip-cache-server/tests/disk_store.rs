//! `store.type: disk` in a real `uip-cache serve`: entries and purges
//! outlive a `kill -9`, an unusable folder and a full disk fail open,
//! `check-config` names what is missing.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use uip_cache_testkit::ServeProcess;

/// An origin answering every request with a body naming how many requests
/// it has had, cacheable for a minute; and that count.
fn origin() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                if got.starts_with(b"GET /cut ") && n == 1 {
                    // The first answer to /cut stops half-way and hangs.
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\ncontent-length: 200000\r\ncache-control: max-age=60\r\n\r\n{}",
                        "x".repeat(100_000)
                    );
                    std::thread::sleep(std::time::Duration::from_secs(30));
                    return;
                }
                let body = if got.starts_with(b"GET /huge/") {
                    // Larger than what two loopback sockets buffer.
                    format!("{n:>8}").repeat(3_000_000)
                } else if got.starts_with(b"GET /big/") {
                    // Large enough to fill a small disk in a few answers.
                    format!("{n:>8}").repeat(80_000)
                } else {
                    format!("origin answer {n}")
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncache-control: max-age=60\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (port, count)
}

/// A plain HTTP/1.1 exchange: (status line, lower-cased headers, body).
fn http(port: u16, request: &str) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

fn get(port: u16, path: &str) -> (String, String, String) {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

fn post(port: u16, path: &str, json: &str) -> (String, String, String) {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        ),
    )
}

/// A folder of its own, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("uip-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config file in `dir` for the disk store at `store`.
fn config(dir: &Path, store: &Path) -> PathBuf {
    let file = dir.join("disk.yaml");
    std::fs::write(
        &file,
        format!(
            "store:\n  type: disk\n  disk:\n    path: \"{}\"\n    max_bytes: 64MB\n    memory_bytes: 8MB\npolicies:\n  - name: all\n    pattern: \"/*\"\n",
            store.display()
        ),
    )
    .unwrap();
    file
}

pub(crate) fn serve(config: &Path, origin: u16) -> ServeProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_uip-cache"));
    command.args([
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--upstream",
        &format!("http://127.0.0.1:{origin}"),
    ]);
    ServeProcess::start(command)
}

#[test]
fn entries_and_purges_outlive_a_kill_9() {
    let dir = TempDir::new("disk-restart");
    let file = config(&dir.0, &dir.0.join("store"));
    let (up, count) = origin();
    let server = serve(&file, up);
    let port = server.addr.port();
    let admin = server.admin.expect("the admin API listens").port();
    for path in ["/kept", "/purged"] {
        let miss = get(port, path);
        assert!(miss.1.contains("x-cache: miss"), "{miss:?}");
        // A hit: the write has completed.
        let hit = get(port, path);
        assert!(hit.1.contains("x-cache: hit"), "{hit:?}");
    }
    let purged = post(admin, "/cache/invalidate/url", "{\"url\": \"/purged\"}");
    assert!(purged.0.contains("200"), "{purged:?}");
    assert!(purged.2.contains("\"deleted\":1"), "{purged:?}");
    let before = count.load(Ordering::SeqCst);
    assert_eq!(before, 2);
    // Dropping the process kills it (SIGKILL): no shutdown runs.
    drop(server);

    let server = serve(&file, up);
    let port = server.addr.port();
    let kept = get(port, "/kept");
    assert!(kept.1.contains("x-cache: hit"), "{kept:?}");
    assert_eq!(kept.2, "origin answer 1");
    let purged = get(port, "/purged");
    assert!(
        purged.1.contains("x-cache: miss"),
        "purged stays gone: {purged:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), before + 1);
    let health = get(server.admin.unwrap().port(), "/health");
    assert!(health.2.contains("\"disk\""), "{health:?}");
    assert!(health.2.contains("connected"), "{health:?}");
}

/// The pid of the process whose command line names `config`.
fn pid_of(config: &Path) -> u32 {
    let wanted = config.to_str().unwrap();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.contains(&b"serve".as_slice()) && args.contains(&wanted.as_bytes()) {
            return pid;
        }
    }
    panic!("no process serves {wanted}");
}

#[test]
fn one_worker_with_the_disk_store_keeps_the_multi_thread_runtime() {
    // A soft purge rewrites entries in place: on the multi-thread runtime
    // the worker hands its other tasks to another thread meanwhile, where
    // the current-thread runtime would hold every request.
    let dir = TempDir::new("disk-one-worker");
    let file = config(&dir.0, &dir.0.join("store"));
    let yaml = std::fs::read_to_string(&file).unwrap() + "server:\n  workers: 1\n";
    std::fs::write(&file, yaml).unwrap();
    let (up, _) = origin();
    let server = serve(&file, up);
    let pid = pid_of(&file);
    // Read before any request: the blocking pool's threads bear the same
    // name, and the disk store's reads start them on either runtime.
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "uip-cache-rt"),
        "a worker thread beside the main one: {names:?}"
    );
    let port = server.addr.port();
    get(port, "/one");
    let hit = get(port, "/one");
    assert!(hit.1.contains("x-cache: hit"), "{hit:?}");
}

#[test]
fn entries_outlive_a_graceful_stop() {
    let dir = TempDir::new("disk-graceful");
    let file = config(&dir.0, &dir.0.join("store"));
    let (up, count) = origin();
    let server = serve(&file, up);
    let port = server.addr.port();
    get(port, "/kept");
    let hit = get(port, "/kept");
    assert!(hit.1.contains("x-cache: hit"), "{hit:?}");
    let pid = pid_of(&file);
    let stopped = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    // Its output ends when it exits; exited and not yet reaped, it is a
    // zombie (state Z), not killed by the drop below.
    assert_eq!(
        server.line(|_| false, std::time::Duration::from_secs(10)),
        None
    );
    // Its output can end a moment before the process has finished
    // exiting: wait (bounded) for the zombie state rather than read once.
    let state_of = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat.rsplit(") ").next().unwrap().chars().next();
        (state, stat)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = state_of();
    while seen.0 != Some('Z') && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        seen = state_of();
    }
    assert_eq!(seen.0, Some('Z'), "exited on SIGTERM: {}", seen.1);
    drop(server);
    let server = serve(&file, up);
    let kept = get(server.addr.port(), "/kept");
    assert!(kept.1.contains("x-cache: hit"), "{kept:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_kill_9_in_the_middle_of_a_response_stores_nothing_of_it() {
    let dir = TempDir::new("disk-mid-write");
    let file = config(&dir.0, &dir.0.join("store"));
    let (up, count) = origin();
    let server = serve(&file, up);
    let port = server.addr.port();
    // A client that reads the first half of the response, then the
    // process is killed while the rest is awaited.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /cut HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.iter().filter(|b| **b == b'x').count() < 100_000 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the half body arrives");
        got.extend_from_slice(&buf[..n]);
    }
    drop(server);
    let server = serve(&file, up);
    let again = get(server.addr.port(), "/cut");
    assert!(again.1.contains("x-cache: miss"), "{again:?}");
    assert_eq!(again.2, "origin answer 2", "never the cut body");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn an_unusable_folder_fails_open_with_health_degraded() {
    let dir = TempDir::new("disk-unusable");
    // A file where the folder should be (as root, permissions would not
    // stop anything; this does).
    let store = dir.0.join("a-file");
    std::fs::write(&store, b"x").unwrap();
    let file = config(&dir.0, &store);
    let (up, _) = origin();
    let server = serve(&file, up);
    let logged = server
        .startup_lines()
        .iter()
        .any(|l| l.contains("disk store cannot open") && l.contains("health degraded"));
    assert!(logged, "{:?}", server.startup_lines());
    let port = server.addr.port();
    let first = get(port, "/x");
    assert!(first.0.contains("200"), "{first:?}");
    let health = get(server.admin.unwrap().port(), "/health");
    assert!(health.2.contains("degraded"), "{health:?}");
}

/// A tmpfs of `size` mounted on a folder of its own, unmounted on drop;
/// `None` where this process may not mount (not root, or a container
/// without the right).
struct SmallDisk(TempDir);

impl SmallDisk {
    fn mount(name: &str, size: &str) -> Option<SmallDisk> {
        let dir = TempDir::new(name);
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.0)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0 .0).status();
    }
}

#[test]
fn a_full_disk_fails_open_and_keeps_what_it_holds() {
    // A real ENOSPC: the store on an 8 MB tmpfs, filled by 640 KB answers.
    let Some(disk) = SmallDisk::mount("disk-full", "8m") else {
        eprintln!("cannot mount a tmpfs here: skipping");
        uip_cache_testkit::record_skip("mounting a small disk needs root");
        return;
    };
    let dir = TempDir::new("disk-full-config");
    let file = dir.0.join("disk.yaml");
    std::fs::write(
        &file,
        format!(
            "store:\n  type: disk\n  disk:\n    path: \"{}\"\n    max_bytes: 1GB\n    memory_bytes: 0\npolicies:\n  - name: all\n    pattern: \"/*\"\n",
            disk.0 .0.join("store").display()
        ),
    )
    .unwrap();
    let (up, count) = origin();
    let server = serve(&file, up);
    let port = server.addr.port();
    let admin = server.admin.unwrap().port();
    let small = get(port, "/small");
    assert!(small.1.contains("x-cache: miss"), "{small:?}");
    let hit = get(port, "/small");
    assert!(hit.1.contains("x-cache: hit"), "{hit:?}");

    // Far more than the disk holds: every client gets its whole answer.
    for i in 0..30 {
        let big = get(port, &format!("/big/{i}"));
        assert!(big.0.contains("200"), "/big/{i}: {:?}", big.0);
        assert_eq!(big.2.len(), 640_000, "/big/{i} whole");
    }
    let health = get(admin, "/health");
    assert!(health.2.contains("degraded"), "{health:?}");
    let full = server.line(
        |l| l.contains("disk store") && l.contains("No space left"),
        std::time::Duration::from_secs(5),
    );
    assert!(full.is_some(), "one log line names the full disk");
    // What was stored before is still served from the disk, whole.
    let before = count.load(Ordering::SeqCst);
    let hit = get(port, "/small");
    assert!(hit.1.contains("x-cache: hit"), "{hit:?}");
    assert_eq!(hit.2, "origin answer 1");
    for i in 0..30 {
        let again = get(port, &format!("/big/{i}"));
        assert!(again.0.contains("200"), "/big/{i}: {:?}", again.0);
        assert_eq!(again.2.len(), 640_000, "/big/{i}: never a cut body");
    }
    assert!(
        count.load(Ordering::SeqCst) > before,
        "the misses went to the origin"
    );

    // Space freed by a purge: the store writes again and is healthy.
    let purged = post(admin, "/cache/invalidate/url", "{\"pattern\": \"/big/*\"}");
    assert!(purged.0.contains("200"), "{purged:?}");
    get(port, "/after");
    let hit = get(port, "/after");
    assert!(hit.1.contains("x-cache: hit"), "{hit:?}");
    let health = get(admin, "/health");
    assert!(health.2.contains("connected"), "{health:?}");
}

#[test]
fn check_config_wants_a_folder_for_the_disk_store() {
    let dir = TempDir::new("disk-check");
    let file = dir.0.join("bad.yaml");
    std::fs::write(&file, "store:\n  type: disk\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_uip-cache"))
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("store.disk.path"), "{err}");
    assert!(err.contains("bad.yaml:"), "{err}");
    let good = config(&dir.0, &dir.0.join("store"));
    let out = Command::new(env!("CARGO_BIN_EXE_uip-cache"))
        .args(["check-config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads a response's head from `s`: (the head, lower-cased; the body
/// bytes read with it).
pub(crate) fn read_head(s: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the head arrives");
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    (head, got.split_off(end))
}

/// Reads one HTTP/1.1 response with a `content-length` from `s`:
/// (head, body).
fn read_response(s: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    let (head, mut body) = read_head(s);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    let mut buf = [0u8; 65536];
    while body.len() < len {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the body arrives whole: {} of {len}", body.len());
        body.extend_from_slice(&buf[..n]);
    }
    assert_eq!(body.len(), len, "nothing past the content-length");
    (head, body)
}

#[test]
fn large_hits_from_disk_are_sent_whole_from_their_file() {
    let dir = TempDir::new("disk-sendfile");
    let store = dir.0.join("store");
    // No memory tier: every hit is read from disk.
    let file = dir.0.join("disk.yaml");
    std::fs::write(
        &file,
        format!(
            "store:\n  type: disk\n  disk:\n    path: \"{}\"\n    max_bytes: 256MB\n    memory_bytes: 0\npolicies:\n  - name: all\n    pattern: \"/*\"\n    max_size: 64MB\n",
            store.display()
        ),
    )
    .unwrap();
    let (up, count) = origin();
    let server = serve(&file, up);
    let port = server.addr.port();
    let pid = pid_of(&file);
    let big = format!("{:>8}", 1).repeat(80_000);
    // A miss, the first hit (its checksum checked), then hits sent from
    // the file, on one connection kept alive.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for (i, want) in ["miss", "hit", "hit", "hit"].iter().enumerate() {
        s.write_all(b"GET /big/a HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let (head, body) = read_response(&mut s);
        assert!(head.contains(&format!("x-cache: {want}")), "{i}: {head}");
        assert!(body == big.as_bytes(), "{i}: the body, whole");
    }
    // A range of it, from the file too.
    s.write_all(b"GET /big/a HTTP/1.1\r\nHost: t\r\nRange: bytes=100000-399999\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(
        body == big.as_bytes()[100_000..400_000],
        "the range, exactly"
    );
    drop(s);

    // A body larger than the sockets hold: while its client has not read
    // it, the server holds the body file mapped (the kernel sends from it).
    let huge = format!("{:>8}", 2).repeat(3_000_000);
    assert!(get(port, "/huge/b").1.contains("x-cache: miss"));
    let first = get(port, "/huge/b");
    assert!(
        first.1.contains("x-cache: hit") && first.2 == huge,
        "checked"
    );
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /huge/b HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let body_file = |maps: &str| {
        maps.lines()
            .any(|l| l.contains(&*store.join("bodies").to_string_lossy()))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut maps = String::new();
    while std::time::Instant::now() < deadline {
        maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        if body_file(&maps) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        body_file(&maps),
        "the body file is mapped while sent:\n{maps}"
    );
    let (head, body) = read_response(&mut slow);
    assert!(head.contains("x-cache: hit"), "{head}");
    assert!(body == huge.as_bytes(), "the large body, whole");
    assert_eq!(count.load(Ordering::SeqCst), 2, "two misses, the rest hits");
}
