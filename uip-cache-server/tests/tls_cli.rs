//! `uip-cache serve` with `server.tls`, run as an operator would: a
//! rotated certificate served to new connections after SIGHUP and after
//! a file change, a broken file keeping the old certificate (and a log
//! line naming it), and the log line of an upstream that does not verify.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::tls_support::{client_config, connect, presented_names, tls_backend, Ca, TempDir};

/// The server running a config, its log lines arriving on a channel.
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Served {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_uip-cache"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Served { child, lines }
    }

    /// Waits (at most 20 s) for a log line containing `what`.
    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line with `{what}`");
    }

    fn hangup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PEM text padded to `len` bytes (PEM readers skip text outside the
/// blocks), so that a rewrite keeps the file's length.
fn padded(pem: &str, len: usize) -> String {
    assert!(pem.len() < len);
    format!("{pem}{}\n", "#".repeat(len - pem.len() - 1))
}

/// Replaces `path` by a file of `text` with the former modification time
/// (and length, see [`padded`]), renamed into place at once: only a
/// SIGHUP can tell it changed.
fn rewrite_unseen(path: &Path, text: &str) {
    let before = std::fs::metadata(path).unwrap();
    assert_eq!(before.len(), text.len() as u64);
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    let f = std::fs::File::options().write(true).open(&tmp).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    std::fs::rename(&tmp, path).unwrap();
}

async fn names_for(addr: SocketAddr, ca: &Ca, sni: &str) -> Vec<String> {
    let tls = connect(addr, sni, client_config(ca.roots(), None, &[]))
        .await
        .unwrap();
    presented_names(&tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_on_sighup_and_on_file_change_and_a_broken_file_keeps_the_old() {
    let (ca, dir) = (Ca::new("cli CA"), TempDir::new("tls-cli"));
    let (cert, key) = ca.leaf(&["site.test", "first.test"]);
    dir.write("site.pem", &padded(&cert, 4096));
    dir.write("site.key", &padded(&key, 1024));
    let tls_port = uip_cache_testkit::free_port();
    let config = dir.write(
        "serve.yaml",
        &format!(
            "policies:\n  - name: all\n    pattern: \"/*\"\nadmin:\n  enabled: false\nserver:\n  upstream: http://127.0.0.1:9\n  tls:\n    listen: 127.0.0.1:{tls_port}\n    certificates:\n      - {{ cert: site.pem, key: site.key }}\n"
        ),
    );
    let served = Served::start(&config);
    served.wait_for("uip-cache serving TLS");
    let addr: SocketAddr = ([127, 0, 0, 1], tls_port).into();
    assert!(names_for(addr, &ca, "site.test")
        .await
        .contains(&"first.test".to_owned()));

    // SIGHUP: the files changed without a new modification time.
    let (cert, key) = ca.leaf(&["site.test", "second.test"]);
    rewrite_unseen(&dir.path().join("site.pem"), &padded(&cert, 4096));
    rewrite_unseen(&dir.path().join("site.key"), &padded(&key, 1024));
    // Old certificates until asked (the watcher sees no change).
    assert!(names_for(addr, &ca, "site.test")
        .await
        .contains(&"first.test".to_owned()));
    served.hangup();
    served.wait_for("TLS certificates reloaded");
    assert!(names_for(addr, &ca, "site.test")
        .await
        .contains(&"second.test".to_owned()));

    // A file change, without a signal.
    let (cert, key) = ca.leaf(&["site.test", "third.test"]);
    std::fs::write(dir.path().join("site.key"), key).unwrap();
    std::fs::write(dir.path().join("site.pem"), cert).unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(dir.path().join("site.pem"))
        .unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !names_for(addr, &ca, "site.test")
        .await
        .contains(&"third.test".to_owned())
    {
        assert!(
            Instant::now() < deadline,
            "the file change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken certificate file: logged with its name; the last good
    // certificate stays.
    while served.lines.try_recv().is_ok() {}
    std::fs::write(dir.path().join("site.pem"), "garbage\n").unwrap();
    served.hangup();
    let line = served.wait_for("no certificate in it");
    assert!(line.contains("site.pem"), "{line}");
    assert!(names_for(addr, &ca, "site.test")
        .await
        .contains(&"third.test".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_does_not_verify_is_a_502_with_a_log_line_saying_why() {
    let (ca, dir) = (Ca::new("unknown CA"), TempDir::new("tls-cli-up"));
    let (cert, key) = ca.leaf(&["localhost"]);
    let (backend, seen) = tls_backend(&cert, &key, &[b"http/1.1"], None).await;
    let port = uip_cache_testkit::free_port();
    // No `ca`: the public roots, which do not know the test CA.
    let config = dir.write(
        "serve.yaml",
        &format!(
            "policies:\n  - name: all\n    pattern: \"/*\"\nadmin:\n  enabled: false\nserver:\n  listen: 127.0.0.1:{port}\n  upstream: https://localhost:{}\n",
            backend.port()
        ),
    );
    let served = Served::start(&config);
    served.wait_for("uip-cache serving");
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /v HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let line = served.wait_for("upstream TLS handshake failed");
    assert!(
        line.contains("UnknownIssuer") || line.contains("unknown issuer"),
        "{line}"
    );
    assert_eq!(seen.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}
