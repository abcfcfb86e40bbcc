//! `uip-cache serve` started by a test, on ports the system picks: the test
//! passes `--listen 127.0.0.1:0` (and `--admin 127.0.0.1:0`), and
//! [`ServeProcess`] reads the addresses the process logs once it listens.
//! No port is picked free and then bound by another process (one that
//! another test may have taken meanwhile), and no request is sent before the
//! listener is up.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a process may take to say it listens.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A `uip-cache serve` process, killed on drop.
#[derive(Debug)]
pub struct ServeProcess {
    child: Child,
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// Where the admin API listens, when it does.
    pub admin: Option<SocketAddr>,
    /// What it printed up to and with the line saying where it serves.
    startup: Vec<String>,
    /// Its standard output, a line at a time, from a thread that reads it
    /// to the end (a process whose log nobody read would stall on a full
    /// pipe).
    lines: Mutex<Receiver<String>>,
}

impl ServeProcess {
    /// Spawns `command`, a `uip-cache serve` listening on port 0, and
    /// returns once it logs where it serves (`uip-cache serving`, after
    /// `admin API serving` when it has an admin API); panics with what it
    /// printed if it exits first or says nothing within 10 s. Its
    /// standard output is read here, and `RUST_LOG` is removed from its
    /// environment: the config's `logging.level` must be `info` or lower
    /// (the default).
    pub fn start(mut command: Command) -> Self {
        let mut child = command
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the process starts");
        let stdout = child.stdout.take().expect("a piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + START_LIMIT;
        let mut seen = Vec::new();
        let mut admin = None;
        let addr = loop {
            let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => without_escapes(&line),
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    let why = match e {
                        RecvTimeoutError::Timeout => "did not say where it listens within 10 s",
                        RecvTimeoutError::Disconnected => "exited before it listened",
                    };
                    panic!(
                        "uip-cache serve {why} ({status:?}); it printed:\n{}",
                        seen.join("\n")
                    );
                }
            };
            if line.contains("admin API serving") {
                admin = field(&line, "admin");
            }
            let serving = line.contains("uip-cache serving");
            seen.push(line);
            if serving {
                match field(&seen[seen.len() - 1], "listen") {
                    Some(addr) => break addr,
                    None => panic!("no listen address in: {}", seen[seen.len() - 1]),
                }
            }
        };
        ServeProcess {
            child,
            addr,
            admin,
            startup: seen,
            lines: Mutex::new(rx),
        }
    }

    /// Its process id (to send it a signal).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What it printed until it served, the line that says so last
    /// (escape sequences removed).
    pub fn startup_lines(&self) -> &[String] {
        &self.startup
    }

    /// The next line it prints (past those read so far) for which `wanted`
    /// holds, escape sequences removed; `None` if none comes within
    /// `limit`, or the process ends first.
    pub fn line(&self, wanted: impl Fn(&str) -> bool, limit: Duration) -> Option<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + limit;
        loop {
            let line = without_escapes(
                &lines
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok()?,
            );
            if wanted(&line) {
                return Some(line);
            }
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `line` without terminal escape sequences (the colours of the log's
/// text format).
pub fn without_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, ended by a letter.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The address logged as `name`: `name=ADDR` in the text format,
/// `"name":"ADDR"` in JSON.
fn field(line: &str, name: &str) -> Option<SocketAddr> {
    let text = format!("{name}=");
    let json = format!("\"{name}\":\"");
    let at = line
        .find(&text)
        .map(|i| i + text.len())
        .or_else(|| line.find(&json).map(|i| i + json.len()))?;
    let rest = &line[at..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_text_and_json_lines() {
        let text = "\u{1b}[2m2025-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2muip_cache\u{1b}[0m\u{1b}[2m:\u{1b}[0m uip-cache serving \u{1b}[3mlisten\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:41234 \u{1b}[3mupstream\u{1b}[0m\u{1b}[2m=\u{1b}[0mhttp://127.0.0.1:1/";
        assert_eq!(
            field(&without_escapes(text), "listen"),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        let json = r#"{"timestamp":"x","level":"INFO","fields":{"message":"admin API serving","admin":"127.0.0.1:9"},"target":"uip_cache"}"#;
        assert_eq!(field(json, "admin"), Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(field(json, "listen"), None);
        assert_eq!(field("listen=not-an-address", "listen"), None);
    }

    /// A command that prints `lines`, then waits for its standard input
    /// to close (`stay`) or exits.
    fn printing(lines: &str, stay: bool) -> Command {
        let then = if stay { "; exec cat" } else { "" };
        let mut command = Command::new("sh");
        command
            .args(["-c", &format!("printf '{lines}'{then}")])
            .stdin(Stdio::piped());
        command
    }

    #[test]
    fn start_returns_the_addresses_the_process_logs_and_keeps_reading() {
        let p = ServeProcess::start(printing(
            "starting\\nadmin API serving admin=127.0.0.1:7\\nuip-cache serving listen=127.0.0.1:8\\nrequest 1\\n",
            true,
        ));
        assert_eq!(p.addr, "127.0.0.1:8".parse().unwrap());
        assert_eq!(p.admin, Some("127.0.0.1:7".parse().unwrap()));
        assert_eq!(p.startup_lines().len(), 3);
        assert_eq!(
            p.line(|l| l.starts_with("request"), Duration::from_secs(5)),
            Some("request 1".to_owned())
        );
    }

    #[test]
    fn a_process_that_exits_before_it_serves_is_a_failure() {
        let started = std::panic::catch_unwind(|| ServeProcess::start(printing("bye\\n", false)));
        let message = *started.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("exited before it listened"), "{message}");
        assert!(message.contains("bye"), "{message}");
    }
}
